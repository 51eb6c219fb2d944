"""The read index's keeper puts rebuilds off while the server ingests heavily (a rebuild reads
the whole log and competed with ingestion for the CPU), never beyond `max_deferral`, and
never the first build or one asked for."""

from __future__ import annotations

import time

import pytest

from panorama.ingest.log import utcnow
from panorama.server.ui import index as ui_index


class _Store:
    def cursor(self):
        return self

    def interrupt(self) -> None:
        pass


@pytest.fixture
def builds(monkeypatch) -> list[float]:
    """Each (re)build's time; the log always changed, as under a load."""
    seen: list[float] = []

    def ensure_index(store, force: bool = False):
        seen.append(time.monotonic())
        return ui_index.IndexInfo(utcnow(), "fp", 0.0, 0, 0)

    monkeypatch.setattr(ui_index, "ensure_index", ensure_index)
    return seen


def _keeper(rate: float, **kw) -> ui_index.IndexKeeper:
    started = time.monotonic()
    return ui_index.IndexKeeper(
        _Store(), refresh_seconds=0.02, busy_check_seconds=0.02,
        ingested=lambda: int((time.monotonic() - started) * rate), **kw,
    )  # fmt: skip


def _run_for(keeper: ui_index.IndexKeeper, seconds: float) -> None:
    keeper.start()
    try:
        assert keeper.ready.wait(5)
        time.sleep(seconds)
    finally:
        keeper.stop()


def test_a_quiet_server_rebuilds_at_every_refresh(builds):
    keeper = _keeper(rate=100.0, busy_events_per_second=10_000, max_deferral=60)
    _run_for(keeper, 0.5)
    assert len(builds) >= 5
    assert keeper.deferrals == 0


def test_a_busy_server_puts_rebuilds_off_until_max_deferral(builds):
    keeper = _keeper(rate=1_000_000.0, busy_events_per_second=10_000, max_deferral=0.4)
    _run_for(keeper, 1.0)
    assert keeper.deferrals >= 10
    # the first build at once (start-up), then about one per max_deferral, not one per refresh
    assert 2 <= len(builds) <= 4, builds
    gaps = [b - a for a, b in zip(builds, builds[1:], strict=False)]
    assert all(gap >= 0.35 for gap in gaps), gaps


def test_a_rebuild_asked_for_is_not_put_off(builds):
    keeper = _keeper(rate=1_000_000.0, busy_events_per_second=10_000, max_deferral=60)
    keeper.start()
    try:
        assert keeper.ready.wait(5)
        time.sleep(0.2)
        before = len(builds)
        assert keeper.deferrals >= 2 and before == 1
        keeper.refresh_now()
        deadline = time.monotonic() + 5
        while len(builds) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(builds) == before + 1
    finally:
        keeper.stop()
