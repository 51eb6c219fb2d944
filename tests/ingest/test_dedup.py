"""Message ids stay unique without an index (ingest/dedup.py): retries, reloads, hash
collisions, reopening the store, and the migration of a version-1 store."""

from __future__ import annotations

import duckdb
import pytest

from panorama.ingest.dedup import seen_ids
from panorama.ingest.log import append_events, utcnow
from panorama.ingest.segment import normalize_message
from panorama.ingest.writer import GroupCommitWriter
from panorama.store import open_store
from panorama.store.schema import _CORE_V1


def _rows(ids, source="web"):
    now = utcnow()
    return [
        normalize_message(
            {"type": "track", "userId": f"u-{i}", "event": "Viewed", "messageId": i},
            source=source,
            received_at=now,
        )  # fmt: skip
        for i in ids
    ]


def _ids(store) -> list[str]:
    return [
        r[0] for r in store.execute("SELECT message_id FROM events ORDER BY message_id").fetchall()
    ]


def test_append_stores_each_id_once_across_calls_within_a_batch_and_after_reopening(tmp_path):
    path = tmp_path / "p.duckdb"
    with open_store(path) as store:
        assert append_events(store.cursor(), _rows(["a", "b", "a"])) == 2  # first "a" wins
        assert append_events(store.cursor(), _rows(["b", "c"])) == 1
        assert _ids(store) == ["a", "b", "c"]
    with open_store(path) as store:  # the ids are read from the log again
        assert len(seen_ids(store)) == 3
        assert append_events(store.cursor(), _rows(["a", "c", "d"])) == 1
        assert _ids(store) == ["a", "b", "c", "d"]


def test_a_hash_collision_does_not_lose_the_event(tmp_path):
    with open_store(tmp_path / "p.duckdb") as store:
        append_events(store.cursor(), _rows(["a"]))
        seen = seen_ids(store)
        # Make "z" look seen: its hash is there, but no event with that id is in the log.
        seen.add(store.execute("SELECT hash('z') AS h").fetchnumpy()["h"])
        scans = seen.scans
        assert append_events(store.cursor(), _rows(["z"])) == 1
        assert seen.scans == scans + 1  # decided by reading the log
        assert _ids(store) == ["a", "z"]


def test_writer_finds_a_retry_without_scanning_the_log(tmp_path):
    with open_store(tmp_path / "p.duckdb") as store:
        writer = GroupCommitWriter(store, run_hooks=False, idle_checkpoint_bytes=None).start()
        try:
            writer.submit(_rows(["r1", "r2"])).result(10)
            assert writer.flush(10)
            seen = seen_ids(store)
            scans = seen.scans
            writer.submit(_rows(["r2", "r3"])).result(10)
            assert writer.flush(10)
        finally:
            writer.stop()
        assert (writer.stats.rows, writer.stats.new) == (4, 3)
        assert seen.scans == scans  # r2 was committed moments ago: known exactly
        assert _ids(store) == ["r1", "r2", "r3"]


def test_a_rolled_back_insert_does_not_make_its_ids_duplicates(tmp_path):
    with open_store(tmp_path / "p.duckdb") as store:
        cur = store.cursor()
        cur.execute("BEGIN TRANSACTION")
        append_events(cur, _rows(["x"]))
        cur.execute("ROLLBACK")
        assert append_events(cur, _rows(["x"])) == 1
        assert _ids(store) == ["x"]


def test_version_1_store_is_migrated_with_its_events_and_without_the_index(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(_CORE_V1)
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, "
                "applied_at TIMESTAMP DEFAULT now())")  # fmt: skip
    con.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'core')")
    con.execute("INSERT INTO events (message_id, type, source, timestamp, received_at) "
                "VALUES ('old-1', 'track', 'web', now(), now()), ('old-2', 'track', 'web', now(), now())")  # fmt: skip
    con.close()
    with open_store(path) as store:
        assert _ids(store) == ["old-1", "old-2"]
        constraints = store.execute(
            "SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'events'"
        ).fetchall()
        assert ("PRIMARY KEY",) not in constraints
        assert append_events(store.cursor(), _rows(["old-2", "new-1"])) == 1
        assert _ids(store) == ["new-1", "old-1", "old-2"]
        with pytest.raises(duckdb.ConstraintException):  # message_id stays NOT NULL
            store.execute("INSERT INTO events (message_id, type, source, timestamp, received_at) "
                          "VALUES (NULL, 'track', 'web', now(), now())")  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_maybe_flags_exactly_the_hashes_added_in_any_order(seed):
    """`SeenIds.maybe` (which searches its levels in sorted order) against a plain set."""
    import numpy as np

    from panorama.ingest.dedup import SeenIds

    rng = np.random.default_rng(seed)
    seen, added = SeenIds(rng.integers(0, 2**64, 5000, dtype=np.uint64)), set()
    added.update(int(h) for h in seen._levels[0])
    for size in rng.integers(1, 3000, 12):  # levels of several sizes, merged as they fill
        batch = rng.integers(0, 2**64, size, dtype=np.uint64)
        seen.add(batch)
        added.update(int(h) for h in batch)
    known = np.array(sorted(added), dtype=np.uint64)
    needles = np.concatenate([rng.choice(known, 700), rng.integers(0, 2**64, 700, dtype=np.uint64),
                              np.array([0, 2**64 - 1], dtype=np.uint64)])  # fmt: skip
    needles = np.concatenate([needles, needles[:50]])  # repeats
    rng.shuffle(needles)
    expected = np.array([int(h) in added for h in needles])
    assert (seen.maybe(needles) == expected).all()
    assert seen.maybe(np.array([], dtype=np.uint64)).shape == (0,)
