"""Batch computation on the store (DuckDB): rebuild `trait_state` and `profile_traits` from the log.

    compute(store, config, as_of=None) -> RunSummary

Reads every event through `profiles.profile_events_sql` (and the current source records with
their profile), runs the portable pipeline (`engines.run_pipeline`) on the store's DuckDB
connection, then swaps the new tables in with one transaction and records the run in
`trait_runs`. Readers see either the old or the new tables, never a half-built one.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from panorama.config import ProjectConfig
from panorama.store import Store, one
from panorama.store.schema import CURRENT_RECORDS
from panorama.traits.definitions import Plan, compile_plan, traits_from_json, traits_to_json
from panorama.traits.engines import DuckDBEngine, Parameters, run_pipeline


class TraitsError(Exception):
    """Traits cannot be computed or read; the message says why and what to do."""


@dataclass(frozen=True)
class Inputs:
    """SQL of the pipeline's inputs: profile events and profile records (or None)."""

    events_sql: str
    records_sql: str | None
    # SQL of the events of some profiles, with `{ids}` (a query of profile ids); default: a
    # filter on events_sql's profile_id. Lets an input use a filter the scan can push down.
    events_for_profiles: str | None = None

    def for_profiles(self, ids: str) -> tuple[str, str | None]:
        """(profile events, profile records) SQL restricted to the profiles `ids` selects."""
        if self.events_for_profiles:
            pe = "(" + self.events_for_profiles.replace("{ids}", ids) + ")"
        else:
            pe = f"(SELECT * FROM ({self.events_sql}) WHERE profile_id IN ({ids}))"
        pr = f"(SELECT * FROM ({self.records_sql}) WHERE profile_id IN ({ids}))" if self.records_sql else None
        return pe, pr

    @classmethod
    def from_store(cls, store: Store) -> Inputs:
        from panorama.profiles import profile_events_sql
        from panorama.profiles.export import membership_sql

        records = f"""
            SELECT m.profile_id, r.source, r.record_id, r.ts, r.ingested_at, r.attributes
            FROM ({CURRENT_RECORDS}) r
            JOIN ({membership_sql(store)}) m ON m.source = r.source AND m.record_id = r.record_id
        """
        return cls(profile_events_sql(store), records)

    @classmethod
    def by_user_id(cls) -> Inputs:
        """One profile per Segment `userId` (else `anonymousId`, else the event itself), without
        identity resolution: for data whose user ids are already resolved (benchmarks, tests,
        warehouses that resolved identities upstream). Source records are not used."""
        pid = "coalesce(user_id, anonymous_id, message_id)"
        return cls(
            f"SELECT {pid} AS profile_id, * FROM events",
            None,
            f"SELECT {pid} AS profile_id, * FROM events WHERE user_id IN ({{ids}}) "
            f"OR (user_id IS NULL AND {pid} IN ({{ids}}))",
        )


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    as_of: dt.datetime
    profiles: int
    events: int
    seconds: float
    parameters: Parameters
    timings: dict[str, float]


def default_as_of(store: Store) -> dt.datetime:
    """The start of the day after the latest event (so that day's events count in full)."""
    last = store.scalar('SELECT max("timestamp") FROM events')
    if last is None:
        raise TraitsError("the store has no events yet; run `panorama ingest` first")
    return dt.datetime.combine(last.date(), dt.time()) + dt.timedelta(days=1)


def compute(
    store: Store,
    config: ProjectConfig,
    as_of: dt.datetime | None = None,
    *,
    point_in_time: bool | None = None,
    inputs: Inputs | None = None,
    params: Parameters | None = None,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Recompute every profile's traits.

    With `as_of`, a point-in-time run by default: only events (and records) before it count
    (`point_in_time=False` anchors windows and "days since" at `as_of` but reads everything).
    `params` pins RFM breakpoints and lifecycle thresholds (else derived from this run's data).
    """
    plan = compile_plan(config)
    if point_in_time is None:
        point_in_time = as_of is not None
    as_of = as_of or default_as_of(store)
    inputs = inputs or Inputs.from_store(store)
    started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    started = time.perf_counter()
    cur = store.cursor()
    engine = DuckDBEngine(cur)
    try:
        result = run_pipeline(
            engine, plan, config, as_of, f"({inputs.events_sql})",
            f"({inputs.records_sql})" if inputs.records_sql else None,
            params=params, point_in_time=point_in_time, log=log,
        )  # fmt: skip
        events = int(one(cur.execute("SELECT count(*) FROM _tr_events"))[0])
        profiles = int(one(cur.execute("SELECT count(*) FROM _tr_profile_traits"))[0])
        t = time.perf_counter()
        with store.transaction() as tx:
            tx.execute("CREATE OR REPLACE TABLE trait_state AS SELECT * FROM _tr_state")
            tx.execute(
                "CREATE OR REPLACE TABLE profile_traits AS SELECT * FROM _tr_profile_traits ORDER BY profile_id"
            )
            seconds = time.perf_counter() - started
            run_id = one(tx.execute(
                "INSERT INTO trait_runs (started_at, finished_at, engine, as_of, point_in_time, signature, "
                "profiles, events, seconds, parameters) VALUES (?, ?, 'duckdb', ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [started_at, dt.datetime.now(dt.UTC).replace(tzinfo=None), as_of, point_in_time,
                 plan.signature, profiles, events, seconds, orjson.dumps({**result.parameters.to_json(), 'traits': traits_to_json(plan.traits)}).decode()],
            ))[0]  # fmt: skip
        result.seconds["write tables"] = time.perf_counter() - t
        store.forget_recent()
        if log:
            log(f"write tables: {result.seconds['write tables']:.2f} s")
    finally:
        engine.drop(engine.created)
    return RunSummary(int(run_id), as_of, profiles, events, time.perf_counter() - started, result.parameters,
                      result.seconds)  # fmt: skip


def latest_run(store: Store) -> dict | None:
    if not store.table_exists("trait_runs"):
        return None
    rel = store.execute(
        "SELECT id, started_at, finished_at, engine, as_of, point_in_time, signature, profiles, events, "
        "seconds, parameters FROM trait_runs ORDER BY id DESC LIMIT 1"
    )
    row = one(rel)
    if row is None:
        return None
    out = dict(zip([d[0] for d in rel.description], row, strict=True))
    data = orjson.loads(out["parameters"])
    out["parameters"] = Parameters.from_json(data)
    out["traits"] = traits_from_json(data.get("traits", []))
    return out


def plan_for(config: ProjectConfig) -> Plan:
    return compile_plan(config)


def profile_traits_sql(store: Store) -> str | None:
    """SQL of the profile traits table, or None before the first `panorama traits compute`."""
    return "SELECT * FROM profile_traits" if store.table_exists("profile_traits") else None
