"""LightGBM models for churn and CLV, the recency baseline, and per-customer drivers.

- Churn: binary LightGBM on "no purchase in the horizon" (customers only).
- CLV: a two-part (hurdle) model for the zero-inflated target: P(buys in the horizon) from a
  binary LightGBM (all profiles) times E[revenue | buys] from a LightGBM with the gamma
  objective (log link) on the buyers. CLV = P x E.
- Drivers: LightGBM's `pred_contrib=True` (TreeSHAP) per profile. TreeSHAP costs about
  1.5 us per row per tree here, i.e. minutes at a million profiles, so above
  `SHAP_BUDGET` rows x trees the drivers come from path attribution instead (Saabas, the
  "treeinterpreter" method: each split on a row's path credits its feature with the change in
  the node value), vectorised with numpy over `pred_leaf`. Both add up exactly to the raw
  score minus the average; path attribution is cheaper but can over-credit splits near leaves. Churn contributions are in
  log-odds. For CLV the contributions are put on one log scale: the spend part is already in
  log(E); the buy part is rescaled from log-odds to log(P) in proportion (the two agree to
  first order), so contributions add up to log(CLV) - log(average CLV) approximately.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd

from panorama.predict.features import sentence

BASE_PARAMS = {
    "learning_rate": 0.15,
    "num_leaves": 15,
    "max_depth": 5,  # TreeSHAP (drivers) costs O(trees x leaves x depth^2) per row
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
    "force_col_wise": True,
}
MAX_ROUNDS = 250
EARLY_STOP = 30
SMALL_ROWS = 100_000


def params(objective: str, threads: int) -> dict:
    extra = {"objective": objective, "num_threads": threads}
    if objective == "binary":
        extra["metric"] = "binary_logloss"
    elif objective == "gamma":
        extra["metric"] = "gamma"
    return {**BASE_PARAMS, **extra}


def fit_booster(objective: str, X: pd.DataFrame, y: np.ndarray, threads: int,
                X_val: pd.DataFrame | None = None, y_val: np.ndarray | None = None,
                rounds: int | None = None) -> lgb.Booster:
    """With validation data: early stopping (best iteration kept). Else `rounds` rounds."""
    # OpenMP threads only pay off on large data; on a busy 2-core machine they spin and slow
    # small fits down by 10x, so small fits run on one thread
    p = params(objective, threads if len(X) >= SMALL_ROWS else 1)
    train = lgb.Dataset(X, label=y, free_raw_data=True)
    if X_val is not None and len(X_val):
        valid = lgb.Dataset(X_val, label=y_val, reference=train)
        return lgb.train(p, train, num_boost_round=MAX_ROUNDS, valid_sets=[valid],
                         callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False)])
    return lgb.train(p, train, num_boost_round=max(int(rounds or 100), 1))


def predict(booster: lgb.Booster, X: pd.DataFrame, threads: int = 2, **kw) -> np.ndarray:
    """Predictions (or `pred_contrib=True` contributions); one thread on small data (see fit_booster)."""
    return booster.predict(X, num_threads=threads if len(X) >= SMALL_ROWS else 1, **kw)


def importance(booster: lgb.Booster) -> list[dict]:
    gain = booster.feature_importance(importance_type="gain")
    split = booster.feature_importance(importance_type="split")
    total = float(gain.sum()) or 1.0
    rows = [{"feature": f, "gain_share": float(g) / total, "splits": int(s)}
            for f, g, s in zip(booster.feature_name(), gain, split, strict=True)]
    return sorted(rows, key=lambda r: -r["gain_share"])


def booster_from(text: str) -> lgb.Booster:
    return lgb.Booster(model_str=text)


@dataclass
class RecencyBaseline:
    """Churn from recency alone: logistic regression on log(1 + days since the last order)."""

    coef: float
    intercept: float

    @classmethod
    def fit(cls, recency_days: np.ndarray, y: np.ndarray) -> RecencyBaseline:
        from sklearn.linear_model import LogisticRegression

        x = np.log1p(np.asarray(recency_days, float)).reshape(-1, 1)
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(x, y)
        return cls(float(lr.coef_[0, 0]), float(lr.intercept_[0]))

    def predict(self, recency_days: np.ndarray) -> np.ndarray:
        z = self.intercept + self.coef * np.log1p(np.asarray(recency_days, float))
        return 1.0 / (1.0 + np.exp(-z))


def _top_drivers(contrib: np.ndarray, X: pd.DataFrame, k: int, positive: str, negative: str) -> list[bytes]:
    """JSON list of the k largest |contributions| per row, each with its sentence."""
    names = list(X.columns)
    values = X.to_numpy(dtype=float)
    n = len(X)
    k = min(k, contrib.shape[1])
    top = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
    rows = np.arange(n)[:, None]
    top_c = contrib[rows, top]
    top_v = values[rows, top]
    out = []
    for i in range(n):
        drivers = []
        for j in range(k):
            c = float(top_c[i, j])
            if c == 0.0:
                continue
            f = names[top[i, j]]
            v = top_v[i, j]
            value = None if v != v else float(v)
            drivers.append({
                "feature": f,
                "value": None if value is None else round(value, 4),
                "contribution": round(c, 4),
                "effect": positive if c > 0 else negative,
                "text": sentence(f, value),
            })
        out.append(orjson.dumps(drivers))
    return out


SHAP_BUDGET = 10_000_000  # rows x trees above which drivers use path attribution


def _path_tables(booster: lgb.Booster) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Per tree: (leaf x depth) split feature (-1 = none) and value change on the way to the leaf."""
    tables = []
    for info in booster.dump_model()["tree_info"]:
        root = info["tree_structure"]
        paths: dict[int, list[tuple[int, float]]] = {}
        stack = [(root, [])]
        while stack:
            node, path = stack.pop()
            if "leaf_index" in node:
                paths[node["leaf_index"]] = path
                continue
            value = node["internal_value"]
            for child in (node["left_child"], node["right_child"]):
                child_value = child.get("leaf_value", child.get("internal_value"))
                stack.append((child, [*path, (node["split_feature"], child_value - value)]))
        depth = max((len(p) for p in paths.values()), default=0) or 1
        feats = np.full((max(paths) + 1, depth), -1, dtype=np.int64)
        deltas = np.zeros((max(paths) + 1, depth))
        for leaf, path in paths.items():
            for d, (f, delta) in enumerate(path):
                feats[leaf, d], deltas[leaf, d] = f, delta
        tables.append((feats, deltas, float(root.get("internal_value", root.get("leaf_value", 0.0)))))
    return tables


def contributions(booster: lgb.Booster, X: pd.DataFrame, threads: int = 2, method: str = "auto") -> np.ndarray:
    """(rows x features + 1) contributions in raw-score space; the last column is the bias."""
    trees = booster.num_trees()
    if method == "shap" or (method == "auto" and len(X) * trees <= SHAP_BUDGET):
        return predict(booster, X, threads, pred_contrib=True)
    leaves = predict(booster, X, threads, pred_leaf=True).reshape(len(X), -1)
    n, nf = len(X), booster.num_feature()
    tables = _path_tables(booster)
    depth = max(t[0].shape[1] for t in tables)
    offsets = np.cumsum([0] + [t[0].shape[0] for t in tables[:-1]])
    feats = np.full((sum(t[0].shape[0] for t in tables), depth), nf, dtype=np.int32)  # nf: no split
    deltas = np.zeros(feats.shape)
    for (f, d, _), o in zip(tables, offsets, strict=True):
        feats[o:o + len(f), :f.shape[1]] = np.where(f >= 0, f, nf)
        deltas[o:o + len(d), :d.shape[1]] = d
    out = np.zeros((n, nf + 1))
    chunk = max(1, 4_000_000 // max(len(tables) * depth, 1))
    for start in range(0, n, chunk):
        glob = leaves[start:start + chunk] + offsets  # (rows, trees) row of the path tables
        m = len(glob)
        cells = (np.arange(m, dtype=np.int32)[:, None, None] * (nf + 1) + feats[glob]).ravel()
        out[start:start + m] = np.bincount(cells, weights=deltas[glob].ravel(),
                                           minlength=m * (nf + 1)).reshape(m, nf + 1)
    out[:, nf] = sum(t[2] for t in tables)
    return out


def churn_drivers(booster: lgb.Booster, X: pd.DataFrame, k: int = 3, threads: int = 2) -> list[bytes]:
    contrib = contributions(booster, X, threads)[:, :-1]
    return _top_drivers(contrib, X, k, "raises churn risk", "lowers churn risk")


def clv_predict(clf: lgb.Booster, reg: lgb.Booster, X: pd.DataFrame,
                threads: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p_buy = predict(clf, X, threads)
    spend = predict(reg, X, threads)
    return p_buy * spend, p_buy, spend


def clv_drivers(clf: lgb.Booster, reg: lgb.Booster, X: pd.DataFrame, p_buy: np.ndarray,
                k: int = 3, threads: int = 2) -> list[bytes]:
    c_clf = contributions(clf, X, threads)
    c_reg = contributions(reg, X, threads)[:, :-1]
    logit = c_clf.sum(axis=1)
    logit0 = c_clf[:, -1]
    p = np.clip(p_buy, 1e-9, 1 - 1e-9)
    p0 = 1.0 / (1.0 + np.exp(-logit0))
    dlogit = logit - logit0
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(np.abs(dlogit) > 1e-6, (np.log(p) - np.log(p0)) / dlogit, 1.0 - p)
    contrib = c_clf[:, :-1] * scale[:, None] + c_reg
    return _top_drivers(contrib, X, k, "raises expected value", "lowers expected value")
