"""Customer search: by name, email, phone, profile id or any identifier; fuzzy on names.

One function, `search`, serves the web UI, the REST API and `panorama search`. It reads the
read index (`panorama.server.ui.index`):

1. identifier keys: the query (lower-cased; for phones its digits, its E.164 form and its last
   9 digits) matched exactly and as a prefix on `ui_search_keys` (sorted: a range read);
2. names: each word of the query matched against the vocabulary of name tokens — exactly, as
   a prefix, or by Jaro-Winkler similarity >= 0.85 (typos, `Jon`/`John`, `Smyth`/`Smith`) —
   then the profiles holding a close token for every word, best total similarity first.

A role only searches by what it may see in clear: analysts (names and contact details
pseudonymised) find profiles by profile id and non-personal identifiers only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from panorama.auth.policy import Masker, pii_class
from panorama.store import Store

MAX_WORDS = 5
FUZZY = 0.85
MAX_CANDIDATES = 40  # vocabulary tokens kept per query word


@dataclass
class SearchHit:
    profile_id: str
    name: str | None
    email: str | None
    phone: str | None
    sources: list[str]
    first_seen: datetime | None
    last_seen: datetime | None
    score: float
    matched: list[str] = field(default_factory=list)  # what matched: "email", "name", ...


@dataclass
class SearchResult:
    query: str
    hits: list[SearchHit]
    searched: list[str]  # what this role searched by ("identifiers", "names", ...)
    note: str | None = None


def _phone_keys(query: str, region: str) -> list[str]:
    digits = re.sub(r"\D", "", query)
    if len(digits) < 6 or re.search(r"[A-Za-z@]", query):
        return []
    keys = [digits]
    try:
        import phonenumbers

        number = phonenumbers.parse(query, region)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        keys.append(e164.lstrip("+"))
    except Exception:  # noqa: BLE001 - not a phone number: the digits are enough
        pass
    if len(digits) >= 9:
        keys.append("~" + digits[-9:])
    return list(dict.fromkeys(keys))


def _words(query: str) -> list[str]:
    from unidecode import unidecode

    text = unidecode(query).lower()
    return [w for w in re.split(r"[^a-z0-9]+", text) if w][:MAX_WORDS]


def _key_hits(store: Store, keys: list[str], prefix: bool, masker: Masker) -> dict[str, tuple[float, set[str]]]:
    found: dict[str, tuple[float, set[str]]] = {}
    for key in keys:
        if prefix and len(key) >= 3 and not key.startswith("~"):
            rows = store.execute(
                "SELECT profile_id, type, key FROM ui_search_keys WHERE key >= ? AND key < ? LIMIT 200",
                [key, key + "\U0010ffff"],
            ).fetchall()
        else:
            rows = store.execute(
                "SELECT profile_id, type, key FROM ui_search_keys WHERE key = ? LIMIT 200", [key]
            ).fetchall()
        for profile_id, type_, matched in rows:
            if type_ != "profile_id" and not masker.searchable(pii_class(type_)):
                continue
            score = 3.0 if matched == key or key.startswith("~") else 2.0
            best, kinds = found.get(profile_id, (0.0, set()))
            found[profile_id] = (max(best, score), kinds | {type_})
    return found


def _name_hits(store: Store, words: list[str], limit: int) -> dict[str, float]:
    """Profiles holding a close name token for every word, best average similarity first.

    Two queries: the close tokens of every word (the vocabulary is small), then the postings
    of those tokens intersected, scored and cut to `limit` inside DuckDB (common names have
    tens of thousands of postings: they never reach Python)."""
    if not words:
        return {}
    parts, params = [], []
    for i, word in enumerate(words):
        parts.append(f"""(SELECT {i} AS w, token, CASE WHEN token = ${i + 1} THEN 1.0
                                            WHEN starts_with(token, ${i + 1}) THEN 0.95
                                            ELSE jaro_winkler_similarity(token, ${i + 1}) END AS sim
             FROM ui_search_vocab
             WHERE token = ${i + 1} OR (length(${i + 1}) >= 2 AND starts_with(token, ${i + 1}))
                OR (length(${i + 1}) >= 3 AND jaro_winkler_similarity(token, ${i + 1}) >= {FUZZY})
             ORDER BY sim DESC, n DESC LIMIT {MAX_CANDIDATES})""")
        params.append(word)
    candidates = store.execute(" UNION ALL ".join(parts), params).fetchall()
    if len({w for w, _, _ in candidates}) < len(words):
        return {}  # some word matches no name
    values = ", ".join("(?, ?, ?)" for _ in candidates)
    tokens = sorted({t for _, t, _ in candidates})
    flat = [v for row in candidates for v in row]
    rows = store.execute(
        f"""WITH c(w, token, sim) AS (VALUES {values})
            SELECT profile_id, sum(best) / {len(words)} AS score FROM (
                SELECT n.profile_id, c.w, max(c.sim) AS best
                FROM ui_search_names n JOIN c ON n.token = c.token
                WHERE n.token IN ({", ".join("?" * len(tokens))})
                GROUP BY n.profile_id, c.w)
            GROUP BY profile_id HAVING count(*) = {len(words)}
            ORDER BY score DESC, profile_id LIMIT {int(limit)}""",
        [*flat, *tokens],
    ).fetchall()
    return dict(rows)


def search(store: Store, query: str, masker: Masker, limit: int = 20, region: str = "US") -> SearchResult:
    query = (query or "").strip()[:200]
    if not query:
        return SearchResult(query, [], [])
    if not store.table_exists("ui_search_keys"):
        return SearchResult(query, [], [], "the search index is being built; try again in a moment")
    lowered = query.lower()
    searched = ["profile id", "identifiers"]
    scores: dict[str, float] = {}
    matched: dict[str, set[str]] = {}
    phone_keys = _phone_keys(query, region)
    keys = [lowered] + phone_keys
    for profile_id, (score, kinds) in _key_hits(store, keys, prefix=True, masker=masker).items():
        scores[profile_id] = score
        matched[profile_id] = set(kinds)
    if "@" not in query and not phone_keys and masker.searchable("name"):
        searched.append("names")
        for profile_id, sim in _name_hits(store, _words(query), limit + len(scores)).items():
            scores[profile_id] = scores.get(profile_id, 0.0) + sim
            matched.setdefault(profile_id, set()).add("name")
    if not masker.searchable("contact"):
        searched = ["profile id", "non-personal identifiers"]
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    cards = profile_cards(store, [p for p, _ in ranked])
    hits = []
    for profile_id, score in ranked:
        card = cards.get(profile_id)
        if card is None:
            continue
        hits.append(SearchHit(
            profile_id, masker.value("name", card["name"]), masker.value("contact", card["email"]),
            masker.value("contact", card["phone"]), card["sources"] or [], card["first_seen"],
            card["last_seen"], round(score, 3), sorted(matched.get(profile_id, ())),
        ))  # fmt: skip
    return SearchResult(query, hits, searched)


def profile_cards(store: Store, profile_ids: list[str]) -> dict[str, dict]:
    if not profile_ids:
        return {}
    placeholders = ", ".join("?" * len(profile_ids))
    cur = store.execute(
        "SELECT profile_id, name, email, phone, sources, records, events, identifiers, first_seen, last_seen "
        f"FROM ui_profiles WHERE profile_id IN ({placeholders})",
        profile_ids,
    )
    names = [d[0] for d in cur.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}
