"""Real-time updates equal a batch recompute (same as-of time and population parameters)."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest

from panorama.ingest import hooks
from panorama.traits import realtime
from panorama.traits.batch import Inputs, compute, latest_run

from .conftest import config, ev, traits_of, write

START = dt.datetime(2024, 1, 1)
CATEGORIES = ["Books", "Shoes", "Garden", "Toys"]


def _random_events(rng: random.Random, users: list[str], n: int, start: dt.datetime, days: int) -> list[dict]:
    rows = []
    for _ in range(n):
        u = rng.choice(users)
        t = start + dt.timedelta(seconds=rng.randrange(days * 86400))
        ts = t.strftime("%Y-%m-%d %H:%M:%S")
        kind = rng.random()
        if kind < 0.15:
            oid = f"o{rng.randrange(40)}-{u}"  # repeats: the same order seen twice
            rows.append(ev(u, "Order Completed", ts, source=rng.choice(["shop", "web"]), order_id=oid,
                           revenue=float(rng.randrange(1, 300)), discount=float(rng.choice([0, 0, 5]))))
        elif kind < 0.3:
            rows.append(ev(u, "Product Purchased", ts, source="items", category=rng.choice(CATEGORIES),
                           price=float(rng.randrange(1, 90))))
        elif kind < 0.6:
            rows.append(ev(u, rng.choice(["Home", "Category"]), ts, type="page", source="web"))
        elif kind < 0.7:
            rows.append(ev(u, "Product Viewed", ts, source="web", category=rng.choice(CATEGORIES)))
        elif kind < 0.8:
            rows.append(ev(u, rng.choice(["Email Sent", "Email Opened", "Email Clicked"]), ts, source="mail"))
        elif kind < 0.9:
            rows.append(ev(u, "NPS Survey Answered", ts, source="nps", value=float(rng.randrange(11))))
        else:
            rows.append(ev(u, "Ticket Opened", ts, source="support", value=float(rng.randrange(1, 6)),
                           status=rng.choice(["solved", "open"]), resolution_hours=str(rng.randrange(1, 48))))
    return rows  # fmt: skip


def _config():
    sources = {name: {"path": f"{name}.csv", "kind": "events", "key": "id", "timestamp": "t", "event": "X"}
               for name in ("shop", "items", "mail", "nps", "support")}  # fmt: skip
    return config(sources=sources, traits={
        "big_orders_90d": {"event": "Order Completed", "agg": "count", "where": "revenue > 100",
                           "window": "90d"},
        "views": {"event": "Product Viewed", "agg": "count"},
        "first_view_category": {"event": "Product Viewed", "agg": "first", "property": "category"},
        "last_view_category": {"event": "Product Viewed", "agg": "last", "property": "category"},
        "max_price": {"event": "Product Purchased", "agg": "max", "property": "price"},
        "min_price": {"event": "Product Purchased", "agg": "min", "property": "price"},
        "avg_nps": {"event": "NPS Survey Answered", "agg": "avg", "property": "value"},
        "viewed_categories": {"event": "Product Viewed", "agg": "distinct_count", "property": "category"},
        "page_sessions_7d": {"agg": "sessions", "type": "page", "window": "7d"},
    })  # fmt: skip


def _same(a: dict[str, dict], b: dict[str, dict]) -> list[str]:
    diffs = []
    assert a.keys() == b.keys()
    for pid in a:
        for col, x in a[pid].items():
            y = b[pid][col]
            if isinstance(x, float) and isinstance(y, float) and math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-9):
                continue
            if x != y:
                diffs.append(f"{pid}.{col}: real time {x!r}, batch {y!r}")
    return diffs


def test_realtime_equals_batch_recompute(store):
    rng = random.Random(5)
    users = [f"u{i:02d}" for i in range(25)]
    write(store, _random_events(rng, users, 600, START, 180))
    inputs = Inputs.by_user_id()
    cfg = _config()
    compute(store, cfg, inputs=inputs)
    run = latest_run(store)
    as_of = run["as_of"]
    # micro-batches: mostly after the as-of time, some late (before it), new users, repeated orders
    merged, recomputed = realtime.stats.merged, realtime.stats.recomputed
    for i in range(6):
        later = _random_events(rng, users + [f"new{i}"], 40, as_of - dt.timedelta(days=2), 5)
        late = _random_events(rng, users, 5, START, 180)
        table = write(store, later + late)
        realtime.on_events(store, table, inputs=inputs)
    assert realtime.stats.merged > merged and realtime.stats.recomputed > recomputed
    real_time = traits_of(store)
    compute(store, cfg, as_of, point_in_time=False, params=run["parameters"], inputs=inputs)
    batch = traits_of(store)
    assert _same(real_time, batch) == []
    assert len(batch) == 31


def test_hook_through_registry_with_store_profiles(store):
    """The registered hook with the store's own profiles (profile_events_sql)."""
    write(store, [ev("a", "Order Completed", "2024-05-01 10:00:00", order_id="x1", revenue=20.0)])
    cfg = config()
    compute(store, cfg)
    realtime.install()
    assert "traits" in hooks.registered()
    table = write(store, [ev("b", "Order Completed", "2024-05-02 10:00:00", order_id="x2", revenue=35.0)])
    hooks.run(store, table)
    t = traits_of(store)
    assert len(t) == 2 and sorted(r["revenue"] for r in t.values()) == [20.0, 35.0]
    run = latest_run(store)
    compute(store, cfg, run["as_of"], point_in_time=False, params=run["parameters"])
    assert _same(t, traits_of(store)) == []


def test_point_in_time_runs_are_not_updated(store):
    write(store, [ev("a", "Home", "2024-05-01 10:00:00", type="page")])
    compute(store, config(), dt.datetime(2024, 6, 1), inputs=Inputs.by_user_id())
    before = traits_of(store)
    table = write(store, [ev("a", "Home", "2024-06-02 10:00:00", type="page")])
    realtime.on_events(store, table, inputs=Inputs.by_user_id())
    assert traits_of(store) == before
    assert "point-in-time" in (realtime.stats.skip_reason or "")


@pytest.mark.parametrize("gap_minutes, sessions", [(20, 1), (31, 2)])
def test_sessions_join_across_batches(store, gap_minutes, sessions):
    write(store, [ev("a", "Home", "2024-05-01 10:00:00", type="page")])
    compute(store, config(), inputs=Inputs.by_user_id())
    t = dt.datetime(2024, 5, 1, 10) + dt.timedelta(minutes=gap_minutes)
    table = write(store, [ev("a", "Home", str(t), type="page")])
    realtime.on_events(store, table, inputs=Inputs.by_user_id())
    assert traits_of(store)["a"]["web_sessions"] == sessions


def test_refresh_profiles_after_a_merge(store):
    """Identity merges `ghost` into `u1`: refreshing both rebuilds u1 and removes ghost."""
    write(store, [
        ev("u1", "Order Completed", "2024-05-01 10:00:00", order_id="a", revenue=10.0),
        ev("ghost", "Order Completed", "2024-05-02 10:00:00", order_id="b", revenue=20.0),
        ev("u2", "Home", "2024-05-02 11:00:00", type="page"),
    ])  # fmt: skip
    compute(store, config(), inputs=Inputs.by_user_id())
    assert set(traits_of(store)) == {"u1", "ghost", "u2"}
    merged = Inputs("SELECT CASE WHEN user_id = 'ghost' THEN 'u1' ELSE user_id END AS profile_id, * FROM events", None)
    assert realtime.refresh_profiles(store, ["u1", "ghost"], inputs=merged) == 2
    after = traits_of(store)
    assert set(after) == {"u1", "u2"} and after["u1"]["orders"] == 2 and after["u1"]["revenue"] == 30.0
    run = latest_run(store)
    compute(store, config(), run["as_of"], point_in_time=False, params=run["parameters"], inputs=merged)
    assert _same(after, traits_of(store)) == []
