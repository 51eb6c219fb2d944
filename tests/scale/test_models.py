"""Models with engine: spark — trained on the driver on a sample, scored on the executors
(mapInPandas with the LightGBM model text): the scores and drivers equal the driver's own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = [
    pytest.mark.xdist_group("scale_spark"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


def test_trained_on_a_driver_sample_scored_on_executors(spark):
    import lightgbm as lgb

    from panorama.scale.models import driver_sample, score_on_executors

    rng = np.random.default_rng(7)
    n = 4000
    frame = pd.DataFrame({
        "profile_id": [f"p{i}" for i in range(n)],
        "recency_days": rng.integers(0, 400, n).astype(float),
        "orders": rng.poisson(2, n).astype(float),
        "revenue": np.where(rng.random(n) < 0.1, np.nan, rng.gamma(2, 50, n)),
    })  # fmt: skip
    churn = 1 / (1 + np.exp(-(frame.recency_days / 100 - frame.orders / 2)))
    frame["churned"] = (rng.random(n) < churn).astype(int)
    df = spark.createDataFrame(frame).repartition(3)
    features = ["recency_days", "orders", "revenue"]

    sample = driver_sample(df, 1500)
    assert 1000 < len(sample) < 2000
    params = {"objective": "binary", "num_threads": 1, "verbose": -1, "min_data_in_leaf": 20}
    booster = lgb.train(
        params, lgb.Dataset(sample[features], sample["churned"]), num_boost_round=30
    )

    scored = score_on_executors(df, booster.model_to_string(), features, contributions=True)
    assert scored.rdd.getNumPartitions() == 3  # scored where the rows are
    out = scored.toPandas().set_index("profile_id").loc[frame.profile_id]
    expected = booster.predict(frame[features])
    np.testing.assert_allclose(out["score"].to_numpy(), expected, rtol=1e-12)
    shap = booster.predict(frame[features], pred_contrib=True)
    for i, f in enumerate(features):
        np.testing.assert_allclose(out[f"score_{f}"].to_numpy(), shap[:, i], rtol=1e-12, atol=1e-12)
    # the model learned something: churners score higher
    assert (
        out["score"][frame.churned.to_numpy() == 1].mean()
        > out["score"][frame.churned.to_numpy() == 0].mean()
    )
