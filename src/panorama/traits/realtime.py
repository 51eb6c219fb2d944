"""Real-time trait updates for events that arrive through the HTTP API (hook stage 300).

For each committed micro-batch, only the profiles it touches are updated, in one transaction:

1. the batch's events with their profile (`profile_events_sql` restricted to its message ids)
   go through the same pipeline steps as the batch run, giving a **partial state** per profile;
2. most profiles are **merged** incrementally: counts and sums add, minima/maxima and first/
   last values compare (by time, then message id), sessions join when the gap to the stored
   last event is at most 30 minutes;
3. profiles that need their history are **recomputed** from the log with the batch steps
   (restricted to those profiles): new profiles, profiles whose batch touches a history-bound
   trait (distinct counts, most frequent values, lists, the previous order, de-duplicated
   events such as orders by order id), and profiles with web events older than their stored
   last one (sessions arrive out of order);
4. their final traits, RFM scores and lifecycle stage are rewritten, with the as-of time, RFM
   breakpoints and lifecycle thresholds of the last batch run.

The result equals a batch recompute with the same as-of time and parameters (tested); sums
may differ in the last floating-point bits. Windows (`90d`) and "days since" stay anchored at
the last batch run's as-of time: events after it count inside every window (0 days ago), and
events leave windows when the next batch run moves the as-of time — schedule
`panorama traits compute` daily. A point-in-time run (`--as-of`) is never updated in real time.

Identity merges: when identity resolution merges profiles, it should call
`refresh_profiles(store, profile_ids)` so their state is rebuilt from the log; the next batch
run also fixes it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa

from panorama.store import Store, one
from panorama.traits.batch import Inputs
from panorama.traits.definitions import SESSION_GAP_SECONDS, Compiled, Plan, compile_traits
from panorama.traits.engines import DuckDBEngine, output_columns, scored_sql
from panorama.traits.sqlgen import Pipeline, StateColumn, q, seconds

log = logging.getLogger("panorama.traits")

HOOK_STAGE = 300
HOOK_NAME = "traits"


@dataclass
class RealtimeStats:
    batches: int = 0
    events: int = 0
    profiles: int = 0
    merged: int = 0
    recomputed: int = 0
    skipped_batches: int = 0
    seconds: float = 0.0
    last_error: str | None = None
    skip_reason: str | None = None


stats = RealtimeStats()


@dataclass
class _Context:
    run_id: int
    plan: Plan
    params: object
    history: list[Compiled] = field(default_factory=list)


_cache: dict[str, _Context] = {}
# A finished `traits compute` is picked up by the hook within this many seconds.
CHECK_SECONDS = 1.0
_lock = threading.Lock()


def _context(store: Store) -> _Context | None:
    from panorama.traits.batch import latest_run

    run = store.recent("traits.latest_run", CHECK_SECONDS, lambda: latest_run(store))
    if run is None:
        stats.skip_reason = "no batch run yet (panorama traits compute)"
        return None
    if run["parameters"].point_in_time:
        stats.skip_reason = f"the latest run ({run['id']}) is point-in-time (--as-of)"
        return None
    if not store.recent("traits.state", CHECK_SECONDS, lambda: store.table_exists("trait_state")):
        stats.skip_reason = "no trait_state table"
        return None
    key = f"{store.path}:{run['id']}"
    with _lock:
        ctx = _cache.get(key)
        if ctx is None:
            plan = compile_traits(run["traits"])
            history = [c for c in plan.aggregations if _is_history(c)]
            ctx = _Context(run["id"], plan, run["parameters"], history)
            _cache.clear()
            _cache[key] = ctx
    stats.skip_reason = None
    return ctx


def _is_history(c: Compiled) -> bool:
    return c.trait.spec.agg in ("distinct_count", "most_frequent", "list_distinct", "previous_time") or (
        c.relation.startswith("u")
    )


def _merge_expr(col: StateColumn) -> str:
    o, p = f"o.{q(col.name)}", f"p.{q(col.name)}"
    t = col.trait
    k = lambda alias: f"{alias}.{q(t + '__k')}"  # noqa: E731
    if col.kind == "count":
        return f"coalesce({o}, 0) + coalesce({p}, 0)"
    if col.kind == "sum":
        return f"CASE WHEN {o} IS NULL THEN {p} WHEN {p} IS NULL THEN {o} ELSE {o} + {p} END"
    if col.kind in ("min", "ses_first"):
        return f"CASE WHEN {o} IS NULL THEN {p} WHEN {p} IS NULL THEN {o} ELSE least({o}, {p}) END"
    if col.kind in ("max", "ses_last"):
        return f"CASE WHEN {o} IS NULL THEN {p} WHEN {p} IS NULL THEN {o} ELSE greatest({o}, {p}) END"
    if col.kind in ("first_v", "first_k", "last_v", "last_k"):
        cmp = "<" if col.kind.startswith("first") else ">"
        newer = f"{k('p')} IS NOT NULL AND ({k('o')} IS NULL OR {k('p')} {cmp} {k('o')})"
        return f"CASE WHEN {newer} THEN {p} ELSE {o} END"
    if col.kind == "ses_n":
        last, first = f"o.{q(t + '__last')}", f"p.{q(t + '__first')}"
        joined = (
            f"CASE WHEN {last} IS NOT NULL AND {first} IS NOT NULL AND "
            f"{seconds(first)} - {seconds(last)} <= {SESSION_GAP_SECONDS} THEN 1 ELSE 0 END"
        )
        return f"coalesce({o}, 0) + coalesce({p}, 0) - {joined}"
    if col.kind == "keep":
        return o
    raise ValueError(col.kind)  # pragma: no cover


def on_events(store: Store, events: pa.Table, inputs: Inputs | None = None) -> None:
    """The hook: update the traits of the profiles that `events` (new to the log) touch.
    `inputs` defaults to the store's profile events (`profiles.profile_events_sql`)."""
    if events.num_rows == 0:
        return
    started = time.perf_counter()
    try:
        ctx = _context(store)
        if ctx is None:
            stats.skipped_batches += 1
            return
        ids = events.select(["message_id"])
        cur = store.cursor()
        cur.register("_rt_batch_ids", ids)
        try:
            inputs = inputs or Inputs.from_store(store)
            pe = (
                f"(SELECT * FROM ({inputs.events_sql}) "
                "WHERE message_id IN (SELECT message_id FROM _rt_batch_ids))"
            )
            merged, recomputed = _update(store, ctx, inputs, pe)
        finally:
            cur.unregister("_rt_batch_ids")
        stats.batches += 1
        stats.events += events.num_rows
        stats.merged += merged
        stats.recomputed += recomputed
        stats.profiles += merged + recomputed
    except Exception as exc:  # logged by the writer too; never loses the committed events
        stats.last_error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        stats.seconds += time.perf_counter() - started


def refresh_profiles(store: Store, profile_ids: list[str], inputs: Inputs | None = None) -> int:
    """Rebuild these profiles' traits from the log (e.g. after identity merged them); profiles
    that no longer have events or records are removed. Returns the number of profiles updated."""
    ctx = _context(store)
    if ctx is None or not profile_ids:
        return 0
    cur = store.cursor()
    cur.register("_rt_refresh_ids", pa.table({"profile_id": pa.array(profile_ids, pa.string())}))
    try:
        cur.execute("CREATE OR REPLACE TEMP TABLE _rt_recompute AS SELECT DISTINCT profile_id FROM _rt_refresh_ids")
        full = _recompute_state(store, ctx, inputs or Inputs.from_store(store))
        with store.transaction() as tx:
            tx.execute("DELETE FROM trait_state WHERE profile_id IN (SELECT profile_id FROM _rt_recompute)")
            if full:
                tx.execute(f"INSERT INTO trait_state BY NAME SELECT * FROM {full}")
            _write_final(tx, ctx, "_rt_recompute")
    finally:
        cur.unregister("_rt_refresh_ids")
        _drop(cur)
    return len(profile_ids)


def _recompute_state(store: Store, ctx: _Context, inputs: Inputs) -> str | None:
    """Full state rows for the profiles in `_rt_recompute`, from the log; returns the table."""
    cur = store.cursor()
    if not one(cur.execute("SELECT count(*) FROM _rt_recompute"))[0]:
        return None
    pe, pr = inputs.for_profiles("SELECT profile_id FROM _rt_recompute")
    pipeline = Pipeline(ctx.plan, ctx.params.as_of, "_rtf_")
    engine = DuckDBEngine(cur)
    for step in pipeline.state_steps(pe, pr):
        engine.materialize(step.name, step.sql)
    return pipeline.rel("state")


def _update(store: Store, ctx: _Context, inputs: Inputs, pe: str) -> tuple[int, int]:
    cur = store.cursor()
    plan = ctx.plan
    partial = Pipeline(plan, ctx.params.as_of, "_rtp_")
    engine = DuckDBEngine(cur)
    try:
        for step in partial.state_steps(pe, None):
            engine.materialize(step.name, step.sql)
        state_cols = partial.state_columns()
        # the stored state of the touched profiles, read once (trait_state is wide: every later
        # join reads this small copy instead)
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _rt_old AS SELECT * FROM trait_state "
            "WHERE profile_id IN (SELECT profile_id FROM _rtp_state)"
        )
        # who needs their history: new profiles, history-bound traits touched, late web events
        reasons = ["SELECT profile_id FROM _rtp_state WHERE profile_id NOT IN (SELECT profile_id FROM _rt_old)"]
        touch = []
        for c in ctx.history:
            cond = c.base if c.relation.startswith("u") else partial._sub(c.cond)
            touch.append(f"({cond})")
        if touch:
            reasons.append(f"SELECT profile_id FROM _rtp_events WHERE {' OR '.join(touch)}")
        late = [
            f"p.{q(s.trait + '__first')} < o.{q(s.trait + '__last')}" for s in state_cols if s.kind == "ses_first"
        ]
        if late:
            reasons.append(
                "SELECT p.profile_id FROM _rtp_state p JOIN _rt_old o ON o.profile_id = p.profile_id "
                f"WHERE {' OR '.join(late)}"
            )
        cur.execute(f"CREATE OR REPLACE TEMP TABLE _rt_recompute AS {' UNION '.join(reasons)}")
        full = _recompute_state(store, ctx, inputs)
        merge = ", ".join(f"{_merge_expr(s)} AS {q(s.name)}" for s in state_cols)
        cur.execute(f"""
            CREATE OR REPLACE TEMP TABLE _rt_merged AS
            SELECT p.profile_id, {merge}
            FROM _rtp_state p JOIN _rt_old o ON o.profile_id = p.profile_id
            WHERE p.profile_id NOT IN (SELECT profile_id FROM _rt_recompute)
        """)
        merged = one(cur.execute("SELECT count(*) FROM _rt_merged"))[0]
        recomputed = one(cur.execute("SELECT count(*) FROM _rt_recompute"))[0]
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _rt_touched AS SELECT profile_id FROM _rt_merged "
            "UNION SELECT profile_id FROM _rt_recompute"
        )
        with store.transaction() as tx:
            tx.execute("DELETE FROM trait_state WHERE profile_id IN (SELECT profile_id FROM _rt_touched)")
            tx.execute("INSERT INTO trait_state BY NAME SELECT * FROM _rt_merged")
            if full:
                tx.execute(f"INSERT INTO trait_state BY NAME SELECT * FROM {full}")
            _write_final(tx, ctx, "_rt_touched")
        return int(merged), int(recomputed)
    finally:
        _drop(cur)


def _write_final(tx, ctx: _Context, ids: str) -> None:
    pipeline = Pipeline(ctx.plan, ctx.params.as_of, "_rt_")
    state = f"(SELECT * FROM trait_state WHERE profile_id IN (SELECT profile_id FROM {ids}))"
    final = f"({pipeline.final_sql(state)})"
    cols = ", ".join(f'"{c}"' for c in output_columns(ctx.plan))
    tx.execute(f"DELETE FROM profile_traits WHERE profile_id IN (SELECT profile_id FROM {ids})")
    tx.execute(f"INSERT INTO profile_traits BY NAME SELECT {cols} FROM ({scored_sql(pipeline, final, ctx.params)}) x")


def _drop(cur) -> None:
    names = [r[0] for r in cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary AND "
        "(starts_with(table_name, '_rtp_') OR starts_with(table_name, '_rtf_') OR starts_with(table_name, '_rt_'))"
    ).fetchall()]  # fmt: skip
    for name in names:
        cur.execute(f"DROP TABLE IF EXISTS {name}")


def install() -> None:
    """Register the hook (idempotent)."""
    from panorama.ingest import hooks

    hooks.register(HOOK_STAGE, HOOK_NAME, on_events)


class _Handle:
    def stop(self) -> None:
        """Nothing to stop: the hook runs in the real-time thread (panorama.ingest.hooks)."""


def start(server_state=None) -> _Handle:
    """The server's real-time stage protocol (`server.app.REALTIME_MODULES`): register the hook."""
    install()
    return _Handle()
