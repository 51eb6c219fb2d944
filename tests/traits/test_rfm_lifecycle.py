"""RFM scores and segments, lifecycle stages and derived thresholds, computed by hand."""

from __future__ import annotations

import datetime as dt

from panorama.traits import rfm
from panorama.traits.batch import Inputs, compute

from .conftest import config, ev, traits_of, write

AS_OF = dt.datetime(2024, 12, 31)


def _orders(user: str, days_ago: list[int], amounts: list[float]) -> list[dict]:
    return [
        ev(user, "Order Completed", str(AS_OF - dt.timedelta(days=d)), order_id=f"{user}-{i}", revenue=a)
        for i, (d, a) in enumerate(zip(days_ago, amounts, strict=True))
    ]


def test_rfm_scores_and_segments(store):
    rows = (
        _orders("b1", [300], [10.0])
        + _orders("b2", [200], [20.0])
        + _orders("b3", [100, 130], [15.0, 15.0])
        + _orders("b4", [50, 80, 110], [10.0, 10.0, 20.0])
        + _orders("b5", [5, 35, 65, 95, 125], [20.0] * 5)
        + [ev("p1", "Home", "2024-12-01 10:00:00", type="page")]
    )
    write(store, rows)
    run = compute(store, config(), AS_OF, inputs=Inputs.by_user_id())
    # 5 buyers: breakpoints are the 1st..4th smallest values (ceil(k * 5 / 5))
    assert run.parameters.rfm == {"n": 5, "r1": -300, "r2": -200, "r3": -100, "r4": -50,
                                  "f1": 1, "f2": 1, "f3": 2, "f4": 3,
                                  "m1": 10, "m2": 20, "m3": 30, "m4": 40}  # fmt: skip
    t = traits_of(store)
    got = {u: (t[u]["rfm_recency"], t[u]["rfm_frequency"], t[u]["rfm_monetary"], t[u]["rfm_segment"])
           for u in ("b1", "b2", "b3", "b4", "b5")}  # fmt: skip
    assert got == {
        "b1": (1, 1, 1, "Lost"),
        "b2": (2, 1, 2, "Hibernating"),  # F: nobody has fewer than 1 order -> 1 (ties share a score)
        "b3": (3, 3, 3, "Need Attention"),  # 2 of 5 buyers have fewer orders -> 1 + floor(5 * 2/5)
        "b4": (4, 4, 4, "Loyal"),
        "b5": (5, 5, 5, "Champions"),
    }
    assert t["b5"]["rfm_score"] == "555"
    assert t["p1"]["rfm_segment"] is None and t["p1"]["rfm_score"] is None


def test_segment_grid_is_complete():
    names = {rfm.segment(r, f) for r in range(1, 6) for f in range(1, 6)}
    assert names == set(rfm.SEGMENTS)


def test_lifecycle_stages_with_configured_thresholds(store):
    rows = (
        _orders("active", [5, 35], [10.0, 10.0])
        + _orders("at_risk", [100], [10.0])  # first order 100 days ago: not new any more
        + _orders("lapsed", [200], [10.0])
        + _orders("new", [10], [10.0])
        + _orders("reactivated", [20, 400], [10.0, 10.0])  # 380 days between its orders
        + _orders("back_soon", [20, 100], [10.0, 10.0])  # a normal gap: active
        + [ev("prospect", "Home", "2024-12-01 10:00:00", type="page")]
    )
    write(store, rows)
    cfg = config(lifecycle={"new_days": 20, "active_days": 60, "lapsed_days": 150})
    run = compute(store, cfg, AS_OF, inputs=Inputs.by_user_id())
    lc = run.parameters.lifecycle
    assert (lc["new_days"], lc["active_days"], lc["lapsed_days"]) == (20, 60, 150)
    assert lc["basis"] == {"new_days": "config", "active_days": "config", "lapsed_days": "config"}
    stages = {u: r["lifecycle_stage"] for u, r in traits_of(store).items()}
    assert stages == {u: u if u != "back_soon" else "active" for u in stages}


def test_lifecycle_thresholds_derived_from_inter_purchase_gaps(store):
    # one customer whose gaps are 10, 20, ..., 100 days
    days, d = [1], 1
    for gap in range(10, 101, 10):
        d += gap
        days.append(d)
    write(store, _orders("c", days, [5.0] * len(days)) + _orders("d", [3], [5.0]))
    cfg = config(lifecycle={"min_gaps": 10})
    run = compute(store, cfg, AS_OF, inputs=Inputs.by_user_id())
    lc = run.parameters.lifecycle
    # nearest rank: 0.75 -> the 8th of 10 gaps, 0.9 -> the 9th, the median -> the 5th
    assert (lc["gaps"], lc["active_days"], lc["lapsed_days"], lc["median_gap_days"]) == (10, 80, 90, 50)
    assert lc["new_days"] == 80 and lc["basis"]["active_days"] == "derived"
    # too few gaps: the fallbacks
    run = compute(store, config(), AS_OF, inputs=Inputs.by_user_id())
    lc = run.parameters.lifecycle
    assert (lc["active_days"], lc["lapsed_days"], lc["basis"]["lapsed_days"]) == (90, 365, "fallback")
