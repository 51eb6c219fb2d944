"""Tables of the predictions module (migrations 600-699).

- `predict_models`: the model registry. One row per trained model: kind (churn, clv, ...),
  version, the as-of date and training windows, feature names, validation metrics beside
  the baselines, global importance, the data fingerprint, accepted or rejected (and why),
  and the model itself (LightGBM text + baseline parameters as JSON).
- `predict_runs`: one row per scoring run (`panorama predict`).
- `predict_scores`: the latest score of each prediction per profile, long format so later
  predictions (issue 8: propensities, next best offer, channel, ...) add rows, not columns:
  `value` (a probability or an amount), `label` (a class or a name), `details` (JSON) and
  `drivers` (JSON list of {feature, value, contribution, effect, text}).
"""

from __future__ import annotations

from panorama.store.schema import Migration

_V600 = """
CREATE TABLE predict_models (
    model_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    as_of TIMESTAMP NOT NULL,
    horizon_days INTEGER NOT NULL,
    windows JSON,
    features JSON,
    feature_set VARCHAR,
    params JSON,
    metrics JSON,
    importance JSON,
    data_fingerprint VARCHAR,
    config_hash VARCHAR,
    n_train BIGINT,
    status VARCHAR NOT NULL,
    reason VARCHAR,
    train_seconds DOUBLE,
    artifact JSON
);

CREATE SEQUENCE predict_run_ids START 1;
CREATE TABLE predict_runs (
    run_id BIGINT PRIMARY KEY DEFAULT nextval('predict_run_ids'),
    as_of TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    models JSON,
    profiles BIGINT,
    seconds DOUBLE
);

CREATE TABLE predict_scores (
    prediction VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    as_of TIMESTAMP NOT NULL,
    run_id BIGINT NOT NULL,
    model_id VARCHAR,
    value DOUBLE,
    label VARCHAR,
    details JSON,
    drivers JSON
);
"""

MIGRATIONS: list[Migration] = [Migration(600, "predictions: model registry, runs, scores", _V600)]
