"""The read model the web UI and the REST API share: a profile's 360° view, its timeline, an
account and the dashboards' data, gathered from each module's read functions and masked for
the principal's role. Routes only call these functions and render or serialise the result.

Sources, by section (each falls back gracefully while a module has not run yet):
- profile card, identifiers, source records, timeline: the read index (`index.py`), built from
  the `panorama.profiles` contracts (identity resolution once it has run);
- golden attributes: `panorama.profiles.golden_attributes` when identity provides it, else the
  latest value of each attribute across the profile's source records, with source and time;
- merge evidence: `panorama.profiles.merge_history` when identity provides it;
- traits, RFM, lifecycle: `panorama.traits` (`profile_traits`, trait descriptions);
- predictions and drivers: `predict_scores` (`panorama.predict`);
- segment memberships: `panorama.segments.engine.profile_segments`.

The profile page reads the profile's rows of `ui_members` once (`profile_rows`: one zone-map
read of the 6M-row table at 1M profiles) and its sections query that small in-memory copy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import threading
from dataclasses import dataclass
from typing import Any

import orjson

from panorama.auth.policy import Masker, Principal, pii_class
from panorama.config import Project
from panorama.store import Store, one

KEY_TRAITS = (
    "lifecycle_stage", "rfm_segment", "rfm_score", "orders", "revenue", "avg_order_value",
    "last_order_at", "days_since_last_order", "favorite_category", "loyalty_tier", "loyalty_points",
    "last_nps", "nps_group", "last_csat", "email_open_rate", "web_sessions_30d", "last_seen_at",
)  # fmt: skip
TIMELINE_PAGE = 25


@dataclass
class ViewContext:
    store: Store
    project: Project
    principal: Principal
    masker: Masker

    def can(self, permission: str) -> bool:
        return self.principal.can(permission)

    @property
    def region(self) -> str:
        return self.project.config.identity.default_region


def optional(module: str, name: str):
    """A function another module provides, or None while it does not (yet)."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ModuleNotFoundError:
        return None


def _rows(store: Store, sql: str, params: list | None = None) -> list[dict]:
    cur = store.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _json(value: Any) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    try:
        return orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError):
        return value


# -- resolving a key to a profile -------------------------------------------------------------


def resolve_profile(store: Store, key: str) -> str | None:
    """A profile id from a profile id (current or merged), `type:value` or a bare identifier."""
    key = (key or "").strip()
    if not key:
        return None
    resolver = optional("panorama.profiles", "resolve_profile")
    if resolver is not None:
        found = resolver(store, key)
        if found:
            return found
    if not store.table_exists("ui_profiles"):
        return None
    if one(store.execute("SELECT 1 FROM ui_profiles WHERE profile_id = ?", [key])):
        return key
    type_, sep, value = key.partition(":")
    if sep and value:
        row = one(store.execute(
            "SELECT min(profile_id), count(DISTINCT profile_id) FROM ui_search_keys WHERE key = ? AND type = ?",
            [value.strip().lower(), type_.strip()],
        ))
    else:
        row = one(store.execute(
            "SELECT min(profile_id), count(DISTINCT profile_id) FROM ui_search_keys "
            "WHERE key = ? AND type <> 'profile_id'", [key.lower()],
        ))  # fmt: skip
    return row[0] if row and row[1] == 1 else None


# -- the 360° profile -------------------------------------------------------------------------


def profile_card(ctx: ViewContext, profile_id: str) -> dict | None:
    rows = _rows(ctx.store, "SELECT * EXCLUDE (attributes) FROM ui_profiles WHERE profile_id = ?", [profile_id]) \
        if ctx.store.table_exists("ui_profiles") else []  # fmt: skip
    if not rows:
        return None
    card = rows[0]
    m = ctx.masker
    card["name"] = m.value("name", card["name"])
    card["email"] = m.value("contact", card["email"])
    card["phone"] = m.value("contact", card["phone"])
    card.pop("attributes", None)
    return card


def identifiers(ctx: ViewContext, profile_id: str) -> list[dict]:
    rows = _rows(ctx.store, "SELECT type, value FROM ui_identifiers WHERE profile_id = ? ORDER BY type, value",
                 [profile_id])  # fmt: skip
    return [{"type": r["type"], "value": ctx.masker.identifier(r["type"], r["value"]),
             "pii": pii_class(r["type"])} for r in rows]  # fmt: skip


def source_records(ctx: ViewContext, profile_id: str, limit: int = 50) -> list[dict]:
    rows = _rows(
        ctx.store,
        f"""SELECT source, record_id, ts, identifiers, attributes FROM {_members_table()}
            WHERE profile_id = ? AND kind = 'record' ORDER BY ts DESC NULLS LAST LIMIT {int(limit)}""",
        [profile_id],
    )
    m = ctx.masker
    for r in rows:
        r["attributes"] = m.tree(_json(r["attributes"]) or {})
        r["identifiers"] = [{"type": i["type"], "value": m.identifier(i["type"], i["value"])}
                            for i in (r["identifiers"] or [])]  # fmt: skip
    return rows


def golden_attributes(ctx: ViewContext, profile_id: str, records: list[dict] | None = None) -> dict:
    """{'rule': how values were chosen, 'attributes': [{name, value, source, updated_at, others}]}"""
    provided = optional("panorama.profiles", "golden_attributes")
    if provided is not None:
        attrs = provided(ctx.store, profile_id)
        if attrs is not None:
            out = []
            for a in attrs:
                a = dict(a)
                a["value"] = ctx.masker.field(a["name"], a.get("value"))
                out.append(a)
            return {"rule": "survivorship rules of identity resolution", "attributes": out}
    records = records if records is not None else source_records(ctx, profile_id)
    best: dict[str, dict] = {}
    for r in records:  # newest first
        for name, value in (r["attributes"] or {}).items():
            if value is None or value == "":
                continue
            entry = best.get(name)
            if entry is None:
                best[name] = {"name": name, "value": value, "source": r["source"], "updated_at": r["ts"],
                              "others": []}  # fmt: skip
            elif value != entry["value"] and len(entry["others"]) < 3:
                entry["others"].append({"value": value, "source": r["source"]})
    return {"rule": "most recent value across the profile's source records", "attributes": list(best.values())}


def merge_history(ctx: ViewContext, profile_id: str) -> list[dict] | None:
    """Merges with their rule and evidence (None: identity resolution is not available)."""
    provided = optional("panorama.profiles", "merge_history")
    if provided is None:
        return None
    out = []
    for merge in provided(ctx.store, profile_id) or []:
        merge = dict(merge)
        if "evidence" in merge:
            merge["evidence"] = ctx.masker.tree(_json(merge["evidence"]))
        out.append(merge)
    return out


def traits(ctx: ViewContext, profile_id: str) -> dict | None:
    """{'key': [...], 'all': [...]} each {name, value, description}; None before traits ran."""
    sql_fn = optional("panorama.traits.batch", "profile_traits_sql")
    sql = sql_fn(ctx.store) if sql_fn else None
    if sql is None:
        return None
    rows = _rows(ctx.store, f"SELECT * FROM ({sql}) WHERE profile_id = ?", [profile_id])
    if not rows:
        return {"key": [], "all": [], "as_of": None}
    row = rows[0]
    descriptions = _trait_descriptions(ctx.project)
    values = []
    for name, value in row.items():
        if name in ("profile_id",):
            continue
        values.append({"name": name, "value": ctx.masker.field(name, value),
                       "description": descriptions.get(name, "")})  # fmt: skip
    by_name = {v["name"]: v for v in values}
    key = [by_name[n] for n in KEY_TRAITS if n in by_name and by_name[n]["value"] is not None]
    return {"key": key, "all": values, "as_of": row.get("as_of")}


_descriptions_cache: dict[int, dict[str, str]] = {}


def _trait_descriptions(project: Project) -> dict[str, str]:
    key = id(project.config)
    if key not in _descriptions_cache:
        trait_set = optional("panorama.traits.definitions", "trait_set")
        out = {}
        if trait_set is not None:
            try:
                out = {t.name: t.description for t in trait_set(project.config)}
            except Exception:  # noqa: BLE001 - descriptions are a nicety
                out = {}
        out.update({
            "lifecycle_stage": "prospect, new, active, at risk, lapsed or reactivated (docs/traits.md)",
            "rfm_segment": "named RFM segment from the recency and frequency scores",
            "rfm_score": "recency, frequency and monetary quintile scores (5 = best)",
        })  # fmt: skip
        _descriptions_cache[key] = out
    return _descriptions_cache[key]


PREDICTION_TITLES = {
    "churn": "Churn risk", "clv": "Predicted customer lifetime value",
    "subscription_churn": "Subscription churn risk", "next_best_offer": "Next best offer",
    "channel": "Preferred channel", "preferred_channel": "Preferred channel",
    "next_purchase": "Next purchase", "discount": "Discount sensitivity", "nps": "Predicted NPS",
}  # fmt: skip


def predictions(ctx: ViewContext, profile_id: str) -> list[dict] | None:
    """Every prediction of the profile with its drivers (sentences and contributions)."""
    if not ctx.can("predictions.view"):
        return None
    if not ctx.store.table_exists("predict_scores"):
        return []
    rows = _rows(
        ctx.store,
        "SELECT prediction, value, label, as_of, model_id, details, drivers FROM predict_scores "
        "WHERE profile_id = ? ORDER BY prediction",
        [profile_id],
    )
    out = []
    for r in rows:
        drivers = _json(r["drivers"]) or []
        out.append({
            "prediction": r["prediction"],
            "title": PREDICTION_TITLES.get(r["prediction"], r["prediction"].replace("_", " ").capitalize()),
            "value": r["value"], "label": r["label"], "as_of": r["as_of"], "model_id": r["model_id"],
            "details": _json(r["details"]) or {},
            "drivers": [{"text": d.get("text") or f"{d.get('feature')} = {d.get('value')}",
                         "feature": d.get("feature"), "value": d.get("value"),
                         "contribution": d.get("contribution"), "effect": d.get("effect")}
                        for d in drivers if isinstance(d, dict)],
        })  # fmt: skip
    return out


def segments(ctx: ViewContext, profile_id: str) -> list[dict] | None:
    """[{segment, entered_at}] (None: the segments module is not available)."""
    provided = optional("panorama.segments.engine", "profile_segments")
    if provided is None or not ctx.store.table_exists("segment_membership"):
        return None
    return [{"segment": name, "entered_at": at} for name, at in provided(ctx.store, profile_id)]


_local = threading.local()


def _members_table() -> str:
    """`ui_members`, or the profile's own rows while `profile_rows` is active on this thread."""
    return getattr(_local, "members", None) or "ui_members"


@contextlib.contextmanager
def profile_rows(store: Store, profile_id: str):
    """Read the profile's rows of `ui_members` once; the sections read them from memory."""
    cur = store.cursor()
    rows = cur.execute("SELECT * FROM ui_members WHERE profile_id = ?", [profile_id]).to_arrow_table()
    name = f"_ui_profile_rows_{threading.get_ident()}"
    cur.register(name, rows)
    _local.members = name
    try:
        yield
    finally:
        _local.members = None
        cur.unregister(name)


_EVENT_COLUMNS = ("message_id, ts AS timestamp, type, event, source, user_id, anonymous_id, group_id, value, "
                  "revenue, properties, traits, context")


def _profile_events(store: Store, profile_id: str, where: str = "", params: list | None = None,
                    limit: int = 25) -> list[dict]:  # fmt: skip
    """A profile's events from the read index (sorted by profile: one or two row groups)."""
    return _rows(
        store,
        f"SELECT {_EVENT_COLUMNS} FROM {_members_table()} WHERE profile_id = ? AND kind = 'event' {where} "
        f"ORDER BY ts DESC LIMIT {int(limit)}",
        [profile_id, *(params or [])],
    )


def surveys(ctx: ViewContext, profile_id: str) -> dict:
    """NPS and CSAT answers over time: {'nps': [{at, score, comment}], 'csat': [...]}."""
    metrics = ctx.project.config.metrics
    nps_events = list(getattr(metrics, "nps_events", ["NPS Survey Answered"]))
    csat_events = list(getattr(metrics, "csat_events", ["Ticket Opened", "CSAT Survey Answered"]))
    nps_prop = getattr(metrics, "nps_property", "value")
    csat_prop = getattr(metrics, "csat_property", "value")
    wanted = nps_events + csat_events
    placeholders = ", ".join("?" * len(wanted))
    found = list(reversed(_profile_events(ctx.store, profile_id, f"AND event IN ({placeholders})", wanted, 500)))
    out: dict[str, list] = {"nps": [], "csat": []}
    for e in found:
        props = _json(e["properties"]) or {}
        for kind, names, prop in (("nps", nps_events, nps_prop), ("csat", csat_events, csat_prop)):
            if e["event"] in names:
                score = e.get(prop) if prop in ("value", "revenue") else props.get(prop)
                score = score if score is not None else props.get(prop)
                try:
                    score = float(score)
                except (TypeError, ValueError):
                    continue
                comment = props.get("comment")
                out[kind].append({"at": e["timestamp"], "score": score,
                                  "comment": ctx.masker.value("free_text", comment) if comment else None})  # fmt: skip
    return out


def tickets(ctx: ViewContext, profile_id: str, limit: int = 20) -> list[dict] | None:
    """Support tickets, newest first (None: the role does not see tickets)."""
    if not ctx.can("tickets.view"):
        return None
    names = sorted(_ticket_events(ctx))
    placeholders = ", ".join("?" * len(names))
    out = []
    for e in _profile_events(ctx.store, profile_id, f"AND event IN ({placeholders})", names, limit):
        props = ctx.masker.tree(_json(e["properties"]) or {})
        out.append({"at": e["timestamp"], "source": e["source"], "event": e["event"], "subject": props.get("subject"),
                    "topic": props.get("topic"), "status": props.get("status"), "channel": props.get("channel"),
                    "priority": props.get("priority"), "csat": e.get("value"), "properties": props})  # fmt: skip
    return out


def accounts(ctx: ViewContext, profile_id: str) -> list[dict]:
    if not ctx.store.table_exists("ui_accounts"):
        return []
    return _rows(ctx.store, "SELECT account_id, name, domain FROM ui_accounts WHERE profile_id = ? "
                            "GROUP BY ALL ORDER BY account_id", [profile_id])  # fmt: skip


def _ticket_events(ctx: ViewContext) -> set[str]:
    return set(getattr(ctx.project.config.metrics, "ticket_events", ["Ticket Opened"]))


def timeline(ctx: ViewContext, profile_id: str, *, sources: list[str] | None = None,
             types: list[str] | None = None, before: dt.datetime | None = None,
             limit: int = TIMELINE_PAGE) -> dict:  # fmt: skip
    """A page of the profile's events, newest first: {'events': [...], 'next_before', 'facets'}."""
    if not ctx.can("events.view"):
        return {"events": [], "next_before": None, "facets": {"sources": [], "types": []}, "hidden": True}
    where = ["profile_id = ?", "kind = 'event'"]
    params: list = [profile_id]
    if sources:
        where.append(f"source IN ({', '.join('?' * len(sources))})")
        params += sources
    if types:
        where.append(f"coalesce(event, type) IN ({', '.join('?' * len(types))})")
        params += types
    if before is not None:
        where.append("ts < ?")
        params.append(before)
    limit = max(1, min(int(limit), 200))
    found = _profile_events(ctx.store, profile_id, "AND " + " AND ".join(where[2:]) if len(where) > 2 else "",
                            params[1:], limit + 1)
    more = len(found) > limit
    found = found[:limit]
    tickets = _ticket_events(ctx)
    m = ctx.masker
    events = []
    for e in found:
        hidden = e["event"] in tickets and not ctx.can("tickets.view")
        events.append({
            "message_id": e["message_id"], "timestamp": e["timestamp"], "source": e["source"],
            "type": e["type"], "event": e["event"] or (e["type"].capitalize() if e["type"] else None),
            "properties": None if hidden else m.tree(_json(e["properties"]) or {}),
            "traits": None if hidden else m.tree(_json(e["traits"]) or {}),
            "context": m.tree(_json(e["context"]) or {}),
            "user_id": e["user_id"], "anonymous_id": m.value("device", e["anonymous_id"]),
            "group_id": e["group_id"], "hidden": hidden,
        })  # fmt: skip
    return {
        "events": events,
        "next_before": found[-1]["timestamp"] if more and found else None,
        "facets": timeline_facets(ctx, profile_id),
    }


def timeline_facets(ctx: ViewContext, profile_id: str) -> dict:
    rows = ctx.store.execute(
        f"SELECT source, coalesce(event, type) AS kind, count(*) FROM {_members_table()} "
        "WHERE profile_id = ? AND kind = 'event' GROUP BY ALL ORDER BY 3 DESC",
        [profile_id],
    ).fetchall()
    sources: dict[str, int] = {}
    types: dict[str, int] = {}
    for source, kind, n in rows:
        sources[source] = sources.get(source, 0) + n
        types[kind] = types.get(kind, 0) + n
    return {"sources": sorted(sources.items(), key=lambda kv: -kv[1]),
            "types": sorted(types.items(), key=lambda kv: -kv[1])}  # fmt: skip


def profile_360(ctx: ViewContext, profile_id: str) -> dict | None:
    """Everything the profile page shows (and GET /api/v1/profiles/{id} returns)."""
    card = profile_card(ctx, profile_id)
    if card is None:
        return None
    with profile_rows(ctx.store, profile_id):
        return _profile_360(ctx, profile_id, card)


def _profile_360(ctx: ViewContext, profile_id: str, card: dict) -> dict:
    records = source_records(ctx, profile_id)
    preds = predictions(ctx, profile_id)
    by_kind = {p["prediction"]: p for p in preds or []}
    return {
        "profile": card,
        "golden": golden_attributes(ctx, profile_id, records),
        "identifiers": identifiers(ctx, profile_id),
        "records": records,
        "merges": merge_history(ctx, profile_id),
        "traits": traits(ctx, profile_id),
        "predictions": preds,
        "next_best_offer": by_kind.get("next_best_offer"),
        "preferred_channel": by_kind.get("preferred_channel") or by_kind.get("channel"),
        "segments": segments(ctx, profile_id),
        "surveys": surveys(ctx, profile_id),
        "tickets": tickets(ctx, profile_id),
        "accounts": accounts(ctx, profile_id),
        "timeline": timeline(ctx, profile_id),
    }


# -- accounts (B2B) ---------------------------------------------------------------------------


def account(ctx: ViewContext, account_id: str) -> dict | None:
    if not ctx.store.table_exists("ui_accounts"):
        return None
    rows = _rows(ctx.store, "SELECT * FROM ui_accounts WHERE account_id = ?", [account_id])
    if not rows:
        return None
    cards = _rows(
        ctx.store,
        "SELECT p.profile_id, p.name, p.email, p.phone, p.last_seen, a.job_title FROM ui_profiles p "
        "JOIN (SELECT profile_id, any_value(job_title) AS job_title FROM ui_accounts WHERE account_id = ? "
        "GROUP BY profile_id) a USING (profile_id) ORDER BY p.name NULLS LAST",
        [account_id],
    )
    m = ctx.masker
    for c in cards:
        c["name"] = m.value("name", c["name"])
        c["email"] = m.value("contact", c["email"])
        c["phone"] = m.value("contact", c["phone"])
    names = [r["name"] for r in rows if r["name"]]
    domains = [r["domain"] for r in rows if r["domain"]]
    return {"account_id": account_id, "name": names[0] if names else account_id,
            "domain": domains[0] if domains else None, "contacts": cards}  # fmt: skip
