"""Real time: events through the hook give the profiles a batch rebuild gives."""

from __future__ import annotations

from datetime import datetime

from panorama.identity import realtime
from panorama.ingest import hooks
from panorama.ingest.log import append_events, events_table
from panorama.ingest.segment import normalize_message

from .conftest import web_messages, write_project

RECEIVED = datetime(2023, 6, 1, 12, 0, 0)


def _feed(project, messages, batch_size):
    with project.store() as store:
        for i in range(0, len(messages), batch_size):
            rows = [
                normalize_message(m, source="web", received_at=RECEIVED)
                for m in messages[i : i + batch_size]
            ]
            table = events_table(rows)
            with store.transaction() as tx:
                append_events(tx, table)
            hooks.run(store, table)


def test_hook_is_registered():
    realtime.install()
    assert "identity" in hooks.registered()
    assert hooks.registered().index("identity") < hooks.registered().index("identity-refresh")


def test_realtime_equals_batch(tmp_path):
    realtime.install()
    extra = [
        # a second browser of Rob: anonymous, then identify with his user id (merges at once)
        {"type": "page", "messageId": "r1", "anonymousId": "anon-r", "name": "Home", "timestamp": "2023-05-05T10:00:00Z"},
        {"type": "identify", "messageId": "r2", "anonymousId": "anon-r", "userId": "C2",
         "traits": {"firstName": "Bob"}, "timestamp": "2023-05-05T10:00:01Z"},
        # a family tablet: Alice, then Peter log in on it (different people: kept apart)
        {"type": "identify", "messageId": "t1", "anonymousId": "tablet", "userId": "C3",
         "traits": {"firstName": "Alice"}, "timestamp": "2023-05-06T10:00:00Z"},
        {"type": "identify", "messageId": "t2", "anonymousId": "tablet", "userId": "C4",
         "traits": {"firstName": "Peter"}, "timestamp": "2023-05-06T11:00:00Z"},
        {"type": "page", "messageId": "t3", "anonymousId": "tablet", "name": "Home", "timestamp": "2023-05-06T12:00:00Z"},
    ]  # fmt: skip
    messages = web_messages() + extra

    live = write_project(tmp_path / "live", web=messages)
    live.ingest("crm", "b2b", "shop")
    live.unify()
    _feed(live, messages, batch_size=3)

    batch = write_project(tmp_path / "batch", web=messages)
    batch.ingest()
    batch.unify()

    assert live.partition() == batch.partition()
    assert live.membership() == batch.membership()  # the same profile ids too
    m = live.membership()
    assert m[("web", "r1")] == m[("crm", "C2")] == m[("crm", "C1")]
    assert m[("web", "t1")] == m[("crm", "C3")] != m[("web", "t2")]
    with live.store(read_only=True) as store:
        origins = {
            r[0]
            for r in store.execute(
                "SELECT origin FROM identity_journal WHERE action = 'merge'"
            ).fetchall()
        }
    assert "realtime" in origins
    assert realtime.stats.recomputed_batches > 0

    # and a batch run after the live one changes nothing
    before = live.membership()
    live.unify()
    assert live.membership() == before


def test_known_signatures_take_the_fast_path(tmp_path):
    realtime.install()
    project = write_project(tmp_path / "p")
    project.ingest()
    project.unify()
    before = realtime.stats.recomputed_batches
    again = [dict(m, messageId=m["messageId"] + "-again") for m in web_messages()[:3]]
    _feed(project, again, batch_size=10)
    assert realtime.stats.recomputed_batches == before
    m = project.membership()
    assert m[("web", "w1-again")] == m[("crm", "C3")]
