"""Shared synthetic stores for the prediction tests (real DuckDB files, built once per worker)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from panorama.predict import synthetic
from panorama.store import open_store

SYNTH_CUSTOMERS = 2500
T = dt.datetime(2023, 1, 1)


@pytest.fixture(scope="session")
def synth_file(tmp_path_factory) -> Path:
    """A closed store with ~2,500 synthetic customers, 2021-01-01..2024-01-01."""
    path = tmp_path_factory.mktemp("synth") / "synth.duckdb"
    with open_store(path) as store:
        synthetic.generate(store, SYNTH_CUSTOMERS)
    return path


@pytest.fixture
def synth_store(synth_file, tmp_path):
    """A private copy of the synthetic store (tests may add events to it)."""
    path = tmp_path / "store.duckdb"
    shutil.copy(synth_file, path)
    store = open_store(path)
    try:
        yield store
    finally:
        store.close()
