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

import os

# LightGBM's OpenMP threads spin while they wait; on a shared 2-core machine under load that made
# a 2-thread fit 7x slower than a 1-thread one (53 s vs 7 s for 100 rounds on 200k rows at load
# average 9; 8 s with passive waiting). Must be set before lightgbm (libgomp) is loaded.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
