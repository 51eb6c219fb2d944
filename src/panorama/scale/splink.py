"""Splink's Spark backend for the probabilistic step of `panorama unify` (`engine: spark`).

    api = spark_api(spark, workdir)
    stats = unify(store, project, components=spark_components(spark, ...), splink_api=api)
    api.close()

The candidates (person-like records, normalised by `identity.matching.candidates`) are built on
the driver as on one machine and handed to Spark; the model — the same settings
(`identity.matching.settings_for`) and the same training (`identity.matching.train`: prior,
u by random sampling, EM under three blocking rules) — is estimated and the pairs are blocked
and scored by Splink's `SparkAPI`, on the executors. The pairs at or above the threshold come
back to the driver (few) for corroboration and the graph's links, as on DuckDB.

Splink's string similarity functions on Spark (`jaro_winkler`, `damerau_levenshtein`, ...) are
Java UDFs from the jar shipped in the Splink wheel; `scale.engine.session` puts it on
`spark.jars` (nothing is downloaded). The custom comparison levels of `settings_for` are
written in DuckDB SQL; the one DuckDB function name they use that Spark lacks,
`jaro_winkler_similarity`, is registered as an alias of the same UDF.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def jar_location() -> str | None:
    """The Splink wheel's Spark similarity jar (None without Splink or PySpark)."""
    try:
        from splink.backends.spark import similarity_jar_location
    except ImportError:
        return None
    path = similarity_jar_location()
    return path if Path(path).exists() else None


# DuckDB's names of the similarity functions -> the classes of Splink's Spark jar
_DUCKDB_ALIASES = {
    "jaro_winkler_similarity": "uk.gov.moj.dash.linkage.JaroWinklerSimilarity",
    "jaro_similarity": "uk.gov.moj.dash.linkage.JaroSimilarity",
}


def spark_api(spark, workdir: Path | str):
    """Splink's SparkAPI for `identity.service.unify(splink_api=...)`: intermediate tables are
    written as Parquet under `workdir` (lineage cut without a global checkpoint directory);
    `close()` drops the temporary views it made and the files."""
    from pyspark.sql.types import DoubleType
    from splink.backends.spark import SparkAPI

    work = Path(workdir)

    class PanoramaSparkAPI(SparkAPI):
        def __init__(self):
            self.views: set[str] = set()
            super().__init__(spark_session=spark, break_lineage_method="parquet")

        def _register_udfs_from_jar(self):
            from splink.internals.spark.jar_location import get_scala_udfs

            try:
                for name, cls, kind in get_scala_udfs():
                    self.spark.udf.registerJavaFunction(name, cls, kind)
                for name, cls in _DUCKDB_ALIASES.items():
                    self.spark.udf.registerJavaFunction(name, cls, DoubleType())
            except Exception as exc:  # the session was started without the jar
                raise RuntimeError(
                    "Splink's Spark functions are not on the session's classpath: start it "
                    f"with spark.jars={jar_location()} (panorama.scale.engine.session does)"
                ) from exc

        def _table_registration(self, input, table_name: str) -> None:
            # Spark has no unsigned 64-bit integers: the candidates' identifier signature
            # (`sig`, a DuckDB hash) is not compared and stays on the driver
            if hasattr(input, "schema") and hasattr(input, "drop_columns"):
                import pyarrow as pa

                unsigned = [f.name for f in input.schema if pa.types.is_unsigned_integer(f.type)]
                input = input.drop_columns(unsigned)
            super()._table_registration(input, table_name)
            self.views.add(table_name)

        def _get_checkpoint_dir_path(self, spark_df):
            work.mkdir(parents=True, exist_ok=True)
            return str(work)

        def _cleanup_for_execute_sql(self, table, templated_name, physical_name):
            self.views.add(physical_name)
            return super()._cleanup_for_execute_sql(table, templated_name, physical_name)

        def close(self) -> None:
            for name in self.views:
                self.spark.catalog.dropTempView(name)
            self.views.clear()
            shutil.rmtree(work, ignore_errors=True)

    return PanoramaSparkAPI()
