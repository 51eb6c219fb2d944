"""Consent end to end: changes from identify traits, configured events, Segment's
context.consent, source columns and admins, each with its time and source; a real SMTP server
receives the email trigger only for people who may be emailed, whatever the trigger says."""

from __future__ import annotations

import pytest

from activate.helpers import Mailbox, sdk_client, wait_until, write_project
from conftest import make_project, start_server
from panorama.config import load_project
from panorama.store import open_store

from .conftest import ANN, BOB, CAT, run_cli

pytestmark = pytest.mark.xdist_group("privacy")


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.stop()


def test_email_trigger_respects_consent_and_suppression(tmp_path, mailbox):
    project = write_project(
        tmp_path / "project",
        consent={"events": {"Unsubscribed": {"purpose": "email", "granted": False}}},
        triggers={"promo": {"event": "Promo Requested", "destinations": "email"}},
        destinations={"email": {"type": "email", "host": "127.0.0.1", "port": mailbox.port,
                                "sender": "shop@example.com", "subject": "Your offer",
                                "text": "Hello {{ profile.email }}", "retry": {"initial": "100ms"}}},
    )  # fmt: skip
    keys = make_project(project, ("web",))
    run_cli("consent", "suppress", "email:dan@fastmail.co.uk", "--purpose", "email", "--reason", "bounce",
            "--project", str(project))  # fmt: skip
    server = start_server(project, keys)
    try:
        client = sdk_client(server.url, keys["web"])
        people = {"ann": {"email_opt_in": "yes"}, "bob": {"email_opt_in": "no"}, "cat": {}, "dan": {},
                  "eve": {}, "fay": {}}  # fmt: skip
        for name, traits in people.items():
            client.identify(name, {"email": f"{name}@fastmail.co.uk", **traits})
        client.track("cat", "Unsubscribed", {"list": "news"})
        client.track(
            "eve", "Page Viewed", context={"consent": {"categoryPreferences": {"email": False}}}
        )
        for name in people:
            client.track(name, "Promo Requested", {})
        mailbox.wait_for(2, timeout=30)
        store = server.state.store
        wait_until(lambda: store.scalar("SELECT count(*) FROM activation_outbox WHERE status <> 'pending'") == 6,
                   timeout=30, what="every delivery decided")  # fmt: skip
        rows = dict(store.execute("SELECT json_extract_string(payload, '$.profile.email'), status || ': ' || "
                                  "coalesce(last_error, '') FROM activation_outbox").fetchall())  # fmt: skip
    finally:
        server.stop()
    recipients = sorted(m["To"] for m in mailbox.messages)
    assert recipients == ["ann@fastmail.co.uk", "fay@fastmail.co.uk"], rows
    assert rows["ann@fastmail.co.uk"].startswith("delivered") and rows[
        "fay@fastmail.co.uk"
    ].startswith("delivered")
    assert rows["bob@fastmail.co.uk"].startswith("suppressed: consent: opted out of email")
    assert "trait:email_opt_in" in rows["bob@fastmail.co.uk"]
    assert "event:Unsubscribed" in rows["cat@fastmail.co.uk"] and rows[
        "cat@fastmail.co.uk"
    ].startswith("suppressed")
    assert "context:consent" in rows["eve@fastmail.co.uk"]
    assert rows["dan@fastmail.co.uk"] == "suppressed: consent: suppressed for email (bounce)"


def test_consent_from_source_columns_and_admin_changes(project):
    p = str(project)
    out = run_cli("consent", "sync", "--project", p)
    assert "consent changes recorded" in out
    with open_store(load_project(project).store_path) as store:
        from panorama.privacy import consent
        from panorama.privacy.subject import collect

        proj = load_project(project)

        def current(person):
            subject = collect(store, person["id"], proj)
            return consent.state(store, proj, subject.profile_ids[0], subject.pairs)

        ann, bob = current(ANN), current(BOB)
        # crm.csv: ann and cat opted in to email, bob out; nobody to sms
        assert ann["email"]["granted"] is True and ann["email"]["via"] == "attribute:email_opt_in"
        assert ann["email"]["source"] == "crm" and ann["email"]["changed_at"].year == 2024
        assert bob["email"] == {**bob["email"], "granted": False, "allowed": False}
        assert ann["sms"]["allowed"] is False and ann["analytics"] == {**ann["analytics"], "granted": None,
                                                                       "allowed": True}  # fmt: skip
        now = consent.admin_change(
            store, proj, f"email:{CAT['email']}", "email", False, actor="test"
        )
        assert (
            now["allowed"] is False
            and now["via"] == "event:Consent Updated"
            and now["source"] == "panorama-admin"
        )
    # the admin change is in the log: a rebuild from the log gives the same state
    run_cli("consent", "sync", "--project", p)
    with open_store(load_project(project).store_path) as store:
        from panorama.privacy.subject import collect

        proj = load_project(project)
        subject = collect(store, CAT["id"], proj)
        assert (
            consent.state(store, proj, subject.profile_ids[0], subject.pairs)["email"]["granted"]
            is False
        )
        history = consent.history(store, subject)
        assert [
            (h["purpose"], h["granted"], h["via"]) for h in history if h["purpose"] == "email"
        ] == [("email", True, "attribute:email_opt_in"), ("email", False, "event:Consent Updated")]
    # a second version of the CRM file that repeats the same values records no new change
    before = _changes(project)
    crm = project / "data" / "crm.csv"
    crm.write_text(crm.read_text().replace("Ann,", "Annie,"))
    run_cli("ingest", "crm", "--project", p)
    run_cli("consent", "sync", "--project", p)
    assert _changes(project) == before


def _changes(project) -> int:
    with open_store(load_project(project).store_path, read_only=True) as store:
        return store.scalar("SELECT count(*) FROM consent_changes")


def _change_rows(store) -> list[tuple]:
    return store.execute("SELECT id, purpose, granted, via FROM consent_changes ORDER BY id").fetchall()


def test_restart_skips_the_rebuild_only_while_nothing_changed_offline(tmp_path):
    project = write_project(
        tmp_path / "project",
        consent={"events": {"Unsubscribed": {"purpose": "email", "granted": False},
                            "Subscribed": {"purpose": "email", "granted": True}}},
    )  # fmt: skip
    keys = make_project(project, ("web",))
    server = start_server(project, keys)
    try:
        client = sdk_client(server.url, keys["web"])
        client.track("ann", "Subscribed", {})
        store = server.state.store
        wait_until(lambda: len(_change_rows(store)) == 1, timeout=30, what="ann's opt-in recorded")
    finally:
        server.stop()
    with open_store(project / "panorama.duckdb") as store:
        first = _change_rows(store)
    server = start_server(project, keys)  # nothing changed: the same rows (a rebuild renumbers them)
    try:
        assert _change_rows(server.state.store) == first
    finally:
        server.stop()
    from panorama.ingest.log import append_events, utcnow
    from panorama.ingest.segment import normalize_message

    with open_store(project / "panorama.duckdb") as store:  # the log changes while the server is down
        append_events(store.cursor(), [normalize_message(
            {"type": "track", "userId": "bob", "messageId": "offline-1", "event": "Unsubscribed"},
            source="web", received_at=utcnow())])  # fmt: skip
    server = start_server(project, keys)
    try:
        after = _change_rows(server.state.store)
    finally:
        server.stop()
    assert len(after) == 2 and {row[2] for row in after} == {True, False}
    assert after[0][0] != first[0][0]  # rebuilt from the log


def test_the_consent_prefilter_finds_what_a_row_by_row_search_finds():
    # `_candidates` skips the row-by-row search of `context` when no chunk's text holds
    # "categoryPreferences" at all; the rows it keeps are the ones the search keeps.
    import pyarrow as pa
    import pyarrow.compute as pc

    from panorama.config import ConsentConfig
    from panorama.privacy.consent import _candidates, _may_contain

    plain = '{"ip":"203.0.113.7","page":{"url":"https://shop.example.com/"}}'
    consent = '{"consent":{"categoryPreferences":{"email":false}}}'
    contexts = [plain, None, consent, plain, plain]
    table = pa.table({"event": pa.array(["Viewed"] * 5), "type": pa.array(["track"] * 5),
                      "traits": pa.nulls(5, pa.string()), "context": pa.array(contexts)})  # fmt: skip
    config = ConsentConfig()
    for events in (table, table.slice(3), table.slice(0, 2), pa.concat_tables([table.slice(3), table.slice(0, 3)])):
        kept, _, context = _candidates(config, events)
        expected = events.filter(pc.fill_null(pc.match_substring(events.column("context"), "categoryPreferences"), False))
        assert kept.to_pylist() == expected.to_pylist()
        assert context == (expected.num_rows > 0)
    # a slice's buffer may hold the text outside the slice: "maybe", then the row search
    assert _may_contain(table.slice(3).column("context"), b"categoryPreferences")
    assert not _may_contain(pa.chunked_array([pa.array([plain, None])]), b"categoryPreferences")
