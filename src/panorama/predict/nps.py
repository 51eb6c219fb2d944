"""NPS: predicted score and class for customers who never answered, and the sentiment and topics
of free-text feedback, offline.

- Score: LightGBM regression of each respondent's latest NPS answer (0-10) on the point-in-time
  features (without `last_nps`, the answer itself), applied to everyone who never answered.
  Class: promoter (>= 9), passive (7-8), detractor (<= 6) of the predicted score.
- Text: a classical model that needs no download: TF-IDF (words and bigrams) + logistic
  regression, trained on the comments of promoters (positive) and detractors (negative) --
  the score is the label, so no annotation is needed; passives' comments are scored by it.
  Topics: NMF on the TF-IDF matrix, each topic named by its top words.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from panorama.predict import models as M
from panorama.predict.features import FEATURE_NAMES, ts_literal

NPS_FEATURES = tuple(f for f in FEATURE_NAMES if f != "last_nps")


def nps_class(score: np.ndarray) -> np.ndarray:
    s = np.asarray(score, float)
    return np.where(s >= 9, "promoter", np.where(s >= 7, "passive", "detractor"))


def answers(cur, events_sql: str, cutoff: dt.datetime) -> pd.DataFrame:
    """(profile_id, ts, score, comment) of NPS answers before `cutoff`."""
    return cur.execute(f"""
        SELECT profile_id, message_id, "timestamp" AS ts, value AS score,
               nullif(trim(json_extract_string(properties, '$.comment')), '') AS comment
        FROM ({events_sql})
        WHERE "timestamp" < {ts_literal(cutoff)} AND value BETWEEN 0 AND 10
          AND regexp_matches(lower(event), '(nps|net promoter)')
    """).df()


def fit_score(feats: pd.DataFrame, ans: pd.DataFrame, threads: int):
    last = ans.sort_values("ts").drop_duplicates("profile_id", keep="last")[["profile_id", "score"]]
    df = feats.merge(last, on="profile_id", how="inner")
    if len(df) < 100:
        raise ValueError(f"{len(df)} profiles answered an NPS survey; need at least 100")
    rng = np.random.default_rng(3)
    va = rng.random(len(df)) < 0.25
    X, y = df[list(NPS_FEATURES)], df["score"].to_numpy(float)
    b = M.fit_booster("regression", X[~va], y[~va], threads, X[va], y[va])
    rounds = max(int((b.best_iteration or b.num_trees()) * 1.25), 5)
    return M.fit_booster("regression", X, y, threads, rounds=rounds)


class TextModel:
    """Sentiment (P(positive)) and NMF topics of short feedback texts."""

    def __init__(self, texts: list[str], scores: np.ndarray, topics: int = 8, seed: int = 0):
        from sklearn.decomposition import NMF
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vec = TfidfVectorizer(
            ngram_range=(1, 2),
            min_df=2,
            max_features=20000,
            sublinear_tf=True,
            stop_words="english",
        )
        Xt = self.vec.fit_transform(texts)
        label = np.where(scores >= 9, 1, np.where(scores <= 6, 0, -1))
        keep = label >= 0
        if len(set(label[keep])) < 2:
            raise ValueError("sentiment needs comments from both promoters and detractors")
        self.clf = LogisticRegression(C=4.0, max_iter=1000).fit(Xt[keep], label[keep])
        k = max(1, min(topics, Xt.shape[1] - 1, Xt.shape[0] - 1))
        self.nmf = NMF(n_components=k, random_state=seed, init="nndsvda", max_iter=300).fit(Xt)
        words = np.array(self.vec.get_feature_names_out())
        self.topic_names = [
            " / ".join(words[np.argsort(-comp)[:3]]) for comp in self.nmf.components_
        ]

    def sentiment(self, texts: list[str]) -> np.ndarray:
        return self.clf.predict_proba(self.vec.transform(texts))[:, 1]

    def topics(self, texts: list[str]) -> list[str]:
        w = self.nmf.transform(self.vec.transform(texts))
        best = w.argmax(axis=1)
        return [self.topic_names[b] if w[i, b] > 0 else "" for i, b in enumerate(best)]
