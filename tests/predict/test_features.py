"""Point-in-time features: hand-computed values, driver sentences, and no leakage from after T."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from panorama.config import PredictionsConfig
from panorama.predict import synthetic
from panorama.predict.features import FeatureBuilder, Sources, sentence
from panorama.predict.service import Predictor
from panorama.store import open_store

from .conftest import T

CFG = PredictionsConfig()
BY_USER = Sources(synthetic.EVENTS_BY_USER, None)


def _event(store, mid, event, user, ts, source="shop", type_="track", **cols):
    names = ["message_id", "type", "event", "source", "user_id", "timestamp", "received_at", *cols]
    store.execute(
        f"INSERT INTO events ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [f"{source}:{mid}", type_, event, source, user, ts, ts, *cols.values()],
    )


def test_hand_computed_features(tmp_path):
    store = open_store(tmp_path / "s.duckdb")
    t = dt.datetime(2024, 1, 1)
    d = lambda days: t - dt.timedelta(days=days)  # noqa: E731
    # alice: three orders, one of them also reported by the web source (same order_id)
    _event(store, "o1", "Order Completed", "alice", d(200), revenue=100.0, order_id="A1", discount=10.0)
    _event(store, "o2", "Order Completed", "alice", d(100), revenue=50.0, order_id="A2")
    _event(store, "w2", "Order Completed", "alice", d(100) + dt.timedelta(minutes=2), source="web",
           revenue=50.0, order_id="A2")
    _event(store, "o3", "Order Completed", "alice", d(10), revenue=30.0, order_id="A3")
    _event(store, "i1", "Product Purchased", "alice", d(200), category="shoes", product_id="p1")
    _event(store, "i2", "Product Purchased", "alice", d(10), category="bags", product_id="p2")
    _event(store, "t1", "Ticket Opened", "alice", d(20), source="support", value=2.0)
    _event(store, "t2", "Ticket Opened", "alice", d(5), source="support")  # no CSAT answer
    _event(store, "n1", "NPS Survey Answered", "alice", d(40), source="nps", value=3.0)
    _event(store, "e1", "Email Sent", "alice", d(50), source="esp")
    _event(store, "e2", "Email Sent", "alice", d(20), source="esp")
    _event(store, "e3", "Email Opened", "alice", d(19), source="esp")
    _event(store, "p1", "Home", "alice", d(3), source="web", type_="page")
    _event(store, "p2", "Home", "alice", d(3) + dt.timedelta(hours=1), source="web", type_="page")
    _event(store, "v1", "Product Viewed", "alice", d(2), source="web")
    # after the cutoff: must not count
    _event(store, "o4", "Order Completed", "alice", t + dt.timedelta(hours=1), revenue=999.0, order_id="A4")
    # bob: only browsed
    _event(store, "p3", "Home", "bob", d(1), source="web", type_="page")
    fb = FeatureBuilder(store, CFG, BY_USER)
    fb.prepare(t + dt.timedelta(days=30))
    f = fb.features(t).set_index("profile_id")
    a, b = f.loc["alice"], f.loc["bob"]
    assert a.frequency == 3  # the web copy of A2 is the same order
    assert a.recency_days == pytest.approx(10)
    assert a.days_since_first_order == pytest.approx(200)
    assert a.revenue_total == pytest.approx(180)
    assert a.orders_30d == 1 and a.orders_90d == 1 and a.orders_180d == 2 and a.orders_365d == 3
    assert a.revenue_90d == pytest.approx(30)
    assert a.avg_order_value == pytest.approx(60)
    assert a.mean_gap_days == pytest.approx(95)  # gaps of 100 and 90 days
    assert a.recency_ratio == pytest.approx(10 / 95)
    assert a.discount_share == pytest.approx(1 / 3)
    assert a.categories == 2 and a.products == 2
    assert a.tickets_30d == 2 and a.tickets_365d == 2
    assert a.last_csat == 2 and a.avg_csat == 2
    assert a.last_nps == 3
    assert a.messages_90d == 2 and a.opens_90d == 1
    assert a.open_rate_365d == pytest.approx(0.5)
    assert a.days_since_engagement == pytest.approx(19)
    assert a.web_events_30d == 3 and a.web_days_90d == 2 and a.product_views_30d == 1
    assert a.days_since_web == pytest.approx(2)
    assert a.tenure_days == pytest.approx(200)
    assert a.days_since_activity == pytest.approx(2)
    assert b.frequency == 0 and np.isnan(b.recency_days) and np.isnan(b.avg_order_value)
    assert b.tenure_days == pytest.approx(1)
    labels = fb.labels(t, 30).set_index("profile_id")
    assert labels.loc["alice"].future_revenue == 999.0 and "bob" not in labels.index
    rfm = fb.rfm_summary(t).set_index("profile_id").loc["alice"]
    assert (rfm["x"], rfm["t_x"], rfm["T"]) == (2, 190, 200)
    assert rfm.monetary == pytest.approx(40)  # repeat days only: (50 + 30) / 2
    store.close()


def test_sentences():
    assert sentence("recency_days", 143.2) == "no order for 143 days"
    assert sentence("recency_days", None) == "never ordered"
    assert sentence("tickets_30d", 3) == "3 support tickets in 30 days"
    assert sentence("tickets_30d", 1) == "1 support ticket in 30 days"
    assert sentence("last_csat", 2) == "last CSAT score 2/5"
    assert sentence("last_nps", float("nan")) == "never answered an NPS survey"
    assert sentence("open_rate_365d", 0.234) == "opened 23% of messages in the last year"
    assert sentence("tenure_days", 800) == "known for 2.2 years"
    assert sentence("order_trend", -2) == "2 orders fewer in the last 6 months than in the 6 before"


def test_no_leakage_from_after_the_cutoff(synth_store):
    """Adding, changing and deleting events at or after T changes neither features nor scores for T."""
    store = synth_store
    predictor = Predictor(store, CFG, BY_USER)
    before = predictor.predict(as_of=T, kinds=("churn",))
    assert before.models, before.problems
    scores_before = store.execute(
        "SELECT profile_id, value, drivers FROM predict_scores WHERE prediction = 'churn' ORDER BY 1").df()
    fb = FeatureBuilder(store, CFG, BY_USER)
    fb.prepare(T)
    feats_before = fb.features(T)
    fp_before = fb.fingerprint(T)

    # the future: big orders for everyone, tickets, new customers, edits and deletions
    store.execute("UPDATE events SET revenue = revenue * 10 WHERE timestamp >= ?", [T])
    store.execute("DELETE FROM events WHERE timestamp >= ? AND event = 'Email Opened'", [T])
    store.execute("""
        INSERT INTO events (message_id, type, event, source, user_id, timestamp, received_at, revenue, order_id)
        SELECT 'future:' || user_id || k, 'track', 'Order Completed', 'future', user_id,
               TIMESTAMP '2023-01-01' + to_days(CAST(k AS INTEGER)), now(), 500, 'F' || user_id || k
        FROM (SELECT DISTINCT user_id FROM events), range(3) r(k)
    """)
    store.execute("""
        INSERT INTO events (message_id, type, event, source, user_id, timestamp, received_at, value)
        SELECT 'future:t' || user_id, 'track', 'Ticket Opened', 'future', user_id, TIMESTAMP '2023-01-01', now(), 1
        FROM (SELECT DISTINCT user_id FROM events)
    """)
    synthetic.generate(store, 50, start=dt.date(2023, 1, 1), end=dt.date(2023, 6, 1), source="late", seed=9)

    fb.prepare(T)
    pd.testing.assert_frame_equal(fb.features(T), feats_before)
    assert fb.fingerprint(T) == fp_before
    after = Predictor(store, CFG, BY_USER).predict(as_of=T, kinds=("churn",), retrain=True)
    assert after.models["churn"].model_id != before.models["churn"].model_id  # really retrained
    scores_after = store.execute(
        "SELECT profile_id, value, drivers FROM predict_scores WHERE prediction = 'churn' ORDER BY 1").df()
    pd.testing.assert_frame_equal(scores_after, scores_before)
    # and the data did change after T
    assert store.scalar("SELECT count(*) FROM events WHERE source = 'future'") > 0
