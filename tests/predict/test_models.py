"""Drivers: TreeSHAP and path attribution both add up to the model's raw score and mostly agree."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd

from panorama.predict import models as M


def _data(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"recency_days": rng.uniform(0, 400, n), "tickets_30d": rng.poisson(0.5, n).astype(float),
                      "last_nps": np.where(rng.random(n) < 0.5, np.nan, rng.integers(0, 11, n))})
    logit = (X.recency_days - 150) / 60 + 0.8 * X.tickets_30d - 0.2 * X.last_nps.fillna(7) + 1
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return X, y


def test_contributions_add_up_and_agree():
    X, y = _data()
    b = M.fit_booster("binary", X, y, threads=1, rounds=60)
    raw = b.predict(X, raw_score=True)
    shap = M.contributions(b, X, method="shap")
    path = M.contributions(b, X, method="path")
    assert np.allclose(shap.sum(axis=1), raw) and np.allclose(path.sum(axis=1), raw)
    top_shap = np.abs(shap[:, :-1]).argmax(axis=1)
    top_path = np.abs(path[:, :-1]).argmax(axis=1)
    assert (top_shap == top_path).mean() > 0.8


def test_driver_sentences():
    X, y = _data()
    b = M.fit_booster("binary", X, y, threads=1, rounds=60)
    old = X.iloc[[int(np.argmax(X.recency_days.to_numpy()))]]
    drivers = orjson.loads(M.churn_drivers(b, old)[0])
    first = drivers[0]
    assert first["feature"] == "recency_days" and first["effect"] == "raises churn risk"
    assert first["text"] == f"no order for {old.recency_days.iloc[0]:.0f} days"
