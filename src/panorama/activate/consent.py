"""The consent hook point (issue 11 builds consent and preferences).

Every delivery asks `refusal(...)` just before it is sent (consent may change between the
trigger and the delivery). `panorama.privacy.consent` registers the consent and
suppression check. A refusal marks the
delivery `suppressed` with the reason, visible in `panorama activate status`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (profile_id, profile row, destination name, destination type, store, project) -> None if
# allowed, else a reason. store and project are those of the delivering process (None in tests
# that build senders by hand).
Check = Callable[[str | None, dict, str, str, Any, Any], str | None]
_checks: list[Check] = []
_loaded = False


def register(check: Check) -> None:
    """Add a consent check (the consent module calls this)."""
    _checks.append(check)


def refusal(profile_id: str | None, profile: dict, destination: str, kind: str,
            store: Any = None, project: Any = None) -> str | None:  # fmt: skip
    """None when the delivery may go out; else why not."""
    global _loaded
    if not _loaded:  # the consent module registers itself on import (absent in older builds)
        _loaded = True
        from panorama.modules import optional_import

        optional_import("panorama.privacy.consent")
    for check in _checks:
        reason = check(profile_id, profile, destination, kind, store, project)
        if reason:
            return reason
    return None
