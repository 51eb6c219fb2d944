"""The batch pipeline on Spark (`engine: spark`): the Parquet log in, derived tables out.

    run(store, project, spark) -> SparkRun

1. ingest: files are read and validated by `panorama ingest` (dead letters and all); the log's
   new rows are appended to the Parquet log (`log.sync`), partitioned by date and source;
2. identity: `panorama unify` with the graph's connected components on Spark
   (`scale.identity`); its result, (message_id -> profile_id) and ((source, record_id) ->
   profile_id), is exported beside the log and joined on Spark to every event and record;
   the golden record (survivorship, `scale.golden`) is computed on Spark from them;
3. traits, RFM, lifecycle and metrics: `traits.engines.run_pipeline` and `traits.metrics.run`
   on Spark (the same SQL steps as on DuckDB, transpiled by sqlglot);
4. point-in-time features at the run's as-of time: `predict.features.FeatureBuilder`'s SQL on
   Spark through `SparkCursor`;
5. batch segments: `segments.engine.evaluation_sql` (the one query shape of every evaluation,
   event functions included) over the profile on Spark: traits from step 3, the golden
   record from step 2, prediction columns from the store (written there by `panorama predict`).

Outputs are Parquet under `<log_path>/_derived/`; `profile_traits` is loaded back into the
store, so the API, UI, segment history and real-time path read the run as after a DuckDB run.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from panorama.config import Project
from panorama.scale import log as plog
from panorama.scale.engine import SparkCursor
from panorama.store import Store
from panorama.store.schema import CURRENT_RECORDS


@dataclass
class SparkRun:
    as_of: dt.datetime
    profiles: int
    events: int
    seconds: dict[str, float] = field(default_factory=dict)
    traits: object = None  # pandas frame, sorted by profile_id
    features: object = None
    metrics: dict = field(default_factory=dict)
    golden: object = None  # pandas: (profile_id, attribute, value, source, record_id, ts, rule)
    members: dict[str, list[str]] = field(default_factory=dict)  # segment -> sorted profile ids
    errors: dict[str, str] = field(default_factory=dict)  # segments that do not compile


def log_path(project: Project) -> Path | str:
    """The Parquet log's root: a local directory (relative to the project) or an object-store URL."""
    raw = project.config.spark.log_path
    if "://" in raw:
        return raw
    path = Path(raw)
    return path if path.is_absolute() else (project.root / path).resolve()


def _q(path: Path) -> str:
    return str(path).replace("'", "''")


def export_identity(store: Store, directory: Path) -> None:
    """The identity graph's result as two small Parquet tables (ids only, no event columns)."""
    from panorama.profiles.export import membership_sql
    from panorama.traits.batch import Inputs

    directory.mkdir(parents=True, exist_ok=True)
    events_sql = Inputs.from_store(store).events_sql
    store.execute(f"COPY (SELECT message_id, profile_id FROM ({events_sql})) "
                  f"TO '{_q(directory / 'event_profiles.parquet')}' (FORMAT parquet)")  # fmt: skip
    store.execute(f"COPY (SELECT DISTINCT source, record_id, profile_id FROM ({membership_sql(store)})) "
                  f"TO '{_q(directory / 'record_profiles.parquet')}' (FORMAT parquet)")  # fmt: skip


def _register_inputs(spark, directory: Path) -> None:
    """pe_input (events with profile_id), pr_input (current records with profile_id) and
    pr_all (every version of the records, as the features read them)."""
    spark.read.parquet(str(directory / "event_profiles.parquet")).createOrReplaceTempView(
        "_event_profiles"
    )
    spark.read.parquet(str(directory / "record_profiles.parquet")).createOrReplaceTempView(
        "_record_profiles"
    )
    cur = SparkCursor(spark)
    cur.execute("CREATE OR REPLACE TEMP TABLE pe_input AS "
                "SELECT m.profile_id, e.* FROM events e JOIN _event_profiles m USING (message_id)")  # fmt: skip
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE pr_input AS
        SELECT m.profile_id, r.source, r.record_id, r.ts, r.ingested_at, r.attributes FROM ({CURRENT_RECORDS}) r
        JOIN _record_profiles m ON m.source = r.source AND m.record_id = r.record_id
    """)  # fmt: skip
    cur.execute("""
        CREATE OR REPLACE TEMP TABLE pr_all AS
        SELECT m.profile_id, r.source, r.ts, r.ingested_at, r.identifiers, r.attributes FROM records r
        JOIN _record_profiles m ON m.source = r.source AND m.record_id = r.record_id
    """)


def run(store: Store, project: Project, spark, *, as_of: dt.datetime | None = None, sync: bool = True,
        load_back: bool = True, segments: bool = True, metrics_period: tuple[dt.datetime, dt.datetime] | None = None,
        log: Callable[[str], None] | None = None) -> SparkRun:  # fmt: skip
    """Traits, RFM, lifecycle, metrics, point-in-time features and batch segments on Spark
    over the Parquet log (identity must have run: `panorama unify`)."""
    from panorama.predict.features import FeatureBuilder, Sources
    from panorama.scale.engine import to_pandas
    from panorama.traits.batch import default_as_of
    from panorama.traits.definitions import compile_plan
    from panorama.traits.engines import output_columns, run_pipeline
    from panorama.traits.metrics import MetricsQuery, Period, default_period
    from panorama.traits.metrics import run as run_metrics
    from panorama.traits.spark import SparkEngine

    config = project.config
    root = log_path(project)
    local = Path(root) if not isinstance(root, str) else Path(project.root) / ".panorama-spark"
    timings: dict[str, float] = {}
    t = time.perf_counter()
    out = SparkRun(dt.datetime.min, 0, 0, timings)

    def lap(name: str) -> None:
        nonlocal t
        timings[name] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        if log:
            log(f"{name}: {timings[name]:.2f} s")

    if sync:
        plog.sync(store, root)
        lap("log to Parquet")
    export_identity(store, local / "_identity")
    counts = plog.spark_views(spark, root, store)
    _register_inputs(spark, local / "_identity")
    lap("read log")
    out.golden = to_pandas(golden_record(store, project, spark, local / "_identity"))
    lap("golden record")

    as_of = as_of or default_as_of(store)
    plan = compile_plan(config)
    engine = SparkEngine(spark)
    cur = SparkCursor(spark)
    try:
        started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        result = run_pipeline(engine, plan, config, as_of, "pe_input", "pr_input")
        traits_df = engine.frames["_tr_profile_traits"].select(*output_columns(plan))
        traits_df.createOrReplaceTempView("_profile_traits")
        out.as_of, out.events = as_of, counts["events"]
        out.traits = to_pandas(traits_df.orderBy("profile_id"))
        out.profiles = len(out.traits)
        lap("traits")

        period = Period(*metrics_period) if metrics_period else default_period(store, None, None)
        out.metrics = run_metrics(
            engine, MetricsQuery(config, period), "pe_input", None, "_tr_profile_traits", None
        )
        lap("metrics")

        class _OnSpark(FeatureBuilder):
            @property
            def cur(self):
                return cur

        fb = _OnSpark(
            store, config.predictions, Sources("SELECT * FROM pe_input", "SELECT * FROM pr_all")
        )
        fb.prepare(as_of)
        out.features = fb.features(as_of)
        lap("features")

        derived = local / "_derived"
        derived.mkdir(parents=True, exist_ok=True)
        out.traits.to_parquet(derived / "profile_traits.parquet", index=False)
        out.features.to_parquet(derived / "features.parquet", index=False)
        engine.frames["_tr_state"].write.mode("overwrite").parquet(str(derived / "trait_state"))
        if load_back:
            _load_back(store, plan, derived, result.parameters, as_of, started_at, out)
        lap("write outputs")

        if segments:
            out.members, out.errors = evaluate_segments(store, project, spark, derived, as_of)
            lap("segments")
    finally:
        engine.drop(engine.created)
        cur.close()
    return out


def _load_back(
    store: Store, plan, derived: Path, parameters, as_of, started_at, out: SparkRun
) -> None:
    """profile_traits and trait_state into the store (as `panorama traits compute` leaves them,
    so the real-time path updates traits incrementally after a Spark run), and a trait_runs row."""
    import orjson

    from panorama.traits.definitions import traits_to_json

    state = _q(derived / "trait_state" / "*.parquet")
    traits = _q(derived / "profile_traits.parquet")
    params = {**parameters.to_json(), "traits": traits_to_json(plan.traits)}
    with store.transaction() as tx:
        tx.execute(f"CREATE OR REPLACE TABLE trait_state AS SELECT * FROM read_parquet('{state}')")
        tx.execute(f"CREATE OR REPLACE TABLE profile_traits AS SELECT * FROM read_parquet('{traits}') "
                   "ORDER BY profile_id")  # fmt: skip
        tx.execute(
            "INSERT INTO trait_runs (started_at, finished_at, engine, as_of, point_in_time, signature, "
            "profiles, events, seconds, parameters) VALUES (?, ?, 'spark', ?, false, ?, ?, ?, ?, ?)",
            [started_at, dt.datetime.now(dt.UTC).replace(tzinfo=None), as_of, plan.signature, out.profiles,
             out.events, sum(out.seconds.values()), orjson.dumps(params).decode()],
        )  # fmt: skip
    store.forget_recent()


def golden_record(store: Store, project: Project, spark, directory: Path):
    """The golden record on Spark (`scale.golden`, after `_register_inputs`): the winning value
    of every attribute of every profile, registered as `_golden_long`."""
    from panorama.scale.golden import export_identity_tables, golden_long

    export_identity_tables(store, spark, directory)
    return golden_long(spark, store, project.config)


GOLDEN_FIXED = ("provenance", "rows", "sources", "profile_created_at")  # golden_sql's own columns


def evaluate_segments(store: Store, project: Project, spark, directory: Path, now: dt.datetime):
    """Members of every configured segment, evaluated on Spark by the segments engine's own
    query (`evaluation_sql`): the profile view is the golden record (`_golden_long`, every
    profile) and the traits (`_profile_traits`), both computed on Spark, plus the columns other
    modules own (predictions), exported from the store; event functions read `pe_input`.
    Returns (members, errors)."""
    from panorama.scale.golden import golden_wide
    from panorama.segments.catalog import Catalog, Source
    from panorama.segments.engine import SegmentSet, evaluation_sql

    if not project.config.segments:
        return {}, {}
    segset = SegmentSet.build(store, project.config)
    catalog = segset.catalog
    if not segset.compiled:
        return {}, dict(segset.errors)
    used = set().union(*(c.columns for c in segset.compiled.values()))
    traits_cols = [c for c in spark.table("_profile_traits").columns if c != "profile_id"]
    golden_cols = sorted(
        c for c in used if catalog.owner.get(c) == "profile" and c not in traits_cols
    )
    golden_wide(spark, [c for c in golden_cols if c not in GOLDEN_FIXED]).createOrReplaceTempView(
        "_golden"
    )
    select = [
        "g.profile_id",
        *(f"t.`{c}`" for c in traits_cols),
        *(f"g.`{c}`" for c in golden_cols),
    ]
    joins = ["LEFT JOIN _profile_traits t ON t.profile_id = g.profile_id"]
    rest_cols = list(golden_cols)
    for i, source in enumerate(catalog.sources):  # predictions: from the store
        if source.name in ("traits", "profile"):
            continue
        cols = sorted(
            c for c in used if catalog.owner.get(c) == source.name and c not in traits_cols
        )
        if not cols:
            continue
        path = directory / f"profile_{source.name}.parquet"
        store.execute(
            f"COPY (SELECT {source.select(cols)} FROM ({source.sql})) TO '{_q(path)}' (FORMAT parquet)"
        )
        spark.read.parquet(str(path)).createOrReplaceTempView(f"_rest{i}")
        select += [f"r{i}.`{c}`" for c in cols]
        joins.append(f"LEFT JOIN _rest{i} r{i} ON r{i}.profile_id = g.profile_id")
        rest_cols += cols
    spark.sql(
        f"SELECT {', '.join(select)} FROM _golden g {' '.join(joins)}"
    ).createOrReplaceTempView("_profile")
    columns = {
        c: catalog.columns.get(c, "VARCHAR") for c in ["profile_id", *traits_cols, *rest_cols]
    }
    on_spark = Catalog("resolved", "SELECT profile_id FROM _profile", "SELECT * FROM pe_input",
                       [Source("profile", "SELECT * FROM _profile", columns)])  # fmt: skip
    on_spark.columns = columns
    on_spark.owner = {c: ("_ids" if c == "profile_id" else "profile") for c in columns}
    sql = evaluation_sql(on_spark, segset.compiled, None, now)
    frame = SparkCursor(spark).execute(sql).df()
    members = {
        name: sorted(frame.loc[frame[name].astype(bool), "profile_id"]) for name in segset.compiled
    }
    return members, dict(segset.errors)


def segments_on_spark(store: Store, project: Project, spark, now: dt.datetime | None = None):
    """The batch segments step on its own (after `run(..., segments=False)` and `panorama
    predict`): the log and the run's traits are read back and every segment is evaluated on
    Spark; members go to `_derived/segment_members.parquet`. Returns (members, errors)."""
    import pandas as pd

    from panorama.ingest.log import utcnow

    root = log_path(project)
    local = Path(root) if not isinstance(root, str) else Path(project.root) / ".panorama-spark"
    derived = local / "_derived"
    plog.spark_views(spark, root, store)
    export_identity(store, local / "_identity")
    _register_inputs(spark, local / "_identity")
    golden_record(store, project, spark, local / "_identity")
    spark.read.parquet(str(derived / "profile_traits.parquet")).createOrReplaceTempView(
        "_profile_traits"
    )
    members, errors = evaluate_segments(store, project, spark, derived, now or utcnow())
    rows = [(name, pid) for name, ids in members.items() for pid in ids]
    pd.DataFrame(rows, columns=["segment", "profile_id"]).to_parquet(
        derived / "segment_members.parquet", index=False
    )
    return members, errors


def duckdb_members(store: Store, project: Project, now: dt.datetime) -> dict[str, list[str]]:
    """The same evaluation on the store (the reference for the parity test and the benchmark)."""
    from panorama.segments.engine import SegmentSet, evaluation_sql

    segset = SegmentSet.build(store, project.config)
    if not segset.compiled:
        return {}
    frame = store.execute(evaluation_sql(segset.catalog, segset.compiled, None, now)).df()
    return {
        name: sorted(frame.loc[frame[name].astype(bool), "profile_id"]) for name in segset.compiled
    }
