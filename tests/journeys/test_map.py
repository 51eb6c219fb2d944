"""Journey map over a real DuckDB log: a hand-made log with known answers, and the demo's
journey structure."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from panorama.config import parse_config
from panorama.ingest.log import append_events, events_table
from panorama.journeys.map import journey_map
from panorama.store import open_store

EVENTS = "SELECT user_id AS profile_id, * FROM events"
_n = iter(range(1, 10**6))


def _ev(user, event, ts, type="track", order_id=None, context=None):
    t = dt.datetime(2025, 1, 1) + dt.timedelta(hours=ts)
    return {"message_id": f"m{next(_n)}", "type": type, "event": event, "source": "web", "user_id": user,
            "timestamp": t, "received_at": t, "identifiers": [{"type": "user_id", "value": user}],
            "properties": "{}", "order_id": order_id, "context": orjson.dumps(context or {}).decode()}


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "store.duckdb")
    rows = [
        # a: aware -> considers -> buys -> buys again (repeat = retention) -> reviews
        _ev("a", "Home", 0, type="page", context={"campaign": {"source": "google"}}),
        _ev("a", "Product Viewed", 1), _ev("a", "Product Added", 2),
        _ev("a", "Checkout Started", 3), _ev("a", "Order Completed", 4, order_id="O1"),
        _ev("a", "Checkout Started", 100), _ev("a", "Order Completed", 101, order_id="O2"),
        _ev("a", "Review Submitted", 200),
        # b: aware -> considers, stalls
        _ev("b", "Home", 0, type="page"), _ev("b", "Product Viewed", 10),
        # c: skips awareness, buys at once, goes back to browsing
        _ev("c", "Product Viewed", 0), _ev("c", "Order Completed", 2, order_id="O3"),
        _ev("c", "Product Viewed", 48), _ev("c", "Identify", 49, type="identify"),
    ]
    append_events(s.cursor(), events_table(rows))
    yield s
    s.close()


def test_hand_made_journeys(store):
    jc = parse_config({"name": "t", "journeys": {"stall_after": "30d"}}).journeys
    m = journey_map(store, jc, events_sql=EVENTS, as_of=dt.datetime(2025, 3, 1))
    assert m["profiles"] == 3
    stages = {r["stage"]: r for r in m["stages"]}
    assert stages["awareness"]["profiles"] == 2 and stages["retention"]["profiles"] == 1
    paths = {r["path"]: r["profiles"] for r in m["paths"]}
    assert paths == {"awareness > consideration > purchase > retention > advocacy": 1,
                     "awareness > consideration": 1,
                     "consideration > purchase > consideration": 1}
    t = {(r["source"], r["target"]): r for r in m["transitions"]}
    assert t[("(start)", "awareness")]["profiles"] == 2
    assert t[("consideration", "purchase")]["count"] == 2
    assert t[("purchase", "retention")]["median_hours"] == pytest.approx(97.0)  # entered 3h -> 100h
    assert t[("purchase", "consideration")]["count"] == 1  # c comes back
    funnel = {r["step"]: r for r in m["funnel"]}
    assert funnel["awareness"]["profiles"] == 2
    assert funnel["consideration"]["profiles"] == 2 and funnel["purchase"]["profiles"] == 1
    assert funnel["purchase"]["drop_off"] == 1 and funnel["purchase"]["drop_off_pct"] == 50.0
    assert funnel["consideration"]["median_hours_from_previous"] == pytest.approx(5.5)  # 1h and 10h
    assert {r["touchpoint"] for r in m["touchpoints"]["awareness"]} == {"google", "web"}
    stalls = {r["stage"]: r["stalled"] for r in m["stalls"]["by_stage"]}
    assert stalls == {"advocacy": 1, "consideration": 2}
    edges = {(e["source"], e["target"]): e["count"] for e in m["dfg"]["edges"]}
    assert edges[("Checkout Started", "Order Completed")] == 2
    assert edges[("Page Viewed", "Product Viewed")] == 2
    assert m["sankey"]["nodes"][0].startswith("1. ")
    # a funnel of event names, and a period
    m = journey_map(store, jc, events_sql=EVENTS, funnel=["Product Viewed", "Order Completed"],
                    start=dt.datetime(2025, 1, 1, 1), end=dt.datetime(2025, 1, 3))
    assert [r["profiles"] for r in m["funnel"]] == [2, 1]  # c: viewed at 0h (before) and 48h (the end)
    assert m["profiles"] == 3


def test_demo_journey_structure(demo):
    jc = demo.project.config.journeys
    m = journey_map(demo.store, jc, events_sql=demo.events_sql)
    stages = {r["stage"]: r["profiles"] for r in m["stages"]}
    assert set(stages) == set(jc.stages)
    # the demo's structure: browsing before buying, repeat orders, reviews and referrals
    funnel = [r["profiles"] for r in m["funnel"]]
    assert funnel == sorted(funnel, reverse=True) and funnel[-1] > 0
    t = {(r["source"], r["target"]): r for r in m["transitions"]}
    assert t[("awareness", "consideration")]["median_hours"] < 1
    assert t[("consideration", "purchase")]["count"] > t.get(("awareness", "purchase"), {"count": 0})["count"]
    edges = {(e["source"], e["target"]) for e in m["dfg"]["edges"]}
    assert {("Product Viewed", "Product Added"), ("Product Added", "Checkout Started"),
            ("Checkout Started", "Order Completed")} <= edges
    assert m["paths"][0]["path"].startswith("awareness > consideration")


def test_journeys_cli(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from panorama.cli import app
    from panorama.config import init_project, load_project

    init_project(tmp_path, name="t")
    with open_store(load_project(tmp_path).store_path) as s:
        append_events(s.cursor(), events_table([_ev("a", "Home", 0, type="page"), _ev("a", "Product Viewed", 1),
                                                _ev("a", "Order Completed", 2, order_id="O9")]))
    monkeypatch.setattr("panorama.profiles.profile_events_sql", lambda store: EVENTS)
    runner = CliRunner()
    r = runner.invoke(app, ["journeys", "-p", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["paths"][0]["path"] == "awareness > consideration > purchase"
    r = runner.invoke(app, ["journeys", "-p", str(tmp_path), "--funnel", "Product Viewed,Order Completed"])
    assert r.exit_code == 0 and "Order Completed" in r.output, r.output
    r = runner.invoke(app, ["journeys", "-p", str(tmp_path), "--segment", "nope"])
    assert r.exit_code == 1 and "unknown segment" in r.output


def test_event_log_export_for_process_mining(store, tmp_path):
    """The exported log has pm4py's columns, one row per stage event, ordered by case and time;
    the directly-follows pairs counted from the file are the map's DFG."""
    import csv
    from collections import Counter

    from panorama.journeys.map import EVENT_LOG_COLUMNS, export_event_log

    jc = parse_config({"name": "t"}).journeys
    out = tmp_path / "log.csv"
    n = export_event_log(store, jc, str(out), "csv", events_sql=EVENTS)
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert n == len(rows) == 13  # every event but the identify call
    assert tuple(rows[0]) == EVENT_LOG_COLUMNS
    assert {r["case:concept:name"] for r in rows} == {"a", "b", "c"}
    times = [(r["case:concept:name"], dt.datetime.fromisoformat(r["time:timestamp"])) for r in rows]
    assert times == sorted(times) and rows[0]["time:timestamp"] == "2025-01-01T00:00:00.000000Z"
    pairs = Counter((a["concept:name"], b["concept:name"]) for a, b in zip(rows, rows[1:], strict=False)
                    if a["case:concept:name"] == b["case:concept:name"])
    m = journey_map(store, jc, events_sql=EVENTS)
    assert {(e["source"], e["target"]): e["count"] for e in m["dfg"]["edges"]} == dict(pairs)
    # stage-level activities, and Parquet
    n = export_event_log(store, jc, str(tmp_path / "log.parquet"), "parquet", events_sql=EVENTS, level="stage")
    got = store.execute(f"SELECT DISTINCT \"concept:name\" FROM '{tmp_path / 'log.parquet'}'").fetchall()
    assert n == 13 and {g[0] for g in got} == {"awareness", "consideration", "purchase", "retention", "advocacy"}


def test_journeys_export_cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from panorama.cli import app
    from panorama.config import init_project, load_project

    init_project(tmp_path, name="t")
    with open_store(load_project(tmp_path).store_path) as s:
        append_events(s.cursor(), events_table([_ev("a", "Home", 0, type="page"), _ev("a", "Product Viewed", 1)]))
    monkeypatch.setattr("panorama.profiles.profile_events_sql", lambda store: EVENTS)
    runner = CliRunner()
    out = tmp_path / "events.csv"
    r = runner.invoke(app, ["journeys", "export", str(out), "-p", str(tmp_path), "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert out.read_text().splitlines()[0].startswith("case:concept:name,concept:name,time:timestamp")
    assert "wrote 2 events" in r.output
    r = runner.invoke(app, ["journeys", "export", str(out), "-p", str(tmp_path), "--format", "xes"])
    assert r.exit_code == 1 and "use csv or parquet" in r.output
