"""Predictions (docs/predictions.md): churn risk, CLV and subscription churn, with their drivers.

features   point-in-time features as of a cutoff, in DuckDB SQL (no data at or after the cutoff)
btyd       BG/NBD + Gamma-Gamma baselines (maximum likelihood, scipy)
models     LightGBM churn and two-part CLV, the recency baseline, per-profile drivers
metrics    ROC/PR AUC, Brier, calibration; Spearman, normalized Gini, decile MAPE, total error
registry   versioned models (windows, features, metrics, data fingerprint, accepted or not)
service    Predictor: train / reuse, score, backtest; profile_scores_sql for exports
commands   `panorama predict`, `panorama evaluate predictions`, `panorama models`
synthetic  synthetic customers written with SQL (tests, bench/predict.py)
"""
