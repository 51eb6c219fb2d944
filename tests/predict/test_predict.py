"""Training, scoring, registry, backtest and data sufficiency on synthetic customers."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from panorama.config import PredictionsConfig
from panorama.predict import registry, synthetic
from panorama.predict.features import Sources
from panorama.predict.service import InsufficientData, Predictor, profile_scores_sql

from .conftest import SYNTH_CUSTOMERS, T

BY_USER = Sources(synthetic.EVENTS_BY_USER, None)
END = dt.datetime(2024, 1, 1)


def test_predict_scores_registry_and_reuse(synth_store):
    store = synth_store
    first = Predictor(store, PredictionsConfig(), BY_USER).predict()
    assert first.as_of == END  # the day after the latest event
    assert not first.problems
    assert first.scored["clv"] == SYNTH_CUSTOMERS
    assert 0 < first.scored["churn"] <= SYNTH_CUSTOMERS  # customers only
    models = {m.model_id: m for m in registry.list_models(store)}
    assert set(models) == {"churn-v1", "clv-v1"}
    churn = registry.get(store, "churn-v1")
    assert churn.accepted and churn.horizon_days == 90 and churn.as_of == END
    assert churn.windows[0] == {"features_before": "2023-10-03", "labels_from": "2023-10-03",
                                "labels_to": "2024-01-01"}
    assert len(churn.windows) == 4 and churn.n_train > 0
    assert {"recency", "bgnbd"} <= set(churn.metrics["baselines"])
    assert churn.metrics["model"]["roc_auc"] > 0.6
    assert churn.importance[0]["gain_share"] > 0 and "churn" in churn.artifact
    clv = registry.get(store, "clv-v1")
    assert {"last_period_spend", "bgnbd_gg"} <= set(clv.metrics["baselines"])
    assert set(clv.importance) == {"buy", "spend"}

    rows = store.execute(f"SELECT * FROM ({profile_scores_sql(store)}) ORDER BY profile_id").df()
    assert len(rows) == SYNTH_CUSTOMERS
    assert rows["churn_probability"].between(0, 1).all()
    assert (rows["predicted_clv"] >= 0).all()
    drivers = orjson.loads(rows["churn_drivers"].iloc[0])
    assert 1 <= len(drivers) <= 3
    assert {"feature", "value", "contribution", "effect", "text"} <= set(drivers[0])
    assert drivers[0]["effect"] in ("raises churn risk", "lowers churn risk")
    assert orjson.loads(rows["clv_drivers"].iloc[0])[0]["effect"].endswith("expected value")

    again = Predictor(store, PredictionsConfig(), BY_USER).predict()
    assert again.notes["churn"].startswith("reused churn-v1")
    retrained = Predictor(store, PredictionsConfig(), BY_USER).predict(retrain=True, kinds=("churn",))
    assert retrained.models["churn"].model_id == "churn-v2"
    assert store.scalar("SELECT count(*) FROM predict_runs") == 3


def test_backtest_beats_baselines(synth_store):
    report = Predictor(synth_store, PredictionsConfig(clv={"horizon_days": 180}), BY_USER).evaluate(T)
    assert not report["problems"]
    churn = report["results"]["churn"]["metrics"]
    assert churn["model"]["roc_auc"] > churn["recency"]["roc_auc"]
    assert churn["model"]["roc_auc"] > churn["bgnbd"]["roc_auc"]
    assert churn["model"]["brier"] < churn["recency"]["brier"]
    clv = report["results"]["clv"]["metrics"]
    assert clv["model"]["normalized_gini"] > clv["last_period_spend"]["normalized_gini"]
    assert abs(clv["model"]["total_error"]) < 0.3
    saved = registry.get(synth_store, report["results"]["churn"]["model_id"])
    assert saved.metrics["backtest"]["as_of"] == "2023-01-01"


def test_insufficient_history_is_explained(synth_store):
    p = Predictor(synth_store, PredictionsConfig(), BY_USER)
    result = p.predict(as_of=dt.datetime(2021, 3, 1))
    assert not result.models
    msg = result.problems["churn"]
    first = synth_store.scalar("SELECT min(timestamp) FROM events WHERE event = 'Order Completed'")
    assert "churn (horizon 90 days)" in msg and f"first purchase is on {first:%Y-%m-%d}" in msg
    suggested = (first + dt.timedelta(days=180)).date() + dt.timedelta(days=1)
    assert f"Use a later --as-of (at least {suggested})" in msg
    assert "clv (horizon 365 days)" in result.problems["clv"]


def test_wrong_purchase_event_is_explained(synth_store):
    p = Predictor(synth_store, PredictionsConfig(purchase_events=["Purchase"]), BY_USER)
    result = p.predict(kinds=("churn",))
    assert "no purchase events before 2024-01-01 (events named 'Purchase')" in result.problems["churn"]
    assert "predictions.purchase_events" in result.problems["churn"]


def test_too_few_classes_is_explained(synth_store):
    p = Predictor(synth_store, PredictionsConfig(min_class_count=100_000), BY_USER)
    result = p.predict(kinds=("churn",))
    msg = result.problems["churn"]
    assert "not enough data in the training window(s) 2023-10-03..2024-01-01" in msg
    assert "need at least 100000" in msg and "predictions.min_class_count" in msg
    assert registry.list_models(synth_store) == []


def test_backtest_needs_the_future_window(synth_store):
    report = Predictor(synth_store, PredictionsConfig(), BY_USER).evaluate(dt.datetime(2023, 12, 1))
    assert not report["results"]
    assert "needs data until 2024-02-29" in report["problems"]["churn"]
    assert "Use --as-of 2023-10-03 or earlier" in report["problems"]["churn"]


def test_rejected_model_falls_back_to_the_last_accepted(synth_store):
    store = synth_store
    p = Predictor(store, PredictionsConfig(), BY_USER)
    ok = p.predict(as_of=T, kinds=("churn",))
    assert ok.models["churn"].model_id == "churn-v1"
    store.execute("UPDATE predict_models SET status = 'rejected', reason = 'test' WHERE model_id = 'churn-v1'")
    with pytest.raises(InsufficientData, match="no earlier model was accepted"):
        p.prepare(T)
        p.model_for("churn", T)
    store.execute("UPDATE predict_models SET status = 'accepted', reason = NULL")
    later = p.predict(as_of=END, kinds=("churn",))
    assert later.models["churn"].model_id == "churn-v2"
    store.execute("UPDATE predict_models SET status = 'rejected', reason = 'worse' WHERE model_id = 'churn-v2'")
    p.prepare(END)
    record, note = p.model_for("churn", END)
    assert record.model_id == "churn-v1" and "rejected (worse); scoring with churn-v1" in note
