"""Real-time identity: events arriving through the HTTP API update the graph at once.

The server's real-time thread calls the hook (stage 100) with every committed micro-batch.
Events whose identifier list (signature) is already known need nothing: their profile
follows from the signature. A new signature, or new person attributes on an identify call,
re-resolves the part of the graph it touches — the connected components of the identifiers
it carries — with exactly the batch code (`Resolution`) and the same rules, and writes that
part back. So an identify with an `anonymousId` and a `userId` of two profiles merges them
immediately (journal entry, survivor chosen as in batch), and `panorama unify` rebuilding
from the log gives the same profiles.

`install(project=None)` registers the hook; `panorama serve` calls it at startup (and so does
importing the CLI commands). A second hook at stage 350 asks the traits stage to rebuild the
profiles a merge or split changed, after traits has applied the batch itself.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from panorama.config import ConfigError, Project, ProjectConfig, load_project
from panorama.identity.graph import (
    EDGES_SELECT,
    EVENT_IDS,
    EVENT_RECORD_ID,
    FAR_FUTURE,
    Resolution,
    RunStats,
    normalise_observations,
)
from panorama.identity.ids import apply, assign
from panorama.ingest import hooks
from panorama.ingest.log import utcnow
from panorama.store import Store, one

log = logging.getLogger("panorama.identity")

HOOK_STAGE = 100
HOOK_NAME = "identity"
REFRESH_STAGE = 350
REFRESH_NAME = "identity-refresh"


@dataclass
class RealtimeStats:
    batches: int = 0
    events: int = 0
    new_signatures: int = 0
    recomputed_batches: int = 0
    merges: int = 0
    seconds: float = 0.0
    last_error: str | None = None


stats = RealtimeStats()
_local = threading.local()
_configs: dict[Path, tuple[float, ProjectConfig]] = {}
_installed_project: Project | None = None


@dataclass
class Change:
    """What a local re-resolution changed."""

    profiles: set[str] = field(default_factory=set)  # touched (survivors, revived, new, retired)
    merges: list[tuple[str, str]] = field(default_factory=list)
    recomputed: bool = False


def _config_for(store: Store) -> ProjectConfig | None:
    if _installed_project is not None and _installed_project.store_path == store.path.resolve():
        return _installed_project.config
    root = store.path.resolve().parent
    file = root / "panorama.yaml"
    try:
        mtime = file.stat().st_mtime
    except OSError:
        return None
    cached = _configs.get(root)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        project = load_project(root)
    except ConfigError:
        return None
    if project.store_path != store.path.resolve():
        return None
    _configs[root] = (mtime, project.config)
    return project.config


def on_events(store: Store, events: pa.Table) -> None:
    """The hook: keep the identity graph current for a committed batch of new events."""
    from panorama.identity.export import unified

    if events.num_rows == 0:
        return
    started = time.perf_counter()
    try:
        config = _config_for(store)
        if config is None or not store.recent("identity.unified", 1.0, lambda: unified(store)):
            return  # no graph yet: `panorama unify` builds it from the log
        change = apply_events(store, config, events)
        pending = getattr(_local, "pending", set())
        pending |= change.profiles
        _local.pending = pending
        stats.batches += 1
        stats.events += events.num_rows
        stats.merges += len(change.merges)
        stats.recomputed_batches += int(change.recomputed)
    except Exception as exc:
        stats.last_error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        stats.seconds += time.perf_counter() - started


def _refresh_traits(store: Store, events: pa.Table) -> None:
    """Stage 350: rebuild the traits of profiles a merge, split or revival changed (after the
    traits stage applied this batch), so merged profiles carry their whole history."""
    pending = getattr(_local, "pending", set())
    _local.pending = set()
    if not pending:
        return
    try:
        from panorama.traits.realtime import refresh_profiles
    except ModuleNotFoundError:  # pragma: no cover - traits not installed
        return
    refresh_profiles(store, sorted(pending))


def install(project: Project | None = None) -> None:
    """Register the real-time identity hooks (idempotent). `project` pins the config (the
    server passes its project); otherwise the panorama.yaml next to the store is used."""
    global _installed_project
    if project is not None:
        _installed_project = project
    hooks.register(HOOK_STAGE, HOOK_NAME, on_events)
    hooks.register(REFRESH_STAGE, REFRESH_NAME, _refresh_traits)


# ----------------------------------------------------------------------------------------


def apply_events(
    store: Store, config: ProjectConfig, events: pa.Table, now: datetime | None = None
) -> Change:
    """Fold a batch of events (rows of the events table, already in the log) into the graph."""
    now = now or utcnow()
    cur = store.cursor()
    cur.register("_rt_events", events)
    try:
        with store.transaction() as tx:
            tx.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE _rt_members AS
                SELECT source, {EVENT_RECORD_ID} AS record_id, timestamp AS ts, {EVENT_IDS} AS ids,
                       CASE WHEN type = 'identify' THEN traits END AS person
                FROM _rt_events
                """
            )
            tx.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE _rt_sigs AS
                SELECT sig, ids, first.ts AS first_ts, first.source AS first_source,
                       first.record_id AS first_record_id, members
                FROM (SELECT hash(ids) AS sig, any_value(ids) AS ids,
                             min(struct_pack(k := coalesce(ts, {FAR_FUTURE}), source := source,
                                             record_id := record_id, ts := ts)) AS first,
                             count(*) AS members
                      FROM _rt_members GROUP BY 1)
                """
            )
            tx.execute(
                f"""
                UPDATE identity_sigs SET
                    members = identity_sigs.members + r.members,
                    first_ts = CASE WHEN (coalesce(r.first_ts, {FAR_FUTURE}), r.first_source, r.first_record_id)
                                       < (coalesce(identity_sigs.first_ts, {FAR_FUTURE}), identity_sigs.first_source,
                                          identity_sigs.first_record_id)
                                    THEN r.first_ts ELSE identity_sigs.first_ts END,
                    first_source = CASE WHEN (coalesce(r.first_ts, {FAR_FUTURE}), r.first_source, r.first_record_id)
                                       < (coalesce(identity_sigs.first_ts, {FAR_FUTURE}), identity_sigs.first_source,
                                          identity_sigs.first_record_id)
                                    THEN r.first_source ELSE identity_sigs.first_source END,
                    first_record_id = CASE WHEN (coalesce(r.first_ts, {FAR_FUTURE}), r.first_source, r.first_record_id)
                                       < (coalesce(identity_sigs.first_ts, {FAR_FUTURE}), identity_sigs.first_source,
                                          identity_sigs.first_record_id)
                                    THEN r.first_record_id ELSE identity_sigs.first_record_id END
                FROM _rt_sigs r WHERE identity_sigs.sig = r.sig
                """
            )
            tx.execute(
                "CREATE OR REPLACE TEMP TABLE _rt_new AS SELECT * FROM _rt_sigs "
                "WHERE sig NOT IN (SELECT sig FROM identity_sigs)"
            )
            tx.execute(
                "CREATE OR REPLACE TEMP TABLE _rt_person AS SELECT hash(ids) AS sig, person FROM _rt_members "
                "WHERE person IS NOT NULL"
            )
            normalise_observations(tx, "_rt_person", config.identity.default_region)
            tx.execute(
                """
                CREATE OR REPLACE TEMP TABLE _rt_obs AS
                SELECT * FROM _in_obs o WHERE NOT EXISTS (
                    SELECT 1 FROM identity_observations x WHERE x.sig = o.sig
                      AND x.first_name IS NOT DISTINCT FROM o.first_name
                      AND x.last_name IS NOT DISTINCT FROM o.last_name
                      AND x.birth_date IS NOT DISTINCT FROM o.birth_date)
                """
            )
            new_sigs = one(tx.execute("SELECT count(*) FROM _rt_new"))[0]
            new_obs = one(tx.execute("SELECT count(*) FROM _rt_obs"))[0]
            stats.new_signatures += new_sigs
            if not new_sigs and not new_obs:
                return Change()
            seeds = [r[0] for r in tx.execute(
                "SELECT DISTINCT sig FROM _rt_obs WHERE sig NOT IN (SELECT sig FROM _rt_new)"
            ).fetchall()]  # fmt: skip
            return recompute(tx, config, "realtime", now, new_sigs_table="_rt_new", seed_sigs=seeds,
                             extra_obs="_rt_obs")  # fmt: skip
    finally:
        cur.unregister("_rt_events")


def recompute(cur: duckdb.DuckDBPyConnection, config: ProjectConfig, origin: str, now: datetime,
              new_sigs_table: str | None = None, seed_sigs: list[int] | None = None,
              seed_profiles: list[str] | None = None, extra_obs: str | None = None) -> Change:  # fmt: skip
    """Re-resolve the components touched by new signatures (`new_sigs_table`: sig, ids,
    first_ts, first_source, first_record_id, members), by known signatures (`seed_sigs`) or
    by profiles (`seed_profiles`), and write them back. Runs inside the caller's transaction."""
    from panorama.identity.service import never_merge_pairs

    identity = config.identity
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE _in_sigs (sig UBIGINT, ids STRUCT(type VARCHAR, value VARCHAR)[], "
        "first_ts TIMESTAMP, first_source VARCHAR, first_record_id VARCHAR, members BIGINT)"
    )
    if new_sigs_table:
        cur.execute(f"INSERT INTO _in_sigs SELECT sig, ids, first_ts, first_source, first_record_id, members "
                    f"FROM {new_sigs_table}")  # fmt: skip
    # 1. the components touched: identifiers of the new signatures, known signatures, profiles
    cur.execute("CREATE OR REPLACE TEMP TABLE _rt_comp (component BIGINT)")
    if new_sigs_table:
        probe = Resolution(cur, identity, incremental=True)
        probe.normalise()
        cur.execute(
            """
            INSERT INTO _rt_comp
            SELECT DISTINCT n.component FROM _sn s JOIN identity_nodes n USING (type, value)
            WHERE n.component IS NOT NULL
            """
        )
    if seed_sigs:
        cur.register("_rt_seed_arrow", pa.table({"sig": pa.array(seed_sigs, pa.uint64())}))
        cur.execute(
            """
            INSERT INTO _rt_comp
            SELECT DISTINCT n.component FROM identity_sig_nodes sn JOIN _rt_seed_arrow USING (sig)
            JOIN identity_nodes n ON n.node = sn.node WHERE n.component IS NOT NULL
            """
        )
        cur.unregister("_rt_seed_arrow")
    if seed_profiles:
        cur.register(
            "_rt_seedp_arrow", pa.table({"profile_id": pa.array(seed_profiles, pa.string())})
        )
        cur.execute(
            """
            INSERT INTO _rt_comp
            SELECT DISTINCT component FROM identity_nodes
            WHERE profile_id IN (SELECT profile_id FROM _rt_seedp_arrow) AND component IS NOT NULL
            """
        )
        cur.unregister("_rt_seedp_arrow")
    # 2. every known signature in those components (and the seeds)
    cur.execute(
        """
        CREATE OR REPLACE TEMP TABLE _rt_known AS
        SELECT DISTINCT sn.sig FROM identity_sig_nodes sn JOIN identity_nodes n ON n.node = sn.node
        WHERE n.component IN (SELECT component FROM _rt_comp)
        """
    )
    if seed_sigs:
        cur.register("_rt_seed_arrow", pa.table({"sig": pa.array(seed_sigs, pa.uint64())}))
        cur.execute(
            "INSERT INTO _rt_known SELECT sig FROM _rt_seed_arrow WHERE sig NOT IN (SELECT sig FROM _rt_known)"
        )
        cur.unregister("_rt_seed_arrow")
    cur.execute(
        """
        INSERT INTO _in_sigs
        SELECT s.sig, NULL, s.first_ts, s.first_source, s.first_record_id, s.members
        FROM identity_sigs s JOIN _rt_known USING (sig)
        WHERE s.sig NOT IN (SELECT sig FROM _in_sigs)
        """
    )
    # the profiles being re-resolved
    cur.execute(
        """
        CREATE OR REPLACE TEMP TABLE _scope_profiles AS
        SELECT DISTINCT n.profile_id FROM identity_nodes n
        WHERE n.profile_id IS NOT NULL AND (n.component IN (SELECT component FROM _rt_comp)
              OR n.node IN (SELECT sn.node FROM identity_sig_nodes sn JOIN _rt_known USING (sig)))
        """
    )
    if seed_profiles:
        cur.register(
            "_rt_seedp_arrow", pa.table({"profile_id": pa.array(seed_profiles, pa.string())})
        )
        cur.execute("INSERT INTO _scope_profiles SELECT profile_id FROM _rt_seedp_arrow "
                    "WHERE profile_id NOT IN (SELECT profile_id FROM _scope_profiles)")  # fmt: skip
        cur.unregister("_rt_seedp_arrow")
    # observations and probabilistic links of these signatures
    cur.execute(
        """
        CREATE OR REPLACE TEMP TABLE _in_obs AS
        SELECT sig, first_name, last_name, birth_date FROM identity_observations
        WHERE sig IN (SELECT sig FROM _in_sigs)
        """
    )
    if extra_obs:
        cur.execute(
            f"INSERT INTO _in_obs SELECT sig, first_name, last_name, birth_date FROM {extra_obs}"
        )
    cur.execute(
        """
        CREATE OR REPLACE TEMP TABLE _in_splink AS
        SELECT a_sig, b_sig, probability, a_source, a_record_id, b_source, b_record_id, evidence
        FROM identity_splink
        WHERE a_sig IN (SELECT sig FROM _in_sigs) AND b_sig IN (SELECT sig FROM _in_sigs)
        """
    )
    # 3. resolve with the batch code
    resolution = Resolution(cur, identity, incremental=True, stats=RunStats())
    resolution.run(never_merge_pairs(cur))
    scope = [r[0] for r in cur.execute("SELECT profile_id FROM _scope_profiles").fetchall()]
    assignment = assign(cur, scope)
    apply(cur, assignment, origin, now)
    _write_local(cur)
    change = Change(recomputed=True)
    change.merges = [(s, a) for s, a, _ in assignment.merges]
    change.profiles = (
        set(assignment.cluster_ids.values())
        | {a for _, a in change.merges}
        | set(assignment.retired)
    )
    change.profiles |= set(scope)
    return change


def _write_local(cur: duckdb.DuckDBPyConnection) -> None:
    """Replace the re-resolved part of the derived tables."""
    cur.execute("DELETE FROM identity_nodes WHERE node IN (SELECT node FROM _out_nodes2)")
    cur.execute(
        """
        INSERT INTO identity_nodes
        SELECT node, type, value, status, profile_id, component, origin_profile, first_seen FROM _out_nodes2
        """
    )
    cur.execute("DELETE FROM identity_sigs WHERE sig IN (SELECT sig FROM _out_sigs)")
    cur.execute(
        "INSERT INTO identity_sigs SELECT sig, anchor, first_ts, first_source, first_record_id, members FROM _out_sigs"
    )
    cur.execute("DELETE FROM identity_sig_nodes WHERE sig IN (SELECT sig FROM _out_sigs)")
    cur.execute("INSERT INTO identity_sig_nodes SELECT sig, node FROM _out_sig_nodes")
    cur.execute("DELETE FROM identity_observations WHERE sig IN (SELECT sig FROM _out_sigs)")
    cur.execute(
        "INSERT INTO identity_observations SELECT DISTINCT sig, first_name, last_name, birth_date FROM _in_obs"
    )
    cur.execute(
        "DELETE FROM identity_edges WHERE a IN (SELECT node FROM _out_nodes2) OR b IN (SELECT node FROM _out_nodes2)"
    )
    cur.execute(f"INSERT INTO identity_edges {EDGES_SELECT}")
