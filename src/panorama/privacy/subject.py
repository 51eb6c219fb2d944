"""Data subject rights: find everything held about one person, export it, delete it.

`collect(store, key)` resolves a profile id, `type:value` or a bare identifier to the person:
their profile ids (the active one and every id merged into it), the events and source
records that belong to them, and their identifiers. Rows that carry one of the person's own
identifiers but are not (yet) resolved to anyone — they arrived after the last `unify` — are
the person's too. Identifiers the identity graph marks *shared* (a family's landline, a
shop's till email) or that belong to another profile are not the person's alone: they are
neither searched for nor tombstoned, and other people's rows that carry them stay.

`delete` removes, in one transaction: the events and every version of the records; the
identity graph's nodes, links, signatures, observations, Splink pairs, journal entries,
never-merge pairs and normalisation cache entries; every row of every table with a
`profile_id` column (traits, trait state, predictions, segment membership history, the
outbox and timers, the UI's read model, and any table a later module adds); dead letters and
outbox payloads that mention an identifier; consent changes and suppressions. The audit log
keeps its entries but loses the profile id and details of entries about the person, and
gains one entry saying a deletion happened (its request id and row count — not whose).
Then it rewrites the file exports it writes (file destinations) without the person's rows,
tombstones the identifiers (`panorama.privacy.guard`) and checkpoints the store.

`trace(store, values)` searches every text, JSON and list column of every table for the
values (as whole words, case-insensitively): what the deletion test runs afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from panorama.config import Project
from panorama.ingest.dedup import seen_ids
from panorama.ingest.log import utcnow
from panorama.privacy import guard
from panorama.store import Store, one

# Values shorter than this are not searched for as text (a user id "7" is in every table).
MIN_TEXT_LENGTH = 4
_TEMP = ("_priv_events", "_priv_records", "_priv_nodes", "_priv_sigs", "_priv_hashes")


class SubjectError(ValueError):
    """No such person, or a request that cannot be served; the message says why."""


@dataclass
class Subject:
    key: str
    profile_ids: list[str]
    pairs: list[tuple[str, str]]  # the person's own identifiers (type, value), as stored
    shared: list[tuple[str, str]] = field(default_factory=list)  # carried, but not theirs alone
    events: int = 0
    records: int = 0
    salt: str = ""

    @property
    def text_values(self) -> list[str]:
        """What to search text for: identifier values and profile ids (long enough)."""
        values = {v.strip() for _, v in self.pairs} | set(self.profile_ids)
        return sorted(v for v in values if len(v) >= MIN_TEXT_LENGTH)


def _lit(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _in_list(values: Iterable[str]) -> str:
    items = sorted(set(values))
    return "(" + ", ".join(_lit(v) for v in items) + ")" if items else "(NULL)"


def word_pattern(values: Iterable[str]) -> str | None:
    """A regex matching any of the values as a whole word (not inside a longer id)."""
    alts = [re.escape(v.lower()) for v in values if v]
    if not alts:
        return None
    return r"(^|[^a-z0-9_])(" + "|".join(sorted(alts, key=len, reverse=True)) + r")($|[^a-z0-9_])"


def _matches(column_sql: str, pattern: str) -> str:
    return f"regexp_matches(lower(CAST({column_sql} AS VARCHAR)), {_lit(pattern)})"


def _unified(store: Store) -> bool:
    from panorama.identity.export import unified

    return unified(store)


def _merged_ids(store: Store, pid: str) -> list[str]:
    ids, frontier = {pid}, [pid]
    while frontier:
        rows = store.execute(
            f"SELECT profile_id FROM identity_profiles WHERE merged_into IN {_in_list(frontier)}"
        ).fetchall()
        frontier = [r[0] for r in rows if r[0] not in ids]
        ids.update(frontier)
    return sorted(ids)


def _resolve(store: Store, project: Project | None, key: str) -> list[str]:
    from panorama.profiles.read import find_profile

    ref = (
        find_profile(store, key, project.config.identity if project else None)
        if _unified(store)
        else None
    )
    if ref is None:
        return []
    if not store.table_exists("identity_profiles"):
        return [ref.profile_id]
    return _merged_ids(store, ref.profile_id)


def _key_pairs(key: str) -> list[tuple[str, str]]:
    """The identifiers a lookup key names (for a store not unified yet)."""
    kind, sep, value = key.partition(":")
    if sep and kind and " " not in kind and "@" not in kind:
        return [(kind, value)]
    return [(t, key) for t in ("email", "phone", "user_id", "anonymous_id")]


def _phone_variants(value: str, region: str) -> list[str]:
    try:
        import phonenumbers

        number = phonenumbers.parse(value, region)
    except Exception:  # noqa: BLE001 - phonenumbers raises several types for junk
        return []
    return [phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
            phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)]  # fmt: skip


def _hash_sql(salt: str, list_sql: str) -> str:
    return f"list_transform(list_filter({list_sql}, i -> i.value IS NOT NULL), i -> {guard.digest_sql(salt, 'i.type', 'i.value')})"


def collect(store: Store, key: str, project: Project | None = None) -> Subject:
    """Everything that identifies the person `key` names; leaves temp tables `_priv_events`
    (message_id) and `_priv_records` (source, record_id) on the calling thread's cursor."""
    key = (key or "").strip()
    if not key:
        raise SubjectError(
            "give a profile id, type:value (e.g. email:ann@example.com) or an identifier"
        )
    cur = store.cursor()
    salt = guard.salt(store)
    pids = _resolve(store, project, key)
    unified = _unified(store)
    if not pids and unified:
        raise SubjectError(
            f"no profile matches {key!r} (a profile id, type:value or an identifier)"
        )
    pairs: set[tuple[str, str]] = set()
    foreign: set[str] = set()
    if unified:
        from panorama.identity.export import events_with_profile_sql, records_with_profile_sql

        ids = _in_list(pids)
        cur.execute(f"CREATE OR REPLACE TEMP TABLE _priv_events AS SELECT message_id FROM "
                    f"({events_with_profile_sql()}) WHERE profile_id IN {ids}")  # fmt: skip
        cur.execute(f"CREATE OR REPLACE TEMP TABLE _priv_records AS SELECT DISTINCT source, record_id FROM "
                    f"({records_with_profile_sql()}) WHERE profile_id IN {ids}")  # fmt: skip
        for t, v, status, owner in cur.execute(
            f"SELECT type, value, status, profile_id FROM identity_nodes WHERE profile_id IN {ids} "
            f"OR origin_profile IN {ids}"
        ).fetchall():
            (pairs.add((t, v)) if status != "shared" and (owner is None or owner in pids) else foreign.add(guard.digest(salt, t, v)))  # fmt: skip
        foreign |= {guard.digest(salt, t, v) for t, v in cur.execute(
            f"SELECT type, value FROM identity_nodes WHERE status = 'shared' OR "
            f"(profile_id IS NOT NULL AND profile_id NOT IN {ids})").fetchall()}  # fmt: skip
    else:
        pairs |= set(_key_pairs(key))
        cur.execute("CREATE OR REPLACE TEMP TABLE _priv_events (message_id VARCHAR)")
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _priv_records (source VARCHAR, record_id VARCHAR)"
        )
    # identifiers the person's rows carry (every version of their records)
    for t, v in cur.execute(
        """
        SELECT DISTINCT i.type, i.value FROM (
            SELECT unnest(identifiers) AS i FROM events WHERE message_id IN (SELECT message_id FROM _priv_events)
            UNION ALL
            SELECT unnest(identifiers) AS i FROM records
            WHERE (source, record_id) IN (SELECT (source, record_id) FROM _priv_records))
        WHERE i.value IS NOT NULL AND i.value <> ''
        """
    ).fetchall():
        pairs.add((t, v))
    own = {(t, v) for t, v in pairs if guard.digest(salt, t, v) not in foreign}
    shared = sorted(pairs - own)
    region = project.config.identity.default_region if project else "US"
    for t, v in list(own):
        if guard.canonical(t, v)[0] == "phone":
            own |= {("phone", p) for p in _phone_variants(v, region)}
    # rows not resolved to anyone else that carry one of the person's identifiers
    hashes = sorted({guard.digest(salt, t, v) for t, v in own})
    cur.execute("CREATE OR REPLACE TEMP TABLE _priv_hashes (hash VARCHAR)")
    if hashes:
        cur.executemany("INSERT INTO _priv_hashes VALUES (?)", [(h,) for h in hashes])
    if hashes:
        _add_carrying(cur, salt, pids if unified else None)
    events = one(cur.execute("SELECT count(*) FROM _priv_events"))[0]
    records = one(cur.execute("SELECT count(*) FROM _priv_records"))[0]
    if not pids and not events and not records:
        raise SubjectError(f"nothing in the store matches {key!r}")
    return Subject(key, pids, sorted(own), shared, events, records, salt)


def _add_carrying(cur, salt: str, pids: list[str] | None) -> None:
    """Add to `_priv_events`/`_priv_records` the rows that carry one of `_priv_hashes` and are
    not resolved to another profile (`pids` None: the store is not unified; any row)."""
    carries = (
        f"list_has_any({_hash_sql(salt, 'x.identifiers')}, (SELECT list(hash) FROM _priv_hashes))"
    )
    previous = " OR ".join(f"{guard.digest_sql(salt, _lit(t), 'x.previous_id')} IN (SELECT hash FROM _priv_hashes)"
                           for t in ("user_id", "anonymous_id"))  # fmt: skip
    if pids is not None:
        from panorama.identity.export import events_with_profile_sql, records_with_profile_sql

        ev_sql, rec_sql = events_with_profile_sql(), records_with_profile_sql()
        ours = (f"(x.profile_id IN {_in_list(pids)} OR x.profile_id NOT IN "
                "(SELECT profile_id FROM identity_nodes WHERE profile_id IS NOT NULL))")  # fmt: skip
    else:
        ev_sql, rec_sql, ours = "SELECT * FROM events", "SELECT * FROM records", "true"
    cur.execute(f"INSERT INTO _priv_events SELECT message_id FROM ({ev_sql}) x "
                f"WHERE ({carries} OR (x.previous_id IS NOT NULL AND ({previous}))) AND {ours} "
                "AND message_id NOT IN (SELECT message_id FROM _priv_events)")  # fmt: skip
    cur.execute(f"INSERT INTO _priv_records SELECT DISTINCT source, record_id FROM ({rec_sql}) x "
                f"WHERE {carries} AND {ours} "
                "AND (source, record_id) NOT IN (SELECT (source, record_id) FROM _priv_records)")  # fmt: skip


# -- export ------------------------------------------------------------------------------------


def _rows(cur, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    result = cur.execute(sql, params) if params else cur.execute(sql)
    names = [d[0] for d in result.description]
    out = []
    for row in result.fetchall():
        item = {}
        for name, value in zip(names, row, strict=True):
            if isinstance(value, str) and name in (
                "traits",
                "properties",
                "context",
                "attributes",
                "data",
                "payload",
                "detail",
                "details",
                "drivers",
                "evidence",
            ):
                with contextlib.suppress(orjson.JSONDecodeError):
                    value = orjson.loads(value)
            item[name] = value
        out.append(item)
    return out


def _profile_tables(store: Store) -> list[str]:
    return [r[0] for r in store.execute(
        "SELECT DISTINCT c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
        "ON t.table_name = c.table_name AND t.table_schema = c.table_schema "
        "WHERE c.column_name = 'profile_id' AND t.table_type = 'BASE TABLE' AND c.table_schema = 'main' "
        "ORDER BY 1"
    ).fetchall()]  # fmt: skip


def export_subject(store: Store, key: str, project: Project | None = None) -> dict[str, Any]:
    """Everything held about the person, as JSON-ready data (dates as datetimes)."""
    subject = collect(store, key, project)
    cur = store.cursor()
    ids = _in_list(subject.profile_ids)
    data: dict[str, Any] = {
        "exported_at": utcnow(),
        "request": key,
        "profile_ids": subject.profile_ids,
        "identifiers": [{"type": t, "value": v} for t, v in subject.pairs],
        "shared_identifiers": [{"type": t, "value": v} for t, v in subject.shared],
    }
    profile = None
    if subject.profile_ids:
        from panorama.profiles.read import get_profile

        found = get_profile(
            store, subject.profile_ids[0], project.config if project else None, recent_events=0
        )
        profile = found.as_dict() if found else None
    data["profile"] = profile
    data["events"] = _rows(cur, "SELECT * FROM events WHERE message_id IN (SELECT message_id FROM _priv_events) "
                                "ORDER BY timestamp, message_id")  # fmt: skip
    data["records"] = _rows(cur, "SELECT * FROM records WHERE (source, record_id) IN "
                                 "(SELECT (source, record_id) FROM _priv_records) ORDER BY source, record_id, ingested_at")  # fmt: skip
    named = {"profile_traits": "traits", "predict_scores": "predictions", "segment_membership": "segments",
             "activation_outbox": "deliveries", "activation_timers": "timers", "audit_log": "accesses"}  # fmt: skip
    derived: dict[str, Any] = {}
    for table in _profile_tables(store):
        if table.startswith("identity_"):
            continue
        rows = (
            _rows(cur, f'SELECT * FROM "{table}" WHERE profile_id IN {ids}')
            if subject.profile_ids
            else []
        )
        derived[named.get(table, table)] = rows
    data.update(
        {k: derived.pop(k, []) for k in ("traits", "predictions", "segments", "deliveries")}
    )
    data["accesses"] = [
        {k: a[k] for k in ("logged_at", "actor", "role", "action")}
        for a in derived.pop("accesses", [])
    ]
    data["other"] = derived
    data["dead_letters"] = (
        _rows(cur, _dead_letters_sql(subject, "SELECT *")) if subject.text_values else []
    )
    from panorama.modules import optional_import

    consent = optional_import("panorama.privacy.consent")
    data["consent"] = consent.history(store, subject) if consent is not None else []
    _drop_temp(cur)
    return data


def _dead_letters_sql(subject: Subject, select: str) -> str:
    pattern = word_pattern(subject.text_values)
    return f"{select} FROM dead_letters WHERE {_matches('raw', pattern)}"


def _drop_temp(cur) -> None:
    for name in _TEMP:
        cur.execute(f"DROP TABLE IF EXISTS {name}")


# -- delete ------------------------------------------------------------------------------------


@dataclass
class Deletion:
    request_id: str
    profile_ids: int
    identifiers: int
    tombstones: int
    rows: dict[str, int]
    files: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _count(cur, sql: str) -> int:
    row = one(cur.execute(sql))
    return int(row[0]) if row and row[0] is not None else 0


def _delete_in(cur, subject: Subject, rows: dict[str, int]) -> None:
    """The deletion proper, inside the caller's transaction."""
    ids = _in_list(subject.profile_ids)
    pattern = word_pattern(subject.text_values)

    def run(table: str, where: str) -> None:
        n = _count(cur, f'DELETE FROM "{table}" WHERE {where}')
        if n:
            rows[table] = rows.get(table, 0) + n

    run("events", "message_id IN (SELECT message_id FROM _priv_events)")
    if rows.get("events"):  # ingest/dedup.py must not vouch for these ids any more
        seen_ids(cur).forget()
    run("records", "(source, record_id) IN (SELECT (source, record_id) FROM _priv_records)")
    if pattern:
        run("dead_letters", _matches("raw", pattern))
    tables = set(_profile_tables_cur(cur))
    if "identity_nodes" in tables:
        salt = subject.salt
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _priv_nodes AS SELECT node FROM identity_nodes "
            f"WHERE profile_id IN {ids} OR origin_profile IN {ids} "
            f"OR {guard.digest_sql(salt, 'type', 'value')} IN (SELECT hash FROM _priv_hashes)"
        )
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _priv_sigs AS SELECT DISTINCT sig FROM ("
            "SELECT sig FROM identity_sig_nodes WHERE node IN (SELECT node FROM _priv_nodes) "
            "UNION ALL SELECT sig FROM identity_sigs WHERE anchor IN (SELECT node FROM _priv_nodes))"
        )
        run("identity_edges", f"profile_id IN {ids} OR a IN (SELECT node FROM _priv_nodes) "
                              "OR b IN (SELECT node FROM _priv_nodes)")  # fmt: skip
        run(
            "identity_splink",
            "a_sig IN (SELECT sig FROM _priv_sigs) OR b_sig IN (SELECT sig FROM _priv_sigs)",
        )
        run("identity_observations", "sig IN (SELECT sig FROM _priv_sigs)")
        run(
            "identity_sig_nodes",
            "sig IN (SELECT sig FROM _priv_sigs) OR node IN (SELECT node FROM _priv_nodes)",
        )
        run("identity_sigs", "sig IN (SELECT sig FROM _priv_sigs)")
        run("identity_nodes", "node IN (SELECT node FROM _priv_nodes)")
        run("identity_journal", f"profile_id IN {ids} OR other_id IN {ids}")
        run("identity_profiles", f"profile_id IN {ids} OR merged_into IN {ids}")
        if pattern:
            run(
                "identity_never_merge",
                f"{_matches('a_identifiers', pattern)} OR {_matches('b_identifiers', pattern)}",
            )
            run("identity_norm", f"{_matches('raw', pattern)} OR {_matches('value', pattern)}")
    for table in sorted(tables):
        if table.startswith("identity_") or table == "audit_log":
            continue
        run(table, f"profile_id IN {ids}")
    if pattern and "activation_outbox" in tables:
        run("activation_outbox", _matches("payload", pattern))
    if "consent_changes" in tables or _table(cur, "consent_changes"):
        run("consent_changes", "subject_hash IN (SELECT hash FROM _priv_hashes)")
        run("consent_suppressions", "hash IN (SELECT hash FROM _priv_hashes)")
    if _table(cur, "audit_log"):
        redact = f"profile_id IN {ids}" + (f" OR {_matches('detail', pattern)}" if pattern else "")
        n = _count(cur, f"UPDATE audit_log SET profile_id = NULL, detail = NULL WHERE {redact}")
        if n:
            rows["audit_log (redacted)"] = n


def _table(cur, name: str) -> bool:
    return bool(
        one(cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ))[0]
    )


def _profile_tables_cur(cur) -> list[str]:
    return [r[0] for r in cur.execute(
        "SELECT DISTINCT c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
        "ON t.table_name = c.table_name AND t.table_schema = c.table_schema "
        "WHERE c.column_name = 'profile_id' AND t.table_type = 'BASE TABLE' AND c.table_schema = 'main'"
    ).fetchall()]  # fmt: skip


def delete_subject(store: Store, key: str, project: Project | None = None, actor: str = "cli",
                   principal=None) -> Deletion:  # fmt: skip
    """Delete everything held about the person `key` names (module doc). Ingestion refuses
    their identifiers from the moment the tombstones are added (before the rows go)."""
    subject = collect(store, key, project)
    request_id = "dsr_" + secrets.token_hex(8)
    cur = store.cursor()
    rows: dict[str, int] = {}
    with store.transaction() as tx:
        tombstones = guard.add(tx, store, subject.pairs, request_id)
    # rows committed by a concurrent writer between `collect` and the tombstones: a second
    # pass over the same identifiers picks them up
    for attempt in range(3):
        try:
            with store.transaction() as tx:
                _delete_in(tx, subject, rows)
            break
        except Exception as exc:  # a write conflict with the server's writer: collect again
            if attempt == 2 or "conflict" not in str(exc).lower():
                raise
            rows.clear()
    files = _rewrite_file_exports(store, project, subject) if project else {}
    # a last look for rows that arrived meanwhile (the tombstones stop any more)
    cur.execute("DELETE FROM _priv_events")
    cur.execute("DELETE FROM _priv_records")
    _add_carrying(cur, subject.salt, subject.profile_ids if _unified(store) else None)
    if _count(
        cur, "SELECT (SELECT count(*) FROM _priv_events) + (SELECT count(*) FROM _priv_records)"
    ):
        with store.transaction() as tx:
            _delete_in(tx, subject, rows)
    _drop_temp(cur)
    counts = {"rows": sum(rows.values()), "tables": len(rows), "tombstones": tombstones}
    store.execute("INSERT INTO privacy_requests VALUES (?, 'delete', ?, ?, ?, ?)",
                  [request_id, utcnow(), utcnow(), actor, orjson.dumps(counts).decode()])  # fmt: skip
    _audit(store, principal, "privacy_delete", {"request_id": request_id, **counts})
    # fold the WAL (which holds the deleted rows) into the file now, if nothing else writes;
    # a running server's writer checkpoints when idle
    with contextlib.suppress(Exception):
        store.execute("CHECKPOINT")
    return Deletion(
        request_id, len(subject.profile_ids), len(subject.pairs), tombstones, rows, files
    )


def _audit(store: Store, principal, action: str, detail: dict) -> None:
    if not store.table_exists("audit_log"):
        return
    from panorama.auth import audit
    from panorama.auth.policy import cli_principal

    audit.record(store, principal or cli_principal(), action, None, detail)


def record_export(store: Store, actor: str, principal=None) -> str:
    request_id = "dsr_" + secrets.token_hex(8)
    store.execute("INSERT INTO privacy_requests VALUES (?, 'export', ?, ?, ?, NULL)",
                  [request_id, utcnow(), utcnow(), actor])  # fmt: skip
    _audit(store, principal, "privacy_export", {"request_id": request_id})
    return request_id


def _rewrite_file_exports(store: Store, project: Project, subject: Subject) -> dict[str, int]:
    """Remove the person's rows from the files that file destinations wrote."""
    removed: dict[str, int] = {}
    if not subject.profile_ids:
        return removed
    ids = _in_list(subject.profile_ids)
    cur = store.cursor()
    for _name, dest in project.config.destinations.items():
        if dest.type != "file":
            continue
        pattern = str(project.root / dest.path.replace("{timestamp}", "*"))
        for file in sorted(glob.glob(pattern)):
            path = Path(file)
            reader = "read_parquet" if path.suffix.lower() == ".parquet" else "read_csv"
            fmt = "(FORMAT parquet)" if reader == "read_parquet" else "(FORMAT csv, HEADER true)"
            opts = "" if reader == "read_parquet" else ", header = true, all_varchar = true"
            source = f"{reader}({_lit(file)}{opts})"
            try:
                n = _count(cur, f"SELECT count(*) FROM {source} WHERE profile_id IN {ids}")
            except Exception:  # noqa: BLE001 - not a profile export (no profile_id column): leave it
                continue
            if not n:
                continue
            tmp = path.with_name(path.name + ".privacy-tmp")
            cur.execute(f"COPY (SELECT * FROM {source} WHERE profile_id IS NULL OR profile_id NOT IN {ids}) "
                        f"TO {_lit(str(tmp))} {fmt}")  # fmt: skip
            os.replace(tmp, path)
            removed[str(path.relative_to(project.root))] = n
    return removed


# -- trace -------------------------------------------------------------------------------------


def trace(store: Store, values: Iterable[str]) -> dict[str, int]:
    """`table.column` -> rows whose text contains one of `values` as a whole word."""
    pattern = word_pattern([v for v in values if len(v) >= 1])
    if pattern is None:
        return {}
    found: dict[str, int] = {}
    columns = store.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c JOIN information_schema.tables t "
        "ON t.table_name = c.table_name AND t.table_schema = c.table_schema "
        "WHERE t.table_type = 'BASE TABLE' AND c.table_schema = 'main' "
        "AND (c.data_type IN ('VARCHAR', 'JSON') OR c.data_type LIKE '%STRUCT%' OR c.data_type LIKE '%[]' "
        "OR c.data_type LIKE 'MAP%') ORDER BY 1, 2"
    ).fetchall()  # fmt: skip
    for table, column in columns:
        n = store.scalar(
            f'SELECT count(*) FROM "{table}" WHERE {_matches(chr(34) + column + chr(34), pattern)}'
        )
        if n:
            found[f"{table}.{column}"] = n
    return found


# -- compaction ----------------------------------------------------------------------------------


def compact(path: Path | str) -> tuple[int, int]:
    """Rewrite the store into a fresh file (every table, sequence and view; sequences keep their
    values) and swap it in: deleted rows are dropped from the table data by DuckDB, but the
    bytes of freed blocks stay in the file until it is rewritten. Needs the store to itself
    (stop `panorama serve`). Returns the file size before and after."""
    import duckdb

    path = Path(path)
    before = path.stat().st_size
    tmp = path.with_name(path.name + ".compact-tmp")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute("CHECKPOINT")
        name = one(con.execute("SELECT current_database()"))[0]
        con.execute(f"ATTACH {_lit(str(tmp))} AS _compact")
        con.execute(f'COPY FROM DATABASE "{name}" TO _compact')
        con.execute("DETACH _compact")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    Path(str(path) + ".wal").unlink(missing_ok=True)
    return before, path.stat().st_size
