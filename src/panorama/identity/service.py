"""`unify`: rebuild the identity graph and profiles from the log (the batch path)."""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import orjson

from panorama.config import Project
from panorama.identity.graph import (
    EDGES_SELECT,
    FAR_FUTURE,
    Resolution,
    RunStats,
    Timer,
    members_sql,
    normalise_observations,
)
from panorama.identity.ids import apply, assign
from panorama.ingest.log import utcnow
from panorama.store import Store, one

Progress = Callable[[str, int, int], None]


def never_merge_pairs(cur: duckdb.DuckDBPyConnection) -> list[tuple[int, list, list]]:
    rows = cur.execute(
        "SELECT id, a_identifiers, b_identifiers FROM identity_never_merge ORDER BY id"
    ).fetchall()
    return [
        (i, [(x["type"], x["value"]) for x in a], [(x["type"], x["value"]) for x in b])
        for i, a, b in rows
    ]


def unify(
    store: Store,
    project: Project,
    progress: Progress | None = None,
    components: Callable[[Resolution], None] | None = None,
    splink_api=None,
) -> RunStats:
    """Resolve every record and event of the log into profiles (keeping profile ids).

    `components` replaces the connected-components step (scipy on this machine), e.g. with
    `panorama.scale.identity.spark_components` (`engine: spark`); `splink_api` is the Splink
    backend of the probabilistic step (None: DuckDB; `panorama.scale.splink.spark_api`)."""
    config = project.config.identity
    stats = RunStats()
    timer = Timer(stats)
    now = utcnow()
    cur = store.cursor()

    def step(name: str) -> None:
        if progress:
            progress(name, 0, 0)

    cur.execute("BEGIN TRANSACTION")
    try:
        step("read the log")
        cur.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _in_sigs AS
            SELECT sig, ids, first.ts AS first_ts, first.source AS first_source,
                   first.record_id AS first_record_id, members
            FROM (
                SELECT hash(ids) AS sig, any_value(ids) AS ids,
                       min(struct_pack(k := coalesce(ts, {FAR_FUTURE}), source := source,
                                       record_id := record_id, ts := ts)) AS first,
                       count(*) AS members
                FROM ({members_sql()}) GROUP BY 1
            )
            """
        )
        cur.execute(
            f"CREATE OR REPLACE TEMP TABLE _person AS SELECT hash(ids) AS sig, person FROM ({members_sql(True)})"
        )
        normalise_observations(cur, "_person", config.default_region)
        cur.execute("DROP TABLE _person")
        stats.members, stats.sigs = one(cur.execute(
            "SELECT sum(members), count(*) FROM _in_sigs"
        ))
        timer.lap("read")

        resolution = Resolution(
            cur, config, incremental=False, stats=stats, progress=progress, timer=timer
        )
        resolution.normalise()
        resolution.nodes()
        step("probabilistic matching")
        _splink(cur, project, stats, splink_api, timer.lap)
        timer.lap("splink")
        resolution.links()
        if components is None:
            resolution.components()
        else:
            components(resolution)
        step("guard merges")
        resolution.guard(never_merge_pairs(cur))
        resolution.outputs()

        step("profile ids")
        assignment = assign(cur, None)
        apply(cur, assignment, "batch", now, everything=True)
        stats.merges = len(assignment.merges)
        stats.profiles = assignment.profiles
        timer.lap("ids")

        step("write")
        write_batch(cur)
        cur.execute(
            "INSERT OR REPLACE INTO identity_state VALUES ('last_unify', ?)",
            [
                orjson.dumps(
                    {"at": now.isoformat(), "members": stats.members, "profiles": stats.profiles}
                ).decode()
            ],
        )
        # signatures are DuckDB hashes: a new DuckDB version needs a new `unify`
        cur.execute(
            "INSERT OR REPLACE INTO identity_state VALUES ('duckdb_version', ?)",
            [duckdb.__version__],
        )
        timer.lap("write")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    cur.execute("COMMIT")
    store.forget_recent()
    return stats


def _splink(cur: duckdb.DuckDBPyConnection, project: Project, stats: RunStats, db_api=None,
            lap=None) -> None:
    cur.execute(
        """
        CREATE OR REPLACE TEMP TABLE _in_splink (
            a_sig UBIGINT, b_sig UBIGINT, probability DOUBLE,
            a_source VARCHAR, a_record_id VARCHAR, b_source VARCHAR, b_record_id VARCHAR, evidence JSON)
        """
    )
    settings = project.config.identity.splink
    if not settings.enabled:
        return
    try:
        from panorama.identity.matching import score_pairs
    except ModuleNotFoundError:  # pragma: no cover - matching not built yet
        return
    stats.splink_pairs = score_pairs(cur, project, db_api, lap)


def write_batch(cur: duckdb.DuckDBPyConnection) -> None:
    """Replace the derived identity tables with this resolution's results."""
    cur.execute(
        """
        CREATE OR REPLACE TABLE identity_nodes AS
        SELECT node::BIGINT AS node, type::VARCHAR AS type, value::VARCHAR AS value, status::VARCHAR AS status,
               profile_id::VARCHAR AS profile_id, component::BIGINT AS component,
               origin_profile::VARCHAR AS origin_profile, first_seen::TIMESTAMP AS first_seen
        FROM _out_nodes2 ORDER BY node
        """
    )
    cur.execute(
        """
        CREATE OR REPLACE TABLE identity_sigs AS
        SELECT sig::UBIGINT AS sig, anchor::BIGINT AS anchor, first_ts::TIMESTAMP AS first_ts,
               first_source::VARCHAR AS first_source, first_record_id::VARCHAR AS first_record_id,
               members::BIGINT AS members
        FROM _out_sigs
        """
    )
    cur.execute(
        "CREATE OR REPLACE TABLE identity_sig_nodes AS SELECT sig::UBIGINT AS sig, node::BIGINT AS node "
        "FROM _out_sig_nodes"
    )
    cur.execute(
        "CREATE OR REPLACE TABLE identity_observations AS SELECT sig::UBIGINT AS sig, "
        "first_name::VARCHAR AS first_name, last_name::VARCHAR AS last_name, birth_date::VARCHAR AS birth_date "
        "FROM _in_obs"
    )
    cur.execute(f"CREATE OR REPLACE TABLE identity_edges AS {EDGES_SELECT}")
    cur.execute(
        """
        CREATE OR REPLACE TABLE identity_splink AS
        SELECT a_sig::UBIGINT AS a_sig, b_sig::UBIGINT AS b_sig, a_source::VARCHAR AS a_source,
               a_record_id::VARCHAR AS a_record_id, b_source::VARCHAR AS b_source,
               b_record_id::VARCHAR AS b_record_id, probability::DOUBLE AS probability, evidence::JSON AS evidence
        FROM _in_splink
        """
    )
