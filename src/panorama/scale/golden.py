"""The golden record (survivorship) on Spark (`engine: spark`).

The same rules as `profiles.golden`: the candidate values are every attribute of a profile's
current records, the traits of its events (identify calls mapped by `TRAIT_ALIASES`, one level
of nesting, `SKIP`ped keys and blank strings left out) and its email and phone identifiers
weighted by how many rows carry them; each attribute's winner is picked by
`profiles.golden.golden_long_sql`'s own ranking (its rule per attribute, built-in defaults and
the config's `survivorship`), transpiled to Spark SQL with its candidates read from Spark.

The JSON of records and events is taken apart with Spark's VARIANT functions (`parse_json`,
`variant_explode`, `schema_of_variant`), where DuckDB uses `json_each`: a string value is its
text, a number with a decimal point its DOUBLE's text, any other value its JSON text, as in
DuckDB (numbers inside arrays excepted: Spark writes `[2.0]` as `[2]`).

Inputs (Spark views): `pr_input` (current records with profile_id), `pe_input` (events with
profile_id) — `scale.pipeline` registers both — and the identity graph's output tables
(`identity_nodes`, `identity_sig_nodes`, `identity_sigs`, `identity_profiles`), exported by
`export_identity_tables` from the store, where `panorama unify` leaves them.
"""

from __future__ import annotations

from pathlib import Path

import sqlglot
from sqlglot import exp

from panorama.config import ProjectConfig
from panorama.identity.graph import EVENT_RECORD_ID
from panorama.profiles.golden import IDENTIFIER_CANDIDATES_SQL, SKIP, TRAIT_ALIASES, golden_long_sql
from panorama.scale.engine import transpile
from panorama.store import Store

_IDENTITY_TABLES = {
    "identity_nodes": "SELECT node, type, value, status, profile_id FROM identity_nodes",
    # signatures are unsigned 64-bit (DuckDB hashes): text on Spark, which has no UBIGINT
    "identity_sig_nodes": "SELECT CAST(sig AS VARCHAR) AS sig, node FROM identity_sig_nodes",
    "identity_sigs": "SELECT CAST(sig AS VARCHAR) AS sig, anchor, first_ts, first_source, "
    "first_record_id, members FROM identity_sigs",
    "identity_profiles": "SELECT profile_id, status, created_at, updated_at FROM identity_profiles",
}


def _lit(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def export_identity_tables(store: Store, spark, directory: Path) -> None:
    """The identity graph's output tables the golden record reads, as Parquet and Spark views."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in _IDENTITY_TABLES.items():
        path = directory / f"{name}.parquet"
        store.execute(
            f"COPY ({sql}) TO '{str(path).replace(chr(39), chr(39) * 2)}' (FORMAT parquet)"
        )
        spark.read.parquet(str(path)).createOrReplaceTempView(name)


def candidates_sql(config: ProjectConfig | None) -> str:
    """Spark SQL: (profile_id, attribute, value, source, record_id, ts, kind_rank, priority,
    weight), as `profiles.golden.candidates_sql` gives on DuckDB."""
    priorities = {n: s.priority for n, s in config.sources.items()} if config is not None else {}
    prio_case = "0"
    if priorities:
        prio_case = ("CASE source " + " ".join(f"WHEN {_lit(k)} THEN {int(v)}" for k, v in priorities.items())
                     + " ELSE 0 END")  # fmt: skip
    alias_case = ("CASE k " + " ".join(f"WHEN {_lit(k)} THEN {_lit(v)}" for k, v in TRAIT_ALIASES.items())
                  + " ELSE k END")  # fmt: skip
    skip = ", ".join(_lit(s) for s in sorted(SKIP))
    record_id = transpile(f"SELECT {EVENT_RECORD_ID} FROM t").removeprefix("SELECT ")
    record_id = record_id.removesuffix(" FROM t")
    # DuckDB's json_each type names, from Spark's schema_of_variant
    json_type = """CASE WHEN s = 'STRING' THEN 'VARCHAR' WHEN s LIKE 'OBJECT%' THEN 'OBJECT'
                        WHEN s LIKE 'ARRAY%' THEN 'ARRAY' WHEN s = 'VOID' THEN 'NULL' ELSE s END"""
    return f"""
        WITH raw AS (
            SELECT profile_id, source, record_id, ts, 0 AS kind_rank, try_parse_json(attributes) AS j
            FROM pr_input WHERE attributes IS NOT NULL
            UNION ALL
            SELECT profile_id, source, {record_id}, timestamp,
                   CASE WHEN type = 'identify' THEN 1 ELSE 2 END, try_parse_json(traits)
            FROM pe_input WHERE traits IS NOT NULL AND type <> 'group'
        ),
        flat0 AS (
            SELECT r.profile_id, r.source, r.record_id, r.ts, r.kind_rank, e.key AS k, e.value AS v,
                   schema_of_variant(e.value) AS s
            FROM raw r, LATERAL variant_explode(r.j) e
            WHERE schema_of_variant(r.j) LIKE 'OBJECT%'
        ),
        flat AS (SELECT *, {json_type} AS t FROM flat0),
        nested0 AS (  -- one level of nesting (Segment's address, company)
            SELECT f.profile_id, f.source, f.record_id, f.ts, f.kind_rank, f.k || '.' || e.key AS k,
                   e.value AS v, schema_of_variant(e.value) AS s
            FROM flat f, LATERAL variant_explode(f.v) e WHERE f.t = 'OBJECT'
        ),
        nested AS (SELECT *, {json_type} AS t FROM nested0),
        kv AS (
            SELECT * FROM flat WHERE t NOT IN ('OBJECT', 'NULL')
            UNION ALL SELECT * FROM nested WHERE t NOT IN ('OBJECT', 'ARRAY', 'NULL')
        )
        SELECT profile_id, {alias_case} AS attribute,
               CASE WHEN t = 'VARCHAR' THEN variant_get(v, '$', 'string')
                    -- a number with a decimal point is a DOUBLE in DuckDB (1.0 stays '1.0')
                    WHEN s = 'DOUBLE' OR s LIKE 'DECIMAL%' THEN CAST(variant_get(v, '$', 'double') AS STRING)
                    ELSE to_json(v) END AS value,
               source, record_id, ts, kind_rank, {prio_case} AS priority, CAST(1 AS BIGINT) AS weight
        FROM kv
        WHERE k NOT IN ({skip})
          AND NOT (t = 'VARCHAR' AND trim(variant_get(v, '$', 'string')) = '')
        UNION ALL
        {IDENTIFIER_CANDIDATES_SQL}
    """


def golden_long_spark_sql(store: Store, config: ProjectConfig | None) -> str:
    """Spark SQL: (profile_id, attribute, value, source, record_id, ts, rule) — the ranking of
    `profiles.golden.golden_long_sql` over the candidates in `_golden_candidates`."""
    tree = sqlglot.parse_one(golden_long_sql(store, config), read="duckdb")
    ctes = [c for c in tree.find_all(exp.CTE) if c.alias == "c"]
    if len(ctes) != 1:  # pragma: no cover - golden_long_sql changed shape
        raise RuntimeError("golden_long_sql: expected one CTE named c (the candidates)")
    ctes[0].set("this", sqlglot.parse_one("SELECT * FROM _golden_candidates", read="duckdb"))
    return transpile(tree.sql(dialect="duckdb"))


def golden_long(spark, store: Store, config: ProjectConfig | None):
    """The winning value of every attribute of every profile, as a Spark DataFrame (cached and
    registered as `_golden_long`)."""
    spark.sql(candidates_sql(config)).createOrReplaceTempView("_golden_candidates")
    if spark.catalog.tableExists("_golden_long"):  # a previous run's, still cached
        spark.catalog.uncacheTable("_golden_long")
    df = spark.sql(golden_long_spark_sql(store, config)).cache()
    df.createOrReplaceTempView("_golden_long")
    return df


def golden_wide_sql(attributes: list[str]) -> str:
    """Spark SQL over `_golden_long`, `pr_input`, `pe_input` and `identity_profiles`: one row
    per profile, as `profiles.golden.golden_sql` — the `attributes` as columns, `provenance`
    (JSON: attribute -> source, record_id, at), rows, sources, profile_created_at."""
    pivot = "".join(
        f"max(CASE WHEN attribute = {_lit(a)} THEN value END) AS `{a.replace('`', '')}`, "
        for a in attributes
    )
    return f"""
        WITH wide AS (
            SELECT profile_id, {pivot}
                   to_json(map_from_entries(collect_list(struct(attribute, named_struct(
                       'source', source, 'record_id', record_id,
                       'at', date_format(ts, "yyyy-MM-dd'T'HH:mm:ss"))))),
                       map('ignoreNullFields', 'false')) AS provenance
            FROM _golden_long GROUP BY profile_id
        ),
        membership AS (
            SELECT profile_id, source FROM pr_input UNION ALL SELECT profile_id, source FROM pe_input
        ),
        m AS (
            SELECT profile_id, count(*) AS rows, array_join(array_sort(collect_set(source)), ',') AS sources
            FROM membership GROUP BY profile_id
        ),
        p AS (SELECT profile_id, created_at FROM identity_profiles WHERE status = 'active')
        SELECT m.profile_id, {", ".join(f"wide.`{a.replace('`', '')}`" for a in attributes) + ", " if attributes else ""}
               wide.provenance, m.rows, m.sources, p.created_at AS profile_created_at
        FROM m LEFT JOIN wide ON wide.profile_id = m.profile_id LEFT JOIN p ON p.profile_id = m.profile_id
    """  # fmt: skip


def golden_wide(spark, attributes: list[str]):
    """The golden record's profile rows on Spark (after `golden_long`), as a DataFrame."""
    return spark.sql(golden_wide_sql(attributes))
