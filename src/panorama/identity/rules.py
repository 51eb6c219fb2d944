"""Linking rules per identifier type: the project's `identity.identifiers` over defaults.

Priority orders trust. A record or event belongs to the profile of its highest-priority
linkable identifier; links between identifiers are applied from the most trusted down, so
when a limit (`max_per_profile`) or a conflict would be broken it is the less trusted link
that is refused. `shared_threshold` detects shared identifiers by counting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from panorama.config import IdentityConfig
from panorama.identity.normalize import kind_of


@dataclass(frozen=True)
class TypeRule:
    type: str
    kind: str
    priority: int
    max_per_profile: int | None
    shared_threshold: int | None
    link: bool


# type -> (priority, shared_threshold); types not listed: by kind (below)
DEFAULTS: dict[str, tuple[int, int | None]] = {
    "user_id": (100, None),
    "anonymous_id": (20, 5),
    "device_id": (40, 5),
}
KIND_DEFAULTS: dict[str, tuple[int, int | None]] = {
    "id": (90, 5),
    "id_ci": (90, 5),
    "email": (80, 5),
    "phone": (60, 5),
}


class Rules:
    """Resolved rules for every identifier type seen."""

    def __init__(self, config: IdentityConfig, types: Iterable[str] = ()):
        self.config = config
        self._rules: dict[str, TypeRule] = {}
        for t in [*config.identifiers, *types]:
            self.rule(t)

    def rule(self, identifier_type: str) -> TypeRule:
        found = self._rules.get(identifier_type)
        if found is not None:
            return found
        kind = kind_of(identifier_type, self.config)
        priority, threshold = DEFAULTS.get(identifier_type, KIND_DEFAULTS[kind])
        limit = None
        link = True
        configured = self.config.identifiers.get(identifier_type)
        if configured is not None:
            if configured.priority is not None:
                priority = configured.priority
            if configured.shared_threshold is not None:
                threshold = configured.shared_threshold
            limit = configured.max_per_profile
            link = configured.link
        found = TypeRule(identifier_type, kind, priority, limit, threshold, link)
        self._rules[identifier_type] = found
        return found

    def all(self) -> list[TypeRule]:
        return sorted(self._rules.values(), key=lambda r: (-r.priority, r.type))

    def table(self, types: Iterable[str] = ()) -> pa.Table:
        """The rules as a table (for SQL joins)."""
        for t in types:
            self.rule(t)
        rules = self.all()
        return pa.table(
            {
                "type": pa.array([r.type for r in rules], pa.string()),
                "kind": pa.array([r.kind for r in rules], pa.string()),
                "priority": pa.array([r.priority for r in rules], pa.int32()),
                "max_per_profile": pa.array([r.max_per_profile for r in rules], pa.int32()),
                "shared_threshold": pa.array([r.shared_threshold for r in rules], pa.int32()),
                "link": pa.array([r.link for r in rules], pa.bool_()),
            }
        )
