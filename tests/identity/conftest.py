"""A small multi-source project with the identity traps, built per test in a temp directory."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from panorama.config import load_project
from panorama.ingest.files import ingest_source
from panorama.store import open_store

CONFIG = """
name: idtest
store: panorama.duckdb
identity:
  default_region: GB
  splink: {enabled: false}
{extra}
sources:
  crm:
    path: crm.csv
    kind: records
    key: customer_id
    timestamp: created_at
    identifiers: {customer_id: user_id, email: email, phone: phone}
    attributes: {first_name: first_name, last_name: last_name, birth_date: birth_date, postcode: postal_code}
    formats: {birth_date: "%d/%m/%Y"}
    priority: 10
  b2b:
    path: b2b.csv
    kind: records
    key: contact_id
    timestamp: created_at
    identifiers: {contact_id: b2b_contact_id, email: email, phone: phone}
    attributes: {first_name: first_name, last_name: last_name}
  shop:
    path: shop.csv
    kind: events
    event: Order Completed
    key: order_id
    timestamp: ordered_at
    identifiers: {customer_id: user_id, email: email, phone: phone}
    attributes: {ship_name: full_name}
    properties: {total: revenue}
    priority: 5
  web:
    path: web.jsonl
    kind: segment
"""

CRM = [
    # customer_id, first, last, email, phone, birth_date, postcode, created_at
    ("C1", "Robert", "Smith", "Rob.Smith@Gmail.com ", "07911 123456", "01/02/1980", "M14 5RT", "2023-01-01 10:00:00"),
    ("C2", "Bob", "Smith", "bob.smith+shop@outlook.com", "+44 7911 123456", "01/02/1980", "M145RT", "2023-06-01 10:00:00"),
    # a household: a landline in both accounts, different people
    ("C3", "Alice", "Jones", "alice.jones@yahoo.co.uk", "0161 496 0000", "05/06/1970", "M1 1AA", "2023-01-02 10:00:00"),
    ("C4", "Peter", "Jones", "peter.jones@yahoo.co.uk", "0161 496 0000", "07/08/1968", "M1 1AA", "2023-01-03 10:00:00"),
    # twins: same surname, birth date, address and landline; different first names and emails
    ("C5", "Emma", "Brown", "emma.b@hotmail.com", "0113 496 0111", "09/09/2000", "LS1 1AA", "2023-02-01 10:00:00"),
    ("C6", "Lucy", "Brown", "lucy.b@hotmail.com", "0113 496 0111", "09/09/2000", "LS1 1AA", "2023-02-02 10:00:00"),
    # junk email typed by staff for two different people
    ("C7", "Tom", "Hill", "test@test.com", "", "", "", "2023-03-01 10:00:00"),
    ("C8", "Sara", "Khan", "test@test.com", "", "", "", "2023-03-02 10:00:00"),
    # an invalid phone: kept on the record, never linked
    ("C9", "Nina", "Patel", "nina@example.co.uk", "12345", "", "", "2023-03-03 10:00:00"),
]  # fmt: skip

B2B = [
    ("B1", "Ann", "Lee", "info@smallfirm.co.uk", "020 7946 0000", "2023-01-01 09:00:00"),
    ("B2", "Mark", "Wood", "info@smallfirm.co.uk", "020 7946 0000", "2023-01-01 09:05:00"),
    ("B3", "Jane", "Cole", "jane@smallfirm.co.uk", "020 7946 0000", "2023-01-01 09:10:00"),
]  # fmt: skip

SHOP = [
    # order_id, customer_id, email, phone, ship_name, total, ordered_at
    ("O1", "C1", "rob.smith@gmail.com", "", "Robert Smith", "10.00", "2023-02-01 12:00:00"),
    ("O2", "", "ROB.SMITH@GMAIL.COM", "", "Smith, Rob", "20.00", "2023-03-01 12:00:00"),  # guest
    ("O3", "", "peter.jones@yahoo.co.uk", "", "Peter Jones", "5.00", "2023-04-01 12:00:00"),
    ("O4", "", "", "0161 496 0000", "", "7.00", "2023-04-02 12:00:00"),  # only the household landline
    ("O5", "", "guest.only@gmail.com", "07700 900999", "Gus Only", "9.00", "2023-05-01 12:00:00"),
    ("O6", "C8", "sara.k@gmail.com", "", "Sara Khan", "3.00", "2023-06-01 12:00:00"),  # joins C8 and anon-4
]  # fmt: skip


def web_messages() -> list[dict]:
    t = "2023-05-0{}T10:00:0{}Z"
    return [
        # anonymous browsing, then an identify with userId: one profile
        {"type": "page", "messageId": "w1", "anonymousId": "anon-1", "name": "Home", "timestamp": t.format(1, 1)},
        {"type": "track", "messageId": "w2", "anonymousId": "anon-1", "event": "Product Viewed",
         "timestamp": t.format(1, 2)},
        {"type": "identify", "messageId": "w3", "anonymousId": "anon-1", "userId": "C3",
         "traits": {"email": "alice.jones@yahoo.co.uk", "firstName": "Alice", "lastName": "Jones"},
         "timestamp": t.format(1, 3)},
        # a newsletter sign-up: email only, from another browser, then an alias
        {"type": "identify", "messageId": "w4", "anonymousId": "anon-2", "traits": {"email": "Guest.Only@gmail.com"},
         "timestamp": t.format(2, 1)},
        {"type": "alias", "messageId": "w5", "anonymousId": "anon-3", "previousId": "anon-2", "userId": "C9",
         "timestamp": t.format(2, 2)},
        {"type": "identify", "messageId": "w6", "anonymousId": "anon-4", "traits": {"email": "sara.k@gmail.com"},
         "timestamp": t.format(2, 3)},
    ] + [
        # a store kiosk: many customers log in on one anonymousId
        {"type": "identify", "messageId": f"k{i}", "anonymousId": "kiosk-1", "userId": f"K{i}",
         "timestamp": t.format(3, i % 10)}
        for i in range(8)
    ] + [
        {"type": "page", "messageId": "k-anon", "anonymousId": "kiosk-1", "name": "Home", "timestamp": t.format(4, 1)},
    ]  # fmt: skip


def _csv(header: list[str], rows: list[tuple]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@dataclass
class IdProject:
    root: Path

    @property
    def project(self):
        return load_project(self.root)

    def store(self, read_only: bool = False):
        return open_store(self.project.store_path, read_only=read_only)

    def ingest(self, *sources: str) -> None:
        project = self.project
        with open_store(project.store_path) as store:
            for name in sources or project.config.sources:
                ingest_source(store, project, name)

    def unify(self):
        from panorama.identity.service import unify

        project = self.project
        with open_store(project.store_path) as store:
            return unify(store, project)

    def membership(self) -> dict[tuple[str, str], str]:
        from panorama.profiles.export import membership_sql

        with self.store(read_only=True) as store:
            rows = store.execute(
                f"SELECT source, record_id, profile_id FROM ({membership_sql(store)})"
            ).fetchall()
        return {(s, r): p for s, r, p in rows}

    def same(self, *members: tuple[str, str]) -> bool:
        m = self.membership()
        return len({m[x] for x in members}) == 1

    def partition(self) -> set[frozenset]:
        groups: dict[str, set] = {}
        for key, pid in self.membership().items():
            groups.setdefault(pid, set()).add(key)
        return {frozenset(g) for g in groups.values()}


def write_project(root: Path, extra: str = "", crm=CRM, b2b=B2B, shop=SHOP, web=None) -> IdProject:
    root.mkdir(parents=True, exist_ok=True)
    (root / "panorama.yaml").write_text(CONFIG.replace("{extra}", extra), encoding="utf-8")
    (root / "crm.csv").write_text(_csv(["customer_id", "first_name", "last_name", "email", "phone", "birth_date",
                                        "postcode", "created_at"], crm), encoding="utf-8")  # fmt: skip
    (root / "b2b.csv").write_text(_csv(["contact_id", "first_name", "last_name", "email", "phone", "created_at"], b2b),
                                  encoding="utf-8")  # fmt: skip
    (root / "shop.csv").write_text(_csv(["order_id", "customer_id", "email", "phone", "ship_name", "total",
                                         "ordered_at"], shop), encoding="utf-8")  # fmt: skip
    messages = web_messages() if web is None else web
    (root / "web.jsonl").write_text(
        "".join(json.dumps(m) + "\n" for m in messages), encoding="utf-8"
    )
    return IdProject(root)


@pytest.fixture
def idproject(tmp_path) -> IdProject:
    project = write_project(tmp_path / "p")
    project.ingest()
    return project
