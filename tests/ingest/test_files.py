"""File ingestion: good rows load, bad rows are dead-lettered by line, re-runs load nothing twice."""

from __future__ import annotations

import json
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from panorama.config import load_project
from panorama.ingest.files import IngestError, ingest_source
from panorama.store import open_store

CONFIG = """
name: acme
store: panorama.duckdb
identity: {default_region: GB}
sources:
  crm:
    path: data/crm_contacts.csv
    kind: records
    key: customer_id
    timestamp: created_at
    identifiers: {customer_id: crm_id, email: email, phone: phone}
    attributes: {first_name: first_name, last_name: last_name, birth_date: birth_date}
    formats: {birth_date: "%d/%m/%Y"}
  shop:
    path: data/shop_orders.csv
    kind: events
    event: Order Completed
    key: order_id
    timestamp: ordered_at
    identifiers: {customer_email: email}
    attributes: {ship_name: full_name}
    properties: {total: revenue, currency: currency}
  web:
    path: data/web.jsonl
    kind: segment
"""

CRM = """\
customer_id,first_name,last_name,email,phone,birth_date,created_at
C1,Anna,Smith,anna@x.com,07700 900123,01/02/1980,2024-01-01 10:00:00
C2,Bob,Jones,bob@x.com,,31-12-1980,2024-01-02
,No,Key,nokey@x.com,,,2024-01-03
C4,Bad,Time,bt@x.com,,,yesterday
C5,"Multi
Line",Name,ml@x.com,,,2024-01-05T10:00:00Z
C6,too,many,fields,x,y,z,w
C7,Ok,Row,ok@x.com,,,1704067200
"""

SHOP = """\
order_id,customer_email,ship_name,total,currency,ordered_at,coupon
O1,anna@x.com,Anna Smith,12.50,GBP,2024-02-01 10:00:00,
O2,bob@x.com,Bob Jones,abc,GBP,2024-02-02 10:00:00,SAVE10
O3,bob@x.com,Bob Jones,"1,200.00",GBP,2024-02-03 10:00:00,SAVE10
"""

WEB = "\n".join(
    [
        '{"type":"identify","messageId":"m1","anonymousId":"a1","userId":"u1","traits":{"email":"Anna@X.com"},"timestamp":"2024-03-01T10:00:00Z"}',
        '{"type":"track","messageId":"m2","anonymousId":"a1","event":"Product Viewed","properties":{"product_id":"p1","price":"9.99"},"timestamp":"2024-03-01T10:01:00+01:00"}',
        '{"type":"track","messageId":"m3","anonymousId":"a1","properties":{},"timestamp":"2024-03-01T10:02:00Z"}',
        "not json",
        '{"type":"page","messageId":"m5","timestamp":"2024-03-01T10:02:00Z"}',
        '{"type":"track","messageId":"m6","userId":"u1","event":"Order Completed","properties":{"revenue":"lots"}}',
    ]
)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "panorama.yaml").write_text(CONFIG)
    (tmp_path / "data/crm_contacts.csv").write_text(CRM)
    (tmp_path / "data/shop_orders.csv").write_text(SHOP)
    (tmp_path / "data/web.jsonl").write_text(WEB + "\n")
    return load_project(tmp_path)


def _ingest_all(project):
    with open_store(project.store_path) as store:
        return {name: ingest_source(store, project, name) for name in project.config.sources}


def _dead(project):
    with open_store(project.store_path) as store:
        return store.execute(
            "SELECT source, file, line, field, reason FROM dead_letters ORDER BY source, line"
        ).fetchall()


def test_good_rows_load_and_bad_rows_are_dead_lettered_by_line(project):
    results = _ingest_all(project)
    assert (results["crm"].loaded, results["crm"].rejected) == (3, 4)
    assert (results["shop"].loaded, results["shop"].rejected) == (2, 1)
    assert (results["web"].loaded, results["web"].rejected) == (2, 4)
    dead = {(s, line): (field, reason) for s, _, line, field, reason in _dead(project)}
    assert dead[("crm", 3)] == (
        "birth_date", "attribute 'birth_date' (column 'birth_date'): '31-12-1980' does not match format '%d/%m/%Y'"
    )  # fmt: skip
    assert dead[("crm", 4)] == ("customer_id", "key column 'customer_id' is empty")
    assert dead[("crm", 5)][1].startswith("timestamp column 'created_at': cannot parse 'yesterday'")
    # the quoted multi-line row starts at line 6 and spans two lines; the ragged row is line 8
    assert dead[("crm", 8)][1] == "expected 7 fields as in the header, found 8"
    assert dead[("shop", 3)] == ("total", "property 'revenue' (column 'total'): 'abc' is not a number")
    assert dead[("web", 3)][0] == "event"
    assert dead[("web", 4)][1].startswith("invalid JSON")
    assert dead[("web", 5)][0] == "userId"
    assert dead[("web", 6)] == ("properties.revenue", "properties.revenue: must be a number, got 'lots'")


def test_values_are_typed_and_mapped(project):
    _ingest_all(project)
    with open_store(project.store_path) as store:
        records = dict(store.execute(
            "SELECT record_id, json_extract_string(attributes, '$.birth_date') FROM records"
        ).fetchall())  # fmt: skip
        assert records == {"C1": "1980-02-01", "C5": None, "C7": None}
        ts = dict(store.execute("SELECT record_id, CAST(ts AS VARCHAR) FROM records").fetchall())
        assert ts == {"C1": "2024-01-01 10:00:00", "C5": "2024-01-05 10:00:00", "C7": "2024-01-01 00:00:00"}
        ml = store.scalar("SELECT json_extract_string(attributes, '$.first_name') FROM records WHERE record_id='C5'")
        assert ml == "Multi\nLine"
        orders = store.execute(
            "SELECT message_id, event, revenue, currency, json_extract_string(properties, '$.coupon'),"
            " json_extract_string(traits, '$.full_name'), identifiers FROM events WHERE source='shop' ORDER BY 1"
        ).fetchall()
        assert orders == [
            ("shop:O1", "Order Completed", 12.5, "GBP", None, "Anna Smith", [{"type": "email", "value": "anna@x.com"}]),
            ("shop:O3", "Order Completed", 1200.0, "GBP", "SAVE10", "Bob Jones", [{"type": "email", "value": "bob@x.com"}]),
        ]  # fmt: skip
        web = store.execute(
            "SELECT message_id, CAST(timestamp AS VARCHAR), price, identifiers FROM events WHERE source='web' ORDER BY 1"
        ).fetchall()
        assert web[0] == ("m1", "2024-03-01 10:00:00", None, [
            {"type": "user_id", "value": "u1"}, {"type": "anonymous_id", "value": "a1"},
            {"type": "email", "value": "Anna@X.com"}])  # fmt: skip
        assert web[1] == ("m2", "2024-03-01 09:01:00", 9.99, [{"type": "anonymous_id", "value": "a1"}])


def test_reingesting_loads_nothing_twice(project):
    _ingest_all(project)
    again = _ingest_all(project)
    assert {n: r.loaded for n, r in again.items()} == {"crm": 0, "shop": 0, "web": 0}
    assert {n: r.duplicates for n, r in again.items()} == {"crm": 3, "shop": 2, "web": 2}
    with open_store(project.store_path) as store:
        assert store.scalar("SELECT count(*) FROM records") == 3
        assert store.scalar("SELECT count(*) FROM events") == 4
        assert store.scalar("SELECT count(*) FROM dead_letters") == 9


def test_a_changed_record_is_a_new_version_and_current_view_takes_it(project):
    _ingest_all(project)
    path = project.root / "data/crm_contacts.csv"
    path.write_text(path.read_text().replace("Anna,Smith,anna@x.com", "Anna,Smith-Jones,anna@x.com"))
    _ingest_all(project)
    from panorama.store.schema import CURRENT_RECORDS

    with open_store(project.store_path) as store:
        assert store.scalar("SELECT count(*) FROM records WHERE record_id = 'C1'") == 2
        current = store.scalar(
            f"SELECT json_extract_string(attributes, '$.last_name') FROM ({CURRENT_RECORDS}) WHERE record_id='C1'"
        )
        assert current == "Smith-Jones"


def test_missing_column_names_the_column_and_loads_nothing(project):
    (project.root / "data/shop_orders.csv").write_text("order_id,ordered_at\nO1,2024-01-01\n")
    with open_store(project.store_path) as store, pytest.raises(IngestError) as excinfo:
        ingest_source(store, project, "shop")
    message = str(excinfo.value)
    assert "data/shop_orders.csv" in message and "'customer_email'" in message and "'total'" in message
    with open_store(project.store_path) as store:
        assert store.scalar("SELECT count(*) FROM events") == 0


def test_missing_file_and_unknown_source(project):
    (project.root / "data/shop_orders.csv").unlink()
    with open_store(project.store_path) as store:
        with pytest.raises(IngestError, match=r"data/shop_orders.csv: file not found"):
            ingest_source(store, project, "shop")
        with pytest.raises(IngestError, match=r"unknown source 'nope'"):
            ingest_source(store, project, "nope")


def test_a_row_that_is_not_utf8_is_dead_lettered_alone(project):
    (project.root / "data/shop_orders.csv").write_bytes(
        SHOP.encode() + b"O9,\xff\xfe@x.com,X,1,GBP,2024-01-01,\nO10,\xc3\xa9@x.com,X,2,GBP,2024-01-01,\n"
    )
    with open_store(project.store_path) as store:
        result = ingest_source(store, project, "shop")
        assert (result.loaded, result.rejected) == (3, 2)
        assert store.execute("SELECT line, reason FROM dead_letters ORDER BY line").fetchall() == [
            (3, "property 'revenue' (column 'total'): 'abc' is not a number"),
            (5, "not valid UTF-8 text"),
        ]
        assert store.scalar("SELECT identifiers[1].value FROM events WHERE message_id = 'shop:O10'") == "é@x.com"


@pytest.mark.parametrize("suffix", [".parquet", ".json", ".jsonl"])
def test_parquet_and_json_sources(tmp_path, suffix):
    rows = [
        {"id": "L1", "email": "a@x.com", "tier": "gold", "points": 120, "joined": "2023-01-01"},
        {"id": "L2", "email": "b@x.com", "tier": "silver", "points": 5, "joined": "not a date"},
        {"id": None, "email": "c@x.com", "tier": "gold", "points": 1, "joined": "2023-01-02"},
    ]
    path = tmp_path / f"loyalty{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "panorama.yaml").write_text(textwrap.dedent(f"""
        name: t
        sources:
          loyalty:
            path: loyalty{suffix}
            kind: records
            key: id
            timestamp: joined
            identifiers: {{email: email}}
            attributes: {{tier: loyalty_tier, points: loyalty_points}}
    """))
    project = load_project(tmp_path)
    with open_store(project.store_path) as store:
        result = ingest_source(store, project, "loyalty")
        assert (result.loaded, result.rejected) == (1, 2)
        lines = [r[0] for r in store.execute("SELECT line FROM dead_letters ORDER BY line").fetchall()]
        assert lines == [2, 3]
        assert store.scalar("SELECT json_extract_string(attributes, '$.loyalty_points') FROM records") == "120"


def test_db_table_source(tmp_path):
    import sqlite3

    db = tmp_path / "crm.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE contacts (id TEXT, email TEXT, updated TEXT)")
    con.executemany("INSERT INTO contacts VALUES (?, ?, ?)", [("1", "a@x.com", "2024-01-01"), ("2", "b@x.com", "")])
    con.commit()
    con.close()
    (tmp_path / "panorama.yaml").write_text(textwrap.dedent("""
        name: t
        sources:
          crm:
            table: contacts
            database: crm.sqlite
            kind: records
            key: id
            timestamp: updated
            identifiers: {email: email}
    """))
    project = load_project(tmp_path)
    with open_store(project.store_path) as store:
        result = ingest_source(store, project, "crm")
        assert (result.loaded, result.rejected) == (1, 1)
        assert store.scalar("SELECT reason FROM dead_letters") == "timestamp column 'updated' is empty"


def test_dead_letters_replay_after_fixing_the_config(project):
    from panorama.ingest.files import replay_dead_letters

    _ingest_all(project)
    config = project.root / "panorama.yaml"
    config.write_text(config.read_text().replace('formats: {birth_date: "%d/%m/%Y"}', "formats: {}"))
    fixed = load_project(project.root)
    with open_store(fixed.store_path) as store:
        result = replay_dead_letters(store, fixed, "crm")
        # the birth-date row now loads; empty key, bad timestamp and the ragged line stay
        assert (result.replayed, result.still_failing) == (1, 3)
        assert store.scalar("SELECT line FROM records WHERE record_id = 'C2'") == 3
        assert store.scalar("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL AND source='crm'") == 3
        again = replay_dead_letters(store, fixed, "crm")
        assert (again.replayed, again.still_failing) == (0, 3)
        assert store.scalar("SELECT count(*) FROM dead_letters") == 9
