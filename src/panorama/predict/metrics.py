"""Accuracy metrics for churn (probabilities) and CLV (amounts), each with its formula.

Churn: ROC AUC, PR AUC (average precision), Brier score, and calibration in ten equal-count
bins of the predicted probability. CLV: Spearman rank correlation, normalized Gini (Gini of the
actual value ordered by the prediction / Gini ordered by the actual value, as in Wang et al.
2019, "A deep probabilistic model for customer lifetime value prediction"), decile MAPE
(customers in ten deciles of the prediction; per decile |sum predicted - sum actual| / sum
actual, averaged) and total-revenue error ((sum predicted - sum actual) / sum actual).
Ties in a prediction (e.g. many zero "last period's spend") are broken at random with a fixed
seed, so a constant prediction scores like a random order, not like a lucky one.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def _tiebreak_order(pred: np.ndarray, descending: bool = True, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random(len(pred))
    key = -pred if descending else pred
    return np.lexsort((noise, key))


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    order = _tiebreak_order(p, descending=False)
    out = []
    for chunk in np.array_split(order, bins):
        if len(chunk):
            out.append({"n": int(len(chunk)), "predicted": float(p[chunk].mean()),
                        "observed": float(y[chunk].mean())})
    return out


def churn_metrics(y, p) -> dict:
    """y = 1 when the customer did not buy in the horizon; p = predicted probability of that."""
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    both = 0 < y.sum() < len(y)
    cal = calibration(y, p)
    return {
        "n": int(len(y)),
        "base_rate": float(y.mean()) if len(y) else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "brier": float(brier_score_loss(y, p)) if len(y) else None,
        # expected calibration error: mean |predicted - observed| over the bins, weighted by size
        "ece": float(sum(b["n"] * abs(b["predicted"] - b["observed"]) for b in cal) / max(len(y), 1)),
        "calibration": cal,
    }


def _gini(actual: np.ndarray, order: np.ndarray) -> float:
    a = actual[order]
    total = a.sum()
    if total <= 0:
        return 0.0
    n = len(a)
    return float(np.cumsum(a).sum() / total / n - (n + 1) / (2 * n))


def normalized_gini(actual, pred) -> float | None:
    actual = np.asarray(actual, dtype=float)
    pred = np.asarray(pred, dtype=float)
    best = _gini(actual, _tiebreak_order(actual))
    return _gini(actual, _tiebreak_order(pred)) / best if best > 0 else None


def decile_mape(actual, pred, bins: int = 10) -> float | None:
    actual = np.asarray(actual, dtype=float)
    pred = np.asarray(pred, dtype=float)
    errors = []
    for chunk in np.array_split(_tiebreak_order(pred), bins):
        a = actual[chunk].sum()
        if len(chunk) and a > 0:
            errors.append(abs(pred[chunk].sum() - a) / a)
    return float(np.mean(errors)) if errors else None


def clv_metrics(actual, pred) -> dict:
    actual = np.asarray(actual, dtype=float)
    pred = np.asarray(pred, dtype=float)
    total = actual.sum()
    rho = stats.spearmanr(actual, pred).statistic if len(actual) > 2 and np.ptp(pred) > 0 else None
    return {
        "n": int(len(actual)),
        "actual_total": float(total),
        "predicted_total": float(pred.sum()),
        "spearman": None if rho is None or rho != rho else float(rho),
        "normalized_gini": normalized_gini(actual, pred),
        "decile_mape": decile_mape(actual, pred),
        "total_error": float((pred.sum() - total) / total) if total > 0 else None,
    }
