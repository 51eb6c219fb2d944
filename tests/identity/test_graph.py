"""The batch identity graph: links, merge protection, stable ids, journal, split."""

from __future__ import annotations

import pytest

from .conftest import CRM, write_project


def test_links_across_sources_and_formats(idproject):
    stats = idproject.unify()
    assert stats.members == 9 + 3 + 6 + 15
    # Robert Smith: gmail case/space variants, a guest order, and a second account (nickname Bob)
    # sharing his mobile in another format
    assert idproject.same(("crm", "C1"), ("shop", "O1"), ("shop", "O2"), ("crm", "C2"))
    # anonymous browsing followed by an identify joins the account
    assert idproject.same(("web", "w1"), ("web", "w2"), ("web", "w3"), ("crm", "C3"))
    # a newsletter identify (email variant) joins the guest order; the alias joins C9's browser
    assert idproject.same(("web", "w4"), ("shop", "O5"), ("web", "w5"), ("crm", "C9"))


def test_households_twins_shared_mailboxes_stay_apart(idproject):
    idproject.unify()
    m = idproject.membership()
    assert m[("crm", "C3")] != m[("crm", "C4")]  # household landline
    assert m[("crm", "C5")] != m[("crm", "C6")]  # twins
    assert len({m[("b2b", "B1")], m[("b2b", "B2")], m[("b2b", "B3")]}) == 3  # info@ + switchboard
    assert m[("shop", "O3")] == m[("crm", "C4")]  # Peter's own email still links
    # an order with only the household landline belongs to nobody in particular
    assert m[("shop", "O4")] not in {m[("crm", "C3")], m[("crm", "C4")]}
    with idproject.store(read_only=True) as store:
        shared = dict(
            store.execute(
                "SELECT value, status FROM identity_nodes WHERE type = 'phone'"
            ).fetchall()
        )
        refused = store.execute(
            "SELECT refused_by FROM identity_edges WHERE NOT accepted AND b_value = '+441614960000'"
        ).fetchall()
    assert shared["+441614960000"] == "shared"
    assert shared["+441134960111"] == "shared"
    assert refused and all(r[0] in ("conflict:first_name", "shared") for r in refused)


def test_junk_invalid_and_kiosk_identifiers_never_link(idproject):
    idproject.unify()
    m = idproject.membership()
    assert m[("crm", "C7")] != m[("crm", "C8")]  # test@test.com
    with idproject.store(read_only=True) as store:
        nodes = {
            (t, v): s
            for t, v, s in store.execute(
                "SELECT type, value, status FROM identity_nodes"
            ).fetchall()
        }
    assert ("email", "test@test.com") not in nodes  # blocked: not an identifier at all
    assert ("phone", "12345") not in nodes  # invalid
    assert nodes[("anonymous_id", "kiosk-1")] == "shared"  # 8 user ids on one anonymousId
    kiosk = {m[("web", f"k{i}")] for i in range(8)}
    assert len(kiosk) == 8
    assert m[("web", "k-anon")] not in kiosk


def test_limits_with_priority(tmp_path):
    crm = CRM + [
        (
            "C10",
            "Robert",
            "Smith",
            "rob.smith@gmail.com",
            "",
            "01/02/1980",
            "",
            "2023-07-01 10:00:00",
        )
    ]
    project = write_project(
        tmp_path / "p", extra="  identifiers: {user_id: {max_per_profile: 1}}", crm=crm
    )
    project.ingest()
    project.unify()
    m = project.membership()
    # one user id per profile: the duplicate accounts stay apart
    assert len({m[("crm", "C1")], m[("crm", "C2")], m[("crm", "C10")]}) == 3
    with project.store(read_only=True) as store:
        reasons = {r[0] for r in store.execute(
            "SELECT refused_by FROM identity_edges WHERE NOT accepted").fetchall()}  # fmt: skip
    assert "limit:user_id" in reasons


def test_stable_ids_merge_journal_and_split(tmp_path):
    project = write_project(tmp_path / "p")
    project.ingest("crm", "b2b", "web")
    project.unify()
    before = project.membership()
    project.unify()
    assert project.membership() == before  # nothing changed: same ids
    alice, peter = before[("crm", "C3")], before[("crm", "C4")]
    # new data: an order carrying Sara's account id and the email she gave on the web merges
    # her two profiles (a journal entry with the rule and evidence)
    project.ingest("shop")
    project.unify()
    after = project.membership()
    assert after[("crm", "C3")] == alice and after[("crm", "C4")] == peter
    assert after[("shop", "O1")] == after[("crm", "C1")]
    assert (
        after[("crm", "C8")] == after[("web", "w6")] == before[("crm", "C8")]
    )  # the older profile survives

    from panorama.identity.journal import split_merge
    from panorama.profiles.read import find_profile

    with project.store() as store:
        merges = store.execute(
            "SELECT id, profile_id, other_id FROM identity_journal WHERE action = 'merge' ORDER BY id"
        ).fetchall()
        assert merges, "the shop orders merged profiles that existed before"
        journal_id, survivor, absorbed = merges[0]
        ref = find_profile(store, absorbed)
        assert ref.profile_id == survivor and ref.via == "merged_id"  # old id still resolves
        result = split_merge(store, project.project, journal_id)
        assert result.split_off == absorbed  # the previous id comes back
        status = dict(store.execute("SELECT profile_id, status FROM identity_profiles").fetchall())
        assert status[absorbed] == "active"
        undone = store.execute(
            "SELECT undone_by FROM identity_journal WHERE id = ?", [journal_id]
        ).fetchone()[0]
        assert undone == result.journal_id
    split = project.membership()
    project.unify()  # the next run remembers the never-merge pair
    assert project.membership() == split
    with project.store(read_only=True) as store:
        assert store.execute("SELECT count(*) FROM identity_never_merge").fetchone()[0] == 1


def test_split_identifier_and_errors(idproject):
    from panorama.identity.journal import SplitError, split_identifier, split_merge

    idproject.unify()
    m = idproject.membership()
    rob = m[("crm", "C1")]
    with idproject.store() as store:
        with pytest.raises(SplitError, match="no journal entry"):
            split_merge(store, idproject.project, 999)
        with pytest.raises(SplitError, match="type:value"):
            split_identifier(store, idproject.project, rob, "nonsense")
        result = split_identifier(store, idproject.project, rob, "user_id:C2")
    m2 = idproject.membership()
    assert m2[("crm", "C2")] != m2[("crm", "C1")]
    assert m2[("crm", "C1")] == rob
    assert result.kept == rob
