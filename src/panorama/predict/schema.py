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

# One row per scored profile, a column per prediction (drivers and details as JSON text).
# Light to import: the segment catalog exposes these columns before the first `panorama
# predict` (NULL until then), so a segment over predictions is valid from the start.
PROFILE_SCORES_SQL = """
        SELECT profile_id,
               max(value) FILTER (prediction = 'churn') AS churn_probability,
               CAST(any_value(drivers) FILTER (prediction = 'churn') AS VARCHAR) AS churn_drivers,
               max(value) FILTER (prediction = 'clv') AS predicted_clv,
               CAST(any_value(drivers) FILTER (prediction = 'clv') AS VARCHAR) AS clv_drivers,
               max(value) FILTER (prediction = 'subscription') AS subscription_churn_probability,
               CAST(any_value(drivers) FILTER (prediction = 'subscription') AS VARCHAR)
                   AS subscription_churn_drivers,
               max(value) FILTER (prediction = 'upsell') AS upsell_probability,
               CAST(any_value(drivers) FILTER (prediction = 'upsell') AS VARCHAR) AS upsell_drivers,
               max(value) FILTER (prediction = 'cross_sell') AS cross_sell_probability,
               CAST(any_value(details->'likely_new_categories') FILTER (prediction = 'cross_sell') AS VARCHAR)
                   AS likely_new_categories,
               CAST(any_value(drivers) FILTER (prediction = 'cross_sell') AS VARCHAR) AS cross_sell_drivers,
               CAST(any_value(details->'categories') FILTER (prediction = 'next_purchase') AS VARCHAR)
                   AS next_purchase_categories,
               CAST(any_value(details->'products') FILTER (prediction = 'next_purchase') AS VARCHAR)
                   AS next_purchase_products,
               CAST(any_value(drivers) FILTER (prediction = 'next_purchase') AS VARCHAR) AS next_purchase_drivers,
               any_value(label) FILTER (prediction = 'next_best_offer') AS next_best_offer,
               max(value) FILTER (prediction = 'next_best_offer') AS next_best_offer_value,
               max(CAST(details->>'probability' AS DOUBLE)) FILTER (prediction = 'next_best_offer')
                   AS next_best_offer_probability,
               CAST(any_value(drivers) FILTER (prediction = 'next_best_offer') AS VARCHAR) AS next_best_offer_drivers,
               any_value(label) FILTER (prediction = 'preferred_channel') AS preferred_channel,
               CAST(any_value(details->'channels') FILTER (prediction = 'preferred_channel') AS VARCHAR)
                   AS channel_scores,
               CAST(any_value(drivers) FILTER (prediction = 'preferred_channel') AS VARCHAR)
                   AS preferred_channel_drivers,
               max(value) FILTER (prediction = 'preferred_discount') AS preferred_discount,
               CAST(any_value(drivers) FILTER (prediction = 'preferred_discount') AS VARCHAR)
                   AS preferred_discount_drivers,
               max(value) FILTER (prediction = 'nps') AS predicted_nps,
               any_value(label) FILTER (prediction = 'nps') AS nps_class,
               any_value(details->>'source') FILTER (prediction = 'nps') AS nps_source,
               CAST(any_value(drivers) FILTER (prediction = 'nps') AS VARCHAR) AS nps_drivers,
               max(as_of) AS predictions_as_of
        FROM predict_scores GROUP BY profile_id
"""

MIGRATIONS: list[Migration] = [Migration(600, "predictions: model registry, runs, scores", _V600)]
