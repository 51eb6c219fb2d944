"""Segment membership on a store: batch refresh, history with causes, time passing, definition
changes, exports, the CLI, and real-time evaluation giving the same result as the batch."""

from __future__ import annotations

import random
import shutil
from datetime import datetime, timedelta

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from panorama.cli import app
from panorama.config import load_project
from panorama.ingest.log import append_events, events_table
from panorama.ingest.segment import normalize_message
from panorama.segments import engine
from panorama.segments.engine import SegmentSet, evaluate_profiles, members, refresh
from panorama.store import open_store

T0 = datetime(2025, 3, 1, 12, 0, 0)

SEGMENTS = {
    "buyers": "performed('Order Completed')",
    "returning": {"where": "performed('Order Completed') >= 2", "description": "two orders or more"},
    "big_spenders": "performed('Order Completed', where='revenue >= 100')",
    "recent_buyers": "performed('Order Completed', within='7d')",
    "lapsed": "performed('Order Completed') AND NOT performed('Order Completed', within='30d')",
    "vip_plan": "plan = 'vip'",
    "birthday_soon": "days_until_anniversary(birthday) BETWEEN 0 AND 7",
}


def message(kind: str, user: str, at: datetime, n: int, **fields) -> dict:
    msg = {"type": kind, "userId": user, "messageId": f"{user}-{n}", "timestamp": at.isoformat() + "Z", **fields}
    return normalize_message(msg, source="web", received_at=at)


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory):
    """An empty store with every module's migrations applied, copied per test (migrating a new
    store takes seconds)."""
    path = tmp_path_factory.mktemp("template") / "panorama.duckdb"
    open_store(path).close()
    return path


@pytest.fixture
def project(tmp_path, migrated_store):
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "panorama.yaml").write_text(yaml.safe_dump({"name": "t", "segments": SEGMENTS}))
    shutil.copyfile(migrated_store, directory / "panorama.duckdb")
    return directory


def _store(project):
    proj = load_project(project)
    return proj, open_store(proj.store_path)


def _seed(store) -> None:
    rows = [
        message("identify", "ann", T0 - timedelta(days=60), 0, traits={"plan": "vip", "birthday": "1990-03-04",
                                                                        "email": "ann@example.com"}),
        message("track", "ann", T0 - timedelta(days=40), 1, event="Order Completed",
                properties={"order_id": "a1", "revenue": 120}),
        message("track", "ann", T0 - timedelta(days=3), 2, event="Order Completed",
                properties={"order_id": "a2", "revenue": 20}),
        message("identify", "bob", T0 - timedelta(days=50), 0, traits={"plan": "free", "birthday": "1988-02-29"}),
        message("track", "bob", T0 - timedelta(days=45), 1, event="Order Completed",
                properties={"order_id": "b1", "revenue": 30}),
        message("track", "cy", T0 - timedelta(days=1), 0, event="Product Viewed"),
    ]  # fmt: skip
    append_events(store.cursor(), rows)


def _members(store, name):
    return sorted(pid for pid, _ in members(store, name))


def test_batch_refresh_records_entries_with_their_cause(project):
    proj, store = _store(project)
    with store:
        _seed(store)
        segset = SegmentSet.build(store, proj.config)
        assert segset.errors == {}
        result = refresh(store, segset, now=T0)
        assert _members(store, "buyers") == ["ann", "bob"]
        assert _members(store, "returning") == ["ann"]
        assert _members(store, "big_spenders") == ["ann"]
        assert _members(store, "recent_buyers") == ["ann"]
        assert _members(store, "lapsed") == ["bob"]
        assert _members(store, "vip_plan") == ["ann"]
        assert _members(store, "birthday_soon") == ["ann"]  # 4 March; bob's 29 Feb was on 28 Feb this year
        soon = engine.evaluation_sql(segset.catalog, {"s": segset.compiled["birthday_soon"]}, None,
                                     datetime(2025, 2, 26))  # fmt: skip
        assert sorted(r[0] for r in store.execute(f"SELECT profile_id FROM ({soon}) WHERE s").fetchall()) == [
            "ann", "bob"]
        assert result.entered["buyers"] == 2 and sum(result.exited.values()) == 0
        causes = {r[0] for r in store.execute("SELECT DISTINCT entered_by FROM segment_membership").fetchall()}
        assert causes == {"backfill"}  # a new definition's first evaluation fires no triggers
        again = refresh(store, segset, now=T0)
        assert sum(again.entered.values()) == sum(again.exited.values()) == 0


def test_time_passing_moves_profiles_between_segments(project):
    proj, store = _store(project)
    with store:
        _seed(store)
        segset = SegmentSet.build(store, proj.config)
        refresh(store, segset, now=T0)
        later = T0 + timedelta(days=5)
        result = refresh(store, segset, segset.time_dependent(), now=later, by="clock")
        assert set(result.evaluated) == {"recent_buyers", "lapsed", "birthday_soon"}
        assert _members(store, "recent_buyers") == []
        assert _members(store, "birthday_soon") == []  # ann's birthday has passed
        rows = engine.history(store, "recent_buyers", "ann")
        assert rows == [{"profile_id": "ann", "entered_at": T0, "entered_by": "backfill",
                         "exited_at": later, "exited_by": "clock"}]  # fmt: skip
        assert _members(store, "lapsed") == ["bob"]
        result = refresh(store, segset, ["lapsed"], now=T0 + timedelta(days=28), by="clock")
        assert _members(store, "lapsed") == ["ann", "bob"] and result.entered["lapsed"] == 1
        # a new order brings ann back: she leaves "lapsed", enters "recent_buyers"
        append_events(store.cursor(), [message("track", "ann", T0 + timedelta(days=29), 3, event="Order Completed",
                                               properties={"order_id": "a3", "revenue": 5})])  # fmt: skip
        result = refresh(store, segset, now=T0 + timedelta(days=29))
        assert _members(store, "lapsed") == ["bob"] and _members(store, "recent_buyers") == ["ann"]
        assert {(c.segment, c.kind, c.by) for c in result.changes} == {
            ("lapsed", "exit", "batch"), ("recent_buyers", "enter", "batch")}


def test_changed_and_removed_definitions(project):
    proj, store = _store(project)
    with store:
        _seed(store)
        refresh(store, SegmentSet.build(store, proj.config), now=T0)
        config = yaml.safe_load((project / "panorama.yaml").read_text())
        config["segments"]["buyers"] = "performed('Order Completed', where='revenue > 25')"
        del config["segments"]["vip_plan"]
        (project / "panorama.yaml").write_text(yaml.safe_dump(config))
        proj = load_project(project)
        result = refresh(store, SegmentSet.build(store, proj.config), now=T0 + timedelta(hours=1))
        assert _members(store, "buyers") == ["ann", "bob"]  # unchanged: both had an order > 25
        assert _members(store, "vip_plan") == []
        exits = store.execute("SELECT profile_id, exited_by FROM segment_membership WHERE segment = 'vip_plan'").fetchall()
        assert exits == [("ann", "removed")]
        assert "vip_plan" not in result.evaluated
        infos = {i.name: i for i in engine.list_segments(store, proj.config)}
        assert set(infos) == set(config["segments"]) and infos["returning"].description == "two orders or more"


def test_exports_full_and_delta(project, tmp_path):
    proj, store = _store(project)
    with store:
        _seed(store)
        segset = SegmentSet.build(store, proj.config)
        refresh(store, segset, now=T0)
        n = engine.export(store, segset.catalog, "buyers", tmp_path / "buyers.csv", ["email", "plan"])
        table = pacsv.read_csv(tmp_path / "buyers.csv", convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
        assert n == 2 and table.column_names == ["profile_id", "entered_at", "email", "plan"]
        assert table.column("email").to_pylist() == ["ann@example.com", None]
        refresh(store, segset, now=T0 + timedelta(days=8), by="clock")  # ann leaves recent_buyers
        n = engine.export(store, segset.catalog, "recent_buyers", tmp_path / "delta.parquet", ["plan"],
                          since=T0 + timedelta(seconds=1))  # fmt: skip
        delta = pq.read_table(tmp_path / "delta.parquet").to_pylist()
        assert n == 1 and delta == [{"profile_id": "ann", "change": "exited",
                                     "changed_at": T0 + timedelta(days=8), "plan": "vip"}]  # fmt: skip
        with pytest.raises(ValueError, match="use .csv or .parquet"):
            engine.export(store, segset.catalog, "buyers", tmp_path / "x.json")


def test_real_time_evaluation_equals_the_batch(project):
    """Events applied in random micro-batches, each re-evaluating only the profiles it touched,
    end with the same membership as one batch refresh over everything."""
    proj, store = _store(project)
    rng = random.Random(7)
    users = [f"u{i}" for i in range(30)]
    rows = []
    for n in range(400):
        user = rng.choice(users)
        at = T0 - timedelta(days=rng.randint(0, 60), minutes=rng.randint(0, 600))
        if rng.random() < 0.15:
            rows.append(message("identify", user, at, n, traits={"plan": rng.choice(["vip", "free"])}))
        else:
            event = rng.choice(["Order Completed", "Product Viewed", "Order Completed"])
            rows.append(message("track", user, at, n, event=event,
                                properties={"order_id": f"o{n}", "revenue": rng.choice([10, 50, 150])}))  # fmt: skip
    with store:
        append_events(store.cursor(), [rows.pop(0)] if rows[0]["type"] == "identify" else [
            message("identify", "u0", T0 - timedelta(days=90), 9999, traits={"plan": "free"})])
        segset = SegmentSet.build(store, proj.config)  # `plan` is a known attribute now
        refresh(store, segset, now=T0)  # definitions backfilled
        cur = store.cursor()
        for start in range(0, len(rows), 37):
            batch = events_table(rows[start : start + 37])
            append_events(cur, batch)
            cur.register("_batch", batch)
            evaluate_profiles(store, segset, segset.catalog.affected_sql("_batch"), T0, cur=cur)
            cur.unregister("_batch")
        realtime = {name: _members(store, name) for name in SEGMENTS}
        assert sum(len(v) for v in realtime.values()) > 30
        store.execute("DELETE FROM segment_membership")
        store.execute("UPDATE segment_definitions SET refreshed_at = NULL")
        segset = SegmentSet.build(store, proj.config)  # the catalog now knows the `plan` attribute
        refresh(store, segset, now=T0)
        assert {name: _members(store, name) for name in SEGMENTS} == realtime


def test_cli_lists_checks_refreshes_and_exports(project, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    proj, store = _store(project)
    with store:
        _seed(store)
    runner = CliRunner()
    p = ["--project", str(project)]
    result = runner.invoke(app, ["segments", "refresh", "--as-of", T0.isoformat(), *p])
    assert result.exit_code == 0, result.output
    assert "buyers" in result.output and "7 segments" in result.output
    result = runner.invoke(app, ["segments", "list", *p])
    assert result.exit_code == 0 and "returning" in result.output and "yes" in result.output
    result = runner.invoke(app, ["segments", "members", "buyers", "--json", *p])
    assert result.exit_code == 0 and '"profile_id":"ann"' in result.output and '"profile_id":"bob"' in result.output
    result = runner.invoke(app, ["segments", "check", "ordrs > 2", *p])
    assert result.exit_code == 1
    assert "unknown column 'ordrs'" in result.output
    result = runner.invoke(app, ["segments", "check", "plan = 'vip' AND performed('Order Completed')", *p])
    assert result.exit_code == 0 and "matches 1 of 3 profiles" in result.output
    out = tmp_path / "vip.csv"
    result = runner.invoke(app, ["segments", "export", "vip_plan", "-o", str(out), "--columns", "email", *p])
    assert result.exit_code == 0 and "wrote 1 rows" in result.output
    assert pacsv.read_csv(out).to_pylist()[0]["email"] == "ann@example.com"
    result = runner.invoke(app, ["segments", "members", "nope", *p])
    assert result.exit_code == 1 and "unknown segment 'nope'" in result.output


def test_invalid_segments_are_reported_and_skipped(project):
    config = yaml.safe_load((project / "panorama.yaml").read_text())
    config["segments"]["broken"] = "plann = 'vip'"
    config["segments"]["mistyped"] = "plan > 3 AND days_since(plan) > 1"
    (project / "panorama.yaml").write_text(yaml.safe_dump(config))
    proj, store = _store(project)
    with store:
        _seed(store)
        segset = SegmentSet.build(store, proj.config)
        assert segset.errors["broken"].startswith("segments.broken.where: unknown column 'plann'; did you mean plan?")
        assert "cannot be evaluated" in segset.errors["mistyped"]
        result = refresh(store, segset, now=T0)
        assert "broken" not in result.evaluated and _members(store, "buyers") == ["ann", "bob"]
        infos = {i.name: i for i in engine.list_segments(store, proj.config, segset)}
        assert infos["broken"].error and infos["buyers"].error is None
