"""The profile as segments see it: one flat row per profile, from the modules that own each part.

Sources of columns, in order of precedence when two define the same name:

1. **traits** — the traits engineer's `profile_traits` table (computed traits, RFM, lifecycle);
2. **predictions** — `panorama.predict.schema.PROFILE_SCORES_SQL` (churn_probability,
   predicted_clv, ...; NULL before the first `panorama predict`);
3. **profile** — the golden record (`panorama.profiles.export.profiles_sql`); a JSON
   `attributes` column is expanded into one column per attribute key found in the data.

Profiles and their events come from identity resolution (`panorama.profiles.profile_events_sql`)
once it has run. Before that (no identity graph yet), profiles are keyed by the events' own
ids: `user_id`, else `anon:<anonymous_id>`, with attributes taken from the latest value of each
`identify` trait — so segments and triggers work on a fresh project fed through the HTTP API.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from panorama.store import Store

# The fallback profile key (before identity resolution): the user id, else the anonymous id.
FALLBACK_PROFILE_ID = "coalesce(user_id, 'anon:' || anonymous_id, source || ':' || message_id)"
_EVENT_RECORD_ID = (
    "CASE WHEN starts_with(b.message_id, b.source || ':') "
    "THEN substr(b.message_id, length(b.source) + 2) ELSE b.message_id END"
)
_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL")


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class Source:
    name: str
    sql: str  # one row per profile: profile_id and the columns
    columns: dict[str, str]  # column -> SQL type
    exprs: dict[str, str] = field(default_factory=dict)  # column -> SQL over the source row
    # the same rows for the profiles of a relation `{ids}` (filtered before any aggregation)
    filtered_sql: str | None = None
    # an aggregating source (the fallback profile): column -> aggregate over `events_sql`, so a
    # query can compute only the columns it uses, over only the rows they read
    aggregates: dict[str, str] = field(default_factory=dict)
    events_sql: str | None = None
    attribute_columns: frozenset[str] = frozenset()

    def for_ids(self, ids: str, names=None) -> str:
        if self.aggregates and names is not None:
            wanted = [n for n in names if n in self.aggregates]
            if wanted:
                only_attributes = all(n in self.attribute_columns for n in wanted)
                rows = "AND traits IS NOT NULL" if only_attributes else ""  # identify traits only
                aggs = ", ".join(f"{self.aggregates[n]} AS {q(n)}" for n in wanted)
                return (f"SELECT profile_id, {aggs} FROM ({self.events_sql}) "
                        f"WHERE profile_id IN (SELECT profile_id FROM {ids}) {rows} GROUP BY profile_id")  # fmt: skip
        if self.filtered_sql is not None:
            return self.filtered_sql.format(ids=ids)
        return f"SELECT * FROM ({self.sql}) WHERE profile_id IN (SELECT profile_id FROM {ids})"

    def select(self, names) -> str:
        parts = ["profile_id"]
        for name in names:
            expr = self.exprs.get(name, q(name))
            parts.append(f"{expr} AS {q(name)}")
        return ", ".join(parts)


@dataclass
class Catalog:
    mode: str  # "resolved" (identity graph) or "events" (fallback keys)
    universe_sql: str  # SELECT profile_id ... (every profile)
    events_sql: str  # every event with its profile_id
    sources: list[Source]  # in precedence order (first wins)
    columns: dict[str, str] = field(default_factory=dict)  # name -> SQL type
    owner: dict[str, str] = field(default_factory=dict)  # name -> source name
    membership_sql: str | None = None  # (source, record_id, profile_id), resolved mode
    # identity's "events with their profile" SQL when it reads `FROM events e` once: the same
    # lookup (by identifier signature) then runs on a batch instead of the whole log
    batch_events_sql: str | None = None

    def source(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)

    def affected_sql(self, batch: str) -> str:
        """Profile ids of the events in the registered relation `batch` (events columns)."""
        if self.mode == "events":
            return f"SELECT DISTINCT {FALLBACK_PROFILE_ID} AS profile_id FROM {batch}"
        return f"SELECT DISTINCT profile_id FROM ({self.event_profiles_sql(batch)})"

    def event_profiles_sql(self, batch: str) -> str:
        """Every event of `batch` with its profile_id."""
        if self.mode == "events":
            return f"SELECT {FALLBACK_PROFILE_ID} AS profile_id, * FROM {batch}"
        if self.batch_events_sql is not None:  # identity's own lookup, applied to the batch only
            return self.batch_events_sql.replace("FROM events e", f"FROM {batch} e")
        return f"""
            SELECT m.profile_id, b.* FROM {batch} b
            JOIN ({self.membership_sql}) m ON m.source = b.source AND m.record_id = {_EVENT_RECORD_ID}
        """


def _optional(module: str, name: str):
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise
    return getattr(mod, name, None)


def _describe(store: Store, sql: str) -> dict[str, str]:
    rows = store.execute(f"DESCRIBE SELECT * FROM ({sql})").fetchall()
    return {r[0]: r[1] for r in rows}


def _json_keys(store: Store, table_sql: str, column: str) -> dict[str, str]:
    """Keys of a JSON object column across the data, with NUMBER/BOOLEAN/VARCHAR types."""
    rows = store.execute(f"""
        WITH kv AS (
            SELECT unnest(json_keys(j)) AS k, j FROM (
                SELECT TRY_CAST({q(column)} AS JSON) AS j FROM ({table_sql})
                WHERE {q(column)} IS NOT NULL
            ) WHERE json_type(j) = 'OBJECT'
        )
        SELECT k, list(DISTINCT json_type(j, '$."' || replace(k, '"', '\\"') || '"'))
        FROM kv GROUP BY k ORDER BY k
    """).fetchall()  # fmt: skip
    out = {}
    for key, kinds in rows:
        kinds = {k for k in kinds if k and k != "NULL"}
        if kinds and kinds <= {"BIGINT", "UBIGINT", "DOUBLE"}:
            out[key] = "DOUBLE"
        elif kinds == {"BOOLEAN"}:
            out[key] = "BOOLEAN"
        else:
            out[key] = "VARCHAR"
    return out


def _json_exprs(column: str, keys: dict[str, str]) -> dict[str, str]:
    exprs = {}
    for key, sql_type in keys.items():
        path = _lit('$."' + key.replace('"', '\\"') + '"')
        value = f"json_extract_string(TRY_CAST({q(column)} AS JSON), {path})"
        exprs[key] = value if sql_type == "VARCHAR" else f"TRY_CAST({value} AS {sql_type})"
    return exprs


def _fallback_profile(store: Store, events_sql: str) -> Source:
    keys = {
        k: t for k, t in _json_keys(store, "SELECT traits FROM events", "traits").items()
        if k not in ("profile_id",)
    }  # fmt: skip
    attrs = []
    per_column: dict[str, str] = {}
    for key, sql_type in keys.items():
        path = _lit('$."' + key.replace('"', '\\"') + '"')
        value = f"json_extract_string(traits, {path})"
        typed = value if sql_type == "VARCHAR" else f"TRY_CAST({value} AS {sql_type})"
        per_column[key] = f"arg_max({typed}, timestamp) FILTER (WHERE {value} IS NOT NULL)"
        attrs.append(f"{per_column[key]} AS {q(key)}")
    base = {
        "user_id": "arg_max(user_id, timestamp) FILTER (WHERE user_id IS NOT NULL)",
        "anonymous_id": "arg_max(anonymous_id, timestamp) FILTER (WHERE anonymous_id IS NOT NULL)",
        "first_seen_at": "min(timestamp)",
        "last_seen_at": "max(timestamp)",
    }
    select = [f"{expr} AS {q(name)}" for name, expr in base.items() if name not in keys]
    per_column.update({name: expr for name, expr in base.items() if name not in keys})
    aggregates = ", ".join(select + attrs)
    sql = f"SELECT profile_id, {aggregates} FROM ({events_sql}) GROUP BY profile_id"
    filtered = (f"SELECT profile_id, {aggregates} FROM ({events_sql}) "
                "WHERE profile_id IN (SELECT profile_id FROM {ids}) GROUP BY profile_id")  # fmt: skip
    columns = {"user_id": "VARCHAR", "anonymous_id": "VARCHAR", "first_seen_at": "TIMESTAMP",
               "last_seen_at": "TIMESTAMP", **keys}  # fmt: skip
    return Source("profile", sql, columns, filtered_sql=filtered.replace("{", "{{").replace("}", "}}")
                  .replace("{{ids}}", "{ids}"), aggregates=per_column, events_sql=events_sql,
                  attribute_columns=frozenset(keys))  # fmt: skip


def _resolved_membership(store: Store) -> str | None:
    resolved = _optional("panorama.identity.export", "membership_sql")
    return resolved(store) if resolved is not None else None


def build_catalog(store: Store) -> Catalog:
    """Discover the profile's columns in the store as it is now."""
    membership = _resolved_membership(store)
    sources: list[Source] = []
    if store.table_exists("profile_traits"):
        traits_sql = "SELECT * FROM profile_traits"
        custom = _optional("panorama.traits.batch", "profile_traits_sql")
        if custom is not None:
            traits_sql = custom(store) or traits_sql
        cols = {k: v for k, v in _describe(store, traits_sql).items() if k != "profile_id"}
        sources.append(Source("traits", traits_sql, cols))
    # predictions: their columns exist from the start (NULL until `panorama predict` has run),
    # so a segment such as "churn_probability > 0.7" is valid, and empty, before the first run
    scores_sql = _optional("panorama.predict.schema", "PROFILE_SCORES_SQL")
    if scores_sql and store.table_exists("predict_scores"):
        cols = {k: v for k, v in _describe(store, scores_sql).items() if k != "profile_id"}
        sources.append(Source("predictions", scores_sql, cols))
    if membership:
        from panorama.profiles import profile_events_sql
        from panorama.profiles.export import profiles_sql

        events_sql = profile_events_sql(store)
        base_sql = profiles_sql(store)
        described = _describe(store, base_sql)
        cols = {k: v for k, v in described.items() if k != "profile_id"}
        exprs: dict[str, str] = {}
        if described.get("attributes") in ("JSON", "VARCHAR"):
            keys = {k: t for k, t in _json_keys(store, base_sql, "attributes").items() if k not in cols}
            cols.update(keys)
            exprs.update(_json_exprs("attributes", keys))
        sources.append(Source("profile", base_sql, cols, exprs))
        universe = f"SELECT DISTINCT profile_id FROM ({base_sql})"
        catalog = Catalog("resolved", universe, events_sql, sources, membership_sql=membership)
        if events_sql.count("FROM events e") == 1:
            catalog.batch_events_sql = events_sql
    else:
        events_sql = f"SELECT {FALLBACK_PROFILE_ID} AS profile_id, * FROM events"
        sources.append(_fallback_profile(store, events_sql))
        universe = f"SELECT DISTINCT {FALLBACK_PROFILE_ID} AS profile_id FROM events"
        catalog = Catalog("events", universe, events_sql, sources)
    catalog.columns["profile_id"] = "VARCHAR"
    catalog.owner["profile_id"] = "_ids"
    for source in sources:
        for name, sql_type in source.columns.items():
            if name not in catalog.columns:
                catalog.columns[name] = sql_type
                catalog.owner[name] = source.name
    return catalog
