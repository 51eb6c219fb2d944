"""Models with `engine: spark`: train on the driver (on a sample), score on the executors.

Training needs the whole training set in one process (LightGBM), and a sample of profiles is
enough to learn from; scoring is per row and runs where the rows are. The booster travels to
the executors as its model text (a few hundred KB) and each partition is scored with
`mapInPandas` — the same `Booster.predict` as on the driver, so the scores are identical.

    sample = features_df.sample(fraction, seed=1).toPandas()          # to the driver
    booster = lightgbm.train(params, lightgbm.Dataset(sample[cols], sample[label]))
    scores = score_on_executors(features_df, booster.model_to_string(), cols)  # Spark DataFrame
"""

from __future__ import annotations

from collections.abc import Iterator


def driver_sample(df, max_rows: int, seed: int = 1):
    """At most about `max_rows` rows of a Spark DataFrame, as pandas on the driver."""
    total = df.count()
    if total <= max_rows:
        return df.toPandas()
    return df.sample(fraction=max_rows / total, seed=seed).toPandas()


def score_on_executors(df, model_text: str, features: list[str], key: str = "profile_id",
                       column: str = "score", contributions: bool = False):  # fmt: skip
    """`key` and the model's prediction (`column`) for every row of `df`, computed in the
    executors' Python workers. With `contributions`, also one `<column>_<feature>` column per
    feature: LightGBM's per-row SHAP values (the prediction's drivers)."""
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    fields = [StructField(key, StringType()), StructField(column, DoubleType())]
    if contributions:
        fields += [StructField(f"{column}_{f}", DoubleType()) for f in features]

    def score(batches: Iterator) -> Iterator:
        import lightgbm as lgb
        import numpy as np
        import pandas as pd

        booster = lgb.Booster(model_str=model_text)  # once per partition
        for batch in batches:
            x = batch[features].astype("float64")
            out = pd.DataFrame({key: batch[key].astype(str), column: booster.predict(x)})
            if contributions:
                shap = np.asarray(booster.predict(x, pred_contrib=True))
                for i, f in enumerate(features):
                    out[f"{column}_{f}"] = shap[:, i]
            yield out

    return df.select(key, *features).mapInPandas(score, StructType(fields))
