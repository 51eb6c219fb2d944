"""Tombstones: hashed identifiers of deleted people, and the check every ingestion path runs.

A tombstone is SHA-256(salt, type, canonical value) of one identifier; the value itself is
never stored. The canonical value is the trimmed, lower-cased value (phones: their digits),
so `Ann@Example.com ` and `ann@example.com` are one tombstone. A phone is tombstoned in every
form it was seen in plus its E.164 and national forms, so `+44 7700 900123` and
`07700 900123` are both refused.

Ingestion calls `screen_rows` (dict rows: the HTTP API, JSON-lines files), `screen_table` (the
HTTP API's batches, validated into Arrow columns) or `screen_checked`
(the SQL path of tabular files and tables) before anything is written: a row carrying any
tombstoned identifier is dropped, and so is a rejected row (no dead letter of a deleted
person). With no tombstones (the usual case) each check costs one dict lookup.

The hashes are cached per store file; `add` (the deletion) refreshes the cache of this
process at once. Only one process writes a store, so no other process needs telling.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path

from panorama.ingest.log import utcnow
from panorama.store import Store, one

SALT_KEY = "tombstone_salt"
_SEP = "\x1f"
_NON_DIGITS = re.compile(r"\D")
# The identifier types of a message's ids: previousId (alias) names a user id or anonymous id.
_ID_TYPES = ("user_id", "anonymous_id")

_lock = threading.Lock()
_cache: dict[Path, tuple[str, frozenset[str]]] = {}


def canonical(type_: str, value: str) -> tuple[str, str]:
    t = str(type_).strip().lower()
    v = str(value).strip()
    if t == "phone":
        return t, _NON_DIGITS.sub("", v)
    return t, v.lower()


def canonical_sql(type_sql: str, value_sql: str) -> str:
    """SQL for the canonical value (same as `canonical`)."""
    return (f"CASE WHEN lower(trim({type_sql})) = 'phone' THEN regexp_replace({value_sql}, '[^0-9]', '', 'g') "
            f"ELSE lower(trim({value_sql})) END")  # fmt: skip


def digest(salt: str, type_: str, value: str) -> str:
    t, v = canonical(type_, value)
    return hashlib.sha256(f"{salt}{_SEP}{t}{_SEP}{v}".encode()).hexdigest()


def digest_sql(salt: str, type_sql: str, value_sql: str) -> str:
    """SQL for `digest` (DuckDB's sha256 gives the same lower-case hex)."""
    lit = "'" + salt.replace("'", "''") + "'"
    return (f"sha256({lit} || chr(31) || lower(trim({type_sql})) || chr(31) || "
            f"{canonical_sql(type_sql, value_sql)})")  # fmt: skip


def salt(store: Store) -> str:
    value = store.scalar("SELECT value FROM privacy_state WHERE key = ?", [SALT_KEY])
    if value is None:
        store.execute("INSERT OR IGNORE INTO privacy_state (key, value) VALUES (?, ?)",
                      [SALT_KEY, secrets.token_hex(16)])  # fmt: skip
        value = store.scalar("SELECT value FROM privacy_state WHERE key = ?", [SALT_KEY])
    return value


def _load(store: Store) -> tuple[str, frozenset[str]]:
    key = _key(store)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    with _lock:
        if key not in _cache:
            if store.read_only and not store.table_exists("privacy_tombstones"):
                _cache[key] = ("", frozenset())
            else:
                hashes = frozenset(
                    r[0] for r in store.execute("SELECT hash FROM privacy_tombstones").fetchall()
                )
                _cache[key] = (salt(store) if not store.read_only else "", hashes)
        return _cache[key]


def _key(store: Store) -> Path:
    """The cache key: the store's resolved path (resolved once per path: a request checks it)."""
    return _resolved(str(store.path))


@functools.lru_cache(maxsize=64)
def _resolved(path: str) -> Path:
    return Path(path).resolve()


def forget_cache(store: Store | None = None) -> None:
    with _lock:
        if store is None:
            _cache.clear()
        else:
            _cache.pop(_key(store), None)


def count(store: Store) -> int:
    return len(_load(store)[1])


def add(cur, store: Store, identifiers: Iterable[tuple[str, str]], request_id: str) -> int:
    """Tombstone these (type, value) pairs (in the caller's transaction); refreshes the cache
    at once, so ingestion refuses them from now on. Returns how many were new."""
    s, _ = _load(store)
    s = s or salt(store)
    now = utcnow()
    rows = {digest(s, t, v): canonical(t, v)[0] for t, v in identifiers if str(v).strip()}
    before = one(cur.execute("SELECT count(*) FROM privacy_tombstones"))[0]
    if rows:
        cur.executemany(
            "INSERT OR IGNORE INTO privacy_tombstones (hash, type, request_id, created_at) VALUES (?, ?, ?, ?)",
            [(h, t, request_id, now) for h, t in rows.items()],
        )
    with _lock:
        key = _key(store)
        old = _cache.get(key, (s, frozenset()))[1]
        _cache[key] = (s, old | frozenset(rows))
    return one(cur.execute("SELECT count(*) FROM privacy_tombstones"))[0] - before


def _message_pairs(row: dict) -> list[tuple[str, str]]:
    pairs = [(i["type"], i["value"]) for i in row.get("identifiers") or () if i and i.get("value")]
    previous = row.get("previous_id")
    if previous:
        pairs += [(t, previous) for t in _ID_TYPES]
    return pairs


def raw_message_pairs(message: dict) -> list[tuple[str, str]]:
    """Identifiers of a raw Segment message (for a rejected one, which has no row)."""
    pairs: list[tuple[str, str]] = []
    for key, kinds in (
        ("userId", ("user_id",)),
        ("anonymousId", ("anonymous_id",)),
        ("previousId", _ID_TYPES),
    ):
        value = message.get(key)
        if (
            isinstance(value, (str, int, float))
            and not isinstance(value, bool)
            and str(value).strip()
        ):
            pairs += [(k, str(value)) for k in kinds]
    for holder in (message.get("traits"), (message.get("context") or {}).get("traits")
                   if isinstance(message.get("context"), dict) else None):  # fmt: skip
        if isinstance(holder, dict):
            for kind in ("email", "phone"):
                value = holder.get(kind)
                if isinstance(value, str) and value.strip():
                    pairs.append((kind, value))
    return pairs


def dead_letter_pairs(letter) -> list[tuple[str, str]]:
    """Identifiers of a dead letter whose `raw` is a JSON message."""
    import orjson

    try:
        message = orjson.loads(letter.raw) if letter.raw else None
    except orjson.JSONDecodeError:
        return []
    return raw_message_pairs(message) if isinstance(message, dict) else []


def is_tombstoned(store: Store, pairs: Iterable[tuple[str, str]]) -> bool:
    s, hashes = _load(store)
    if not hashes:
        return False
    return any(digest(s, t, v) in hashes for t, v in pairs)


def screen_rows(store: Store, rows: list[dict]) -> tuple[list[dict], int]:
    """(rows of people not deleted, how many were dropped)."""
    s, hashes = _load(store)
    if not hashes or not rows:
        return rows, 0
    kept = [r for r in rows if not any(digest(s, t, v) in hashes for t, v in _message_pairs(r))]
    return kept, len(rows) - len(kept)


def screen_table(store: Store, table):
    """`screen_rows` for an Arrow table of event rows: (the rows kept, how many were dropped)."""
    s, hashes = _load(store)
    if not hashes or not table.num_rows:
        return table, 0
    keep = [
        not any(digest(s, t, v) in hashes
                for t, v in _message_pairs({"identifiers": ids, "previous_id": previous}))
        for ids, previous in zip(table.column("identifiers").to_pylist(),
                                 table.column("previous_id").to_pylist(), strict=True)
    ]  # fmt: skip
    dropped = keep.count(False)
    return (table.filter(keep) if dropped else table), dropped


def screen_raw(store: Store, raws: list, pairs_of) -> list:
    """Drop items (e.g. dead letters) whose identifiers `pairs_of(item)` are tombstoned."""
    _, hashes = _load(store)
    if not hashes or not raws:
        return raws
    return [item for item in raws if not is_tombstoned(store, pairs_of(item))]


def screen_checked(cur, store: Store, table: str = "_checked", column: str = "_identifiers") -> int:
    """Delete rows of a staging table (the SQL ingestion path) that carry a tombstoned
    identifier, good or bad rows alike; returns how many."""
    s, hashes = _load(store)
    if not hashes:
        return 0
    hashed = digest_sql(s, "i.type", "i.value")
    return one(cur.execute(
        f"DELETE FROM {table} WHERE list_has_any("
        f"list_transform(list_filter({column}, i -> i.value IS NOT NULL), i -> {hashed}), "
        f"(SELECT list(hash) FROM privacy_tombstones))"
    ))[0]
