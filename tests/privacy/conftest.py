"""A small real project for the privacy tests: CSV records and events, a JSON-lines file of
Segment messages, a bad row (a dead letter) per person, resolved identities, traits,
segments, a file export and an outbox row — built with the same commands users run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

ANN = {"id": "C100", "email": "ann.smith@fastmail.co.uk", "phone": "+44 7700 900123", "anon": "anon-ann-5f2c9e",
       "loyalty": "LM-ANN-7731"}  # fmt: skip
BOB = {"id": "C200", "email": "bob.jones@gmail.com", "phone": "07700 900456", "anon": "anon-bob-81d0aa",
       "loyalty": "LM-BOB-1204"}  # fmt: skip
CAT = {"id": "C300", "email": "cat.lee@outlook.com", "phone": "07700 900789", "anon": "anon-cat-33e1b7",
       "loyalty": "LM-CAT-5550"}  # fmt: skip
PEOPLE = {"ann": ANN, "bob": BOB, "cat": CAT}

CONFIG = """\
name: privacy-test
identity: {default_region: GB}
sources:
  crm:
    path: data/crm.csv
    kind: records
    key: customer_id
    timestamp: created_at
    identifiers: {customer_id: user_id, email: email, phone: phone}
    attributes: {first_name: first_name, email_opt_in: email_opt_in, sms_opt_in: sms_opt_in}
  shop:
    path: data/orders.csv
    kind: events
    event: Order Completed
    key: order_id
    timestamp: ordered_at
    identifiers: {customer_id: user_id, email: email, loyalty_id: loyalty_id}
    properties: {total: revenue, order_id: order_id}
  web:
    path: data/web.jsonl
    kind: segment
segments:
  buyers: "orders >= 1"
destinations:
  buyers_file: {type: file, segment: buyers, path: exports/buyers.csv, columns: [email]}
"""


def write_files(root: Path) -> None:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    crm = ["customer_id,email,phone,first_name,created_at,email_opt_in,sms_opt_in"]
    orders = ["order_id,customer_id,email,loyalty_id,total,ordered_at"]
    web = []
    for n, (name, p) in enumerate(PEOPLE.items(), 1):
        crm.append(f"{p['id']},{p['email'].upper() if name == 'ann' else p['email']},{p['phone']},"
                   f"{name.title()},2024-01-0{n} 10:00:00,{'yes' if name != 'bob' else 'no'},no")  # fmt: skip
        for k in range(3):
            orders.append(
                f"O{n}{k},{p['id']},{p['email']},{p['loyalty']},{10 * (k + 1)}.5,2024-02-0{k + 1} 12:00:00"
            )
        orders.append(
            f"OBAD{n},{p['id']},{p['email']},{p['loyalty']},12.0,not-a-date"
        )  # a dead letter
        web.append(f'{{"type": "page", "anonymousId": "{p["anon"]}", "name": "Home", "messageId": "w{n}a", '
                   f'"timestamp": "2024-03-01T10:00:00Z"}}')  # fmt: skip
        web.append(f'{{"type": "identify", "anonymousId": "{p["anon"]}", "userId": "{p["id"]}", '
                   f'"traits": {{"email": "{p["email"]}", "phone": "{p["phone"]}"}}, "messageId": "w{n}b", '
                   f'"timestamp": "2024-03-01T10:01:00Z"}}')  # fmt: skip
        web.append(f'{{"type": "track", "userId": "{p["id"]}", "event": "Product Viewed", "messageId": "w{n}c", '
                   f'"timestamp": "2024-03-01T10:02:00Z", "properties": {{"product_id": "SKU-{n}"}}}}')  # fmt: skip
    (data / "crm.csv").write_text("\n".join(crm) + "\n")
    (data / "orders.csv").write_text("\n".join(orders) + "\n")
    (data / "web.jsonl").write_text("\n".join(web) + "\n")


def run_cli(*args: str) -> str:
    from panorama.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def build(root: Path) -> Path:
    """Ingest, unify, traits, segments, a file export and an outbox row for everyone."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "panorama.yaml").write_text(CONFIG)
    write_files(root)
    p = str(root)
    run_cli("ingest", "--project", p)
    run_cli("unify", "--project", p)
    run_cli("traits", "compute", "--project", p)
    run_cli("segments", "refresh", "--project", p)
    run_cli("activate", "export", "buyers_file", "--project", p)
    from panorama.config import load_project
    from panorama.store import open_store

    with open_store(load_project(root).store_path) as store:
        for name, person in PEOPLE.items():  # an outbox row each, as a trigger would have left
            pid = store.scalar("SELECT profile_id FROM identity_nodes WHERE type = 'email' AND value = ?",
                               [person["email"]])  # fmt: skip
            store.execute(
                "INSERT INTO activation_outbox (idempotency_key, destination, trigger, kind, profile_id, payload, "
                "status, created_at, next_attempt_at) VALUES (?, 'hook', 'welcome', 'event', ?, ?, 'delivered', "
                "now(), now())",
                [f"welcome:{name}", pid, f'{{"profile": {{"email": "{person["email"]}"}}}}'],
            )
    return root


@pytest.fixture(scope="module")
def built_project(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("privacy") / "template")


@pytest.fixture
def project(built_project, tmp_path) -> Path:
    """A fresh copy of the built project for each test."""
    import shutil

    target = tmp_path / "project"
    shutil.copytree(built_project, target)
    return target
