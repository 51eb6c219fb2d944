"""Subscription churn: trained only when the log has subscription events; scores active subscribers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from panorama.config import PredictionsConfig
from panorama.predict import synthetic
from panorama.predict.features import Sources
from panorama.predict.service import Predictor, profile_scores_sql
from panorama.store import open_store

START = dt.datetime(2022, 1, 1)


def _subscribers(store, n=2000, seed=4):
    """Subscribers whose (latent) satisfaction sets when they cancel, their tickets and email opens."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        user = f"s{i}"
        sat = rng.random()
        start = START + dt.timedelta(days=float(rng.uniform(0, 400)))
        cancel = start + dt.timedelta(days=float(rng.exponential(60 + 500 * sat ** 2)))
        rows.append((user, "Subscription Started", start, None))
        renew = start + dt.timedelta(days=30)
        while renew < min(cancel, START + dt.timedelta(days=730)):
            rows.append((user, "Subscription Renewed", renew, None))
            renew += dt.timedelta(days=30)
        if cancel < START + dt.timedelta(days=730):
            rows.append((user, "Subscription Cancelled", cancel, None))
        for _ in range(rng.poisson(4 * (1 - sat) ** 2 * 2)):
            t = start + (min(cancel, START + dt.timedelta(days=729)) - start) * float(rng.random())
            rows.append((user, "Ticket Opened", t, float(rng.integers(1, 3))))
        if rng.random() < 0.7:  # leavers often complain shortly before they cancel
            rows.append((user, "Ticket Opened", cancel - dt.timedelta(days=float(rng.uniform(5, 40))), 1.0))
        month = start
        while month < START + dt.timedelta(days=730):
            rows.append((user, "Email Sent", month, None))
            # and stop reading the emails a couple of months before
            if month < cancel - dt.timedelta(days=60) and rng.random() < 0.1 + 0.5 * sat:
                rows.append((user, "Email Opened", month + dt.timedelta(hours=5), None))
            month += dt.timedelta(days=30)
    df = pd.DataFrame(rows, columns=["user_id", "event", "ts", "value"])
    df["message_id"] = [f"subs:{i}" for i in range(len(df))]
    store.cursor().register("_subs", df)
    store.execute("""INSERT INTO events (message_id, type, event, source, user_id, timestamp, received_at, value)
                     SELECT message_id, 'track', event, 'subs', user_id, ts, ts, value FROM _subs""")


def test_subscription_churn(tmp_path):
    store = open_store(tmp_path / "s.duckdb")
    _subscribers(store)
    as_of = START + dt.timedelta(days=640)
    p = Predictor(store, PredictionsConfig(), Sources(synthetic.EVENTS_BY_USER, None))
    report = p.evaluate(as_of, kinds=("subscription",), save=False)
    assert not report["problems"], report["problems"]
    m = report["results"]["subscription"]["metrics"]
    assert m["model"]["roc_auc"] > 0.62
    assert m["model"]["roc_auc"] > m["activity_recency"]["roc_auc"]

    result = p.predict(as_of=as_of)
    assert "subscription" in result.models and "churn" not in result.models  # no purchases here
    assert "no purchase events" in result.problems["churn"]
    active = store.scalar("""
        SELECT count(*) FROM (
            SELECT user_id, arg_max(event, timestamp) AS last FROM events
            WHERE event LIKE 'Subscription%' AND timestamp < ? GROUP BY user_id)
        WHERE last <> 'Subscription Cancelled'""", [as_of])
    assert result.scored["subscription"] == active > 0
    rows = store.execute(f"SELECT * FROM ({profile_scores_sql(store)})").df()
    assert rows["subscription_churn_probability"].notna().sum() == active
    store.close()


def test_no_subscription_events_no_subscription_model(synth_store):
    result = Predictor(synth_store, PredictionsConfig(), Sources(synthetic.EVENTS_BY_USER, None)).predict(
        kinds=("subscription",))
    assert not result.models and not result.problems
