"""The audit log: who did what, when — every profile view (web UI and REST API), sign-ins,
user, token and key management. Append-only; `panorama audit` and the admin page read it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

from panorama.auth.policy import Principal
from panorama.ingest.log import utcnow
from panorama.store import Store


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    actor_kind: str
    role: str | None
    action: str
    profile_id: str | None
    detail: dict | None
    ip: str | None


def record(store: Store, principal: Principal | None, action: str, profile_id: str | None = None,
           detail: dict | None = None, ip: str | None = None, actor: str | None = None) -> None:  # fmt: skip
    """Append one entry (committed before this returns)."""
    store.execute(
        "INSERT INTO audit_log (logged_at, actor, actor_kind, role, action, profile_id, detail, ip) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [utcnow(), actor or (principal.name if principal else "anonymous"),
         principal.kind if principal else "anonymous", principal.role.name if principal else None,
         action, profile_id, orjson.dumps(detail).decode() if detail else None, ip],
    )  # fmt: skip


def entries(store: Store, *, profile_id: str | None = None, actor: str | None = None,
            action: str | None = None, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:  # fmt: skip
    where, params = [], []
    for column, value in (("profile_id", profile_id), ("actor", actor), ("action", action)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if before_id:
        where.append("id < ?")
        params.append(before_id)
    sql = ("SELECT id, logged_at, actor, actor_kind, role, action, profile_id, detail, ip FROM audit_log"
           + (" WHERE " + " AND ".join(where) if where else "")
           + f" ORDER BY id DESC LIMIT {int(limit)}")  # fmt: skip
    rows = store.execute(sql, params).fetchall()
    return [AuditEntry(*r[:7], orjson.loads(r[7]) if r[7] else None, r[8]) for r in rows]
