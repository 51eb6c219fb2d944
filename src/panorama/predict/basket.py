"""Next purchase (top-k products and categories) and cross-sell / upsell propensity.

Next purchase is TIFU-KNN style (Hu et al., SIGIR 2020), with item-item neighbours instead of
user-user: a customer's *personal* vector is the time-decayed frequency of each item in their
past baskets (a basket is one profile's purchased lines of one day; weight 0.5 ** (age /
half_life)), normalised to sum 1; the *neighbour* part spreads it over items that co-occur in
customers' histories (cosine of the customer x item incidence). Score = (1 - a) * personal +
a * personal . S. Customers without history get the items' recent popularity. The blend weight
a and the half-life are chosen on the most recent past window (labels ending by the as-of
date), whichever gives the best recall@10.

Cross-sell / upsell: LightGBM (the churn/CLV features plus the category affinities above) on
"buys in a category new to them in the horizon" and "buys again in a category they already
buy"; the baseline is category popularity.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from panorama.predict.features import BY_NAME, Feature, ts_literal

CHUNK = 50_000


@dataclass
class Vocabulary:
    names: np.ndarray  # item names, index = column
    popularity: np.ndarray  # share of the recent purchases (sums to 1)


def history(
    cur, cutoff: dt.datetime, column: str, half_life: float, lookback_days: int = 730
) -> pd.DataFrame:
    """(profile_id, item, weight, last) per profile and item bought before `cutoff`: the time-decayed
    number of baskets (days) with the item, and whether it was in the last basket."""
    c = ts_literal(cutoff)
    return cur.execute(f"""
        WITH b AS (
            SELECT DISTINCT profile_id, CAST(ts AS DATE) AS day, {column} AS item
            FROM _predict_events
            WHERE {column} IS NOT NULL AND product_id IS NOT NULL AND ts < {c}
              AND ts >= {c} - INTERVAL {int(lookback_days)} DAY
        ), l AS (SELECT profile_id, max(day) AS last_day FROM b GROUP BY profile_id)
        SELECT b.profile_id, b.item,
               sum(pow(0.5, (CAST({c} AS DATE) - b.day) / {float(half_life)})) AS weight,
               max(CASE WHEN b.day = l.last_day THEN 1 ELSE 0 END) AS last
        FROM b JOIN l USING (profile_id)
        GROUP BY b.profile_id, b.item
    """).df()


def future(cur, start: dt.datetime, days: int, column: str) -> pd.DataFrame:
    """(profile_id, item) bought in [start, start + days)."""
    end = start + dt.timedelta(days=days)
    return cur.execute(f"""
        SELECT DISTINCT profile_id, {column} AS item FROM _predict_events
        WHERE {column} IS NOT NULL AND product_id IS NOT NULL
          AND ts >= {ts_literal(start)} AND ts < {ts_literal(end)}
    """).df()


class NextPurchase:
    """Scores every item for every profile; fitted on the history before a cutoff."""

    def __init__(
        self,
        hist: pd.DataFrame,
        profiles: np.ndarray,
        alpha: float,
        vocab: Vocabulary | None = None,
    ):
        self.alpha = alpha
        if vocab is None:
            counts = hist.groupby("item")["weight"].sum()
            vocab = Vocabulary(
                counts.index.to_numpy(dtype=object), (counts / counts.sum()).to_numpy()
            )
        self.vocab = vocab
        self.profiles = profiles
        col = pd.Index(vocab.names).get_indexer(hist["item"])
        row = pd.Index(profiles).get_indexer(hist["profile_id"])
        ok = (col >= 0) & (row >= 0)
        shape = (len(profiles), len(vocab.names))
        w = hist["weight"].to_numpy(float)[ok]
        self.P = sparse.csr_matrix((w, (row[ok], col[ok])), shape=shape, dtype=np.float64)
        self.last = sparse.csr_matrix(
            (hist["last"].to_numpy(float)[ok], (row[ok], col[ok])), shape=shape
        )
        # item-item cosine of the customer x item incidence
        B = (self.P > 0).astype(np.float32)
        C = (B.T @ B).toarray()
        n = np.sqrt(np.maximum(np.diag(C), 1.0))
        S = C / n[:, None] / n[None, :]
        self.S = S / np.maximum(S.sum(axis=1, keepdims=True), 1e-12)
        sums = np.asarray(self.P.sum(axis=1)).ravel()
        self.has_history = sums > 0
        self.Pn = sparse.diags(1.0 / np.maximum(sums, 1e-12)) @ self.P

    def scores(self, rows: slice) -> np.ndarray:
        p = self.Pn[rows].toarray()
        s = (1 - self.alpha) * p + self.alpha * (p @ self.S)
        empty = ~self.has_history[rows]
        s[empty] = self.vocab.popularity
        return s

    def top_k(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(profiles x k) item indices, best first, and their scores."""
        n, m = len(self.profiles), len(self.vocab.names)
        k = min(k, m)
        idx = np.zeros((n, k), dtype=np.int32)
        val = np.zeros((n, k), dtype=np.float32)
        if k == 0:
            return idx, val
        for start in range(0, n, CHUNK):
            s = (
                self.scores(slice(start, start + CHUNK)) + 1e-9 * self.vocab.popularity
            )  # ties: popularity
            part = (
                np.argpartition(-s, k - 1, axis=1)[:, :k]
                if k < m
                else np.tile(np.arange(m), (len(s), 1))
            )
            ps = np.take_along_axis(s, part, axis=1)
            order = np.argsort(-ps, axis=1, kind="stable")
            idx[start : start + len(s)] = np.take_along_axis(part, order, axis=1)
            val[start : start + len(s)] = np.take_along_axis(ps, order, axis=1)
        return idx, val

    def popular_top_k(self, k: int) -> np.ndarray:
        order = np.argsort(-self.vocab.popularity, kind="stable")[:k]
        return np.tile(order, (len(self.profiles), 1))

    def last_basket_top_k(self, k: int) -> np.ndarray:
        """The last basket's items (most popular first), padded with the most popular others."""
        m = len(self.vocab.names)
        k = min(k, m)
        out = np.zeros((len(self.profiles), k), dtype=np.int32)
        pop_rank = np.argsort(np.argsort(-self.vocab.popularity, kind="stable"), kind="stable")
        for start in range(0, len(self.profiles), CHUNK):
            lb = self.last[start : start + CHUNK].toarray()
            key = -(lb * 2 * m) + pop_rank  # last-basket items first, each block by popularity
            out[start : start + len(lb)] = np.argsort(key, axis=1, kind="stable")[:, :k]
        return out


def ranking_metrics(top: np.ndarray, truth: sparse.csr_matrix, k: int = 10) -> dict:
    """recall@k (|top-k ∩ bought| / |bought|) and NDCG@k over the rows with at least one item bought."""
    top = top[:, :k]
    n_true = np.asarray(truth.sum(axis=1)).ravel()
    rows = np.flatnonzero(n_true > 0)
    if not len(rows):
        return {"customers": 0, f"recall@{k}": None, f"ndcg@{k}": None, f"hit@{k}": None}
    hits = np.zeros((len(rows), top.shape[1]))
    for start in range(0, len(rows), CHUNK):
        r = rows[start : start + CHUNK]
        t = truth[r].toarray()
        hits[start : start + len(r)] = np.take_along_axis(t, top[r], axis=1) > 0
    disc = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    dcg = (hits * disc).sum(axis=1)
    ideal = np.array([disc[: min(int(c), top.shape[1])].sum() for c in n_true[rows]])
    recall = hits.sum(axis=1) / n_true[rows]
    return {
        "customers": int(len(rows)),
        f"recall@{k}": float(recall.mean()),
        f"ndcg@{k}": float((dcg / ideal).mean()),
        f"hit@{k}": float((hits.sum(axis=1) > 0).mean()),
    }


def truth_matrix(fut: pd.DataFrame, profiles: np.ndarray, vocab: Vocabulary) -> sparse.csr_matrix:
    col = pd.Index(vocab.names).get_indexer(fut["item"])
    row = pd.Index(profiles).get_indexer(fut["profile_id"])
    ok = (col >= 0) & (row >= 0)
    return sparse.csr_matrix(
        (np.ones(ok.sum()), (row[ok], col[ok])), shape=(len(profiles), len(vocab.names))
    )


# --- cross-sell / upsell features ------------------------------------------------------------------

CATEGORY_FEATURES = (
    Feature(
        "new_category_affinity",
        "highest next-purchase score among categories not bought yet",
        lambda v: (
            "no affinity to a new category"
            if not v
            else f"affinity {v:.2f} to a category new to them"
        ),
    ),
    Feature(
        "new_category_popularity",
        "popularity share of the categories not bought yet",
        lambda v: f"{100 * float(v or 0):.0f}% of purchases are in categories new to them",
    ),
    Feature(
        "owned_category_popularity",
        "popularity share of the categories already bought",
        lambda v: f"their categories take {100 * float(v or 0):.0f}% of all purchases",
    ),
)
CATEGORY_FEATURE_NAMES = tuple(f.name for f in CATEGORY_FEATURES)
for _f in CATEGORY_FEATURES:
    BY_NAME.setdefault(_f.name, _f)


def category_frame(
    model: NextPurchase, fut: pd.DataFrame | None = None, top_new: int = 3
) -> pd.DataFrame:
    """Per profile: category affinity features, the most likely new categories and (with `fut`)
    the labels bought_new / bought_owned."""
    owned = (model.P > 0).toarray()
    s = model.scores(slice(0, len(model.profiles)))
    pop = model.vocab.popularity
    new_s = np.where(owned, -1.0, s)
    order = np.argsort(-new_s, axis=1, kind="stable")[:, :top_new]
    names = model.vocab.names
    df = pd.DataFrame(
        {
            "profile_id": model.profiles,
            "new_category_affinity": np.where(owned.all(axis=1), 0.0, new_s.max(axis=1)).astype(
                "float32"
            ),
            "new_category_popularity": (~owned * pop).sum(axis=1).astype("float32"),
            "owned_category_popularity": (owned * pop).sum(axis=1).astype("float32"),
            "has_categories": owned.any(axis=1),
        }
    )
    df["likely_new_categories"] = [
        [str(names[j]) for j in row if not owned[i, j]] for i, row in enumerate(order)
    ]
    if fut is not None:
        t = truth_matrix(fut, model.profiles, model.vocab).toarray() > 0
        df["bought_new"] = (t & ~owned).any(axis=1).astype(float)
        df["bought_owned"] = (t & owned).any(axis=1).astype(float)
        df["_new_truth"] = [list(np.flatnonzero(t[i] & ~owned[i])) for i in range(len(t))]
        df["_top_new"] = list(order)
    return df
