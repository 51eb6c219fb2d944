"""The group-commit writer: grouping, dedupe, hooks after commit, isolation of a bad submission
- each with the ingestion journal (acknowledged once journaled, loaded after) and without it
(acknowledged after the DuckDB commit)."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from panorama.ingest import hooks
from panorama.ingest.log import DeadLetter, events_table, utcnow
from panorama.ingest.segment import normalize_message
from panorama.ingest.writer import GroupCommitWriter, WriterClosed
from panorama.store import open_store


def _row(message_id: str, source: str = "web", **extra) -> dict:
    message = {"type": "track", "event": "E", "userId": "u", "messageId": message_id, **extra}
    return normalize_message(message, source=source, received_at=utcnow())


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "store.duckdb") as s:
        yield s


@pytest.fixture(params=[True, False], ids=["journal", "direct"])
def journal(request) -> bool:
    return request.param


@pytest.fixture
def seen_hooks(monkeypatch):
    """Replace the registered hooks with a recorder (restored after the test)."""
    monkeypatch.setattr(hooks, "_hooks", [])
    batches: list[pa.Table] = []
    hooks.register(100, "test-recorder", lambda store, table: batches.append(table))
    return batches


def _ids(store) -> list[str]:
    return [
        r[0] for r in store.execute("SELECT message_id FROM events ORDER BY message_id").fetchall()
    ]


def test_concurrent_submissions_share_one_commit(store, journal, seen_hooks, monkeypatch):
    gate = threading.Event()
    entered = threading.Event()

    def blocking(store_, table):
        entered.set()
        gate.wait(10)

    hooks.register(50, "test-gate", blocking)
    writer = GroupCommitWriter(store, journal=journal).start()
    try:
        first = writer.submit([_row("first")])
        assert entered.wait(10)  # the writer is in the first group's hooks: the rest queue up
        futures = [writer.submit([_row(f"m{i}")]) for i in range(10)]
        table_rows = events_table([_row(f"t{i}") for i in range(20)])
        futures.append(writer.submit(table_rows))
        if journal:  # acknowledged from the journal while the loader waits in the hook
            results = [f.result(10) for f in futures]
        gate.set()
        results = [f.result(10) for f in futures]
        assert first.result(10).group_rows == 1
    finally:
        writer.stop()
    if not journal:
        assert {r.group_rows for r in results} == {30}  # one group of 10 dict rows + a 20-row table
    # one load: what queued up during the first one's hooks
    assert writer.stats.commits == 2
    assert len(_ids(store)) == 31
    assert [t.num_rows for t in seen_hooks] == [1, 30]


def test_duplicates_within_group_and_against_log(store, journal, seen_hooks):
    writer = GroupCommitWriter(store, journal=journal).start()
    try:
        writer.submit([_row("a"), _row("b")]).result(10)
        # a table with a repeat inside, a dict row repeating the log, and new rows
        table = events_table([_row("c"), _row("c"), _row("d")] + [_row(f"x{i}") for i in range(6)])
        writer.flush()
        result = writer.submit(table).result(10)
        writer.flush()
        again = writer.submit([_row("a"), _row("e"), _row("e")]).result(10)
    finally:
        writer.stop()
    if not journal:
        assert (result.group_new, again.group_new) == (8, 1)
    assert (writer.stats.rows, writer.stats.new) == (2 + 9 + 3, 11)
    assert _ids(store) == ["a", "b", "c", "d", "e", *[f"x{i}" for i in range(6)]]
    hooked = [sorted(t.column("message_id").to_pylist()) for t in seen_hooks]
    assert hooked == [["a", "b"], sorted(["c", "d", *[f"x{i}" for i in range(6)]]), ["e"]]


def test_failing_hook_loses_nothing(store, journal, monkeypatch):
    monkeypatch.setattr(hooks, "_hooks", [])

    def broken(store_, table):
        raise RuntimeError("identity is down")

    hooks.register(100, "test-broken", broken)
    writer = GroupCommitWriter(store, journal=journal).start()
    try:
        result = writer.submit([_row("m1"), _row("m2")]).result(10)
        writer.flush()  # loaded (and hooked) apart from the next: a journal may load both as one
        writer.submit([_row("m3")]).result(10)
    finally:
        writer.stop()
    assert result.submitted == 2 and writer.stats.new == 3
    assert _ids(store) == ["m1", "m2", "m3"]
    assert writer.stats.hook_errors == 2


def test_rows_given_as_journal_payloads_are_journaled_as_they_are(store, journal, seen_hooks, tmp_path):
    # A validation process hands its rows over encoded (`EncodedEvents`): the writer journals
    # the payload unchanged, beside rows of the other kinds in the same group, and loads it.
    from panorama.ingest import journal as journals

    encoded = journals.EncodedEvents.of(events_table([_row("p1"), _row("p2"), _row("a")]))
    writer = GroupCommitWriter(store, journal=journal)
    written = []
    if journal:
        real_append = writer.journal.append

        def append(items):
            written.extend(payload for _, payload in items)
            return real_append(items)

        writer.journal.append = append
    writer.start()
    try:
        first = writer.submit([_row("a")])
        second = writer.submit(encoded)
        third = writer.submit(events_table([_row("t1")]))
        assert second.result(10).submitted == 3
        first.result(10), third.result(10)
        writer.flush()
    finally:
        writer.stop()
    assert _ids(store) == ["a", "p1", "p2", "t1"]
    if journal:
        assert encoded.payload in written  # the very bytes, not decoded and encoded again
    assert sorted(m for t in seen_hooks for m in t.column("message_id").to_pylist()) == ["a", "p1", "p2", "t1"]
    # the hooks get the rows as the log's schema has them (the JSON columns as plain text,
    # not as the extension type the insert hands DuckDB)
    assert {t.schema.field("context").type for t in seen_hooks} == {pa.string()}


def test_a_bad_submission_does_not_fail_its_group(store, journal, seen_hooks):
    gate = threading.Event()
    hooks.register(50, "test-gate", lambda s, t: gate.wait(10))
    writer = GroupCommitWriter(store, journal=journal).start()
    try:
        writer.submit([_row("first")])
        bad = dict(_row("bad"), timestamp=None)  # violates NOT NULL
        futures = [
            writer.submit([_row("good1")]),
            writer.submit([bad]),
            writer.submit([_row("good2")]),
        ]
        gate.set()
        assert futures[0].result(10).submitted == 1
        with pytest.raises(Exception, match="NOT NULL"):
            futures[1].result(10)
        assert futures[2].result(10).submitted == 1
    finally:
        writer.stop()
    assert _ids(store) == ["first", "good1", "good2"]


def test_dead_letters_and_run_counters(store, journal, seen_hooks):
    writer = GroupCommitWriter(store, journal=journal).start()
    try:
        writer.submit(
            [_row("m1"), _row("m2")], [DeadLetter("web", "bad", raw="{}", field="userId")]
        ).result(10)
        writer.submit([_row("m1"), _row("i1", source="ios")]).result(10)
    finally:
        writer.stop()
    assert store.execute("SELECT source, field, reason FROM dead_letters").fetchall() == [
        ("web", "userId", "bad")
    ]
    runs = store.execute(
        "SELECT source, file, rows_read, rows_loaded, rows_duplicate, rows_rejected FROM ingest_runs ORDER BY source"
    ).fetchall()
    assert runs == [("ios", "http", 1, 1, 0, 0), ("web", "http", 4, 2, 1, 1)]


def test_stop_commits_what_is_queued_then_refuses(store, journal, seen_hooks):
    gate = threading.Event()
    hooks.register(50, "test-gate", lambda s, t: gate.wait(10))
    writer = GroupCommitWriter(store, journal=journal).start()
    writer.submit([_row("first")])
    queued = [writer.submit([_row(f"q{i}")]) for i in range(5)]
    stopper = threading.Thread(target=writer.stop)
    stopper.start()
    gate.set()
    stopper.join(10)
    assert all(f.result(1).submitted == 1 for f in queued)
    assert len(_ids(store)) == 6
    with pytest.raises(WriterClosed):
        writer.submit([_row("late")])


def test_a_small_group_waits_for_requests_on_their_way_a_large_one_does_not(store, seen_hooks):
    import time

    writer = GroupCommitWriter(store, busy_linger=1.5, busy_linger_rows=50).start()
    try:
        writer.incoming = 1  # a request is being validated: its rows are on their way
        small = writer.submit([_row("s1")])
        time.sleep(0.2)
        later = writer.submit([_row("s2")])
        # one group, one fsync: the single row waited for the second
        assert small.result(10).group_rows == later.result(10).group_rows == 2
        large = writer.submit([_row(f"b{i}") for i in range(60)])
        # 60 rows >= busy_linger_rows: journaled at once, not after the 1.5 s linger
        assert large.result(1.0).group_rows == 60
    finally:
        writer.incoming = 0
        writer.stop()
    assert writer.stats.journal_writes == 2
    assert len(_ids(store)) == 62


def test_idle_checkpoint_folds_the_wal(store, journal, seen_hooks):
    import time
    from pathlib import Path

    writer = GroupCommitWriter(store, journal=journal, idle_checkpoint_bytes=1, idle_seconds=0.05).start()
    try:
        writer.submit([_row(f"m{i}") for i in range(50)]).result(10)
        wal = Path(str(store.path) + ".wal")
        deadline = time.monotonic() + 10
        while writer.stats.idle_checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        writer.stop()
    assert writer.stats.idle_checkpoints >= 1
    assert not wal.exists() or wal.stat().st_size == 0
    assert len(_ids(store)) == 50


def test_the_loader_checkpoints_a_big_wal_once_no_reader_is_open(store, seen_hooks):
    from pathlib import Path

    writer = GroupCommitWriter(store, checkpoint_bytes=1, idle_checkpoint_bytes=None).start()
    reader = store.con.cursor()
    try:
        reader.execute("BEGIN TRANSACTION")
        reader.execute("SELECT count(*) FROM events").fetchall()
        writer.submit([_row(f"m{i}") for i in range(50)]).result(10)
        assert writer.flush(10)
        assert writer.stats.loader_checkpoints == 0  # it cannot while the reader's runs
        reader.execute("COMMIT")
        writer.submit([_row("last")]).result(10)  # the next load tries again
        assert writer.flush(10)
    finally:
        writer.stop()
        reader.close()
    assert writer.stats.loader_checkpoints >= 1
    wal = Path(str(store.path) + ".wal")
    assert not wal.exists() or wal.stat().st_size < 10_000  # what came after (run counters)
    assert len(_ids(store)) == 51


def test_an_idle_checkpoint_merges_the_row_groups_checkpoints_under_load_left(store, seen_hooks):
    """The server's checkpoints under load merge no row groups (`Tuning.vacuum_tasks = 0`):
    each leaves a new one. Once the loader idles, a checkpoint merges them, however small the
    WAL, and the setting is as it was after it."""
    import time

    def row_groups() -> int:
        return store.execute(
            "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('events')"
        ).fetchall()[0][0]  # (all of it: an open result would hold its transaction)

    store.execute("SET GLOBAL max_vacuum_tasks = 0")
    writer = GroupCommitWriter(store, checkpoint_bytes=1, idle_checkpoint_bytes=1 << 40,
                               idle_seconds=0.05, idle_vacuum_tasks=4).start()  # fmt: skip
    try:
        for load in range(4):  # four loads, each checkpointed: four row groups
            writer.submit([_row(f"m{load}-{i}") for i in range(200)]).result(10)
            assert writer.flush(10)
        assert writer.stats.loader_checkpoints >= 3 and writer.stats.idle_checkpoints == 0
        unmerged = row_groups()
        assert unmerged >= 3
        writer.checkpoint_bytes = None  # the last rows stay in the WAL, as under a real load
        writer.submit([_row(f"last-{i}") for i in range(10)]).result(10)
        deadline = time.monotonic() + 10
        while writer.stats.idle_checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        writer.stop()
    assert writer.stats.idle_checkpoints == 1
    assert row_groups() < unmerged
    assert store.execute("SELECT current_setting('max_vacuum_tasks')").fetchone()[0] == 0
    assert len(_ids(store)) == 810
