"""The first `unify` of a store gives every cluster its id in SQL (`ids._assign_fresh`); the ids,
profiles and journal are exactly those of the general path, which a second run then keeps."""

from __future__ import annotations

import shutil

from panorama.identity import ids

TABLES = {
    "identity_profiles": "SELECT profile_id, status, merged_into, first_ts, first_source, first_record_id "
                         "FROM identity_profiles ORDER BY profile_id",
    "identity_nodes": "SELECT type, value, status, profile_id, origin_profile FROM identity_nodes ORDER BY type, value",
    "journal": "SELECT action, count(*) FROM identity_journal GROUP BY action ORDER BY action",
}  # fmt: skip


def _state(project) -> dict[str, list]:
    with project.store(read_only=True) as store:
        return {name: store.execute(sql).fetchall() for name, sql in TABLES.items()}


def test_the_first_run_in_sql_gives_the_general_paths_ids(idproject, monkeypatch):
    copy = type(idproject)(idproject.root.parent / "copy")
    shutil.copytree(idproject.root, copy.root)

    taken = []
    fresh = ids._assign_fresh
    monkeypatch.setattr(ids, "_assign_fresh", lambda cur: taken.append(fresh(cur)) or taken[-1])
    first = idproject.unify()
    assert taken and taken[0] is not None and taken[0].fresh == first.profiles > 5

    monkeypatch.setattr(ids, "_assign_fresh", lambda cur: None)
    general = copy.unify()
    assert general.profiles == first.profiles
    assert _state(idproject) == _state(copy)
    assert len(_state(idproject)["identity_nodes"]) > 10

    taken.clear()  # a second run: the store has ids, the general path keeps them
    monkeypatch.setattr(ids, "_assign_fresh", lambda cur: taken.append(fresh(cur)) or taken[-1])
    before = _state(idproject)
    idproject.unify()
    assert taken == [None]
    assert _state(idproject)["identity_profiles"] == before["identity_profiles"]
