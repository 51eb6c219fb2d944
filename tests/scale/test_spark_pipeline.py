"""Parity: the batch pipeline on Spark (Parquet log, local[2]) equals the DuckDB pipeline on a
small demo project (300 customers): profiles (count and membership; Splink's pairs scored by its
Spark backend), the golden record, traits/RFM/lifecycle, metrics, point-in-time features and
batch segment membership."""

from __future__ import annotations

import math
import shutil

import pytest

pyspark = pytest.importorskip("pyspark")
pytestmark = [
    pytest.mark.xdist_group("scale_spark"),
    pytest.mark.slow,  # JVM start + a few dozen small Spark jobs
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]
if shutil.which("java") is None:  # pragma: no cover - Spark needs a JVM
    pytest.skip("Spark needs Java (17+)", allow_module_level=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from panorama.config import Project, load_project
    from panorama.demo.generate import generate
    from panorama.ingest.files import ingest_source
    from panorama.store import open_store

    root = tmp_path_factory.mktemp("scale") / "demo"
    generate(root, customers=300, seed=5)
    loaded = load_project(root)
    spark_conf = loaded.config.spark.model_copy(update={"log_path": "parquet-log"})
    proj = Project(root, loaded.config.model_copy(update={"engine": "spark", "spark": spark_conf}))
    store = open_store(proj.store_path)
    for name in proj.config.sources:
        ingest_source(store, proj, name)
    try:
        yield proj, store
    finally:
        store.close()


def _norm(v):
    import pandas as pd

    if v is None:
        return None
    if hasattr(v, "tolist") and not isinstance(v, str):
        v = v.tolist()
    if isinstance(v, list | tuple):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    return v


def _same(a, b) -> bool:
    """Equal, floats within a relative 1e-6 (sums in another order differ in the last bits;
    features are float32)."""
    a, b = _norm(a), _norm(b)
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _diffs(name, expected, actual) -> list[str]:
    assert list(actual.columns) == list(expected.columns), name
    assert len(actual) == len(expected) > 100, name
    out = []
    for col in expected.columns:
        for pid, a, b in zip(expected["profile_id"], expected[col], actual[col], strict=True):
            if not _same(a, b):
                out.append(f"{name} {pid}.{col}: duckdb {a!r}, spark {b!r}")
    return out


def _partition(store) -> set[frozenset]:
    """Profiles as sets of (source, record_id): what was merged with what, whatever the ids."""
    from panorama.profiles.export import membership_sql

    rows = store.execute(f"SELECT profile_id, list([source, record_id]) FROM ({membership_sql(store)}) "
                         "GROUP BY profile_id").fetchall()  # fmt: skip
    return {frozenset(tuple(m) for m in members) for _, members in rows}


def _splink_pairs(store) -> set[tuple]:
    rows = store.execute(
        "SELECT a_source, a_record_id, b_source, b_record_id FROM identity_splink"
    ).fetchall()
    return set(rows)


def test_spark_pipeline_equals_duckdb(project, spark, tmp_path):
    from panorama.identity.service import unify
    from panorama.predict.features import FeatureBuilder
    from panorama.profiles.golden import golden_long_sql
    from panorama.scale import pipeline
    from panorama.scale.identity import unify_on_spark
    from panorama.traits.batch import compute, default_as_of
    from panorama.traits.metrics import compute as metrics

    proj, store = project
    # --- the DuckDB pipeline -------------------------------------------------------------
    duck_stats = unify(store, proj)
    duck_profiles = _partition(store)
    duck_pairs = _splink_pairs(store)
    as_of = default_as_of(store)
    compute(store, proj.config, as_of, point_in_time=False)
    duck_traits = store.execute("SELECT * FROM profile_traits ORDER BY profile_id").df()
    duck_metrics = metrics(store, proj.config)
    fb = FeatureBuilder(store, proj.config.predictions)
    fb.prepare(as_of)
    duck_features = fb.features(as_of)
    duck_members = pipeline.duckdb_members(store, proj, as_of)

    # --- the same on Spark ---------------------------------------------------------------
    spark_stats = unify_on_spark(store, proj, spark, tmp_path / "identity")
    assert "components (spark)" in spark_stats.seconds
    # Splink's model estimated and its pairs scored by Splink's Spark backend: the same pairs
    # pass the threshold (EM on Spark may differ in the last decimals of a probability)
    assert spark_stats.splink_pairs == duck_stats.splink_pairs > 0
    assert _splink_pairs(store) == duck_pairs
    assert not [t for t in spark.catalog.listTables() if t.name.startswith("__splink")]
    assert spark_stats.profiles == duck_stats.profiles > 300
    assert spark_stats.components == duck_stats.components
    assert _partition(store) == duck_profiles
    assert any(len(p) > 2 for p in duck_profiles)  # real merges, not one record per profile

    golden = store.execute(f"SELECT profile_id, attribute, value, rule FROM ({golden_long_sql(store, proj.config)})").fetchall()  # fmt: skip
    run = pipeline.run(store, proj, spark, as_of=as_of)
    # the golden record: the same winning value of every attribute of every profile
    spark_golden = run.golden[["profile_id", "attribute", "value", "rule"]].itertuples(index=False)
    assert sorted(map(tuple, spark_golden)) == sorted(golden)
    assert len(golden) > 1000

    # the log really is Parquet, partitioned by date and source
    root = pipeline.log_path(proj)
    files = list((root / "events").rglob("*.parquet"))
    assert files and all(p.parent.name.startswith("source=") for p in files)
    assert all(p.parent.parent.name.startswith("date=") for p in files)
    assert run.events == store.scalar("SELECT count(*) FROM events")

    diffs = _diffs("traits", duck_traits, run.traits.reset_index(drop=True))
    diffs += _diffs(
        "features", duck_features.reset_index(drop=True), run.features.reset_index(drop=True)
    )
    assert diffs == []
    assert _same(run.metrics, duck_metrics), (run.metrics, duck_metrics)
    assert run.errors == {}
    assert run.members == duck_members
    assert set(run.members) == set(proj.config.segments)
    assert sum(len(v) > 0 for v in run.members.values()) >= 3
    # the run is loaded back into the store for the API and UI
    assert store.scalar("SELECT count(*) FROM profile_traits") == len(duck_traits)

    # the golden record's profile rows (every attribute, provenance, rows, sources)
    import orjson

    from panorama.profiles.golden import _attributes, golden_sql
    from panorama.scale.golden import golden_wide

    expected = store.execute(
        f"SELECT * REPLACE (CAST(provenance AS VARCHAR) AS provenance) "
        f"FROM ({golden_sql(store, proj.config)}) ORDER BY profile_id"
    ).df()
    actual = golden_wide(spark, _attributes(store, proj.config)).toPandas()
    actual = actual.sort_values("profile_id").reset_index(drop=True)
    for frame in (expected, actual):
        frame["provenance"] = [
            orjson.loads(v) if isinstance(v, str) else None for v in frame["provenance"]
        ]
    assert _diffs("golden", expected, actual) == []


def test_a_second_sync_appends_only_new_rows_and_readers_dedupe(project, spark, tmp_path):
    from panorama.scale import log as plog

    _, store = project
    first = plog.sync(store, tmp_path)
    assert first["events"] == store.scalar("SELECT count(*) FROM events") > 0
    assert plog.sync(store, tmp_path) == {"events": 0, "records": 0}
    # a batch written twice (a retried flush) is read once
    again = store.execute("SELECT * FROM events LIMIT 7").to_arrow_table()
    plog.write(tmp_path, "events", again)
    counts = plog.spark_views(spark, tmp_path)
    assert counts["events"] == first["events"]
    assert counts["records"] == store.scalar("SELECT count(*) FROM records")
