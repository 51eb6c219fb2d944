"""DuckDB/Spark parity: the same traits, RFM, lifecycle and metrics on the demo data."""

from __future__ import annotations

import math
import shutil

import pytest

from panorama.traits import metrics
from panorama.traits.batch import compute

pyspark = pytest.importorskip("pyspark")
pytestmark = [
    pytest.mark.xdist_group("traits_demo"),
    pytest.mark.slow,  # ~35-70 s: JVM start + ~25 Spark jobs
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),  # pyspark on pandas 3
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas"),
]

if shutil.which("java") is None:  # pragma: no cover - Spark needs a JVM
    pytest.skip("Spark needs Java (17+)", allow_module_level=True)


def _norm(v):
    import pandas as pd

    if v is None:
        return None
    if hasattr(v, "tolist") and not isinstance(v, str):
        v = v.tolist()
    if isinstance(v, list):
        return [_norm(x) for x in v]
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if isinstance(v, float):
        return float(f"{v:.10g}")  # sums in another order differ in the last bits
    return v


def test_spark_gives_the_same_results_as_duckdb(demo, tmp_path):
    from panorama.traits import spark as sp

    config = demo.project.config
    run = compute(demo.store, config, inputs=demo.inputs)
    duck = demo.store.execute("SELECT * FROM profile_traits ORDER BY profile_id").df()
    duck_state = demo.store.execute("SELECT * FROM trait_state ORDER BY profile_id").df()
    segment = "rfm_segment IN ('Champions', 'Loyal') OR lifecycle_stage = 'new'"
    duck_metrics = metrics.compute(demo.store, config, segment=segment, inputs=demo.inputs)
    period = metrics.default_period(demo.store, None, None)

    spark = sp.session(threads=2, small=True)
    try:
        # the whole run on Spark, its tables loaded back into the store
        spark_run = sp.compute_on_spark(demo.store, config, inputs=demo.inputs, spark=spark, workdir=tmp_path)
        pe, _ = sp.export_inputs(demo.store, demo.inputs, tmp_path / "inputs")
        spark_metrics = sp.run_metrics(spark, config, pe, period.start, period.end, segment=segment,
                                       traits_view="_tr_spark_traits") if _register_traits(spark, demo, tmp_path) else None
    finally:
        spark.stop()

    assert spark_run.as_of == run.as_of and spark_run.events == run.events
    assert spark_run.parameters.rfm == run.parameters.rfm
    assert spark_run.parameters.lifecycle == run.parameters.lifecycle
    assert demo.store.scalar("SELECT engine FROM trait_runs ORDER BY id DESC LIMIT 1") == "spark"
    for table, expected in (("profile_traits", duck), ("trait_state", duck_state)):
        frame = demo.store.execute(f"SELECT * FROM {table} ORDER BY profile_id").df()
        assert list(frame.columns) == list(expected.columns) and len(frame) == len(expected) > 250
        diffs = []
        for col in expected.columns:
            for pid, a, b in zip(expected["profile_id"], expected[col], frame[col], strict=True):
                if _norm(a) != _norm(b):
                    diffs.append(f"{table} {pid}.{col}: duckdb {a!r}, spark {b!r}")
        assert diffs == []
    assert spark_metrics == duck_metrics
    assert not math.isnan(duck_metrics["metrics"]["average_order_value"]["value"])


def _register_traits(spark, demo, directory) -> bool:
    """Spark's view of the profile traits the segment reads (the store's table, as Spark wrote it)."""
    path = directory / "profile_traits.parquet"
    demo.store.execute(f"COPY profile_traits TO '{path}' (FORMAT parquet)")
    spark.read.parquet(str(path)).createOrReplaceTempView("_tr_spark_traits")
    return True
