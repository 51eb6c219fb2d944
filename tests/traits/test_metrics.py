"""Metrics over a period and a segment, computed by hand."""

from __future__ import annotations

import datetime as dt

import pytest

from panorama.traits import metrics
from panorama.traits.batch import Inputs, compute

from .conftest import config, ev, write

S, E = dt.datetime(2024, 1, 1), dt.datetime(2024, 7, 1)


def _order(user: str, day: str, amount: float) -> dict:
    return ev(user, "Order Completed", f"{day} 12:00:00", order_id=f"{user}-{day}", revenue=amount)


LOG = [
    _order("A", "2023-11-15", 50), _order("A", "2024-02-10", 100), _order("A", "2024-06-20", 60),
    _order("B", "2023-12-01", 40),  # active at the start, lost
    _order("C", "2023-12-20", 30), _order("C", "2024-03-01", 70),  # lost: nothing in the last 90 days
    _order("D", "2024-05-05", 80),  # new, active at the end
    _order("E", "2024-01-20", 20),  # new, gone by the end
    _order("F", "2023-01-01", 10), _order("F", "2024-06-01", 90),  # came back: not at the start, not new
    _order("G", "2024-02-03", 30), _order("G", "2024-04-15", 30),  # new
    # surveys (person S has no orders); the first answer is before the period
    ev("S", "NPS Survey Answered", "2023-12-01 10:00:00", value=0.0),
    *[ev("S", "NPS Survey Answered", f"2024-03-0{i} 10:00:00", value=v) for i, v in enumerate([10, 9, 9, 8, 2], 1)],
    *[ev("S", "Ticket Opened", f"2024-04-0{i} 10:00:00", value=v) for i, v in enumerate([5, 4, 2, 7], 1)],
    ev("S", "Ticket Opened", "2024-04-09 10:00:00"),
]  # fmt: skip

CFG = {"lifecycle": {"active_days": 30, "lapsed_days": 90}, "metrics": {"gross_margin": 0.5}}


def test_metrics_by_hand(store):
    write(store, LOG)
    r = metrics.compute(store, config(**CFG), S, E, inputs=Inputs.by_user_id())
    m = {k: v["value"] for k, v in r["metrics"].items()}
    assert m == {
        "nps": 40.0,  # 3 promoters, 1 passive, 1 detractor
        "csat": 66.7,  # 5 and 4 of 5, 4 and 2 (7 and no answer do not count)
        "churn_rate": 66.7,  # B and C lost of A, B, C
        "retention_rate": 33.3,  # (A, D, F, G at the end - D, E, G new) / 3
        "historical_clv": 60.0,  # 480 x 0.5 / 6 customers x 1 / (2/3)
        "average_order_value": 60.0,  # 480 / 8
        "purchase_frequency": 1.333,  # 8 orders / 6 customers
    }
    assert r["metrics"]["churn_rate"]["inputs"] == {"customers_lost": 2, "customers_at_start": 3}
    assert r["metrics"]["retention_rate"]["inputs"] == {
        "customers_at_end": 4, "new_customers": 3, "customers_at_start": 3}  # fmt: skip
    assert r["metrics"]["historical_clv"]["inputs"]["expected_lifetime_periods"] == 1.5
    assert all(v["formula"] for v in r["metrics"].values())
    assert r["parameters"] == {"active_window_days": 90, "active_window_basis": "config", "gross_margin": 0.5}
    assert r["period"] == {"start": "2024-01-01T00:00:00", "end": "2024-07-01T00:00:00", "days": 182.0}
    cohorts = r["cohorts"]
    assert cohorts["months"] == [0, 1, 2]
    assert cohorts["rows"] == [
        {"cohort": "2024-01", "customers": 1, "retention": [100.0]},
        {"cohort": "2024-02", "customers": 1, "retention": [100.0, 0.0, 100.0]},
        {"cohort": "2024-05", "customers": 1, "retention": [100.0]},
    ]


def test_metrics_for_a_segment(store):
    write(store, LOG)
    cfg = config(**CFG)
    with pytest.raises(metrics.MetricsError, match="traits compute"):
        metrics.compute(store, cfg, S, E, "orders >= 2", inputs=Inputs.by_user_id())
    compute(store, cfg, inputs=Inputs.by_user_id())
    r = metrics.compute(store, cfg, S, E, "orders >= 2", inputs=Inputs.by_user_id())
    assert r["profiles"] == 4 and r["segment"] == "orders >= 2"  # A, C, F, G
    assert r["metrics"]["average_order_value"]["inputs"] == {"revenue": 380.0, "orders": 6}
    assert r["metrics"]["nps"]["value"] is None  # S is not in the segment
    for bad, message in (("nope > 1", "unknown column 'nope'"), ("orders >", "not a SQL expression"),
                         ("1; DROP TABLE events", "exactly one"), ("profile_id IN (SELECT 1)", "not a query")):  # fmt: skip
        with pytest.raises(metrics.MetricsError, match=message):
            metrics.compute(store, cfg, S, E, bad, inputs=Inputs.by_user_id())


def test_default_period_and_empty_store(store):
    with pytest.raises(metrics.MetricsError, match="no events"):
        metrics.compute(store, config())
    write(store, LOG)
    r = metrics.compute(store, config(**CFG), inputs=Inputs.by_user_id())
    # the latest event is on 2024-06-20: the period is the 365 days before 2024-06-21
    assert r["period"]["end"] == "2024-06-21T00:00:00" and r["period"]["start"] == "2023-06-22T00:00:00"
    with pytest.raises(metrics.MetricsError, match="empty"):
        metrics.compute(store, config(), E, S)
