"""The traits/RFM/lifecycle/metrics pipeline on Apache Spark (PySpark).

The steps are the same DuckDB-dialect SQL as the embedded run (`sqlgen`, `rfm`, `lifecycle`,
`metrics`), transpiled by sqlglot to Spark SQL; each step becomes a cached temporary view.
The inputs are two tables with the columns of `profiles.profile_events_sql` (`pe`) and of the
profile records (`pr`, optional): here Parquet files exported from the store
(`export_inputs`), on a cluster any table or view with those columns.

    spark = session()                                   # local[2] by default
    pe, pr = export_inputs(store, Inputs.from_store(store), workdir)
    out = run(spark, config, pe, pr, as_of)             # profile_traits (pandas) + parameters
    m = run_metrics(spark, config, pe, start, end)      # the same dict as metrics.compute

PySpark is optional (`pip install pyspark`; Spark 4 needs Java 17+).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlglot

from panorama.config import ProjectConfig
from panorama.store import Store, one
from panorama.traits.batch import Inputs
from panorama.traits.definitions import compile_plan
from panorama.traits.engines import Parameters, output_columns, run_pipeline
from panorama.traits.metrics import MetricsQuery, Period, segment_where
from panorama.traits.metrics import run as run_metrics_on


def transpile(sql: str) -> str:
    return sqlglot.transpile(sql, read="duckdb", write="spark")[0]


class SparkEngine:
    name = "spark"

    def __init__(self, spark):
        self.spark = spark
        self.created: list[str] = []
        self.frames: dict[str, object] = {}

    def materialize(self, name: str, sql: str) -> None:
        df = self.spark.sql(transpile(sql)).cache()
        df.createOrReplaceTempView(name)
        self.frames[name] = df
        self.created.append(name)

    def rows(self, sql: str) -> list[dict]:
        return [r.asDict() for r in self.spark.sql(transpile(sql)).collect()]

    def drop(self, names: list[str]) -> None:
        for name in names:
            df = self.frames.pop(name, None)
            if df is not None:
                df.unpersist()
            self.spark.catalog.dropTempView(name)


def session(threads: int = 2, memory: str = "2g", small: bool = False):
    """A local Spark session in UTC, quiet, sized for one machine. `small` tunes it for tiny
    data (tests): one shuffle partition and no code generation (compiling costs more than
    running when the data is small)."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(f"local[{threads}]")
        .appName("panorama-traits")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1" if small else str(max(2, threads * 2)))
        .config("spark.driver.memory", memory)
    )
    if small:
        builder = (
            builder.config("spark.sql.codegen.wholeStage", "false")
            .config("spark.sql.codegen.factoryMode", "NO_CODEGEN")
            .config("spark.sql.adaptive.enabled", "false")
            .config("spark.default.parallelism", "1")
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def export_inputs(store: Store, inputs: Inputs, directory: Path) -> tuple[str, str | None]:
    """Write the pipeline's inputs as Parquet (JSON columns as text); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    pe = directory / "profile_events.parquet"
    store.execute(f"""
        COPY (SELECT * EXCLUDE (identifiers)
                       REPLACE (CAST(properties AS VARCHAR) AS properties, CAST(traits AS VARCHAR) AS traits,
                                CAST(context AS VARCHAR) AS context)
              FROM ({inputs.events_sql}))
        TO '{pe}' (FORMAT parquet)
    """)  # fmt: skip
    pr = None
    if inputs.records_sql:
        pr = directory / "profile_records.parquet"
        store.execute(f"""
            COPY (SELECT profile_id, source, record_id, ts, ingested_at, CAST(attributes AS VARCHAR) AS attributes
                  FROM ({inputs.records_sql}))
            TO '{pr}' (FORMAT parquet)
        """)
    return str(pe), (str(pr) if pr else None)


def _load(spark, pe: str, pr: str | None) -> tuple[str, str | None]:
    spark.read.parquet(pe).createOrReplaceTempView("pe_input")
    if pr:
        spark.read.parquet(pr).createOrReplaceTempView("pr_input")
    return "pe_input", ("pr_input" if pr else None)


def run(spark, config: ProjectConfig, pe: str, pr: str | None, as_of: dt.datetime, *,
        params: Parameters | None = None, keep: bool = False) -> dict:  # fmt: skip
    """Traits, RFM and lifecycle for every profile on Spark.

    Returns {"profile_traits": pandas DataFrame (sorted by profile_id), "parameters": Parameters,
    "seconds": {step: s}}. With `keep`, the views stay registered (`_tr_profile_traits`, ...)."""
    plan = compile_plan(config)
    pe_view, pr_view = _load(spark, pe, pr)
    engine = SparkEngine(spark)
    try:
        result = run_pipeline(engine, plan, config, as_of, pe_view, pr_view, params=params)
        cols = output_columns(plan)
        frame = engine.frames["_tr_profile_traits"].select(*cols).orderBy("profile_id").toPandas()
    finally:
        if not keep:
            engine.drop(engine.created)
    return {"profile_traits": frame, "parameters": result.parameters, "seconds": result.seconds}


def run_metrics(spark, config: ProjectConfig, pe: str, start: dt.datetime, end: dt.datetime,
                segment: str | None = None, traits_view: str = "_tr_profile_traits") -> dict:  # fmt: skip
    """The metrics dict (as `metrics.compute`) on Spark; a segment needs `run(..., keep=True)` first."""
    pe_view, _ = _load(spark, pe, None)
    segment_sql = None
    if segment:
        columns = spark.table(traits_view).columns
        segment_sql = segment_where(segment, columns)
    engine = SparkEngine(spark)
    try:
        return run_metrics_on(engine, MetricsQuery(config, Period(start, end)), pe_view, segment_sql,
                              traits_view, segment)  # fmt: skip
    finally:
        engine.drop(engine.created)


def compute_on_spark(store: Store, config: ProjectConfig, as_of: dt.datetime | None = None, *,
                     point_in_time: bool | None = None, inputs: Inputs | None = None, workdir: Path | None = None,
                     spark=None, threads: int = 2, log=None):  # fmt: skip
    """`batch.compute` with Spark as the engine: the store's log is exported to Parquet, the
    pipeline runs on Spark, and its `trait_state` and `profile_traits` are loaded back into the
    store (so the real-time path and every reader work as after a DuckDB run)."""
    import shutil
    import tempfile
    import time

    import orjson

    from panorama.traits.batch import RunSummary, default_as_of
    from panorama.traits.definitions import traits_to_json

    plan = compile_plan(config)
    if point_in_time is None:
        point_in_time = as_of is not None
    as_of = as_of or default_as_of(store)
    inputs = inputs or Inputs.from_store(store)
    started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="panorama-spark-", dir=workdir))
    own = spark is None
    spark = spark or session(threads)
    try:
        pe, pr = export_inputs(store, inputs, tmp / "in")
        pe_view, pr_view = _load(spark, pe, pr)
        engine = SparkEngine(spark)
        try:
            result = run_pipeline(engine, plan, config, as_of, pe_view, pr_view, point_in_time=point_in_time,
                                  log=log)  # fmt: skip
            cols = output_columns(plan)
            engine.frames["_tr_state"].write.parquet(str(tmp / "state"))
            engine.frames["_tr_profile_traits"].select(*cols).write.parquet(str(tmp / "traits"))
            events = engine.frames["_tr_events"].count()
        finally:
            engine.drop(engine.created)
        state, traits = (str(tmp / name / "*.parquet").replace("'", "''") for name in ("state", "traits"))
        with store.transaction() as tx:
            tx.execute(f"CREATE OR REPLACE TABLE trait_state AS SELECT * FROM read_parquet('{state}')")
            tx.execute(f"CREATE OR REPLACE TABLE profile_traits AS SELECT * FROM read_parquet('{traits}') "
                       "ORDER BY profile_id")  # fmt: skip
            profiles = one(tx.execute("SELECT count(*) FROM profile_traits"))[0]
            seconds = time.perf_counter() - started
            params = {**result.parameters.to_json(), "traits": traits_to_json(plan.traits)}
            run_id = one(tx.execute(
                "INSERT INTO trait_runs (started_at, finished_at, engine, as_of, point_in_time, signature, "
                "profiles, events, seconds, parameters) VALUES (?, ?, 'spark', ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [started_at, dt.datetime.now(dt.UTC).replace(tzinfo=None), as_of, point_in_time, plan.signature,
                 profiles, events, seconds, orjson.dumps(params).decode()],
            ))[0]  # fmt: skip
        store.forget_recent()
    finally:
        if own:
            spark.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return RunSummary(int(run_id), as_of, int(profiles), int(events), time.perf_counter() - started,
                      result.parameters, result.seconds)  # fmt: skip
