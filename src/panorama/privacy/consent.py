"""Consent per person and purpose, derived from the log; suppression lists; the delivery check.

Where changes come from (each with its time and source, in `consent_changes`):

- **source columns**: a record attribute mapped to a purpose (`email_opt_in: email`, or any
  attribute named `<purpose>_opt_in`, `<purpose>_consent`, `consent_<purpose>`) — a change is
  recorded when a record first has the value, and whenever a later version changes it (a
  re-export of the same value is not a new change);
- **traits**: the same names in an identify message's traits;
- **events**: `Consent Updated` (properties `purpose`, `granted`), events configured under
  `consent.events` (e.g. `Unsubscribed: {purpose: email, granted: false}`), and Segment's
  `context.consent.categoryPreferences` (`{"email": false, ...}`) on any message;
- **admins**: `panorama consent set` writes a `Consent Updated` event into the log (source
  `panorama-admin`), so the log stays the truth and a rebuild gives the same state.

A change belongs to the identifiers of the row it came from (stored hashed, like tombstones)
and to the profile the row resolved to; a profile's consent for a purpose is its latest
change over all of its identifiers. Purposes in `require_opt_in` need a recorded opt-in;
the others are allowed unless opted out.

`sync` rebuilds the table from the log (the batch path; `panorama consent sync`, a pipeline
step, and server start-up); the stage-150 hook adds the changes of each committed micro-batch
of the HTTP API at once. Every delivery asks `refusal` (registered with
`panorama.activate.consent`): a destination's purposes (email destinations: `email`; others
as configured under `consent.destinations`) must all be allowed and not suppressed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from panorama.config import ConsentConfig, Project
from panorama.ingest.log import utcnow
from panorama.privacy import guard
from panorama.store import Store, one

log = logging.getLogger("panorama.privacy")

STAGE = 150
ADMIN_SOURCE = "panorama-admin"
CONSENT_EVENT = "Consent Updated"
_YES = (
    "yes",
    "y",
    "true",
    "t",
    "1",
    "opt-in",
    "opt_in",
    "optin",
    "opted in",
    "granted",
    "subscribed",
    "on",
)
_NO = (
    "no",
    "n",
    "false",
    "f",
    "0",
    "opt-out",
    "opt_out",
    "optout",
    "opted out",
    "denied",
    "unsubscribed",
    "off",
)


class ConsentError(ValueError):
    pass


def _lit(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _bool_sql(expr: str) -> str:
    value = f"lower(trim(CAST({expr} AS VARCHAR)))"
    yes = ", ".join(_lit(v) for v in _YES)
    no = ", ".join(_lit(v) for v in _NO)
    return f"(CASE WHEN {value} IN ({yes}) THEN true WHEN {value} IN ({no}) THEN false END)"


def attribute_map(config: ConsentConfig) -> dict[str, str]:
    """Attribute/trait name -> purpose: the configured ones plus the recognised names."""
    names: dict[str, str] = {}
    for purpose in config.purposes:
        for name in (f"{purpose}_opt_in", f"{purpose}_consent", f"consent_{purpose}"):
            names[name] = purpose
    names.update(config.attributes)
    return names


def _json_key(column: str, key: str) -> str:
    return f"json_extract_string({column}, {_lit('$.' + chr(34) + key + chr(34))})"


def changes_sql(config: ConsentConfig, salt: str, events: str = "events", with_records: bool = True,
                profiles: bool = False, trait_names: list[str] | None = None,
                context: bool = True) -> str:  # fmt: skip
    """SELECT of consent changes (one row per identifier of the row and purpose) from the log.
    `events`: the relation to read events from; `profiles`: resolve profile ids (unified stores);
    `trait_names`/`context`: only these trait names / whether to read context.consent (the
    real-time hook passes what its batch holds, so the query stays small)."""
    mapping = attribute_map(config)
    traits = mapping if trait_names is None else {n: mapping[n] for n in trait_names}
    parts = []
    # events: Consent Updated, configured events, identify traits, context.consent
    ev = []
    ev.append(f"SELECT message_id, source, timestamp AS changed_at, identifiers, "
              f"{_json_key('properties', 'purpose')} AS purpose, {_bool_sql(_json_key('properties', 'granted'))} AS granted, "
              f"'event:' || event AS via FROM {events} WHERE event = {_lit(CONSENT_EVENT)}")  # fmt: skip
    for name, rule in config.events.items():
        ev.append(f"SELECT message_id, source, timestamp, identifiers, {_lit(rule.purpose)}, {str(rule.granted).lower()}, "
                  f"'event:' || event FROM {events} WHERE event = {_lit(name)}")  # fmt: skip
    for name, purpose in traits.items():
        ev.append(f"SELECT message_id, source, timestamp, identifiers, {_lit(purpose)}, {_bool_sql(_json_key('traits', name))}, "
                  f"{_lit('trait:' + name)} FROM {events} WHERE type = 'identify' AND traits IS NOT NULL "
                  f"AND {_json_key('traits', name)} IS NOT NULL")  # fmt: skip
    for purpose in config.purposes if context else ():
        path = f"json_extract_string(context, {_lit('$.consent.categoryPreferences.' + chr(34) + purpose + chr(34))})"
        ev.append(f"SELECT message_id, source, timestamp, identifiers, {_lit(purpose)}, {_bool_sql(path)}, "
                  f"'context:consent' FROM {events} WHERE context IS NOT NULL AND {path} IS NOT NULL")  # fmt: skip
    event_rows = " UNION ALL ".join(ev)
    if profiles:
        from panorama.identity.export import events_with_profile_sql

        ev_profiles = f"(SELECT message_id, profile_id FROM ({events_with_profile_sql()}))"
        parts.append(f"SELECT c.*, p.profile_id, c.source || ':' || c.message_id AS reference FROM ({event_rows}) c "
                     f"LEFT JOIN {ev_profiles} p USING (message_id)")  # fmt: skip
    else:
        parts.append(
            f"SELECT c.*, NULL AS profile_id, c.source || ':' || c.message_id AS reference FROM ({event_rows}) c"
        )
    if with_records and mapping:
        attrs = " UNION ALL ".join(
            f"SELECT source, record_id, line, ts, ingested_at, identifiers, {_lit(purpose)} AS purpose, "
            f"{_bool_sql(_json_key('attributes', name))} AS granted, {_lit('attribute:' + name)} AS via FROM records "
            f"WHERE attributes IS NOT NULL AND {_json_key('attributes', name)} IS NOT NULL"
            for name, purpose in mapping.items()
        )
        versions = f"""
            SELECT *, lag(granted) OVER (PARTITION BY source, record_id, purpose, via ORDER BY ingested_at, line) AS before,
                   row_number() OVER (PARTITION BY source, record_id, purpose, via ORDER BY ingested_at, line) AS n
            FROM ({attrs}) WHERE granted IS NOT NULL
        """  # fmt: skip
        rec = (f"SELECT record_id AS message_id, source, CASE WHEN n = 1 THEN coalesce(ts, ingested_at) ELSE ingested_at END, "
               f"identifiers, purpose, granted, via FROM ({versions}) WHERE n = 1 OR granted IS DISTINCT FROM before")  # fmt: skip
        if profiles:
            from panorama.identity.export import records_with_profile_sql

            rec_profiles = f"(SELECT DISTINCT source, record_id AS message_id, profile_id FROM ({records_with_profile_sql()}))"
            parts.append(f"SELECT c.*, p.profile_id, c.source || ':' || c.message_id FROM ({rec}) c "
                         f"LEFT JOIN {rec_profiles} p USING (source, message_id)")  # fmt: skip
        else:
            parts.append(f"SELECT c.*, NULL, c.source || ':' || c.message_id FROM ({rec}) c")
    body = " UNION ALL ".join(parts)
    purposes = ", ".join(_lit(p) for p in config.purposes)
    hashed = guard.digest_sql(salt, "i.type", "i.value")
    return f"""
        SELECT {hashed} AS subject_hash, x.profile_id, x.purpose, x.granted, x.changed_at, x.source, x.via,
               x.reference
        FROM (SELECT *, unnest(identifiers) AS i FROM ({body}) WHERE granted IS NOT NULL AND purpose IN ({purposes})) x
        WHERE i.value IS NOT NULL AND i.value <> ''
    """


_INSERT = ("INSERT INTO consent_changes (subject_hash, profile_id, purpose, granted, changed_at, source, via, "
           "reference, recorded_at) SELECT *, ? FROM ({sql})")  # fmt: skip


def sync(store: Store, project: Project) -> int:
    """Rebuild `consent_changes` from the log; returns the number of changes."""
    from panorama.identity.export import unified

    config = project.config.consent
    sql = changes_sql(config, guard.salt(store), profiles=unified(store))
    state_now = _fingerprint(store, project)
    with store.transaction() as tx:
        tx.execute("DELETE FROM consent_changes")
        tx.execute(_INSERT.format(sql=sql), [utcnow()])
        _save_fingerprint(tx, state_now)
    return store.scalar("SELECT count(*) FROM consent_changes")


def _fingerprint(store: Store, project: Project) -> tuple[str, str, str]:
    """(log, identity resolution, consent config): what `consent_changes` is derived from."""
    from panorama.store import identity_fingerprint, log_fingerprint

    config = hashlib.sha256(repr(project.config.consent).encode()).hexdigest()[:16]
    return log_fingerprint(store), identity_fingerprint(store), config


def _save_fingerprint(cur, fingerprint: tuple[str, str, str]) -> None:
    cur.execute("DELETE FROM consent_sync_state")
    cur.execute("INSERT INTO consent_sync_state VALUES (?, ?)", ["#".join(fingerprint), utcnow()])


def _synced(store: Store, fingerprint: tuple[str, str, str]) -> bool:
    return store.scalar("SELECT fingerprint FROM consent_sync_state") == "#".join(fingerprint)


def record_batch(store: Store, project: Project, events: pa.Table) -> int:
    """Add the changes a committed micro-batch of events carries (the real-time hook)."""
    config = project.config.consent
    events, names, context = _candidates(config, events)
    if not events.num_rows:  # the usual case: nothing in the batch speaks of consent
        return 0
    cur = store.cursor()
    cur.register("_consent_batch", events)
    try:
        sql = changes_sql(config, guard.salt(store), events="_consent_batch", with_records=False,
                          trait_names=names, context=context)  # fmt: skip
        return one(cur.execute(_INSERT.format(sql=sql), [utcnow()]))[0]
    finally:
        cur.unregister("_consent_batch")


def _candidates(config: ConsentConfig, events: pa.Table) -> tuple[pa.Table, list[str], bool]:
    """The rows of a batch that may record a change, the trait names they hold, and whether
    any has context.consent (a cheap Arrow pre-filter)."""
    import pyarrow.compute as pc

    named = pc.is_in(
        events.column("event"), value_set=pa.array([CONSENT_EVENT, *config.events], pa.string())
    )
    identify = pc.equal(events.column("type"), "identify")
    names: list[str] = []
    if pc.any(identify).as_py():  # most batches are tracks and pages: no traits to search
        traits = events.column("traits").filter(identify)
        names = [n for n in attribute_map(config)
                 if pc.any(pc.match_substring(traits, f'"{n}"')).as_py()]  # fmt: skip
    has_traits = (
        pc.and_kleene(identify, pc.match_substring_regex(events.column("traits"), "|".join(f'"{n}"' for n in names)))
        if names else pa.array([False] * events.num_rows)
    )  # fmt: skip
    mask = pc.or_kleene(named, has_traits)
    context = False
    if _may_contain(events.column("context"), b"categoryPreferences"):
        in_context = pc.match_substring(events.column("context"), "categoryPreferences")
        mask = pc.or_kleene(mask, in_context)
        context = bool(pc.any(pc.fill_null(in_context, False)).as_py())
    return events.filter(pc.fill_null(mask, False)), names, context


def _may_contain(column: pa.ChunkedArray, needle: bytes) -> bool:
    """Whether some value of a text column may contain `needle`: each chunk's text searched
    at once (~0.15 µs per 1 KB context, where `match_substring` row by row takes ~1.2 - on
    every event the server loads). A chunk's data buffer may hold bytes outside its slice,
    so True only means "look row by row"."""
    for chunk in column.chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            return True
        data = chunk.buffers()[2]
        if data is not None and needle in data.to_pybytes():
            return True
    return False


# -- a profile's consent ----------------------------------------------------------------------


def _profile_hashes(
    store: Store, profile_id: str | None, extra: Iterable[tuple[str, str]] = ()
) -> list[str]:
    salt = guard.salt(store)
    pairs = list(extra)
    if profile_id and not profile_id.startswith("p_"):
        # before `unify`, real time keys profiles by user id (or `anon:` + anonymous id)
        kind, sep, rest = profile_id.partition(":")
        pairs.append(("anonymous_id", rest) if sep and kind == "anon" else ("user_id", profile_id))
    if profile_id and store.table_exists("identity_nodes"):
        pairs += store.execute(
            "SELECT type, value FROM identity_nodes WHERE profile_id = ?", [profile_id]
        ).fetchall()
    hashes = {guard.digest(salt, t, v) for t, v in pairs if v}
    return sorted(hashes)


def state(store: Store, project: Project, profile_id: str | None,
          extra: Iterable[tuple[str, str]] = ()) -> dict[str, dict[str, Any]]:  # fmt: skip
    """purpose -> {allowed, granted (None: nothing recorded), changed_at, source, via, suppressed}."""
    config = project.config.consent
    hashes = _profile_hashes(store, profile_id, extra)
    marks = ", ".join("?" for _ in hashes) or "NULL"
    rows = store.execute(
        f"""
        SELECT purpose, arg_max(granted, (changed_at, id)), max(changed_at), arg_max(source, (changed_at, id)),
               arg_max(via, (changed_at, id))
        FROM consent_changes WHERE profile_id = ? OR subject_hash IN ({marks}) GROUP BY purpose
        """,
        [profile_id, *hashes],
    ).fetchall()
    latest = {r[0]: r[1:] for r in rows}
    suppressed = dict(store.execute(
        f"SELECT purpose, arg_max(reason, created_at) FROM consent_suppressions WHERE hash IN ({marks}) GROUP BY purpose",
        hashes).fetchall()) if hashes else {}  # fmt: skip
    out = {}
    for purpose in config.purposes:
        granted, at, source, via = latest.get(purpose, (None, None, None, None))
        why = suppressed.get(purpose) or suppressed.get("*")
        sup = purpose in suppressed or "*" in suppressed
        allowed = not sup and (
            granted is True or (granted is None and purpose not in config.require_opt_in)
        )
        out[purpose] = {"allowed": allowed, "granted": granted, "changed_at": at, "source": source, "via": via,
                        "suppressed": sup, "suppression_reason": why}  # fmt: skip
    return out


def history(store: Store, subject) -> list[dict[str, Any]]:
    """Every recorded change for a data subject (`panorama.privacy.subject.Subject`)."""
    hashes = sorted(
        {guard.digest(subject.salt or guard.salt(store), t, v) for t, v in subject.pairs}
    )
    ids = subject.profile_ids
    if not hashes and not ids:
        return []
    where = []
    params: list[Any] = []
    if hashes:
        where.append(f"subject_hash IN ({', '.join('?' for _ in hashes)})")
        params += hashes
    if ids:
        where.append(f"profile_id IN ({', '.join('?' for _ in ids)})")
        params += ids
    rows = store.execute(
        "SELECT DISTINCT purpose, granted, changed_at, source, via, reference FROM consent_changes "
        f"WHERE {' OR '.join(where)} ORDER BY changed_at, purpose", params,
    ).fetchall()  # fmt: skip
    return [{"purpose": p, "granted": g, "changed_at": at, "source": s, "via": v, "reference": r}
            for p, g, at, s, v, r in rows]  # fmt: skip


def destination_purposes(config: ConsentConfig, destination: str, kind: str) -> list[str]:
    if destination in config.destinations:
        return config.destinations[destination]
    return ["email"] if kind == "email" and "email" in config.purposes else []


# -- suppression lists --------------------------------------------------------------------------


def suppress(
    store: Store, type_: str, value: str, purpose: str, reason: str | None, config: ConsentConfig
) -> bool:
    if purpose != "*" and purpose not in config.purposes:
        raise ConsentError(
            f"unknown purpose {purpose!r}; purposes: {', '.join(config.purposes)} (or * for all)"
        )
    if not str(value).strip():
        raise ConsentError("give a value to suppress")
    h = guard.digest(guard.salt(store), type_, value)
    before = store.scalar(
        "SELECT count(*) FROM consent_suppressions WHERE hash = ? AND purpose = ?", [h, purpose]
    )
    store.execute("INSERT OR REPLACE INTO consent_suppressions (hash, type, purpose, reason, created_at) "
                  "VALUES (?, ?, ?, ?, ?)", [h, guard.canonical(type_, value)[0], purpose, reason, utcnow()])  # fmt: skip
    return not before


def unsuppress(store: Store, type_: str, value: str, purpose: str | None = None) -> int:
    h = guard.digest(guard.salt(store), type_, value)
    if purpose:
        return one(store.execute(
            "DELETE FROM consent_suppressions WHERE hash = ? AND purpose = ?", [h, purpose]
        ))[0]
    return one(store.execute("DELETE FROM consent_suppressions WHERE hash = ?", [h]))[0]


# -- the delivery check ------------------------------------------------------------------------


def refusal(profile_id: str | None, profile: dict, destination: str, kind: str,
            store: Store | None = None, project: Project | None = None) -> str | None:  # fmt: skip
    """None when the delivery may go out; else why not (consent or suppression)."""
    if store is None or project is None or not store.table_exists("consent_changes"):
        return None
    purposes = destination_purposes(project.config.consent, destination, kind)
    if not purposes:
        return None
    extra = [
        (k, profile[k])
        for k in ("email", "phone")
        if isinstance(profile.get(k), str) and profile.get(k)
    ]
    current = state(store, project, profile_id, extra)
    for purpose in purposes:
        s = current.get(purpose)
        if s is None or s["allowed"]:
            continue
        if s["suppressed"]:
            return f"suppressed for {purpose}" + (
                f" ({s['suppression_reason']})" if s["suppression_reason"] else ""
            )
        if s["granted"] is False:
            return f"opted out of {purpose} at {s['changed_at']:%Y-%m-%d %H:%M:%S} ({s['via']}, source {s['source']})"
        return f"no opt-in to {purpose} recorded (consent.require_opt_in)"
    return None


def _register() -> None:
    from panorama.activate import consent as hook_point

    if refusal not in hook_point._checks:
        hook_point.register(refusal)


# -- the running server ----------------------------------------------------------------------------


class _Runtime:
    def __init__(self, store: Store, project: Project):
        self.store = store
        self.project = project
        self.errors = 0
        self.started_from: tuple[str, str, str] | None = None  # the state synced at start-up

    def on_events(self, store: Store, events: pa.Table) -> None:
        if store is not self.store or not events.num_rows:
            return
        try:
            record_batch(store, self.project, events)
        except Exception:  # a hook never fails the commit; the batch path rebuilds
            self.errors += 1
            log.exception("consent: recording a batch's changes failed")

    def stop(self) -> None:
        """After the writer and the hooks have drained: if every micro-batch since start-up was
        recorded and identity resolution did not change, `consent_changes` is consistent with
        the log as it is now, and the next start-up need not rebuild it."""
        if self.started_from is None or self.errors:
            return
        try:
            now = _fingerprint(self.store, self.project)
            if now[1:] == self.started_from[1:]:
                _save_fingerprint(self.store.cursor(), now)
        except Exception:  # the next start-up rebuilds
            log.exception("consent: saving the synced state failed")


def start(state_) -> _Runtime:
    """Called by the server at start-up: rebuild from the log (unless nothing changed since
    it was last consistent with it), then follow it in real time."""
    from panorama.ingest import hooks

    runtime = _Runtime(state_.store, state_.project)
    try:
        fingerprint = _fingerprint(state_.store, state_.project)
        if _synced(state_.store, fingerprint):
            log.info("consent: up to date with the log")
        else:
            count = sync(state_.store, state_.project)
            log.info("consent: %d changes recorded from the log", count)
        runtime.started_from = fingerprint
    except Exception:
        log.exception("consent: rebuilding from the log failed")
    _register()
    hooks.register(STAGE, "consent", runtime.on_events)
    return runtime


def admin_change(store: Store, project: Project, key: str, purpose: str, granted: bool,
                 actor: str = "cli") -> dict[str, Any]:  # fmt: skip
    """Record an admin's change as a `Consent Updated` event in the log (source panorama-admin)."""
    import secrets

    from panorama.ingest.log import append_events
    from panorama.privacy.subject import SubjectError, collect

    config = project.config.consent
    if purpose not in config.purposes:
        raise ConsentError(f"unknown purpose {purpose!r}; purposes: {', '.join(config.purposes)}")
    try:
        subject = collect(store, key, project)
    except SubjectError as exc:
        raise ConsentError(str(exc)) from None
    cur = store.cursor()
    for name in ("_priv_events", "_priv_records", "_priv_hashes"):
        cur.execute(f"DROP TABLE IF EXISTS {name}")
    ids = [
        {"type": t, "value": v}
        for t, v in subject.pairs
        if t in ("user_id", "email", "phone", "anonymous_id")
    ]
    ids = ids or [{"type": t, "value": v} for t, v in subject.pairs]
    now = utcnow()
    import orjson

    row = {"message_id": "consent-" + secrets.token_hex(12), "type": "track", "event": CONSENT_EVENT,
           "source": ADMIN_SOURCE, "user_id": None, "anonymous_id": None, "group_id": None, "previous_id": None,
           "timestamp": now, "original_timestamp": now, "sent_at": None, "received_at": now, "identifiers": ids,
           "traits": None, "properties": orjson.dumps({"purpose": purpose, "granted": granted, "by": actor}).decode(),
           "context": None, "file": None, "line": None}  # fmt: skip
    from panorama.store.schema import PROMOTED_PROPERTIES

    row.update(dict.fromkeys(PROMOTED_PROPERTIES))
    with store.transaction() as tx:
        append_events(tx, [row])
    from panorama.ingest.log import events_table

    record_batch(store, project, events_table([row]))
    pid = subject.profile_ids[0] if subject.profile_ids else None
    return state(store, project, pid, [(i["type"], i["value"]) for i in ids])[purpose]


_register()
