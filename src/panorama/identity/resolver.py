"""Guarded merging inside one connected component of the identity graph.

Links are applied from the most trusted down (higher priority first, then the earliest
evidence, then by value, so the outcome never depends on storage order). A link is refused
when the merged profile would

* hold more distinct values of a type than its `max_per_profile` (rule ``limit:<type>``);
* hold first names or dates of birth that cannot belong to one person (``conflict:first_name``,
  ``conflict:birth_date``);
* join two sides of a never-merge pair an admin recorded with a split (``never_merge``).

An identifier whose link was refused for a conflict connects different people (a household
landline, an info@ mailbox, a family tablet): it is marked shared and the component is
resolved again without it, so it glues nobody together and its own events stand alone.

Pure Python on small inputs: the batch code only sends components that need it (where a
limit, conflict or never-merge applies); the others are one profile each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from panorama.identity.normalize import dates_compatible, first_names_compatible


@dataclass
class Edge:
    a: int
    b: int
    order: tuple  # sort key: most trusted first
    kind: str = "identifier"  # identifier | splink
    payload: object = None  # evidence, passed through


@dataclass
class Outcome:
    root: dict[int, int] = field(default_factory=dict)  # node -> cluster root (a node id)
    accepted: list[Edge] = field(default_factory=list)
    refused: list[tuple[Edge, str]] = field(default_factory=list)
    shared: set[int] = field(default_factory=set)


class _State:
    __slots__ = ("names", "dobs", "counts", "tags")

    def __init__(self, names: frozenset, dobs: frozenset, counts: dict, tags: frozenset):
        self.names = names
        self.dobs = dobs
        self.counts = counts
        self.tags = tags


def names_compatible(x: tuple[str, str | None], y: tuple[str, str | None]) -> bool:
    """Could (first, last) names x and y be one person? The first names agree (nicknames,
    initials, typos allowed), or first and last were written the wrong way round."""
    (f1, l1), (f2, l2) = x, y
    if first_names_compatible(f1, f2):
        return True
    return bool(l1 and l2) and first_names_compatible(f1, l2) and first_names_compatible(l1, f2)


def _names_conflict(a: frozenset, b: frozenset) -> bool:
    if not a or not b or a & b:
        return False
    return not any(names_compatible(x, y) for x in a for y in b)


def _dobs_conflict(a: frozenset, b: frozenset) -> bool:
    if not a or not b or a & b:
        return False
    return not any(dates_compatible(x, y) for x in a for y in b)


def tags_conflict(a: frozenset, b: frozenset) -> bool:
    """Never-merge tags are (pair id, side); opposite sides of one pair may not meet."""
    if not a or not b:
        return False
    return any((pair, 1 - side) in b for pair, side in a)


def names_all_compatible(names: Iterable[tuple[str, str | None]]) -> bool:
    names = sorted(set(names), key=lambda n: (n[0], n[1] or ""))
    return all(names_compatible(x, y) for i, x in enumerate(names) for y in names[i + 1 :])


def dobs_all_compatible(dobs: Iterable[str]) -> bool:
    dobs = sorted(set(dobs))
    return all(dates_compatible(x, y) for i, x in enumerate(dobs) for y in dobs[i + 1 :])


def resolve(
    nodes: dict[int, tuple[str, int]],
    edges: list[Edge],
    names: dict[int, frozenset[str]],
    dobs: dict[int, frozenset[str]],
    limits: dict[str, int],
    tags: dict[int, frozenset],
    check_names: bool = True,
    check_dobs: bool = True,
) -> Outcome:
    """Resolve one component. `nodes`: node -> (type, priority); `names`/`dobs`: the (first,
    last) names and dates of birth observed on records anchored at a node; `limits`: type ->
    max_per_profile; `tags`: node -> never-merge tags."""
    ordered = sorted(edges, key=lambda e: e.order)
    first = _run(nodes, ordered, names, dobs, limits, tags, check_names, check_dobs, set())
    shared = {
        edge.b
        for edge, why in first.refused
        if why.startswith("conflict") and edge.kind == "identifier"
    }
    if not shared:
        return first
    second = _run(nodes, ordered, names, dobs, limits, tags, check_names, check_dobs, shared)
    second.shared = shared
    return second


def _run(
    nodes, ordered, names, dobs, limits, tags, check_names, check_dobs, excluded: set[int]
) -> Outcome:
    parent: dict[int, int] = {}
    state: dict[int, _State] = {}

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for node, (node_type, _) in nodes.items():
        if node in excluded:
            continue
        parent[node] = node
        state[node] = _State(names.get(node, frozenset()), dobs.get(node, frozenset()),
                             {node_type: 1}, tags.get(node, frozenset()))  # fmt: skip
    out = Outcome()
    for edge in ordered:
        if edge.a in excluded or edge.b in excluded or edge.a not in parent or edge.b not in parent:
            continue
        ra, rb = find(edge.a), find(edge.b)
        if ra == rb:
            out.accepted.append(edge)
            continue
        sa, sb = state[ra], state[rb]
        why = None
        if tags_conflict(sa.tags, sb.tags):
            why = "never_merge"
        else:
            for t, n in sb.counts.items():
                limit = limits.get(t)
                if limit is not None and sa.counts.get(t, 0) + n > limit:
                    why = f"limit:{t}"
                    break
        if why is None and check_names and _names_conflict(sa.names, sb.names):
            why = "conflict:first_name"
        if why is None and check_dobs and _dobs_conflict(sa.dobs, sb.dobs):
            why = "conflict:birth_date"
        if why is not None:
            out.refused.append((edge, why))
            continue
        # union: the smaller tree under the larger; ties by node id (deterministic)
        if (len(sa.counts), ra) < (len(sb.counts), rb):
            ra, rb, sa, sb = rb, ra, sb, sa
        parent[rb] = ra
        counts = dict(sa.counts)
        for t, n in sb.counts.items():
            counts[t] = counts.get(t, 0) + n
        state[ra] = _State(sa.names | sb.names, sa.dobs | sb.dobs, counts, sa.tags | sb.tags)
        del state[rb]
        out.accepted.append(edge)
    out.root = {node: find(node) for node in parent}
    return out
