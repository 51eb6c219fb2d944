"""One local Spark session (local[2], tuned for tiny data, scratch files under pytest's tmp
directory) for the scale tests of a worker; stopped at the end."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:  # pragma: no cover - Spark needs a JVM
        pytest.skip("Spark needs Java (17+)")
    from panorama.scale.engine import session

    scratch = tmp_path_factory.mktemp("spark-scratch")
    s = session(master="local[2]", small=True, local_dir=str(scratch))
    try:
        yield s
    finally:
        s.stop()
