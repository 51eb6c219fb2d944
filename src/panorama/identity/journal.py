"""Merge history and repairs: undoing one merge (`split`), never-merge pairs.

`split_merge(store, project, journal_id)` undoes exactly the merge recorded in that journal
entry: the identifiers the absorbed profile had (recorded in the merge's evidence, and every
identifier that first appeared in it) and those the survivor had are kept apart from now on
(a never-merge pair), the affected part of the graph is re-resolved, and the split-off part
gets its previous id back. Later runs (batch or real time) honour the pair.

`split_identifier(store, project, profile_id, identifier)` splits a profile whose parts were
joined before they ever had ids of their own (e.g. in the first `unify`): the identifier, and
what hangs on it, is kept apart from the profile's most trusted identifiers.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import orjson
import pyarrow as pa

from panorama.config import Project
from panorama.identity.normalize import Normalizer
from panorama.identity.rules import Rules
from panorama.ingest.log import utcnow
from panorama.store import Store, one


class SplitError(Exception):
    """The split cannot be done; the message says why."""


@dataclass
class SplitResult:
    journal_id: int
    never_merge_id: int
    kept: str
    split_off: str | None
    profiles: list[str]


def _require_unified(store: Store) -> None:
    from panorama.identity.export import unified

    if not unified(store):
        raise SplitError("no identity graph yet: run `panorama unify` first")


def merge_entries(store: Store, profile_id: str) -> list[tuple]:
    """(id, at, survivor, absorbed, rule, undone_by) of merges into this profile (and into the
    profiles merged into it)."""
    ids = [profile_id] + [r[0] for r in store.execute(
        "SELECT profile_id FROM identity_profiles WHERE merged_into = ?", [profile_id]
    ).fetchall()]  # fmt: skip
    marks = ", ".join("?" for _ in ids)
    return store.execute(
        f"SELECT id, occurred_at, profile_id, other_id, rule, undone_by FROM identity_journal "
        f"WHERE action = 'merge' AND profile_id IN ({marks}) ORDER BY id",
        ids,
    ).fetchall()


def split_merge(store: Store, project: Project, journal_id: int) -> SplitResult:
    """Undo the merge recorded in journal entry `journal_id`."""
    _require_unified(store)
    row = one(store.execute(
        "SELECT action, profile_id, other_id, CAST(evidence AS VARCHAR), undone_by FROM identity_journal WHERE id = ?",
        [journal_id],
    ))
    if row is None:
        raise SplitError(
            f"no journal entry {journal_id}; `panorama profile history ID` lists a profile's merges"
        )
    action, survivor, absorbed, evidence_text, undone_by = row
    if action != "merge":
        raise SplitError(f"journal entry {journal_id} is a {action}, not a merge")
    if undone_by is not None:
        raise SplitError(f"merge {journal_id} was already undone (by journal entry {undone_by})")
    evidence = orjson.loads(evidence_text) if evidence_text else {}
    side_m = {(i["type"], i["value"]) for i in evidence.get("absorbed_identifiers", [])}
    side_s = {(i["type"], i["value"]) for i in evidence.get("survivor_identifiers", [])}
    for t, v in store.execute(
        "SELECT type, value FROM identity_nodes WHERE origin_profile = ?", [absorbed]
    ).fetchall():
        side_m.add((t, v))
    for t, v in store.execute(
        "SELECT type, value FROM identity_nodes WHERE origin_profile = ?", [survivor]
    ).fetchall():
        side_s.add((t, v))
    both = side_m & side_s
    side_m -= both
    side_s -= both
    if not side_m or not side_s:
        raise SplitError(
            f"merge {journal_id}: the two sides share every identifier; nothing to split"
        )
    current = _current(store, survivor)
    return _split(store, project, current, absorbed, sorted(side_m), sorted(side_s),
                  f"undo merge {journal_id}", journal_id)  # fmt: skip


def split_identifier(
    store: Store, project: Project, profile_id: str, identifier: str
) -> SplitResult:
    """Split off the part of a profile that holds `identifier` ('type:value')."""
    _require_unified(store)
    kind, sep, value = identifier.partition(":")
    if not sep or not kind or not value:
        raise SplitError(
            f"identifier {identifier!r}: write it as type:value, e.g. email:ann@example.com"
        )
    normalised, status = Normalizer(project.config.identity).identifier(kind, value)
    value = normalised or value.strip()
    current = _current(store, profile_id)
    nodes = store.execute(
        "SELECT type, value FROM identity_nodes WHERE profile_id = ? AND status = 'linked'",
        [current],
    ).fetchall()
    if (kind, value) not in nodes:
        raise SplitError(f"{kind}:{value} is not a linked identifier of profile {current}")
    rules = Rules(project.config.identity, [t for t, _ in nodes])
    others = [(t, v) for t, v in nodes if (t, v) != (kind, value)]
    if not others:
        raise SplitError(f"profile {current} has no other identifier to split {kind}:{value} from")
    top = max(rules.rule(t).priority for t, _ in others)
    core = sorted((t, v) for t, v in others if rules.rule(t).priority == top)
    return _split(store, project, current, None, [(kind, value)], core,
                  f"split off {kind}:{value}", None)  # fmt: skip


def _current(store: Store, profile_id: str) -> str:
    from panorama.profiles.read import find_profile

    ref = find_profile(store, profile_id)
    if ref is None:
        raise SplitError(f"no profile {profile_id}")
    return ref.profile_id


def _split(store: Store, project: Project, current: str, restore: str | None, side_a: list, side_b: list,
           reason: str, journal_id: int | None) -> SplitResult:  # fmt: skip
    from panorama.identity.realtime import recompute

    now = utcnow()

    def ident_list(pairs):
        return [{"type": t, "value": v} for t, v in pairs]

    with store.transaction() as tx:
        never_id = one(tx.execute(
            "INSERT INTO identity_never_merge (created_at, a_identifiers, b_identifiers, journal_id, reason) "
            "VALUES (?, ?, ?, ?, ?) RETURNING id",
            [now, ident_list(side_a), ident_list(side_b), journal_id, reason],
        ))[0]
        if restore is not None:
            # the absorbed side takes its old id back: its identifiers vote for it
            tx.register("_split_side", pa.table({"type": pa.array([t for t, _ in side_a], pa.string()),
                                                 "value": pa.array([v for _, v in side_a], pa.string())}))  # fmt: skip
            tx.execute(
                "UPDATE identity_nodes SET profile_id = ? WHERE profile_id = ? AND (type, value) IN "
                "(SELECT (type, value) FROM _split_side)",
                [restore, current],
            )
            tx.unregister("_split_side")
        change = recompute(
            tx,
            project.config,
            "admin",
            now,
            seed_profiles=[current] + ([restore] if restore else []),
        )
        after = tx.execute(
            "SELECT DISTINCT profile_id FROM identity_nodes WHERE (type, value) IN "
            "(SELECT (x.type, x.value) FROM (SELECT unnest(a_identifiers) AS x FROM identity_never_merge WHERE id = ?))"
            " AND profile_id IS NOT NULL",
            [never_id],
        ).fetchall()
        split_off = after[0][0] if after else None
        evidence = {"undoes": journal_id, "never_merge": never_id, "reason": reason,
                    "split_off_identifiers": ident_list(side_a)[:50], "kept_identifiers": ident_list(side_b)[:50]}  # fmt: skip
        entry = one(tx.execute(
            "INSERT INTO identity_journal (occurred_at, action, profile_id, other_id, rule, evidence, origin) "
            "VALUES (?, 'split', ?, ?, ?, ?, 'admin') RETURNING id",
            [now, current, split_off, reason, orjson.dumps(evidence).decode()],
        ))[0]
        if journal_id is not None:
            tx.execute(
                "UPDATE identity_journal SET undone_by = ? WHERE id = ?", [entry, journal_id]
            )
    _refresh_traits(
        store, sorted(change.profiles | {current} | ({split_off} if split_off else set()))
    )
    return SplitResult(entry, never_id, current, split_off, sorted(change.profiles))


def _refresh_traits(store: Store, profiles: list[str]) -> None:
    try:
        from panorama.traits.realtime import refresh_profiles
    except ModuleNotFoundError:  # pragma: no cover
        return
    with contextlib.suppress(
        Exception
    ):  # traits may not be computed yet; the next batch run rebuilds them
        refresh_profiles(store, profiles)
