"""The consent hook point (issue 11 builds consent and preferences).

Every delivery asks `allowed(...)` just before it is sent (consent may change between the
trigger and the delivery). Until consent exists everything is allowed. A refusal marks the
delivery `suppressed` with the reason, visible in `panorama activate status`.
"""

from __future__ import annotations

from collections.abc import Callable

# (profile_id, profile row, destination name, destination type) -> None if allowed, else a reason
Check = Callable[[str | None, dict, str, str], str | None]
_checks: list[Check] = []


def register(check: Check) -> None:
    """Add a consent check (the consent module calls this)."""
    _checks.append(check)


def refusal(profile_id: str | None, profile: dict, destination: str, kind: str) -> str | None:
    """None when the delivery may go out; else why not."""
    for check in _checks:
        reason = check(profile_id, profile, destination, kind)
        if reason:
            return reason
    return None
