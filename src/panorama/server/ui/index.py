"""The read index: tables built for the web UI's and REST API's point reads and search.

Derived state (rebuilt from the profile contracts in `panorama.profiles`: `membership_sql`,
`identifiers_sql`, `profiles_sql`, `profile_events_sql`, which follow identity resolution once
it has run), sorted so that DuckDB's zone maps turn a lookup by profile id, identifier or name
token into a read of one or two row groups:

- `ui_profiles`: one row per profile (display name, email, phone, sources, counts, first and
  last seen, attributes), sorted by profile id;
- `ui_members`: every source record and event of a profile (kind, source, record id, message
  id, time, type, event), sorted by profile id and time: the timeline's index;
- `ui_identifiers`: (profile_id, type, value), sorted by profile id;
- `ui_search_keys`: normalised identifier values (lower-cased; phones also as digits and as
  their last 9 digits, which match national and international forms), sorted by key;
- `ui_search_names`: name tokens (lower case, accents stripped) per profile, sorted by token;
  `ui_search_vocab`: the distinct tokens with their frequency (fuzzy matching runs over it);
- `ui_accounts`: B2B accounts (an `account_id` attribute of a source record, or the group of
  a Segment `group` call) with their contacts;
- `ui_index_meta`: when it was built, from what (a fingerprint of the log), how long it took.

`ensure_index` rebuilds when the fingerprint changed; the server does it at start-up and then
every `refresh_seconds` in a background thread, so new data shows up within a minute - within
five while the server ingests more than 10,000 events/s (`IndexKeeper`: a rebuild then waits).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from panorama.ingest.log import utcnow
from panorama.store import Store, identity_fingerprint, log_fingerprint, one
from panorama.store.schema import CURRENT_RECORDS

log = logging.getLogger("panorama.ui.index")

TABLES = ("ui_profiles", "ui_members", "ui_identifiers", "ui_search_keys", "ui_search_names",
          "ui_search_vocab", "ui_accounts", "ui_index_meta")  # fmt: skip
_EVENT_RECORD_ID = (
    "CASE WHEN starts_with(e.message_id, e.source || ':') "
    "THEN substr(e.message_id, length(e.source) + 2) ELSE e.message_id END"
)

# attribute names (after lower-casing and dropping '_') that hold a person's names
FIRST = ("first_name", "firstName", "first", "given_name", "givenName")
LAST = ("last_name", "lastName", "surname", "family_name", "familyName")
FULL = ("full_name", "fullName", "name")


@dataclass(frozen=True)
class IndexInfo:
    built_at: datetime
    fingerprint: str
    seconds: float
    profiles: int
    members: int


def fingerprint(store: Store) -> str:
    """Changes whenever the log or identity resolution changes."""
    return "|".join(part for part in (log_fingerprint(store), identity_fingerprint(store)) if part)


def info(store: Store) -> IndexInfo | None:
    if not store.table_exists("ui_index_meta"):
        return None
    row = one(store.execute(
        "SELECT built_at, fingerprint, seconds, profiles, members FROM ui_index_meta"
    ))
    return IndexInfo(*row) if row else None


def _json_first(column: str, keys: tuple[str, ...]) -> str:
    return "coalesce(" + ", ".join(f"nullif(trim({column} ->> '{k}'), '')" for k in keys) + ")"


def _name_sql(column: str) -> str:
    """A display name from an attributes JSON column."""
    first, last, full = _json_first(column, FIRST), _json_first(column, LAST), _json_first(column, FULL)
    return f"coalesce(nullif(trim(concat_ws(' ', {first}, {last})), ''), {full})"


def build_index(store: Store) -> IndexInfo:
    """(Re)build every ui_* table in one transaction; readers see the old one until commit."""
    from panorama.profiles import profile_events_sql
    from panorama.profiles.export import identifiers_sql, membership_sql, profiles_sql

    started = time.perf_counter()
    fp = fingerprint(store)
    profiles = profiles_sql(store)
    columns = [d[0] for d in store.execute(f"SELECT * FROM ({profiles}) LIMIT 0").description]
    if "attributes" in columns:
        attrs = "TRY_CAST(p.attributes AS JSON)"
        golden = "p.attributes::VARCHAR"
    else:  # a wide golden record: one column per attribute
        keep = [c for c in columns if c != "profile_id"]
        attrs = "to_json(struct_pack(" + ", ".join(f'"{c}" := p."{c}"' for c in keep) + "))" if keep else "NULL::JSON"
        golden = f"{attrs}::VARCHAR"
    with store.transaction() as cur:
        # the timeline's rows carry what the pages show, so a profile's events are read from
        # one or two row groups (sorted by profile) instead of the whole log
        cur.execute(f"""
            CREATE OR REPLACE TABLE ui_members AS
            SELECT profile_id, 'event' AS kind, source, record_id, message_id, ts, type, event, user_id,
                   anonymous_id, group_id, value, revenue, properties, traits, context,
                   NULL::JSON AS attributes, identifiers
            FROM (
                SELECT e.profile_id, e.source, {_EVENT_RECORD_ID} AS record_id, e.message_id,
                       e.timestamp AS ts, e.type, e.event, e.user_id, e.anonymous_id, e.group_id, e.value,
                       e.revenue, e.properties, e.traits, e.context, e.identifiers
                FROM ({profile_events_sql(store)}) e)
            UNION ALL
            SELECT m.profile_id, 'record', r.source, r.record_id, NULL, r.ts, 'record', NULL, NULL, NULL,
                   NULL, NULL, NULL, NULL, NULL, NULL, r.attributes, r.identifiers
            FROM ({membership_sql(store)}) m
            JOIN ({CURRENT_RECORDS}) r ON r.source = m.source AND r.record_id = m.record_id
            ORDER BY profile_id, ts
        """)
        cur.execute(f"""
            CREATE OR REPLACE TABLE ui_identifiers AS
            SELECT DISTINCT profile_id, type, value FROM ({identifiers_sql(store)})
            WHERE value IS NOT NULL AND trim(value) <> ''
            ORDER BY profile_id, type, value
        """)
        # names from the golden record and from every source record and identify call
        cur.execute(f"""
            CREATE OR REPLACE TABLE ui_profiles AS
            WITH g AS (
                SELECT p.profile_id, any_value({_name_sql(attrs)}) AS name, any_value({golden}) AS attributes
                FROM ({profiles}) p GROUP BY p.profile_id
            ), i AS (
                SELECT profile_id,
                       min(value) FILTER (WHERE lower(type) LIKE '%email%') AS email,
                       min(value) FILTER (WHERE lower(type) LIKE '%phone%') AS phone,
                       count(*) AS identifiers
                FROM ui_identifiers GROUP BY profile_id
            ), m AS (
                SELECT profile_id, list(DISTINCT source ORDER BY source) AS sources,
                       count(*) FILTER (WHERE kind = 'record') AS records,
                       count(*) FILTER (WHERE kind = 'event') AS events,
                       min(ts) AS first_seen, max(ts) AS last_seen
                FROM ui_members GROUP BY profile_id
            )
            SELECT m.profile_id, g.name, i.email, i.phone, m.sources, m.records, m.events,
                   coalesce(i.identifiers, 0) AS identifiers, m.first_seen, m.last_seen, g.attributes
            FROM m LEFT JOIN g USING (profile_id) LEFT JOIN i USING (profile_id)
            ORDER BY m.profile_id
        """)
        cur.execute("""
            CREATE OR REPLACE TABLE ui_search_keys AS
            WITH v AS (SELECT profile_id, type, lower(trim(value)) AS value FROM ui_identifiers),
            keys AS (
                SELECT value AS key, type, profile_id FROM v
                UNION ALL
                SELECT regexp_replace(value, '[^0-9]', '', 'g'), type, profile_id FROM v
                WHERE lower(type) LIKE '%phone%'
                UNION ALL
                SELECT '~' || right(regexp_replace(value, '[^0-9]', '', 'g'), 9), type, profile_id FROM v
                WHERE lower(type) LIKE '%phone%' AND length(regexp_replace(value, '[^0-9]', '', 'g')) >= 9
                UNION ALL
                SELECT lower(profile_id), 'profile_id', profile_id FROM ui_profiles
            )
            SELECT DISTINCT key, type, profile_id FROM keys WHERE key <> '' ORDER BY key
        """)
        cur.execute(f"""
            CREATE OR REPLACE TABLE ui_search_names AS
            WITH names AS (
                SELECT profile_id, name FROM ui_profiles WHERE name IS NOT NULL
                UNION
                SELECT profile_id, {_name_sql('attributes')}
                FROM ui_members WHERE kind = 'record'
            ), tokens AS (
                SELECT profile_id,
                       unnest(regexp_split_to_array(lower(strip_accents(name)), '[^a-z0-9]+')) AS token
                FROM names WHERE name IS NOT NULL
            )
            SELECT DISTINCT token, profile_id FROM tokens WHERE length(token) > 0 ORDER BY token
        """)
        cur.execute("""
            CREATE OR REPLACE TABLE ui_search_vocab AS
            SELECT token, count(*) AS n FROM ui_search_names GROUP BY token ORDER BY token
        """)
        account = _json_first("a", ("account_id", "accountId", "company_id"))
        company = _json_first("a", ("company", "company_name", "companyName", "account_name"))
        domain = _json_first("a", ("company_domain", "domain", "website"))
        cur.execute(f"""
            CREATE OR REPLACE TABLE ui_accounts AS
            SELECT account_id, name, domain, job_title, profile_id FROM (
                SELECT profile_id, {account} AS account_id, {company} AS name, {domain} AS domain,
                       {_json_first("a", ("job_title", "jobTitle", "title_at_company"))} AS job_title
                FROM (SELECT profile_id, attributes AS a FROM ui_members WHERE kind = 'record') m
                UNION ALL
                SELECT profile_id, group_id, {_json_first("g", ("name", "company", "company_name"))},
                       {_json_first("g", ("domain", "website", "company_domain"))}, NULL
                FROM (SELECT profile_id, group_id, traits AS g FROM ui_members
                      WHERE type = 'group' AND group_id IS NOT NULL)
            ) WHERE account_id IS NOT NULL
            ORDER BY account_id
        """)
        n_profiles = one(cur.execute("SELECT count(*) FROM ui_profiles"))[0]
        n_members = one(cur.execute("SELECT count(*) FROM ui_members"))[0]
        seconds = time.perf_counter() - started
        built = IndexInfo(utcnow(), fp, seconds, n_profiles, n_members)
        cur.execute("CREATE OR REPLACE TABLE ui_index_meta (built_at TIMESTAMP, fingerprint VARCHAR, "
                    "seconds DOUBLE, profiles BIGINT, members BIGINT)")  # fmt: skip
        cur.execute("INSERT INTO ui_index_meta VALUES (?, ?, ?, ?, ?)",
                    [built.built_at, fp, seconds, n_profiles, n_members])
    log.info("read index built: %s profiles, %s members in %.1f s", n_profiles, n_members, seconds)
    return built


def ensure_index(store: Store, force: bool = False) -> IndexInfo:
    """Build the index if it is missing or the log changed since it was built."""
    current = info(store)
    if force or current is None or current.fingerprint != fingerprint(store):
        return build_index(store)
    return current


class IndexKeeper:
    """Keeps the index fresh in a background thread of the server.

    A rebuild reads the whole log (~10 s of a core per million events), and while events
    pour in, every refresh finds the log changed: under a sustained batch load on two cores
    the rebuilds took ~7 µs of CPU per event ingested and 8-10% of the ingestion rate
    (60-s runs, interleaved). So while the server ingests more than `busy_events_per_second`
    (`ingested`: the writer's running count of rows), a rebuild waits - for at most
    `max_deferral` seconds after the last one, then it runs anyway."""

    def __init__(self, store: Store, refresh_seconds: float = 30.0, *,
                 ingested: Callable[[], int] | None = None,
                 busy_events_per_second: float = 10_000.0, max_deferral: float = 300.0,
                 busy_check_seconds: float = 5.0):  # fmt: skip
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.ingested = ingested
        self.busy_events_per_second = busy_events_per_second
        self.max_deferral = max_deferral
        self.busy_check_seconds = busy_check_seconds
        self.deferrals = 0  # rebuilds put off because the server was busy ingesting
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._forced = False
        self._thread: threading.Thread | None = None
        self._cursor = None
        self.ready = threading.Event()
        self.last_error: str | None = None
        self._checked_at = time.monotonic()  # the last rebuild, or check that none was needed
        self._rate_from = (self._checked_at, ingested() if ingested else 0)

    def start(self) -> IndexKeeper:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="panorama-ui-index", daemon=True)
            self._thread.start()
        return self

    def refresh_now(self) -> None:
        self._forced = True
        self._wake.set()

    def _busy(self) -> bool:
        """Ingesting faster than `busy_events_per_second` since the last look (and a rebuild
        not yet overdue)."""
        if self.ingested is None:
            return False
        now, rows = time.monotonic(), self.ingested()
        since, before = self._rate_from
        self._rate_from = (now, rows)
        rate = (rows - before) / max(now - since, 1e-3)
        return rate > self.busy_events_per_second and now - self._checked_at < self.max_deferral

    def _run(self) -> None:
        self._cursor = self.store.cursor()  # this thread's: `stop` interrupts a build on it
        while not self._stop.is_set():
            pause = self.refresh_seconds
            forced, self._forced = self._forced, False
            try:
                if self.ready.is_set() and not forced and self._busy():
                    self.deferrals += 1
                    pause = self.busy_check_seconds
                else:
                    built = ensure_index(self.store)
                    self._checked_at = time.monotonic()
                    self.last_error = None
                    # a big log: rebuilding costs CPU that ingestion needs; at most 10% of the time
                    pause = max(pause, 10 * built.seconds)
            except Exception as exc:  # keep serving the previous index
                if self._stop.is_set():  # interrupted by `stop`: the build is rolled back
                    break
                self.last_error = str(exc)
                log.exception("building the read index failed")
            self.ready.set()
            self._wake.wait(pause)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            # a rebuild over a big log takes minutes: do not make the server's shutdown wait
            if self._cursor is not None:
                self._cursor.interrupt()
            self._thread.join(30)
