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
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),  # pyspark toPandas on pandas 3
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
    segment = "rfm_segment IN ('Champions', 'Loyal') OR lifecycle_stage = 'new'"
    duck_metrics = metrics.compute(demo.store, config, segment=segment, inputs=demo.inputs)
    period = metrics.default_period(demo.store, None, None)

    pe, pr = sp.export_inputs(demo.store, demo.inputs, tmp_path / "inputs")
    spark = sp.session(threads=2, small=True)
    try:
        out = sp.run(spark, config, pe, pr, run.as_of, keep=True)
        spark_metrics = sp.run_metrics(spark, config, pe, period.start, period.end, segment=segment)
    finally:
        spark.stop()

    assert out["parameters"].rfm == run.parameters.rfm
    assert out["parameters"].lifecycle == run.parameters.lifecycle
    frame = out["profile_traits"]
    assert list(frame.columns) == list(duck.columns) and len(frame) == len(duck) > 250
    diffs = []
    for col in duck.columns:
        for pid, a, b in zip(duck["profile_id"], duck[col], frame[col], strict=True):
            if _norm(a) != _norm(b):
                diffs.append(f"{pid}.{col}: duckdb {a!r}, spark {b!r}")
    assert diffs == []
    assert spark_metrics == duck_metrics
    assert not math.isnan(duck_metrics["metrics"]["average_order_value"]["value"])
