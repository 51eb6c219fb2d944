"""The traits pipeline as SQL steps (DuckDB dialect; sqlglot transpiles them for Spark).

Every step is a `SELECT` that reads named relations and becomes a named relation itself, so
the same list runs on any engine (`engines.py`): a temporary table on DuckDB, a cached view on
Spark. Inputs are two relations:

* `pe` - profile events: `profile_id` plus the events table's columns (`properties` as JSON
  text), i.e. `profiles.profile_events_sql`;
* `pr` - profile records: `profile_id, source, record_id, ts, ingested_at, attributes` for the
  current version of every source record.

The steps build, per profile, a **state** row of partial aggregates (counts, sums, minima and
maxima, first/last values with their (time, id) key, sessions with their first and last time,
and the values of history-bound aggregations), then the **final** traits from the state at an
as-of time, then RFM scores and the lifecycle stage from population parameters (breakpoints,
thresholds) that are computed in batch and kept for real-time updates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from panorama.store.schema import PROMOTED_PROPERTIES
from panorama.traits.definitions import (
    SESSION_GAP_SECONDS,
    Compiled,
    Plan,
    attr_alias,
    json_alias,
)

DAY_S = 86400


def q(name: str) -> str:
    """A quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def ts_literal(t: dt.datetime) -> str:
    return f"TIMESTAMP '{t.strftime('%Y-%m-%d %H:%M:%S')}'"


def num_literal(v: float | int | None) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, int) or float(v).is_integer():
        return f"CAST({int(v)} AS DOUBLE)" if not isinstance(v, int) else str(int(v))
    return f"CAST({float(v)!r} AS DOUBLE)"


def seconds(col: str) -> str:
    """Whole seconds since the epoch (fractions dropped alike on every engine)."""
    return f"epoch(date_trunc('second', {col}))"


def days_between(start: str, end: str) -> str:
    """Whole days elapsed from `start` to `end` (0 when `end` is earlier)."""
    return f"CAST(floor(greatest(0, {seconds(end)} - {seconds(start)}) / {DAY_S}) AS BIGINT)"


@dataclass(frozen=True)
class Step:
    name: str
    sql: str


@dataclass(frozen=True)
class StateColumn:
    trait: str
    part: str
    kind: str  # merge rule: count, sum, min, max, first_v, first_k, last_v, last_k, keep, ses_n, ses_first, ses_last

    @property
    def name(self) -> str:
        return f"{self.trait}__{self.part}"


def _event_key(rel: str) -> str:
    if rel == "records":
        return "struct_pack(t := ts, s := source, i := record_id)"
    return "struct_pack(t := ts, i := message_id)"


def _history(c: Compiled) -> bool:
    return c.trait.spec.agg in ("distinct_count", "most_frequent", "list_distinct", "previous_time") or (
        c.relation.startswith("u")
    )


class Pipeline:
    """SQL steps for one compiled plan at one as-of time."""

    def __init__(self, plan: Plan, as_of: dt.datetime, prefix: str = "_tr_",
                 until: dt.datetime | None = None):  # fmt: skip
        self.plan = plan
        self.as_of = as_of
        self.prefix = prefix
        self.until = until  # point in time: only events (and records) before it

    def rel(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _sub(self, sql: str) -> str:
        for c in self.plan.aggregations:
            if c.window:
                start = self.as_of - dt.timedelta(days=c.window)
                sql = sql.replace(f"{{window_start_{c.window}}}", ts_literal(start))
        return sql

    @property
    def has_records(self) -> bool:
        return any(c.relation == "records" for c in self.plan.aggregations)

    # -- inputs ------------------------------------------------------------------------------

    def events_step(self, pe: str) -> Step:
        cols = self.plan.columns
        select = ["profile_id", "message_id", '"timestamp" AS ts']
        for name in ("type", "event", "source", "user_id", "anonymous_id", "group_id"):
            if name in cols.event:
                select.append(name)
        for name in PROMOTED_PROPERTIES:
            if name in cols.event:
                select.append(name)
        for name in sorted(cols.json):
            extract = f"json_extract_string(properties, '$.{name}')"
            events = cols.json_events.get(name)
            if events:  # only the rows of the events that use it (JSON parsing is slow)
                listed = ", ".join("'" + e.replace("'", "''") + "'" for e in sorted(events))
                extract = f"CASE WHEN event IN ({listed}) THEN {extract} END"
            select.append(f"{extract} AS {json_alias(name)}")
        where = f' WHERE "timestamp" < {ts_literal(self.until)}' if self.until else ""
        return Step(self.rel("events"), f"SELECT {', '.join(select)} FROM {pe}{where}")

    def records_step(self, pr: str) -> Step:
        select = ["profile_id", "source", "record_id", "coalesce(ts, ingested_at) AS ts"]
        for name in sorted(self.plan.columns.attributes):
            select.append(f"json_extract_string(attributes, '$.{name}') AS {attr_alias(name)}")
        where = f" WHERE coalesce(ts, ingested_at) < {ts_literal(self.until)}" if self.until else ""
        return Step(self.rel("records"), f"SELECT {', '.join(select)} FROM {pr}{where}")

    def dedup_steps(self) -> list[Step]:
        steps = []
        for d in self.plan.dedups:
            sql = f"""
                SELECT * FROM (
                    SELECT *, row_number() OVER (
                        PARTITION BY profile_id, coalesce(CAST(({d.unique_by}) AS VARCHAR), message_id)
                        ORDER BY ts, message_id) AS rn__
                    FROM {self.rel('events')} WHERE {d.base}
                ) WHERE rn__ = 1
            """
            steps.append(Step(self.rel(d.key), sql))
        return steps

    # -- state -------------------------------------------------------------------------------

    def state_columns(self) -> list[StateColumn]:
        out: list[StateColumn] = []
        for c in self.plan.aggregations:
            t = c.trait.name
            agg = c.trait.spec.agg
            if agg in ("distinct_count", "most_frequent", "list_distinct", "previous_time"):
                cols = [StateColumn(t, "v", "keep")]
            elif agg == "count":
                cols = [StateColumn(t, "n", "count")]
            elif agg == "sum":
                cols = [StateColumn(t, "s", "sum")]
            elif agg == "avg":
                cols = [StateColumn(t, "s", "sum"), StateColumn(t, "n", "count")]
            elif agg in ("min", "max"):
                cols = [StateColumn(t, "v", agg)]
            elif agg in ("first", "last"):
                cols = [StateColumn(t, "v", f"{agg}_v"), StateColumn(t, "k", f"{agg}_k")]
            elif agg in ("first_time", "days_since_first"):
                cols = [StateColumn(t, "ts", "min")]
            elif agg in ("last_time", "days_since_last"):
                cols = [StateColumn(t, "ts", "max")]
            elif agg == "sessions":
                cols = [StateColumn(t, "n", "ses_n"), StateColumn(t, "first", "ses_first"),
                        StateColumn(t, "last", "ses_last")]  # fmt: skip
            else:  # pragma: no cover - config validation forbids it
                raise ValueError(agg)
            if _history(c) or c.relation == "records":
                # history-bound (recomputed from the log when touched) or from source records
                # (which never arrive in real time): kept as they are by an incremental merge
                cols = [StateColumn(x.trait, x.part, "keep") for x in cols]
            out += cols
        return out

    def _simple_aggregates(self, c: Compiled, C: str) -> list[str]:
        """Aggregate expressions of `c`; `C` is its row condition (a flag column)."""
        t, agg, V = c.trait.name, c.trait.spec.agg, c.value
        key = _event_key(c.relation)
        col = lambda part: q(f"{t}__{part}")  # noqa: E731
        if agg == "count":
            cond = C if V is None else f"({C}) AND ({V}) IS NOT NULL"
            return [f"count(CASE WHEN {cond} THEN 1 END) AS {col('n')}"]
        if agg == "sum":
            return [f"sum(CASE WHEN {C} THEN {V} END) AS {col('s')}"]
        if agg == "avg":
            return [f"sum(CASE WHEN {C} THEN {V} END) AS {col('s')}",
                    f"count(CASE WHEN ({C}) AND ({V}) IS NOT NULL THEN 1 END) AS {col('n')}"]  # fmt: skip
        if agg in ("min", "max"):
            return [f"{agg}(CASE WHEN {C} THEN {V} END) AS {col('v')}"]
        if agg in ("first", "last"):
            fn, kfn = ("arg_min", "min") if agg == "first" else ("arg_max", "max")
            k = f"CASE WHEN ({C}) AND ({V}) IS NOT NULL THEN {key} END"
            return [f"{fn}({V}, {k}) AS {col('v')}", f"{kfn}({k}) AS {col('k')}"]
        if agg in ("first_time", "days_since_first"):
            return [f"min(CASE WHEN {C} THEN ts END) AS {col('ts')}"]
        if agg in ("last_time", "days_since_last"):
            return [f"max(CASE WHEN {C} THEN ts END) AS {col('ts')}"]
        if agg == "distinct_count":
            return [f"count(DISTINCT CASE WHEN {C} THEN {V} END) AS {col('v')}"]
        if agg == "list_distinct":
            return [f"list_sort(list_distinct(array_agg(CASE WHEN {C} THEN {V} END))) AS {col('v')}"]
        raise ValueError(agg)  # pragma: no cover

    def aggregate_steps(self) -> list[tuple[Step, list[str]]]:
        """(step, its state columns) per relation and per special aggregation."""
        out: list[tuple[Step, list[str]]] = []
        by_rel: dict[str, list[Compiled]] = {}
        sessions: dict[tuple[str, str], list[Compiled]] = {}
        special: list[Compiled] = []
        events_of: dict[str, list[str]] = {}
        for c in self.plan.aggregations:
            agg = c.trait.spec.agg
            if agg == "sessions":
                sessions.setdefault((c.relation, c.filter), []).append(c)
            elif agg in ("most_frequent", "previous_time"):
                special.append(c)
            else:
                # traits filtered by event name aggregate only their events' rows (a small share
                # of the log, where page views dominate); the others read every row
                events = c.trait.spec.event
                group = c.relation
                if c.relation == "events" and events:
                    group = "events_named"
                    for e in [events] if isinstance(events, str) else events:
                        events_of.setdefault(group, [])
                        if e not in events_of[group]:
                            events_of[group].append(e)
                by_rel.setdefault(group, []).append(c)
        columns = self.state_columns()
        for group, comps in by_rel.items():
            rel = comps[0].relation
            # each distinct row condition is evaluated once per row, as a flag column
            flags: dict[str, str] = {}
            for c in comps:
                flags.setdefault(self._sub(c.cond), f"c__{len(flags)}")
            exprs = [e for c in comps for e in self._simple_aggregates(c, flags[self._sub(c.cond)])]
            names = [s.name for c in comps for s in columns if s.trait == c.trait.name]
            flag_cols = ", ".join(f"({cond}) AS {name}" for cond, name in flags.items())
            where = ""
            if group in events_of:
                where = " WHERE event IN (" + ", ".join(
                    "'" + e.replace("'", "''") + "'" for e in events_of[group]) + ")"  # fmt: skip
            sql = (f"SELECT profile_id, {', '.join(exprs)} "
                   f"FROM (SELECT *, {flag_cols} FROM {self.rel(rel)}{where}) GROUP BY profile_id")  # fmt: skip
            out.append((Step(self.rel(f"agg_{group}"), self._sub(sql)), names))
        for i, ((rel, filt), comps) in enumerate(sessions.items()):
            out.append(self._sessions_step(i, rel, filt, comps))
        for i, c in enumerate(special):
            t, C, V = c.trait.name, c.cond, c.value
            src = self.rel(c.relation)
            if c.trait.spec.agg == "most_frequent":
                sql = f"""
                    SELECT profile_id, v AS {q(t + '__v')} FROM (
                        SELECT profile_id, v, row_number() OVER (
                            PARTITION BY profile_id ORDER BY n DESC, last_ts DESC, v) AS rn
                        FROM (
                            SELECT profile_id, v, count(*) AS n, max(ts) AS last_ts
                            FROM (SELECT profile_id, ({V}) AS v, ts FROM {src} WHERE {C})
                            WHERE v IS NOT NULL
                            GROUP BY profile_id, v
                        )
                    ) WHERE rn = 1
                """
            else:  # previous_time
                sql = f"""
                    SELECT profile_id, ts AS {q(t + '__v')} FROM (
                        SELECT profile_id, ts, row_number() OVER (
                            PARTITION BY profile_id ORDER BY ts DESC, message_id DESC) AS rn
                        FROM {src} WHERE {C}
                    ) WHERE rn = 2
                """
            out.append((Step(self.rel(f"agg_{i}_{t}"), self._sub(sql)), [f"{t}__v"]))
        return out

    def _sessions_step(self, i: int, rel: str, filt: str, comps: list[Compiled]) -> tuple[Step, list[str]]:
        """Sessions of several traits that differ only in their window, from one ordering of the rows.

        Windows only cut the time-ordered rows at a start time, so the windowed rows are a suffix:
        a row starts a session in the window when it is the first of the suffix or comes more than
        the gap after the previous row (the same as sessionising the window's rows alone)."""
        gap = SESSION_GAP_SECONDS
        exprs, names = [], []
        for c in comps:
            t = c.trait.name
            if c.window:
                w = ts_literal(self.as_of - dt.timedelta(days=c.window))
                new = f"ts >= {w} AND (prev_s IS NULL OR prev_ts < {w} OR s - prev_s > {gap})"
                inside = f"CASE WHEN ts >= {w} THEN ts END"
            else:
                new, inside = f"prev_s IS NULL OR s - prev_s > {gap}", "ts"
            exprs += [f"count(CASE WHEN {new} THEN 1 END) AS {q(t + '__n')}",
                      f"min({inside}) AS {q(t + '__first')}", f"max({inside}) AS {q(t + '__last')}"]  # fmt: skip
            names += [f"{t}__n", f"{t}__first", f"{t}__last"]
        sql = f"""
            SELECT profile_id, {', '.join(exprs)}
            FROM (
                SELECT profile_id, ts, s,
                       lag(s) OVER (PARTITION BY profile_id ORDER BY ts, message_id) AS prev_s,
                       lag(ts) OVER (PARTITION BY profile_id ORDER BY ts, message_id) AS prev_ts
                FROM (SELECT profile_id, ts, message_id, {seconds('ts')} AS s FROM {self.rel(rel)} WHERE {filt})
            ) GROUP BY profile_id
        """
        return Step(self.rel(f"ses_{i}"), sql), names

    def state_steps(self, pe: str, pr: str | None) -> list[Step]:
        """Everything from the inputs to `<prefix>state` (one row per profile)."""
        steps = [self.events_step(pe)]
        if self.has_records and pr is not None:
            steps.append(self.records_step(pr))
        steps += self.dedup_steps()
        aggs = self.aggregate_steps()
        if not (self.has_records and pr is not None):
            aggs = [(s, n) for s, n in aggs if s.name != self.rel("agg_records")]
        steps += [s for s, _ in aggs]
        ids = f"SELECT profile_id FROM {self.rel('events')}"
        if self.has_records and pr is not None:
            ids += f" UNION SELECT profile_id FROM {self.rel('records')}"
        else:
            ids = f"SELECT DISTINCT profile_id FROM {self.rel('events')}"
        select = ["ids.profile_id"]
        joins = []
        provided = {}
        for i, (step, names) in enumerate(aggs):
            alias = f"a{i}"
            joins.append(f"LEFT JOIN {step.name} {alias} ON {alias}.profile_id = ids.profile_id")
            for n in names:
                provided[n] = f"{alias}.{q(n)}"
        for col in self.state_columns():
            select.append(f"{provided[col.name]} AS {q(col.name)}" if col.name in provided
                          else f"NULL AS {q(col.name)}")  # fmt: skip
        sql = f"SELECT {', '.join(select)} FROM ({ids}) ids {' '.join(joins)}"
        steps.append(Step(self.rel("state"), sql))
        return steps

    # -- final -------------------------------------------------------------------------------

    def final_expr(self, c: Compiled) -> str:
        t, agg = c.trait.name, c.trait.spec.agg
        col = lambda part: q(f"{t}__{part}")  # noqa: E731
        as_of = ts_literal(self.as_of)
        if agg in ("count", "sessions"):
            return f"coalesce({col('n')}, 0)"
        if agg == "sum":
            return f"coalesce({col('s')}, 0)"
        if agg == "avg":
            return f"{col('s')} / nullif({col('n')}, 0)"
        if agg in ("min", "max", "first", "last", "most_frequent", "previous_time"):
            return col("v")
        if agg == "distinct_count":
            return f"coalesce({col('v')}, 0)"
        if agg == "list_distinct":
            return f"CASE WHEN array_length({col('v')}) > 0 THEN {col('v')} END"
        if agg in ("first_time", "last_time"):
            return col("ts")
        if agg in ("days_since_first", "days_since_last"):
            return f"CASE WHEN {col('ts')} IS NOT NULL THEN {days_between(col('ts'), as_of)} END"
        raise ValueError(agg)  # pragma: no cover

    def final_sql(self, state: str) -> str:
        """Trait values from state rows (one row per profile, columns in trait order)."""
        casts = {"number": "DOUBLE", "integer": "BIGINT", "text": "VARCHAR", "boolean": "BOOLEAN"}

        def cast(trait, sql: str) -> str:
            if trait.spec.cast:
                return f"TRY_CAST({sql} AS {casts[trait.spec.cast]})"
            return sql

        layer0 = ", ".join(
            f"{cast(c.trait, self.final_expr(c))} AS {q(c.trait.name)}" for c in self.plan.aggregations
        )
        sql = f"SELECT profile_id, {layer0} FROM {state}"
        for i, layer in enumerate(self.plan.expressions):
            adds = ", ".join(f"{cast(e.trait, e.sql)} AS {q(e.trait.name)}" for e in layer)
            sql = f"SELECT l{i}.*, {adds} FROM ({sql}) l{i}"
        cols = ", ".join(q(n) for n in self.plan.names)
        return f"SELECT profile_id, {cols} FROM ({sql}) f"
