"""Splink estimated on a sample of the records (`identity.splink.training_records`) scores
every record, and matches about as well as a model estimated on all of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from panorama.config import load_project
from panorama.identity.evaluate import evaluate_store
from panorama.identity.service import unify
from panorama.ingest.files import ingest_source
from panorama.store import open_store

pytestmark = pytest.mark.slow


def _unify(directory: Path, training_records: int | None):
    project = load_project(directory)
    config = project.config.model_copy(deep=True)
    object.__setattr__(config.identity.splink, "training_records", training_records)
    project.config = config
    with open_store(project.store_path) as store:
        stats = unify(store, project)
        return stats, evaluate_store(store, directory / "truth" / "identities.csv")


def test_a_model_estimated_on_a_sample_matches_as_well(tmp_path):
    panorama = str(Path(sys.executable).parent / "panorama")
    subprocess.run([panorama, "demo", "generate", str(tmp_path), "--customers", "1500", "--seed", "5"],
                   check=True, capture_output=True)  # fmt: skip
    project = load_project(tmp_path)
    with open_store(project.store_path) as store:
        for name in project.config.sources:
            ingest_source(store, project, name)
    everything, full = _unify(tmp_path, None)
    sampled, sample = _unify(tmp_path, 1_000)
    assert everything.splink_pairs > 0 and sampled.splink_pairs > 0
    assert abs(sampled.splink_pairs - everything.splink_pairs) <= 0.2 * everything.splink_pairs
    assert sample.f1 >= full.f1 - 0.01, (full, sample)
    assert sample.precision >= full.precision - 0.01
