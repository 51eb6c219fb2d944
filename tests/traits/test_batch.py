"""Batch traits on a small hand-made log: every expected value computed by hand."""

from __future__ import annotations

import datetime as dt

import pytest

from panorama.traits.batch import Inputs, TraitsError, compute, latest_run
from panorama.traits.definitions import TraitError

from .conftest import config, ev, traits_of, write

T = dt.datetime


def _log():
    return [
        # u1: order o1 arrives twice (shop + web), o2 once; three item lines
        ev("u1", "Order Completed", "2024-01-10 10:00:00", source="shop", order_id="o1", revenue=100.0, discount=10.0),
        ev("u1", "Order Completed", "2024-01-10 10:00:05", order_id="o1", revenue=100.0, discount=10.0),
        ev("u1", "Order Completed", "2024-03-01 09:00:00", source="shop", order_id="o2", revenue=50.0),
        ev("u1", "Product Purchased", "2024-01-10 10:00:00", source="items", order_id="o1", category="Books", price=60.0),
        ev("u1", "Product Purchased", "2024-03-01 09:00:00", source="items", order_id="o2", category="Shoes", price=25.0),
        ev("u1", "Product Purchased", "2024-03-01 09:00:00", source="items", order_id="o2", category="Books", price=25.0),
        ev("u1", "Home", "2024-03-01 08:40:00", type="page"),
        ev("u1", "Product Viewed", "2024-03-01 08:50:00", category="Shoes", price=25.0),
        ev("u1", "Home", "2024-03-02 08:40:00", type="page"),
        # u2: messages, surveys, tickets; no orders
        ev("u2", "Email Sent", "2024-02-01 09:00:00", source="crm_mail", channel="email"),
        ev("u2", "Email Sent", "2024-02-15 09:00:00", source="crm_mail", channel="email"),
        ev("u2", "Email Opened", "2024-02-15 10:00:00", source="crm_mail", channel="email"),
        ev("u2", "Email Clicked", "2024-02-15 10:01:00", source="crm_mail", channel="email"),
        ev("u2", "NPS Survey Answered", "2024-02-20 10:00:00", source="nps", value=9.0),
        ev("u2", "NPS Survey Answered", "2024-02-25 10:00:00", source="nps", value=3.0),
        ev("u2", "Ticket Opened", "2024-02-21 10:00:00", source="support", value=4.0, status="solved",
           resolution_hours="5.5"),
        ev("u2", "Ticket Opened", "2024-02-22 10:00:00", source="support", status="open", resolution_hours="2.5"),
    ]


def _config(**extra):
    sources = {name: {"path": f"{name}.csv", "kind": "events", "key": "id", "timestamp": "t", "event": "X"}
               for name in ("shop", "items", "crm_mail", "nps", "support")}  # fmt: skip
    return config(sources=sources, **extra)


def test_builtin_traits_by_hand(store):
    write(store, _log())
    run = compute(store, _config(), inputs=Inputs.by_user_id())
    assert run.as_of == T(2024, 3, 3)  # the day after the latest event
    assert run.profiles == 2 and run.events == 17
    t = traits_of(store)
    u1, u2 = t["u1"], t["u2"]
    # orders: o1 once although it arrived twice; revenue 100 + 50
    assert u1["orders"] == 2 and u1["revenue"] == 150.0 and u1["avg_order_value"] == 75.0
    assert u1["first_order_at"] == T(2024, 1, 10, 10) and u1["last_order_at"] == T(2024, 3, 1, 9)
    assert u1["previous_order_at"] == T(2024, 1, 10, 10)
    # 2024-01-10 10:00 -> 2024-03-03 00:00 is 52 days 14 h; 2024-03-01 09:00 -> 1 day 15 h
    assert u1["days_since_first_order"] == 52 and u1["days_since_last_order"] == 1
    assert u1["avg_days_between_orders"] == 51.0
    assert u1["purchase_frequency"] == 2.0  # 2 orders x 365 / max(52, 365)
    assert u1["orders_90d"] == 2 and u1["revenue_365d"] == 150.0
    assert u1["discounted_orders"] == 1 and u1["discount_share"] == 0.5
    # Books twice, Shoes once among purchased items (the viewed Shoes does not count)
    assert u1["favorite_category"] == "Books"
    assert u1["categories_purchased"] == ["Books", "Shoes"]
    # sessions: only the person's own web events (not the shop/items/... files):
    # 01-10 10:00:05 | 03-01 08:40, 08:50 | 03-02 08:40
    assert u1["web_sessions"] == 3 and u1["web_sessions_30d"] == 2
    assert u1["first_seen_at"] == T(2024, 1, 10, 10) and u1["last_seen_at"] == T(2024, 3, 2, 8, 40)
    assert u1["days_since_last_seen"] == 0
    assert u1["email_sent"] == 0 and u1["email_open_rate"] is None
    assert u1["lifecycle_stage"] == "new"  # first order 52 days ago, within the 90-day fallback
    assert u1["rfm_segment"] is not None

    assert u2["orders"] == 0 and u2["revenue"] == 0.0 and u2["avg_order_value"] is None
    assert u2["days_since_last_order"] is None and u2["rfm_recency"] is None
    assert u2["lifecycle_stage"] == "prospect" and u2["rfm_segment"] is None
    assert (u2["email_sent"], u2["email_opened"], u2["email_clicked"]) == (2, 1, 1)
    assert u2["email_open_rate"] == 0.5 and u2["email_click_rate"] == 0.5
    assert u2["last_engaged_at"] == T(2024, 2, 15, 10, 1)
    assert u2["last_nps"] == 3.0 and u2["nps_group"] == "detractor"
    assert u2["last_csat"] == 4.0 and u2["avg_csat"] == 4.0
    assert (u2["tickets"], u2["tickets_resolved"], u2["tickets_unresolved"]) == (2, 1, 1)
    assert u2["avg_resolution_hours"] == 4.0  # (5.5 + 2.5) / 2, from a JSON text property
    assert u2["web_sessions"] == 0  # messages, surveys and tickets are not web sessions
    assert u2["first_seen_at"] == T(2024, 2, 15, 10)  # "Email Sent" is not the person being seen


def test_user_traits_filters_windows_and_overrides(store):
    write(store, _log())
    cfg = _config(traits={
        "orders_30d": {"event": "Order Completed", "agg": "count", "window": "30d", "unique_by": "order_id"},
        "big_item_spend": {"event": "Product Purchased", "agg": "sum", "property": "price", "where": "price >= 50"},
        "shoe_views": {"event": "Product Viewed", "agg": "count", "where": {"category": "Shoes"}},
        "favorite_viewed": {"event": "Product Viewed", "agg": "most_frequent", "property": "category"},
        "first_status": {"event": "Ticket Opened", "agg": "first", "property": "status"},
        "long_tickets": {"event": "Ticket Opened", "agg": "count", "where": "resolution_hours > 3"},
        "resolution_list": {"event": "Ticket Opened", "agg": "list_distinct", "property": "status"},
        "spend_per_session": {"expr": "revenue / nullif(web_sessions, 0)"},
        "sources_seen": {"agg": "distinct_count", "property": "source"},
        "max_price": {"agg": "max", "property": "price"},
        "web_sessions": None,  # drop a built-in ...
        "web_sessions_30d": None,
        "web_visits": {"agg": "sessions", "type": "page"},  # ... and define another
    })  # fmt: skip
    with pytest.raises(TraitError, match=r"traits.spend_per_session.expr: 'web_sessions' is not a trait"):
        compute(store, cfg, inputs=Inputs.by_user_id())
    traits = dict(cfg.traits)
    traits["spend_per_session"] = {"expr": "revenue / nullif(web_visits, 0)"}
    cfg = _config(traits=traits)
    compute(store, cfg, inputs=Inputs.by_user_id())
    t = traits_of(store)
    u1, u2 = t["u1"], t["u2"]
    assert "web_sessions" not in u1
    assert u1["orders_30d"] == 1  # o2 on 03-01; o1 is 52 days old
    assert u1["big_item_spend"] == 60.0
    assert u1["shoe_views"] == 1 and u1["favorite_viewed"] == "Shoes"
    assert u1["web_visits"] == 2 and u1["spend_per_session"] == 75.0
    assert u1["max_price"] == 60.0
    assert u1["sources_seen"] == 3  # api, items, shop
    assert u2["first_status"] == "solved" and u2["long_tickets"] == 1
    assert u2["resolution_list"] == ["open", "solved"]
    assert u2["shoe_views"] == 0 and u2["favorite_viewed"] is None


def test_point_in_time_as_of(store):
    write(store, _log())
    run = compute(store, _config(), T(2024, 2, 1), inputs=Inputs.by_user_id())
    assert run.parameters.point_in_time
    u1 = traits_of(store)["u1"]
    assert u1["orders"] == 1 and u1["revenue"] == 100.0  # only o1 happened before February
    assert u1["days_since_last_order"] == 21  # 2024-01-10 10:00 -> 2024-02-01 00:00
    assert "u2" not in traits_of(store)  # u2's first event is on 02-01 09:00
    assert latest_run(store)["as_of"] == T(2024, 2, 1)


def test_loyalty_from_records(store):
    store.execute("""
        INSERT INTO records (source, record_id, row_hash, ts, ingested_at, identifiers, attributes)
        VALUES ('loyalty', 'L1', 'h1', TIMESTAMP '2023-05-01', TIMESTAMP '2024-01-01', [],
                '{"loyalty_tier": "Silver", "loyalty_points": "1,2"}'),
               ('loyalty', 'L1', 'h2', TIMESTAMP '2023-05-01', TIMESTAMP '2024-02-01', [],
                '{"loyalty_tier": "Gold", "loyalty_points": "2500"}')
    """)
    write(store, [ev("u9", "Home", "2024-03-01 10:00:00", type="page")])
    compute(store, config())  # the store's own profiles: one per record / event before unify
    rows = list(traits_of(store).values())
    loyal = [r for r in rows if r["loyalty_tier"] is not None]
    assert len(loyal) == 1 and loyal[0]["loyalty_tier"] == "Gold" and loyal[0]["loyalty_points"] == 2500.0
    assert loyal[0]["orders"] == 0 and loyal[0]["lifecycle_stage"] == "prospect"


def test_empty_store_and_bad_definitions(store):
    with pytest.raises(TraitsError, match="no events yet"):
        compute(store, config())
    write(store, _log())
    cases = {
        "where": ({"x": {"agg": "count", "where": "price >"}}, r"traits.x.where: not a SQL expression"),
        "statement": ({"x": {"agg": "count", "where": "1; DROP TABLE events"}}, "exactly one SQL expression"),
        "query": ({"x": {"agg": "count", "where": "price IN (SELECT 1)"}}, "not a query"),
        "cycle": ({"a": {"expr": "b + 1"}, "b": {"expr": "a + 1"}}, "cycle: a, b"),
        "qualified": ({"x": {"agg": "sum", "property": "e.price"}}, "use plain property names"),
    }
    for name, (traits, message) in cases.items():
        with pytest.raises(TraitError, match=message):
            compute(store, config(traits=traits), inputs=Inputs.by_user_id())
        assert name
