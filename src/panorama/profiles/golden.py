"""The golden record: one value per attribute per profile, chosen by survivorship rules.

Candidates are every value a profile's records and events hold: records' attributes, the
traits of identify calls (Segment names mapped: firstName -> first_name, lastName ->
last_name, name -> full_name, birthday -> birth_date, address.street -> address_line1,
address.city -> city, address.postalCode -> postal_code, ...), the attributes of events from
files (a shipping name), and the profile's email and phone identifiers.

Rules (`identity.survivorship`): per attribute one of

* ``most_recent``      the value of the latest record or event;
* ``most_frequent``    the value most records and events agree on (then the latest);
* ``source_priority``  the value from the source with the highest `priority` (then records
                       before identify calls before other events, then the latest);
* ``first_seen``       the earliest value;
* a list of sources    a custom order: the first listed source that has a value wins (then
                       the latest); unlisted sources come after.

Built-in defaults (when an attribute has no rule in the config): names, title and date of
birth by source priority; email and phone most frequent; everything else by the config's
`default` (most recent unless set). Each winning value keeps its source, record and time.
"""

from __future__ import annotations

from panorama.config import ProjectConfig, SurvivorshipConfig
from panorama.store import Store

# Segment identify traits -> profile attributes (nested paths use '.')
TRAIT_ALIASES: dict[str, str] = {
    "firstName": "first_name", "firstname": "first_name", "first_name": "first_name",
    "lastName": "last_name", "lastname": "last_name", "last_name": "last_name",
    "name": "full_name", "fullName": "full_name", "full_name": "full_name",
    "birthday": "birth_date", "birth_date": "birth_date", "dateOfBirth": "birth_date", "dob": "birth_date",
    "address.street": "address_line1", "address.line1": "address_line1",
    "address.city": "city", "address.postalCode": "postal_code", "address.postal_code": "postal_code",
    "address.country": "country", "address.state": "state",
    "company.name": "company", "createdAt": "created_at", "avatar": "avatar", "gender": "gender",
    "title": "title", "username": "username", "website": "website", "age": "age",
}  # fmt: skip
BUILTIN_RULES: dict[str, str] = {
    "first_name": "source_priority", "last_name": "source_priority", "full_name": "source_priority",
    "title": "source_priority", "birth_date": "source_priority", "email": "most_frequent",
    "phone": "most_frequent",
}
# Never golden attributes: identifiers have their own list, and these are per-event facts.
SKIP = frozenset({"user_id", "userId", "anonymous_id", "anonymousId"})



# Candidates for email and phone: the profile's identifiers, weighted by how many rows carry
# them (the same SQL on DuckDB and Spark, `panorama.scale.golden`).
IDENTIFIER_CANDIDATES_SQL = """
        SELECT n.profile_id, n.type, n.value, s.first_source, s.first_record_id, s.first_ts, 3, 0, s.members
        FROM identity_nodes n
        JOIN identity_sig_nodes sn ON sn.node = n.node
        JOIN identity_sigs s ON s.sig = sn.sig
        JOIN identity_nodes a ON a.node = s.anchor AND a.profile_id = n.profile_id
        WHERE n.status = 'linked' AND n.type IN ('email', 'phone') AND n.profile_id IS NOT NULL
"""

def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def rule_for(attribute: str, config: SurvivorshipConfig) -> str | list[str]:
    if attribute in config.attributes:
        return config.attributes[attribute]
    return BUILTIN_RULES.get(attribute, config.default)


def candidates_sql(project_config: ProjectConfig | None) -> str:
    """(profile_id, attribute, value, source, record_id, ts, kind_rank, priority, weight) for
    every attribute value a profile's records and events hold (`weight`: how many rows)."""
    from panorama.identity.export import events_with_profile_sql, records_with_profile_sql

    priorities = {}
    if project_config is not None:
        priorities = {name: s.priority for name, s in project_config.sources.items()}
    prio_case = "0"
    if priorities:
        prio_case = "CASE source " + " ".join(f"WHEN {_lit(k)} THEN {int(v)}" for k, v in priorities.items()) + " ELSE 0 END"
    alias_case = "CASE k " + " ".join(f"WHEN {_lit(k)} THEN {_lit(v)}" for k, v in TRAIT_ALIASES.items()) + " ELSE k END"
    skip = ", ".join(_lit(s) for s in sorted(SKIP))
    return f"""
        WITH raw AS (
            SELECT profile_id, source, record_id, ts, 0 AS kind_rank, CAST(attributes AS JSON) AS j
            FROM ({records_with_profile_sql()}) WHERE attributes IS NOT NULL
            UNION ALL
            SELECT profile_id, source, _record_id, timestamp,
                   CASE WHEN type = 'identify' THEN 1 ELSE 2 END, CAST(traits AS JSON)
            FROM ({events_with_profile_sql()}) WHERE traits IS NOT NULL AND type <> 'group'
        ),
        flat AS (
            SELECT r.profile_id, r.source, r.record_id, r.ts, r.kind_rank, e.key AS k, e.value AS v, e.type AS t
            FROM raw r, json_each(r.j) e
        ),
        objects AS (SELECT * FROM flat WHERE t = 'OBJECT'),
        nested AS (  -- one level of nesting (Segment's address, company)
            SELECT f.profile_id, f.source, f.record_id, f.ts, f.kind_rank, f.k || '.' || e.key AS k,
                   e.value AS v, e.type AS t
            FROM objects f, json_each(f.v) e
        ),
        kv AS (
            SELECT * FROM flat WHERE t NOT IN ('OBJECT', 'NULL')
            UNION ALL SELECT * FROM nested WHERE t NOT IN ('OBJECT', 'ARRAY', 'NULL')
        )
        SELECT profile_id, {alias_case} AS attribute,
               CASE WHEN t = 'VARCHAR' THEN json_extract_string(v, '$') ELSE CAST(v AS VARCHAR) END AS value,
               source, record_id, ts, kind_rank, {prio_case} AS priority, 1 AS weight
        FROM kv
        WHERE k NOT IN ({skip})
          AND NOT (t = 'VARCHAR' AND trim(json_extract_string(v, '$')) = '')
        UNION ALL
        {IDENTIFIER_CANDIDATES_SQL}
    """


def _order(rule: str | list[str]) -> str:
    """ORDER BY for picking the winner within (profile, attribute) of `scored` rows."""
    if isinstance(rule, list):
        ranks = " ".join(f"WHEN {_lit(s)} THEN {i}" for i, s in enumerate(rule))
        return f"CASE source {ranks} ELSE {len(rule)} END, ts DESC NULLS LAST, kind_rank"
    return {
        "most_recent": "ts DESC NULLS LAST, kind_rank, priority DESC",
        "first_seen": "ts ASC NULLS LAST, kind_rank, priority DESC",
        "source_priority": "priority DESC, kind_rank, ts DESC NULLS LAST",
        "most_frequent": "freq DESC, ts DESC NULLS LAST, kind_rank",
    }[rule]


def golden_long_sql(store: Store, project_config: ProjectConfig | None = None,
                    profile_filter: str | None = None) -> str:  # fmt: skip
    """(profile_id, attribute, value, source, record_id, ts, rule): the winning value of every
    attribute of every profile (`profile_filter`: a SQL condition on profile_id)."""
    config = (project_config.identity.survivorship if project_config is not None
              else SurvivorshipConfig())  # fmt: skip
    configured = {a: rule_for(a, config) for a in set(config.attributes) | set(BUILTIN_RULES)}
    where = f"WHERE {profile_filter}" if profile_filter else ""
    # every configured attribute gets its own ordering; the rest use the default
    branches = []
    for attribute, rule in sorted(configured.items()):
        branches.append(f"WHEN attribute = {_lit(attribute)} THEN row_number() OVER "
                        f"(PARTITION BY profile_id, attribute ORDER BY {_order(rule)})")  # fmt: skip
    default_rank = f"row_number() OVER (PARTITION BY profile_id, attribute ORDER BY {_order(config.default)})"
    rank = "CASE " + " ".join(branches) + f" ELSE {default_rank} END" if branches else default_rank
    rule_name = "CASE " + " ".join(
        f"WHEN attribute = {_lit(a)} THEN {_lit(r if isinstance(r, str) else 'custom order')}"
        for a, r in sorted(configured.items())
    ) + f" ELSE {_lit(config.default)} END"
    return f"""
        WITH c AS (SELECT * FROM ({candidates_sql(project_config)}) {where}),
        scored AS (
            SELECT *, sum(weight) OVER (PARTITION BY profile_id, attribute, value) AS freq FROM c
        ),
        ranked AS (SELECT *, {rank} AS rnk FROM scored)
        SELECT profile_id, attribute, value, source, record_id, ts, {rule_name} AS rule
        FROM ranked WHERE rnk = 1
    """


def golden_sql(store: Store, project_config: ProjectConfig | None = None) -> str:
    """One row per profile: golden attributes as columns, `provenance` (JSON: attribute ->
    source, record_id, at), and first_seen / last_seen / rows / sources."""
    from panorama.identity.export import membership_sql

    if project_config is None:
        project_config = _project_config(store)
    attributes = _attributes(store, project_config)
    pivot = ", ".join(
        f"max(value) FILTER (WHERE attribute = {_lit(a)}) AS \"{a.replace(chr(34), '')}\"" for a in attributes
    )
    pivot = (pivot + ",") if pivot else ""
    return f"""
        WITH g AS ({golden_long_sql(store, project_config)}),
        wide AS (
            SELECT profile_id, {pivot}
                   json_group_object(attribute, json_object('source', source, 'record_id', record_id,
                                                            'at', strftime(ts, '%Y-%m-%dT%H:%M:%S'))) AS provenance
            FROM g GROUP BY profile_id
        ),
        m AS (
            SELECT profile_id, count(*) AS rows, list(DISTINCT source ORDER BY source) AS sources
            FROM ({membership_sql(store)}) GROUP BY profile_id
        ),
        p AS (SELECT profile_id, created_at, updated_at FROM identity_profiles WHERE status = 'active')
        SELECT m.profile_id, wide.* EXCLUDE (profile_id), m.rows, array_to_string(m.sources, ',') AS sources,
               p.created_at AS profile_created_at
        FROM m LEFT JOIN wide USING (profile_id) LEFT JOIN p USING (profile_id)
    """


def _project_config(store: Store) -> ProjectConfig | None:
    """The project's config when the store sits in a project directory (for source priorities)."""
    from panorama.config import ConfigError, load_project

    try:
        project = load_project(store.path.parent)
    except (ConfigError, OSError):
        return None
    if project.store_path != store.path.resolve():
        return None
    return project.config


def _attributes(store: Store, project_config: ProjectConfig | None) -> list[str]:
    """The attribute names that occur (configured source attributes, identify traits seen)."""
    names: set[str] = {"email", "phone"}
    if project_config is not None:
        for source in project_config.sources.values():
            names.update(source.attributes.values())
    rows = store.execute(
        """
        SELECT DISTINCT k FROM (
            SELECT unnest(json_keys(CAST(traits AS JSON))) AS k FROM events
            WHERE type = 'identify' AND traits IS NOT NULL
            UNION ALL
            SELECT unnest(json_keys(CAST(attributes AS JSON))) FROM records WHERE attributes IS NOT NULL
        )
        """
    ).fetchall()
    for (k,) in rows:
        names.add(TRAIT_ALIASES.get(k, k))
    if any(k == "address" for (k,) in rows):
        names.update(("address_line1", "city", "postal_code", "country", "state"))
    names -= SKIP
    return sorted(names)
