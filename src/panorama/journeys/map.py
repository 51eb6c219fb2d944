"""The journey map (docs/journeys.md), computed in DuckDB SQL over the profile events.

Every mapped event of a profile gets a stage (`journeys.stages`; a purchase by a profile that
already bought goes to `repeat_purchase_stage`). Consecutive events in the same stage form one
*visit* of that stage; the journey is the sequence of visits, so customers can skip stages and
come back. From the visits:

* `stages`: profiles, visits and events per stage;
* `transitions`: visit-to-visit flows (from, to, profiles, count, median/p90 hours), incl.
  back-flows; `sankey`: the same flows with step-numbered nodes (acyclic, for a Sankey chart);
* `funnel`: ordered steps (stages or event names): profiles reaching each step after the
  previous one, conversion, drop-off, median/p90 time from the previous step;
* `touchpoints`: per stage, the channels/sources its events came through (UTM source, the
  event's channel, else the source system);
* `paths`: the most common stage sequences (first visits);
* `stalls`: profiles whose last visit was in a stage and who have been inactive for
  `stall_after` at the period's end;
* `dfg`: the directly-follows graph of event names (process discovery).

All functions return plain dicts/lists.
"""

from __future__ import annotations

import itertools
from datetime import datetime

from panorama.config import JourneysConfig
from panorama.store import Store, one

_tmp_ids = itertools.count(1)
START, END = "(start)", "(end)"


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _events_sql(store: Store, events_sql: str | None) -> str:
    if events_sql is not None:
        return events_sql
    from panorama.profiles import profile_events_sql

    return profile_events_sql(store)


def _segment_sql(segment: str | None) -> str | None:
    if segment is None:
        return None
    from panorama.segments.engine import members_sql

    return members_sql(segment)


def _stage_events_sql(src: str, jc: JourneysConfig, segment_sql: str | None,
                      start: datetime | None, end: datetime | None) -> str:
    mapping = ", ".join(f"({_lit(e)}, {_lit(s)}, {i})" for i, (s, events) in enumerate(jc.stages.items())
                        for e in events)  # fmt: skip
    purchases = ", ".join(_lit(e) for e in jc.purchase_events) or "NULL"
    stage_order = {s: i for i, s in enumerate(jc.stages)}
    repeat = jc.repeat_purchase_stage
    # after the first purchase, the purchase stage's events of other orders are repeat purchases
    buy_stages = ", ".join(_lit(st) for st, events in jc.stages.items() if set(events) & set(jc.purchase_events))
    is_repeat = (f"(stage IN ({buy_stages or 'NULL'}) AND ts >= first_purchase_at "
                 "AND okey IS DISTINCT FROM first_okey)")
    repeat_sql = f"CASE WHEN {is_repeat} THEN {_lit(repeat)} ELSE stage END" if repeat else "stage"
    repeat_order = f"CASE WHEN {is_repeat} THEN {stage_order[repeat]} ELSE stage_order END" if repeat else "stage_order"
    where = []
    if segment_sql:
        where.append(f"profile_id IN ({segment_sql})")
    if start:
        where.append(f"ts >= TIMESTAMP {_lit(start.isoformat(sep=' '))}")
    if end:
        where.append(f"ts < TIMESTAMP {_lit(end.isoformat(sep=' '))}")
    return f"""
        WITH named AS (
            SELECT profile_id, message_id, timestamp AS ts,
                   CASE type WHEN 'page' THEN 'Page Viewed' WHEN 'screen' THEN 'Screen Viewed' ELSE event END AS name,
                   coalesce(json_extract_string(context, '$.campaign.source'), channel, source) AS touchpoint,
                   coalesce(order_id, message_id) AS okey
            FROM ({src})
        ),
        m AS (
            SELECT n.*, m.stage, m.stage_order, n.name IN ({purchases}) AS is_purchase
            FROM named n JOIN (VALUES {mapping}) m(event, stage, stage_order) ON m.event = n.name
        ),
        r AS (
            SELECT *,
                   arg_min(CASE WHEN is_purchase THEN okey END, CASE WHEN is_purchase THEN ts END)
                       OVER (PARTITION BY profile_id) AS first_okey,
                   min(CASE WHEN is_purchase THEN ts END) OVER (PARTITION BY profile_id) AS first_purchase_at
            FROM m
        )
        SELECT profile_id, message_id, ts, name, touchpoint, {repeat_sql} AS stage, {repeat_order} AS stage_order
        FROM r {"WHERE " + " AND ".join(where) if where else ""}
    """


class _Scope:
    """The stage events and visits of one journey query, as temporary tables."""

    def __init__(self, store: Store, jc: JourneysConfig, events_sql: str | None, segment: str | None,
                 start: datetime | None, end: datetime | None):
        self.cur = store.cursor()
        n = next(_tmp_ids)
        self.ev, self.visits = f"_journey_ev_{n}", f"_journey_visits_{n}"
        sql = _stage_events_sql(_events_sql(store, events_sql), jc, _segment_sql(segment), start, end)
        self.cur.execute(f"CREATE TEMP TABLE {self.ev} AS {sql}")
        self.cur.execute(f"""
            CREATE TEMP TABLE {self.visits} AS
            WITH f AS (
                SELECT *, CASE WHEN stage IS DISTINCT FROM lag(stage) OVER w THEN 1 ELSE 0 END AS new_visit
                FROM {self.ev} WINDOW w AS (PARTITION BY profile_id ORDER BY ts, message_id)
            ),
            g AS (SELECT *, sum(new_visit) OVER (PARTITION BY profile_id ORDER BY ts, message_id) AS visit_no FROM f)
            SELECT profile_id, visit_no, any_value(stage) AS stage, any_value(stage_order) AS stage_order,
                   min(ts) AS entered_at, max(ts) AS left_at, count(*) AS events
            FROM g GROUP BY profile_id, visit_no
        """)

    def rows(self, sql: str, params: list | None = None) -> list[dict]:
        result = self.cur.execute(sql, params) if params else self.cur.execute(sql)
        names = [d[0] for d in result.description]
        return [dict(zip(names, r, strict=True)) for r in result.fetchall()]

    def close(self) -> None:
        self.cur.execute(f"DROP TABLE IF EXISTS {self.visits}")
        self.cur.execute(f"DROP TABLE IF EXISTS {self.ev}")


def _hours(expr: str) -> str:
    return f"(epoch({expr}) / 3600.0)"


def journey_map(store: Store, jc: JourneysConfig, *, events_sql: str | None = None, segment: str | None = None,
                start: datetime | None = None, end: datetime | None = None, funnel: list[str] | None = None,
                sankey_steps: int = 5, top_paths: int = 10, path_length: int = 6, dfg_edges: int = 40,
                as_of: datetime | None = None) -> dict:
    """The whole journey map for a segment (by name) and period [start, end)."""
    scope = _Scope(store, jc, events_sql, segment, start, end)
    try:
        return _journey_map(scope, jc, funnel or jc.funnel or list(jc.stages), sankey_steps, top_paths,
                            path_length, dfg_edges, end, as_of, segment, start)
    finally:
        scope.close()


def _journey_map(s: _Scope, jc: JourneysConfig, funnel: list[str], sankey_steps: int, top_paths: int,
                 path_length: int, dfg_edges: int, end: datetime | None, as_of: datetime | None,
                 segment: str | None, start: datetime | None) -> dict:
    ev, vi = s.ev, s.visits
    totals = s.rows(f"SELECT count(DISTINCT profile_id) AS profiles, count(*) AS events, max(ts) AS last_ts FROM {ev}")[0]
    period_end = end or as_of or totals["last_ts"]
    stage_names = list(jc.stages)

    stages = s.rows(f"""
        SELECT stage, count(DISTINCT profile_id) AS profiles, count(*) AS visits, sum(events)::BIGINT AS events
        FROM {vi} GROUP BY stage ORDER BY min(stage_order)""")
    transitions = s.rows(f"""
        WITH t AS (
            SELECT profile_id, stage AS source, entered_at,
                   coalesce(lead(stage) OVER w, {_lit(END)}) AS target, lead(entered_at) OVER w AS next_at
            FROM {vi} WINDOW w AS (PARTITION BY profile_id ORDER BY visit_no)
            UNION ALL
            SELECT profile_id, {_lit(START)}, NULL, stage, NULL FROM {vi} WHERE visit_no = 1
        )
        SELECT source, target, count(*) AS count, count(DISTINCT profile_id) AS profiles,
               median({_hours('next_at - entered_at')}) AS median_hours,
               quantile_cont({_hours('next_at - entered_at')}, 0.9) AS p90_hours
        FROM t GROUP BY source, target ORDER BY count DESC, source, target""")
    sankey_rows = s.rows(f"""
        WITH t AS (
            SELECT visit_no, stage, lead(stage) OVER (PARTITION BY profile_id ORDER BY visit_no) AS nxt
            FROM {vi} WHERE visit_no <= {int(sankey_steps)}
        )
        SELECT visit_no AS step, stage AS source, nxt AS target, count(*) AS value
        FROM t WHERE nxt IS NOT NULL GROUP BY ALL ORDER BY step, value DESC""")
    nodes: list[str] = []
    links = {"source": [], "target": [], "value": []}
    for r in sankey_rows:
        for key, label in (("source", f"{r['step']}. {r['source']}"), ("target", f"{r['step'] + 1}. {r['target']}")):
            if label not in nodes:
                nodes.append(label)
            links[key].append(nodes.index(label))
        links["value"].append(int(r["value"]))

    touch = s.rows(f"""
        WITH t AS (
            SELECT stage, touchpoint, count(*) AS events, count(DISTINCT profile_id) AS profiles,
                   row_number() OVER (PARTITION BY stage ORDER BY count(*) DESC, touchpoint) AS rank
            FROM {ev} GROUP BY stage, touchpoint
        )
        SELECT stage, touchpoint, events, profiles FROM t WHERE rank <= 8 ORDER BY stage, events DESC""")
    touchpoints: dict[str, list[dict]] = {st: [] for st in stage_names}
    for r in touch:
        touchpoints.setdefault(r.pop("stage"), []).append(r)

    paths = s.rows(f"""
        WITH p AS (
            SELECT profile_id, string_agg(stage, ' > ' ORDER BY visit_no) AS path, max(visit_no) AS visits
            FROM {vi} WHERE visit_no <= {int(path_length)} GROUP BY profile_id
        )
        SELECT path, count(*) AS profiles, round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS pct
        FROM p GROUP BY path ORDER BY profiles DESC, path LIMIT {int(top_paths)}""")

    stall_before = None
    if period_end is not None:
        from datetime import timedelta

        stall_before = period_end - timedelta(seconds=jc.stall_after)
    stalls = s.rows(f"""
        WITH last AS (
            SELECT profile_id, arg_max(stage, visit_no) AS stage, max(left_at) AS last_at FROM {vi} GROUP BY profile_id
        ),
        reached AS (SELECT stage, count(DISTINCT profile_id) AS reached FROM {vi} GROUP BY stage)
        SELECT l.stage, count(*) AS stalled, r.reached, round(100.0 * count(*) / r.reached, 2) AS pct_of_reached,
               median({_hours('?::TIMESTAMP - l.last_at')}) / 24 AS median_days_inactive
        FROM last l JOIN reached r USING (stage)
        WHERE l.last_at < ?::TIMESTAMP GROUP BY l.stage, r.reached ORDER BY stalled DESC""",
        [period_end, stall_before]) if stall_before else []  # fmt: skip

    dfg = s.rows(f"""
        WITH d AS (
            SELECT *, CASE WHEN name IS DISTINCT FROM lag(name) OVER w THEN 1 ELSE 0 END AS keep
            FROM {ev} WINDOW w AS (PARTITION BY profile_id ORDER BY ts, message_id)
        ),
        k AS (SELECT profile_id, ts, name, lead(name) OVER w AS nxt, lead(ts) OVER w AS nxt_ts
              FROM d WHERE keep = 1 WINDOW w AS (PARTITION BY profile_id ORDER BY ts, message_id))
        SELECT name AS source, nxt AS target, count(*) AS count, count(DISTINCT profile_id) AS profiles,
               median({_hours('nxt_ts - ts')}) AS median_hours
        FROM k WHERE nxt IS NOT NULL GROUP BY ALL ORDER BY count DESC, source, target LIMIT {int(dfg_edges)}""")
    activities = s.rows(f"""
        SELECT name AS event, any_value(stage) AS stage, count(*) AS count, count(DISTINCT profile_id) AS profiles
        FROM {ev} GROUP BY name ORDER BY count DESC""")

    return {
        "segment": segment, "start": start, "end": end, "period_end": period_end,
        "profiles": int(totals["profiles"]), "events": int(totals["events"]),
        "stage_order": stage_names, "stages": stages, "transitions": transitions,
        "sankey": {"nodes": nodes, "links": links}, "funnel": _funnel(s, jc, funnel),
        "touchpoints": touchpoints, "paths": paths,
        "stalls": {"inactive_for_days": jc.stall_after / 86400, "since": stall_before, "by_stage": stalls},
        "dfg": {"edges": dfg, "activities": activities},
    }  # fmt: skip


def _funnel(s: _Scope, jc: JourneysConfig, steps: list[str]) -> list[dict]:
    """Ordered funnel: a profile reaches step k at its first step-k event at or after it reached
    step k-1."""
    if not steps:
        return []
    ctes = []
    for i, step in enumerate(steps):
        cond = f"stage = {_lit(step)}" if step in jc.stages else f"name = {_lit(step)}"
        if i == 0:
            ctes.append(f"s0 AS (SELECT profile_id, min(ts) AS at FROM {s.ev} WHERE {cond} GROUP BY profile_id)")
        else:
            ctes.append(f"s{i} AS (SELECT e.profile_id, min(e.ts) AS at FROM {s.ev} e JOIN s{i - 1} p "
                        f"ON p.profile_id = e.profile_id AND e.ts >= p.at WHERE e.{cond} GROUP BY e.profile_id)")
    selects = []
    for i in range(len(steps)):
        gap = (f"median({_hours(f's{i}.at - s{i - 1}.at')}), quantile_cont({_hours(f's{i}.at - s{i - 1}.at')}, 0.9)"
               if i else "NULL::DOUBLE, NULL::DOUBLE")  # fmt: skip
        join = f"s{i} JOIN s{i - 1} USING (profile_id)" if i else "s0"
        selects.append(f"SELECT {i} AS i, count(*) AS n, {gap} FROM {join}")
    rows = s.cur.execute("WITH " + ", ".join(ctes) + " " + " UNION ALL ".join(selects) + " ORDER BY i").fetchall()
    out = []
    first = rows[0][1] if rows else 0
    prev = None
    for (i, n, med, p90), step in zip(rows, steps, strict=True):
        n = int(n)
        out.append({
            "step": step, "profiles": n,
            "conversion_from_previous": (n / prev if prev else None) if i else 1.0,
            "conversion_from_first": n / first if first else None,
            "drop_off": (prev - n) if i else 0,
            "drop_off_pct": (100.0 * (prev - n) / prev if prev else None) if i else 0.0,
            "median_hours_from_previous": med, "p90_hours_from_previous": p90,
        })  # fmt: skip
        prev = n
    return out


# -- event log export for process mining (pm4py's column names) ---------------------------------

EVENT_LOG_COLUMNS = ("case:concept:name", "concept:name", "time:timestamp", "stage", "touchpoint", "message_id")


def event_log_sql(store: Store, jc: JourneysConfig, *, events_sql: str | None = None, segment: str | None = None,
                  start: datetime | None = None, end: datetime | None = None, level: str = "event") -> str:
    """SQL for the journey's event log in the columns pm4py reads without mapping
    (`case:concept:name` the profile, `concept:name` the activity, `time:timestamp` ISO 8601 in
    UTC), ordered by case and time; `level="stage"` names activities by stage instead of event."""
    if level not in ("event", "stage"):
        raise ValueError("level: use event or stage")
    sql = _stage_events_sql(_events_sql(store, events_sql), jc, _segment_sql(segment), start, end)
    activity = "name" if level == "event" else "stage"
    return f"""
        SELECT profile_id AS "case:concept:name", {activity} AS "concept:name",
               strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') AS "time:timestamp", stage, touchpoint, message_id
        FROM ({sql}) ORDER BY profile_id, ts, message_id"""


def export_event_log(store: Store, jc: JourneysConfig, path: str, fmt: str = "csv", **kw) -> int:
    """Write the event log (`event_log_sql`) to `path` as CSV or Parquet; returns the rows written."""
    if fmt not in ("csv", "parquet"):
        raise ValueError("format: use csv or parquet")
    sql = event_log_sql(store, jc, **kw)
    options = "FORMAT CSV, HEADER" if fmt == "csv" else "FORMAT PARQUET"
    cur = store.cursor()
    cur.execute(f"COPY ({sql}) TO {_lit(str(path))} ({options})")
    return int(one(cur.execute(f"SELECT count(*) FROM ({sql})"))[0])
