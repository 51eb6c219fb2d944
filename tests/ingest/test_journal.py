"""The ingestion journal: acknowledged rows survive a crash before they reach the log, a torn
tail is skipped, a failed journal write is answered as failed, a failed load is retried."""

from __future__ import annotations

import errno
import os

import pytest

from panorama.ingest import journal as journals
from panorama.ingest.log import DeadLetter, events_table, utcnow
from panorama.ingest.segment import normalize_message
from panorama.ingest.writer import GroupCommitWriter
from panorama.store import open_store


def _rows(ids: list[str]):
    return events_table([
        normalize_message({"type": "track", "event": "E", "userId": "u", "messageId": i},
                          source="web", received_at=utcnow())
        for i in ids
    ])  # fmt: skip


def _ids(store) -> list[str]:
    return [r[0] for r in store.execute("SELECT message_id FROM events ORDER BY 1").fetchall()]


def _segments(path) -> list:
    return sorted(journals.Journal.beside(path).directory.glob("*.seg"))


def test_records_acknowledged_before_a_crash_are_loaded_at_start(tmp_path):
    path = tmp_path / "p.duckdb"
    open_store(path).close()
    # What a server killed after its fsync and before its load leaves behind:
    j = journals.Journal.beside(path)
    assert j.open(0) == []
    j.append([(journals.EVENTS, journals.encode_events(_rows(["a", "b"])))])
    j.append([(journals.EVENTS, journals.encode_events(_rows(["b", "c"]))),
              (journals.DEAD, journals.encode_dead_letters([DeadLetter("web", "bad", raw="{}", field="userId")]))])  # fmt: skip
    j.close(0)
    with open(_segments(path)[-1], "ab") as f:
        f.write(b"PJ1E\x10\x00")  # a torn record: the crash hit mid-write (never acknowledged)
    with open_store(path, replay_journal=False) as store:  # as the server opens it
        writer = GroupCommitWriter(store, run_hooks=False).start()
        try:
            assert writer.stats.replayed_records == 3
            assert _ids(store) == ["a", "b", "c"]  # b once
            assert store.execute("SELECT reason FROM dead_letters").fetchall() == [("bad",)]
            assert store.execute("SELECT loaded_seq FROM ingest_journal").fetchall() == [(3,)]
            assert writer.submit(_rows(["d"])).result(10).submitted == 1
        finally:
            writer.stop()
        assert _ids(store) == ["a", "b", "c", "d"]
        assert store.execute("SELECT loaded_seq FROM ingest_journal").fetchall() == [(4,)]
    assert _segments(path) == []  # all loaded: the journal is emptied at shutdown
    with open_store(path) as store:  # nothing is loaded twice on the next start
        writer = GroupCommitWriter(store, run_hooks=False).start()
        writer.stop()
        assert writer.stats.replayed_records == 0 and len(_ids(store)) == 4


def test_records_already_loaded_are_not_loaded_again(tmp_path):
    path = tmp_path / "p.duckdb"
    with open_store(path) as store:
        writer = GroupCommitWriter(store, run_hooks=False).start()
        writer.submit(_rows(["a"])).result(10)
        assert writer.flush(10)
        # a crash now would leave the loaded segment behind (it goes when the next one starts)
        [segment] = _segments(path)
        kept = segment.read_bytes()
        writer.stop()
    segment.write_bytes(kept)
    with open_store(path) as store:
        store.execute("DELETE FROM events")  # had it been loaded again, "a" would be back
        writer = GroupCommitWriter(store, run_hooks=False).start()
        writer.stop()
        assert writer.stats.replayed_records == 0 and _ids(store) == []


def test_a_failed_journal_write_is_answered_as_failed_and_the_next_one_works(tmp_path, monkeypatch):
    real_write = os.write
    calls = {"n": 0}

    def full_disk(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            real_write(fd, data[: len(data) // 2])  # half of it reached the file
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    path = tmp_path / "p.duckdb"
    with open_store(path) as store:
        writer = GroupCommitWriter(store, run_hooks=False).start()
        try:
            monkeypatch.setattr(journals.os, "write", full_disk)
            with pytest.raises(OSError, match="the disk is full"):
                writer.submit(_rows(["lost"])).result(10)
            assert writer.submit(_rows(["kept"])).result(10).submitted == 1
            assert writer.flush(10)
            assert _ids(store) == ["kept"]
        finally:
            writer.stop()
    with open_store(path) as store:
        writer = GroupCommitWriter(store, run_hooks=False).start()
        writer.stop()
        assert _ids(store) == ["kept"]


def test_a_failed_load_is_retried_and_loses_nothing(tmp_path, monkeypatch):
    path = tmp_path / "p.duckdb"
    with open_store(path) as store:
        writer = GroupCommitWriter(store, run_hooks=False).start()
        real = writer._append
        calls = {"n": 0}

        def flaky(*args):
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args)

        monkeypatch.setattr(writer, "_append", flaky)
        try:
            assert writer.submit(_rows(["a", "b"])).result(10).submitted == 2  # journaled
            assert writer.flush(20)
        finally:
            writer.stop()
        assert writer.stats.failed_commits == 1
        assert _ids(store) == ["a", "b"]


def test_any_writable_open_loads_the_journal(tmp_path):
    path = tmp_path / "p.duckdb"
    open_store(path).close()
    j = journals.Journal.beside(path)
    j.open(0)
    j.append([(journals.EVENTS, journals.encode_events(_rows(["a", "b"])))])
    j.close(0)
    with open_store(path, read_only=True) as store:  # cannot write: the journal waits
        assert _ids(store) == []
    with open_store(path) as store:  # e.g. `panorama unify` after a server crash
        assert _ids(store) == ["a", "b"]
    assert _segments(path) == []
