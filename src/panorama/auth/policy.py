"""What each role may do and see: permissions and PII handling, as data, in one place.

Both the web UI and the REST API check permissions with `Principal.can` (through the
server's `require(permission)` dependency) and mask personal data with `Masker`, so a role
sees the same thing in both. `docs/ui.md` prints this table.

PII is classified by field name (`pii_class`): an attribute, identifier type or event
property called `email`, `phone`, `first_name`, `postcode`, `birth_date`, `ip`, ... belongs
to a class, and each role handles each class one way:

- `clear`: shown as stored;
- `partial`: enough to recognise, not to contact (`a•••@example.com`, `••• 123`, `••••-05-17`);
- `pseudonym`: a stable token (`anon:3fa9c2d1e0`): the same value always gives the same
  token within a project, so analysts can count and join without seeing the value;
- `hidden`: withheld (`[hidden]`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Any

# -- permissions ----------------------------------------------------------------------------

PERMISSIONS: dict[str, str] = {
    "profiles.view": "search customers and open their profiles",
    "events.view": "see a profile's timeline of events",
    "tickets.view": "see support tickets, survey answers and their text",
    "predictions.view": "see predictions, their drivers and the model cards",
    "segments.view": "see segments, their sizes and members",
    "segments.edit": "create and edit segments, exports and triggers",
    "dashboards.view": "see the dashboards (NPS, CSAT, churn, retention, CLV, RFM, cohorts)",
    "sources.view": "see ingestion status, recent errors and dead letters",
    "keys.manage": "create and revoke write keys",
    "users.manage": "manage users and REST API tokens",
    "audit.view": "read the audit log",
    "profiles.delete": "delete a profile (data subject request)",
}

ROLES_ORDER = ("admin", "marketing", "sales", "support", "analyst")

PII_CLASSES: dict[str, str] = {
    "name": "people's names",
    "contact": "email addresses and phone numbers",
    "address": "postal addresses, cities and postcodes",
    "birth": "dates of birth and ages",
    "device": "IP addresses, device and anonymous ids",
    "free_text": "free text people wrote (ticket messages, survey comments, notes)",
}
MODES = ("clear", "partial", "pseudonym", "hidden")


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    permissions: frozenset[str]
    pii: dict[str, str] = field(hash=False)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def mode(self, pii_class: str) -> str:
        return self.pii.get(pii_class, "hidden")


_ALL = frozenset(PERMISSIONS)
_CLEAR = dict.fromkeys(PII_CLASSES, "clear")

ROLES: dict[str, Role] = {
    "admin": Role(
        "admin", "everything, including users, API tokens, write keys, deletion and the audit log",
        _ALL, _CLEAR,
    ),
    "marketing": Role(
        "marketing", "audiences and campaigns: profiles, predictions, segments, dashboards",
        frozenset({"profiles.view", "events.view", "predictions.view", "segments.view",
                   "segments.edit", "dashboards.view"}),
        {"name": "clear", "contact": "clear", "address": "partial", "birth": "partial",
         "device": "pseudonym", "free_text": "hidden"},
    ),
    "sales": Role(
        "sales", "accounts and customers: profiles, contact details, predictions, segments",
        frozenset({"profiles.view", "events.view", "predictions.view", "segments.view",
                   "dashboards.view"}),
        {"name": "clear", "contact": "clear", "address": "clear", "birth": "hidden",
         "device": "pseudonym", "free_text": "hidden"},
    ),
    "support": Role(
        "support", "helping customers: contact details, tickets, survey answers, the timeline",
        frozenset({"profiles.view", "events.view", "tickets.view", "segments.view"}),
        {"name": "clear", "contact": "clear", "address": "clear", "birth": "partial",
         "device": "clear", "free_text": "clear"},
    ),
    "analyst": Role(
        "analyst", "analysis without identities: everything pseudonymised",
        frozenset({"profiles.view", "events.view", "tickets.view", "predictions.view",
                   "segments.view", "segments.edit", "dashboards.view", "sources.view"}),
        {"name": "pseudonym", "contact": "pseudonym", "address": "pseudonym",
         "birth": "hidden", "device": "pseudonym", "free_text": "hidden"},
    ),
}
assert tuple(ROLES) == ROLES_ORDER
for _role in ROLES.values():
    assert _role.permissions <= _ALL, _role.name
    assert set(_role.pii) == set(PII_CLASSES) and set(_role.pii.values()) <= set(MODES), _role.name


class UnknownRole(ValueError):
    pass


def role(name: str) -> Role:
    try:
        return ROLES[name]
    except KeyError:
        raise UnknownRole(f"unknown role {name!r}; use one of {', '.join(ROLES)}") from None


# -- who is asking ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """A signed-in user (browser session) or an API token, with its role."""

    kind: str  # "user" | "token" | "cli"
    id: str
    name: str
    role: Role
    csrf_token: str | None = None  # browser sessions only

    def can(self, permission: str) -> bool:
        return self.role.can(permission)

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


def cli_principal() -> Principal:
    """The local command line acts as admin (it owns the store file)."""
    return Principal("cli", "cli", "cli", ROLES["admin"])


# -- PII classification and masking --------------------------------------------------------

_NAME_FIELDS = {
    "name", "first_name", "last_name", "full_name", "given_name", "family_name", "surname",
    "middle_name", "firstname", "lastname", "fullname", "display_name", "customer_name",
    "contact_name", "maiden_name", "nickname",
}
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"e-?mail"), "contact"),
    (re.compile(r"phone|mobile|msisdn|^tel$|^telephone|fax"), "contact"),
    (re.compile(r"address|street|^city$|^town$|postcode|postal|^zip|house_?number|^county$"), "address"),
    (re.compile(r"birth|^dob$|^age$"), "birth"),
    (re.compile(r"(^|_)ip($|_)|ip_?address|device_?id|anonymous_?id|^idfa$|^gaid$|advertising_?id|user_?agent"),
     "device"),
    (re.compile(r"comment|message|^body$|^text$|subject|^notes?$|feedback|transcript|verbatim|reply"),
     "free_text"),
]


def pii_class(field_name: str) -> str | None:
    """The PII class of a field (attribute, identifier type or property) by its name."""
    key = re.sub(r"[^a-z0-9]+", "_", field_name.strip().lower()).strip("_")
    if key in _NAME_FIELDS:
        return "name"
    for pattern, cls in _RULES:
        if pattern.search(key):
            return cls
    return None


HIDDEN = "[hidden]"
_DOT = "\u2022\u2022\u2022"


def _partial(cls: str, text: str) -> str:
    if cls == "contact":
        if "@" in text:
            local, _, domain = text.partition("@")
            return f"{local[:1]}{_DOT}@{domain}"
        digits = re.sub(r"\D", "", text)
        return f"{_DOT} {digits[-3:]}" if len(digits) > 3 else _DOT
    if cls == "birth":
        m = re.match(r"^\s*(\d{4})-(\d{2})-(\d{2})", text)
        return f"\u2022\u2022\u2022\u2022-{m.group(2)}-{m.group(3)}" if m else HIDDEN
    if cls == "address":
        # a postcode keeps its outward part (area), anything else its last word (the town)
        parts = text.split()
        if 2 <= len(text.replace(" ", "")) <= 8 and any(c.isdigit() for c in text):
            return f"{parts[0]} {_DOT}" if len(parts) > 1 else f"{text[:2]}{_DOT}"
        return f"{_DOT} {parts[-1]}" if len(parts) > 1 else _DOT
    if cls == "name":
        return f"{text[:1]}{_DOT}" if text else text
    return HIDDEN


class Masker:
    """Masks values for a role. The pseudonymisation key is the project's secret."""

    def __init__(self, role: Role, secret: bytes):
        self.role = role
        self._secret = secret

    def pseudonym(self, value: Any) -> str:
        text = str(value).strip().lower()
        digest = hmac.new(self._secret, text.encode("utf-8"), hashlib.sha256).hexdigest()
        return "anon:" + digest[:10]

    def visible(self, cls: str | None) -> bool:
        """True when the role sees values of this class as stored."""
        return cls is None or self.role.mode(cls) == "clear"

    def value(self, cls: str | None, value: Any) -> Any:
        if cls is None or value is None or value == "":
            return value
        mode = self.role.mode(cls)
        if mode == "clear":
            return value
        if isinstance(value, dict | list):
            return HIDDEN
        if mode == "pseudonym":
            return self.pseudonym(value)
        if mode == "partial":
            return _partial(cls, str(value))
        return HIDDEN

    def field(self, name: str, value: Any) -> Any:
        """Mask `value` by its field name; dicts and lists are masked key by key."""
        cls = pii_class(name)
        if cls is not None:
            return self.value(cls, value)
        return self.tree(value)

    def tree(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.field(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tree(v) for v in value]
        return value

    def identifier(self, type_: str, value: Any) -> Any:
        return self.value(pii_class(type_), value)

    def searchable(self, pii: str | None) -> bool:
        """May this role search by values of this class? Only by what it sees in clear."""
        return self.visible(pii)
