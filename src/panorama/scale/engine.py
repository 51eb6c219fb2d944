"""Spark as a SQL engine for Panorama's DuckDB-dialect batch SQL (written once, transpiled by sqlglot).

    spark = session(project.config)              # spark.master, driver memory, extra conf
    cur = SparkCursor(spark)                      # a DuckDB-cursor look-alike over Spark SQL
    cur.execute("CREATE OR REPLACE TEMP TABLE t AS SELECT ...")   # a cached temporary view
    cur.execute("SELECT ...").df()                # pandas; also fetchone() / fetchall()

Code that builds its SQL for a DuckDB cursor (`predict.features.FeatureBuilder`, segment
expressions) runs on Spark unchanged by being handed this cursor.
"""

from __future__ import annotations

import os
import re
import sys

import sqlglot
from sqlglot import exp

from panorama.config import ProjectConfig

_CREATE = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP|TEMPORARY)\s+TABLE\s+(\w+)\s+AS\s+(.*)$",
                     re.IGNORECASE | re.DOTALL)  # fmt: skip


def _spark_functions(node: exp.Expression) -> exp.Expression:
    """DuckDB functions sqlglot leaves as they are, rewritten to Spark's equivalents."""
    if (
        isinstance(node, exp.Anonymous)
        and node.name.lower() == "json_exists"
        and len(node.expressions) == 2
    ):
        # a JSON null counts as absent on Spark (get_json_object returns NULL for both)
        return exp.Not(this=exp.Is(this=exp.Anonymous(this="get_json_object", expressions=node.expressions),
                                   expression=exp.Null()))  # fmt: skip
    if (
        isinstance(node, exp.Anonymous)
        and node.name.lower() == "to_microseconds"
        and len(node.expressions) == 1
    ):
        # DuckDB's interval of N microseconds (segments' `within=`): a day-time interval on Spark
        seconds = exp.Div(
            this=exp.cast(node.expressions[0].copy(), "DECIMAL(20, 0)"),
            expression=exp.Literal.number(1_000_000),
        )
        return exp.Anonymous(
            this="make_dt_interval", expressions=[exp.Literal.number(0)] * 3 + [seconds]
        )
    if isinstance(node, exp.TimeToUnix):
        # DuckDB's epoch() keeps the fraction of a second; Spark's unix_timestamp drops it
        micros = exp.Anonymous(
            this="unix_micros", expressions=[exp.cast(node.this.copy(), "TIMESTAMP")]
        )
        return exp.Div(this=micros, expression=exp.cast(exp.Literal.number(1_000_000), "DOUBLE"))
    if isinstance(node, exp.Literal) and not node.is_string and "." in node.this:
        # DuckDB computes with decimal literals as doubles (avg(1.0) is a DOUBLE); Spark keeps
        # DECIMAL(p, s) and rounds averages to its scale
        return exp.cast(node.copy(), "DOUBLE")
    return node


def transpile(sql: str) -> str:
    """DuckDB SQL as Spark SQL."""
    tree = sqlglot.parse_one(sql, read="duckdb").transform(_spark_functions)
    return tree.sql(dialect="spark")


def session(
    config: ProjectConfig | None = None,
    *,
    master: str | None = None,
    small: bool = False,
    local_dir: str | None = None,
):
    """The project's Spark session (UTC, quiet). `master` overrides `spark.master`; `small`
    tunes it for tiny data (tests: one shuffle partition, no code generation, a JVM that
    compiles less); `local_dir` holds Spark's scratch files (shuffle, spills, checkpoints).

    Nothing is downloaded: PySpark's own jars and the Splink wheel's similarity jar are on the
    classpath and no `spark.jars.packages` is set (unless `spark.conf` asks for it)."""
    from pyspark.sql import SparkSession

    sc = config.spark if config is not None else None
    master = master or (sc.master if sc else "local[2]")
    cores = re.fullmatch(r"local\[(\d+)\]", master)
    partitions = 1 if small else max(2, 2 * int(cores.group(1))) if cores else 200
    builder = (
        SparkSession.builder.master(master)
        .appName(f"panorama-{config.name}" if config else "panorama")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.driver.memory", sc.driver_memory if sc else "2g")
        # partition values (date=..., source=...) stay text, as written
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
    )
    if master.startswith("local"):
        # Python workers (mapInPandas scoring) run this interpreter, with its packages; on a
        # cluster, set spark.pyspark.python (or PYSPARK_PYTHON) to the executors' environment
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
    if local_dir:
        builder = builder.config("spark.local.dir", local_dir).config(
            "spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={local_dir}"
        )
    if small:
        jvm = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC" + (
            f" -Djava.io.tmpdir={local_dir}" if local_dir else ""
        )
        builder = (
            builder.config("spark.driver.extraJavaOptions", jvm)
            .config("spark.sql.codegen.wholeStage", "false")
            .config("spark.sql.codegen.factoryMode", "NO_CODEGEN")
            .config("spark.sql.adaptive.enabled", "false")
            .config("spark.default.parallelism", "1")
        )
    conf = dict(sc.conf if sc else {})
    from panorama.scale.splink import jar_location

    if jar := jar_location():
        # Splink's similarity functions (the Spark backend of the probabilistic step); the jar
        # ships in the Splink wheel
        conf["spark.jars"] = ",".join(filter(None, [conf.get("spark.jars"), jar]))
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def to_pandas(df):
    """A Spark frame as pandas. In local mode through Parquet files that Python reads itself:
    `toPandas()` collects every row through the JVM driver's heap (`spark.driver_memory`,
    2 GB by default), and at 1M customers the traits frame failed there ("TaskResultLost").
    On a cluster the executors cannot write where the driver reads: `toPandas()`, which needs
    a driver heap (and `spark.driver.maxResultSize`) for the result."""
    spark = df.sparkSession
    if not spark.sparkContext.master.startswith("local"):
        return df.toPandas()
    import shutil
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = tempfile.mkdtemp(prefix="panorama-collect-", dir=spark.conf.get("spark.local.dir", None))
    try:
        df.write.mode("overwrite").parquet(directory)
        table = pq.read_table(directory)  # part files in order: an ordered frame stays ordered
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    # Spark writes timestamps as UTC instants; toPandas gives them naive in the session's
    # time zone (UTC), and so does this
    fields = [
        pa.field(f.name, pa.timestamp(f.type.unit)) if pa.types.is_timestamp(f.type) and f.type.tz else f
        for f in table.schema
    ]
    frame = table.cast(pa.schema(fields)).to_pandas()
    return frame[df.columns] if list(frame.columns) != df.columns else frame


class _Result:
    def __init__(self, df):
        self._df = df

    def df(self):
        return to_pandas(self._df)

    def fetchall(self) -> list[tuple]:
        return [tuple(r) for r in self._df.collect()] if self._df is not None else []

    def fetchone(self) -> tuple | None:
        rows = self._df.limit(1).collect() if self._df is not None else []
        return tuple(rows[0]) if rows else None

    @property
    def description(self) -> list[tuple]:
        return [(name,) for name in self._df.columns]


class SparkCursor:
    """Runs DuckDB-dialect statements on Spark: `CREATE [OR REPLACE] TEMP TABLE x AS SELECT`
    becomes a cached temporary view; a query becomes a DataFrame behind a cursor-like result."""

    def __init__(self, spark):
        self.spark = spark
        self.views: dict[str, object] = {}

    def execute(self, sql: str, params=None) -> _Result:
        if params:
            raise ValueError("SparkCursor: parameters are not supported; inline literals")
        if m := _CREATE.match(sql):
            name, select = m.group(1), m.group(2)
            df = self.spark.sql(transpile(select)).cache()
            old = self.views.pop(name, None)
            df.createOrReplaceTempView(name)
            if old is not None:
                old.unpersist()
            self.views[name] = df
            return _Result(None)
        return _Result(self.spark.sql(transpile(sql)))

    def register(self, name: str, data) -> None:
        """A pandas frame or Arrow table as a temporary view."""
        frame = data.to_pandas() if hasattr(data, "to_pandas") else data
        self.spark.createDataFrame(frame).createOrReplaceTempView(name)

    def close(self) -> None:
        for name, df in self.views.items():
            df.unpersist()
            self.spark.catalog.dropTempView(name)
        self.views.clear()
