"""Data subject rights on a real project: export everything, delete everything, then search
every text column of every table of the DuckDB file for any trace of the person; re-ingesting
the same files must not bring them back, and nobody else may lose anything."""

from __future__ import annotations

import json

import pytest

from panorama.config import load_project
from panorama.store import open_store

from .conftest import ANN, BOB, PEOPLE, run_cli

pytestmark = pytest.mark.xdist_group("privacy")


def _values(person: dict) -> list[str]:
    # every form the files and messages hold: as given, upper-cased (Ann's CRM row), E.164
    return [person["id"], person["email"], person["email"].upper(), person["phone"],
            person["phone"].replace(" ", ""), person["anon"], person["loyalty"]]  # fmt: skip


def _trace(project, values) -> dict:
    from panorama.privacy.subject import trace

    with open_store(load_project(project).store_path, read_only=True) as store:
        return trace(store, values)


def _counts(project) -> dict[str, int]:
    with open_store(load_project(project).store_path, read_only=True) as store:
        tables = [r[0] for r in store.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'").fetchall()]  # fmt: skip
        return {t: store.scalar(f'SELECT count(*) FROM "{t}"') for t in tables}


def _profile_id(project, email: str) -> str:
    with open_store(load_project(project).store_path, read_only=True) as store:
        return store.scalar(
            "SELECT profile_id FROM identity_nodes WHERE type = 'email' AND value = ?", [email]
        )


def test_export_holds_everything_about_the_person(project, tmp_path):
    out = tmp_path / "ann.json"
    run_cli(
        "privacy", "export", f"email:{ANN['email']}", "--out", str(out), "--project", str(project)
    )
    data = json.loads(out.read_text())
    assert data["profile_ids"] == [_profile_id(project, ANN["email"])]
    values = {(i["type"], i["value"]) for i in data["identifiers"]}
    assert {("user_id", ANN["id"]), ("email", ANN["email"]), ("anonymous_id", ANN["anon"]),
            ("loyalty_id", ANN["loyalty"])} <= values  # fmt: skip
    assert len(data["events"]) == 3 + 3  # three orders, three web messages
    assert {e["message_id"] for e in data["events"]} >= {"shop:O10", "w1a", "w1b", "w1c"}
    assert [r["record_id"] for r in data["records"]] == [ANN["id"]]
    assert data["traits"] and data["traits"][0]["profile_id"] == data["profile_ids"][0]
    assert [m["segment"] for m in data["segments"]] == ["buyers"]
    assert [d["idempotency_key"] for d in data["deliveries"]] == ["welcome:ann"]
    assert len(data["dead_letters"]) == 1 and "OBAD1" in data["dead_letters"][0]["raw"]
    assert data["profile"]["attributes"]["first_name"]["value"] == "Ann"
    # nobody else's data
    text = out.read_text().lower()
    for other in ("bob", "cat"):
        for value in _values(PEOPLE[other]):
            assert value.lower() not in text, value


def test_delete_leaves_no_trace_and_survives_reingestion(project):
    ann_pid = _profile_id(project, ANN["email"])
    bob_pid = _profile_id(project, BOB["email"])
    before = _counts(project)
    assert _trace(project, [*_values(ANN), ann_pid])  # the search finds her before

    store_file = load_project(project).store_path
    assert any(
        v.encode() in store_file.read_bytes() for v in _values(ANN)
    )  # the byte search has teeth

    out = run_cli("privacy", "delete", ANN["id"], "--yes", "--project", str(project))
    assert "tombstone" in out and "store rewritten" in out
    # not a byte of her identifiers left in the file (freed blocks included: the file is rewritten)
    raw = store_file.read_bytes().lower()
    assert not [v for v in {*_values(ANN), ann_pid} if v.lower().encode() in raw]

    found = _trace(project, [*_values(ANN), ann_pid])
    assert found == {}, f"traces of the deleted person: {found}"
    after = _counts(project)
    assert before["events"] - after["events"] == 6 and before["records"] - after["records"] == 1
    assert before["dead_letters"] - after["dead_letters"] == 1
    # the file export it wrote no longer lists her; the others are still there
    export = (project / "exports" / "buyers.csv").read_text()
    assert ANN["email"] not in export and BOB["email"] in export and bob_pid in export
    # the audit log says a deletion happened, not whose
    with open_store(load_project(project).store_path, read_only=True) as store:
        entry = store.execute("SELECT profile_id, CAST(detail AS VARCHAR) FROM audit_log "
                              "WHERE action = 'privacy_delete'").fetchall()  # fmt: skip
        assert len(entry) == 1 and entry[0][0] is None and "dsr_" in entry[0][1]
        assert store.scalar("SELECT count(*) FROM privacy_tombstones") >= 5

    # the same files again, and the pipeline: she is not re-created, nobody else changes
    run_cli("ingest", "--project", str(project))
    run_cli("unify", "--project", str(project))
    run_cli("traits", "compute", "--project", str(project))
    run_cli("segments", "refresh", "--project", str(project))
    assert _trace(project, [*_values(ANN), ann_pid]) == {}
    again = _counts(project)
    for table in ("events", "records", "dead_letters", "identity_nodes", "profile_traits"):
        assert again[table] == after[table], table
    assert _profile_id(project, BOB["email"]) == bob_pid


def test_delete_by_any_identifier_form_and_unknown_person(project):
    # the phone in another format than stored resolves to her too
    run_cli("privacy", "delete", "phone:07700 900123", "--yes", "--project", str(project))
    assert _trace(project, _values(ANN)) == {}
    from typer.testing import CliRunner

    from panorama.cli import app

    result = CliRunner().invoke(app, ["privacy", "delete", "email:nobody@example.com", "--yes",
                                      "--project", str(project)])  # fmt: skip
    assert (
        result.exit_code == 1 and "no profile matches 'email:nobody@example.com'" in result.output
    )


def test_tombstones_stop_a_late_file_of_new_rows(project):
    run_cli("privacy", "delete", f"email:{ANN['email']}", "--yes", "--project", str(project))
    # a new order for her (new key), by email only, in different case, and a new bad row
    with open(project / "data" / "orders.csv", "a") as f:
        f.write(f"O999,,{ANN['email'].upper()},,99.0,2024-05-01 12:00:00\n")
        f.write(f"OBAD9,{ANN['id']},,,1.0,garbage\n")
        f.write(f"O998,{BOB['id']},,,5.0,2024-05-01 12:00:00\n")
    with open(project / "data" / "web.jsonl", "a") as f:
        f.write(
            json.dumps(
                {"type": "track", "anonymousId": ANN["anon"], "event": "X", "messageId": "late1"}
            )
            + "\n"
        )
        f.write(
            json.dumps(
                {
                    "type": "alias",
                    "userId": "C-NEW",
                    "previousId": ANN["anon"],
                    "messageId": "late2",
                }
            )
            + "\n"
        )
        f.write(json.dumps({"type": "track", "userId": ANN["id"], "event": "X", "timestamp": "bad",
                            "messageId": "late3"}) + "\n")  # fmt: skip
    run_cli("ingest", "--project", str(project))
    assert _trace(project, [*_values(ANN), "O999", "OBAD9", "late1", "late2", "late3"]) == {}
    assert _trace(project, ["O998"])  # Bob's new order is in
