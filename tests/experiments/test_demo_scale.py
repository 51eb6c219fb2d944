"""The default-size demo (10,000 customers) carries an experiment the analysis can find: the
one-page checkout's true +25% is significant and inside the intervals, the hero banner's true
zero is inside its interval. Slow (generates and ingests the whole demo, ~2 minutes)."""

from __future__ import annotations

import json

import pytest

from panorama.experiments.analysis import analyze

from .demo import make_demo

pytestmark = pytest.mark.slow


def test_default_demo_finds_the_true_effect(tmp_path):
    d = make_demo(tmp_path / "demo", customers=10_000, seed=7)
    try:
        truth = {e["experiment_id"]: e for e in json.loads((d.root / "truth/experiments.json").read_text())}
        checkout = analyze(d.store, d.project.config, "EXP-CHECKOUT-1PAGE", events_sql=d.events_sql)
        (c,) = checkout["comparisons"]
        t = truth["EXP-CHECKOUT-1PAGE"]
        assert min(t["exposed"].values()) > 2000
        assert c["p_value"] < 0.05 and checkout["verdict"] == "one_page_checkout beats control"
        assert c["rel_ci"][0] <= t["true_relative_lift"] <= c["rel_ci"][1]
        assert c["abs_ci"][0] <= t["true_absolute_effect"] <= c["abs_ci"][1]
        banner = analyze(d.store, d.project.config, "EXP-HERO-BANNER", events_sql=d.events_sql)
        (b,) = banner["comparisons"]
        assert truth["EXP-HERO-BANNER"]["true_relative_lift"] == 0
        assert b["rel_ci"][0] <= 0 <= b["rel_ci"][1] and banner["verdict"] == "no significant difference"
    finally:
        d.store.close()
