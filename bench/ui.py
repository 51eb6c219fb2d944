"""Server time per page of the web UI and the REST API at N profiles (default 1M).

Synthetic people are inserted with SQL: one CRM record each (name, email, phone, city) and
`--events` events each (orders, page views, a ticket, an NPS answer), plus one heavy profile
with 5,000 events. Profiles group records and events by email (a stand-in for identity
resolution, so the figures do not depend on its rules; the read index and the segments engine
both see it). The read index is built unless it is up to date (--rebuild forces it), the server
runs in this process (uvicorn on loopback) and every page is requested `--repeat` times as a
signed-in admin; the benchmark prints the index build time and per page the median and p95
of the time to the last byte (loopback adds ~0.3 ms), with the load average before and after.
The segment builder's live count is requested 3 times. Target: < 300 ms per page, search
< 200 ms.

    python bench/ui.py [--profiles 1000000] [--events 3] [--repeat 20] [--dir DIR] [--rebuild]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

FIRST = ["Ann", "Bob", "Chloe", "David", "Emma", "Farid", "Grace", "Harry", "Isla", "Jack", "Katie", "Liam",
         "Mia", "Noah", "Olivia", "Priya", "Quinn", "Ruby", "Sam", "Tom", "Uma", "Vik", "Will", "Zoë"]
LAST = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Wright",
        "Robinson", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson",
        "Clarke", "Hughes", "Edwards", "Khan", "Lewis", "Harris", "Martin", "Cooper", "King", "Lee"]
CITIES = ["Leeds", "York", "London", "Bristol", "Leicester", "Glasgow", "Cardiff", "Belfast", "Hull", "Bath"]


def _lit(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def populate(store, n: int, events_per: int) -> None:
    first, last, cities = _lit(FIRST), _lit(LAST), _lit(CITIES)
    people = f"""
        SELECT i, {first}[1 + (hash(i) % {len(FIRST)})::INT] AS fn,
               {last}[1 + (hash(i * 7) % {len(LAST)})::INT] AS ln,
               {cities}[1 + (hash(i * 13) % {len(CITIES)})::INT] AS city,
               lower(strip_accents({first}[1 + (hash(i) % {len(FIRST)})::INT])) || '.' ||
               lower({last}[1 + (hash(i * 7) % {len(LAST)})::INT]) || i || '@example.com' AS email,
               '+447' || lpad(CAST(i AS VARCHAR), 9, '0') AS phone,
               TIMESTAMP '2022-01-01' + to_seconds(CAST(hash(i) % 63072000 AS BIGINT)) AS ts
        FROM range({n}) t(i)
    """
    store.execute(f"""
        INSERT INTO records
        SELECT 'crm', 'C' || i, 'h' || i, ts, ts,
               [{{'type': 'user_id', 'value': 'C' || i}}, {{'type': 'email', 'value': email}},
                {{'type': 'phone', 'value': phone}}],
               CAST(json_object('first_name', fn, 'last_name', ln, 'city', city) AS JSON), NULL, NULL, NULL
        FROM ({people})
    """)
    kinds = ["('track', 'Order Completed', 'shop')", "('page', NULL, 'web')", "('track', 'Ticket Opened', 'support')",
             "('track', 'NPS Survey Answered', 'nps')"]
    store.execute(f"""
        INSERT INTO events (message_id, type, event, source, timestamp, received_at, identifiers, properties,
                            revenue, value)
        SELECT k.source || ':' || i || '-' || j, k.type, k.event, k.source,
               p.ts + to_seconds(CAST(86400 * j + hash(i, j) % 86400 AS BIGINT)), p.ts,
               [{{'type': 'email', 'value': p.email}}],
               CAST(json_object('order_id', 'O' || i || '-' || j, 'subject', 'Where is my parcel?') AS JSON),
               CASE WHEN k.event = 'Order Completed' THEN 10 + hash(i, j) % 200 END,
               CASE WHEN k.event = 'NPS Survey Answered' THEN hash(i, j) % 11 END
        FROM ({people}) p, range({events_per}) r(j),
             (SELECT * FROM (VALUES {', '.join(kinds)}) v(type, event, source)) k
        WHERE hash(i, j, k.source) % {len(kinds)} = 0 OR k.source = 'web'
    """)
    # one heavy profile (person 0): 5,000 page views
    email = store.scalar("SELECT x.value FROM (SELECT unnest(identifiers) AS x FROM records "
                         "WHERE record_id = 'C0') WHERE x.type = 'email'")
    store.execute("""
        INSERT INTO events (message_id, type, event, source, timestamp, received_at, identifiers, properties)
        SELECT 'web:heavy-' || j, 'page', NULL, 'web', TIMESTAMP '2023-01-01' + to_seconds(j * 600),
               TIMESTAMP '2023-01-01', [{'type': 'email', 'value': ?}], CAST(json_object('path', '/p/' || j) AS JSON)
        FROM range(5000) t(j)
    """, [email])


def timed(client, path: str, repeat: int, **kw) -> tuple[float, float, int]:
    times = []
    status = 0
    for _ in range(repeat):
        t = time.perf_counter()
        r = client.get(path, **kw)
        times.append((time.perf_counter() - t) * 1000)
        status = r.status_code
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))], status


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=3, help="days of events per person (~2 events a day)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--rebuild", action="store_true", help="build the read index even if it is up to date")
    args = ap.parse_args()

    import pytest

    from conftest import start_server
    from panorama.auth.users import create_user
    from panorama.config import init_project, load_project
    from panorama.server.app import Tuning
    from panorama.server.ui.index import build_index, fingerprint
    from panorama.server.ui.index import info as index_info
    from panorama.store import open_store
    from ui.conftest import Browserish, by_email

    patch = pytest.MonkeyPatch()
    by_email(patch)
    # the segments engine sees the same profiles as resolved identities (as after `panorama
    # unify`), so the builder's live count takes the path it takes in production
    import panorama.identity.export as identity_export
    import panorama.profiles.export as profiles_export

    patch.setattr(identity_export, "membership_sql", profiles_export.membership_sql)
    patch.setattr(identity_export, "profiles_sql", profiles_export.profiles_sql)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="panorama-bench-ui-"))
    if not (directory / "panorama.yaml").exists():
        init_project(directory, name="bench-ui", region="GB")
    store_path = load_project(directory).store_path
    with open_store(store_path) as store:
        if not store.scalar("SELECT count(*) FROM records"):
            t = time.perf_counter()
            populate(store, args.profiles, args.events)
            print(f"inserted {store.scalar('SELECT count(*) FROM records'):,} records and "
                  f"{store.scalar('SELECT count(*) FROM events'):,} events in {time.perf_counter() - t:.1f} s")
            create_user(store, "bench", "admin", "bench-password-1")
        store.execute("SET threads = 1")  # as the server runs (Tuning.duckdb_threads)
        current = index_info(store)
        if args.rebuild or current is None or current.fingerprint != fingerprint(store):
            t = time.perf_counter()
            info = build_index(store)
            print(f"read index: {info.profiles:,} profiles, {info.members:,} members, built in "
                  f"{time.perf_counter() - t:.1f} s (1 thread)")
        else:
            info = current
            print(f"read index: {info.profiles:,} profiles, {info.members:,} members, up to date "
                  f"(built in {info.seconds:.1f} s, 1 thread; --rebuild to build it again)")
        heavy = store.scalar("SELECT profile_id FROM ui_members GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
        some = store.execute("SELECT profile_id FROM ui_profiles USING SAMPLE 1 ROWS").fetchone()[0]
        email = store.scalar("SELECT value FROM ui_identifiers WHERE profile_id = ? AND type = 'email'", [some])
    import conftest

    conftest.START_TIMEOUT = 900.0  # start-up builds the segments' profile catalog over the log
    t = time.perf_counter()
    server = start_server(directory, {}, tuning=Tuning(gc_threshold=None, switch_interval=None))
    print(f"server started in {time.perf_counter() - t:.1f} s")
    try:
        c = Browserish(server.url)
        c.sign_in("bench", "bench-password-1")
        pages = [
            ("search page, name", "/search?q=olivia+patel"),
            ("search, fuzzy name (typo)", "/search/results?q=olivya+pattel"),
            ("search, email", f"/search/results?q={email}"),
            ("search, phone (national form)", "/search/results?q=07000001234"),
            ("profile 360", f"/profiles/{some}"),
            ("profile 360, 5,000 events", f"/profiles/{heavy}"),
            ("timeline page 2, 5,000 events", f"/profiles/{heavy}/timeline?more=true&before=2023-01-20T00:00:00"),
            ("timeline filtered by source", f"/profiles/{some}/timeline?source=shop"),
            ("dashboards", "/dashboards"),
            ("sources", "/sources"),
            ("audit log", "/admin/audit"),
            ("API profile", f"/api/v1/profiles/{some}"),
            ("API profile by email", f"/api/v1/profiles/email:{email}/traits"),
            ("API search", "/api/v1/search?q=grace+hall"),
            ("segments", "/segments"),
            ("segment builder", "/segments/new"),
        ]
        # the builder's live count evaluates the expression over every profile: fewer repeats
        slow_pages = [
            ("builder live count, events", "/segments/preview?expression="
             "performed(%27Order+Completed%27)+%3E%3D+2"),
            ("builder live count, attribute", "/segments/preview?expression=city+%3D+%27Leeds%27"),
            ("builder error (unknown column)", "/segments/preview?expression=last_sen_at+IS+NULL"),
        ]
        c.get(pages[0][1])  # warm-up (imports, first query plans)
        print(f"\n{'page':36s} {'median ms':>10s} {'p95 ms':>8s}  status")
        worst = 0.0
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for label, path in pages:
            med, p95, status = timed(c, path, args.repeat)
            worst = max(worst, med)
            print(f"{label:36s} {med:10.1f} {p95:8.1f}  {status}")
        for label, path in slow_pages:
            med, p95, status = timed(c, path, 3)
            print(f"{label:36s} {med:10.1f} {p95:8.1f}  {status}  (3 requests)")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"\nslowest median: {worst:.1f} ms (target < 300 ms); profiles: {info.profiles:,}; "
              f"cores: {os.cpu_count()}")
    finally:
        server.stop()
        patch.undo()


if __name__ == "__main__":
    main()
