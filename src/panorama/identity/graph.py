"""The identity graph: which records and events are one person.

Vocabulary
----------
* member — a current source record or an event of the log;
* signature (sig) — a member's list of identifiers as received (hashed). Members with one
  signature always share a profile, so the graph is built over distinct signatures (an order
  of magnitude fewer than events);
* node — one normalised, linkable identifier (type, value);
* anchor — a signature's highest-priority non-shared node: the member belongs to the
  anchor's profile. A signature without one (no identifiers, or only invalid, blocked or
  shared ones) leaves each of its members on a profile of its own.

Building (`Resolution.run`, used by the batch `unify` and by the real-time hook on the
affected part of the graph alike, so both give the same result):

1. normalise every identifier (emails and phones once per distinct value, cached);
2. detect shared identifiers by count (a value seen with more than `shared_threshold`
   distinct values of one more trusted type) — they stop linking;
3. link each signature's nodes to its anchor; add probabilistic (Splink) links;
4. connected components (scipy) over the links;
5. components where a limit, a person conflict or a never-merge pair applies are resolved
   link by link with guards (`panorama.identity.resolver`); the others are one profile each;
6. profiles keep their ids across runs (`panorama.identity.ids`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from panorama.config import IdentityConfig
from panorama.identity import resolver
from panorama.identity.normalize import (
    BLOCKED,
    DEFAULT_BLOCKED,
    Normalizer,
    first_name_key,
    last_name_key,
    normalize_date,
    split_full_name,
)
from panorama.identity.rules import Rules
from panorama.store import one
from panorama.store.schema import CURRENT_RECORDS

Progress = Callable[[str, int, int], None]

EVENT_RECORD_ID = (
    "CASE WHEN starts_with(message_id, source || ':') "
    "THEN substr(message_id, length(source) + 2) ELSE message_id END"
)
EMPTY_IDS = "CAST([] AS STRUCT(type VARCHAR, value VARCHAR)[])"
# An alias's previousId is another id of the same person (Segment spec): it becomes a
# `user_id` when that user id is known, else an `anonymous_id`.
PREVIOUS_ID = "_previous_id"
EVENT_IDS = (
    "CASE WHEN previous_id IS NOT NULL AND previous_id <> '' "
    "AND previous_id IS DISTINCT FROM anonymous_id AND previous_id IS DISTINCT FROM user_id "
    f"THEN list_append(coalesce(identifiers, {EMPTY_IDS}), {{'type': '{PREVIOUS_ID}', 'value': previous_id}}) "
    f"ELSE coalesce(identifiers, {EMPTY_IDS}) END"
)
FAR_FUTURE = "TIMESTAMP '9999-12-31 00:00:00'"

# Person attributes that guard merges, read from records' attributes and identify traits.
_JSON_KEYS = {
    "first": ("first_name", "firstName", "given_name", "firstname"),
    "last": ("last_name", "lastName", "surname", "family_name", "lastname"),
    "full": ("full_name", "name", "fullName"),
    "dob": ("birth_date", "birthday", "date_of_birth", "dob", "dateOfBirth", "birthDate"),
}


def json_first(column: str, keys: tuple[str, ...]) -> str:
    return (
        "coalesce(" + ", ".join(f"json_extract_string({column}, '$.\"{k}\"')" for k in keys) + ")"
    )


def members_sql(person_only: bool = False) -> str:
    """Every current record and every event: source, record_id, ts, ids, person (JSON of the
    attributes that describe the person: records' attributes and identify traits), kind.
    `person_only`: just the members that carry such attributes."""
    where_records = "WHERE attributes IS NOT NULL" if person_only else ""
    where_events = "WHERE type = 'identify' AND traits IS NOT NULL" if person_only else ""
    return f"""
        SELECT source, record_id, ts, coalesce(identifiers, {EMPTY_IDS}) AS ids,
               attributes AS person, 'record' AS kind
        FROM ({CURRENT_RECORDS}) {where_records}
        UNION ALL
        SELECT source, {EVENT_RECORD_ID} AS record_id, timestamp AS ts, {EVENT_IDS} AS ids,
               CASE WHEN type = 'identify' THEN traits END AS person, 'event' AS kind
        FROM events {where_events}
    """


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class RunStats:
    members: int = 0
    sigs: int = 0
    nodes: int = 0
    shared: int = 0
    links: int = 0
    refused: int = 0
    components: int = 0
    guarded_components: int = 0
    profiles: int = 0
    merges: int = 0
    splink_pairs: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


class Timer:
    def __init__(self, stats: RunStats, progress: Progress | None = None):
        self.stats = stats
        self.progress = progress
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.stats.seconds[name] = round(self.stats.seconds.get(name, 0.0) + now - self._t, 3)
        self._t = now


# ----------------------------------------------------------------------------------------
# observations (person attributes that guard merges)


def normalise_observations(cur: duckdb.DuckDBPyConnection, source_table: str, region: str) -> None:
    """`source_table(sig, person JSON)` -> temp `_in_obs(sig, first_name, last_name, birth_date)`."""
    cols = {k: json_first("person", keys) for k, keys in _JSON_KEYS.items()}
    raw = cur.execute(
        f"""
        SELECT DISTINCT {cols["first"]} AS f, {cols["last"]} AS l, {cols["full"]} AS n, {cols["dob"]} AS d
        FROM {source_table} WHERE person IS NOT NULL
        """
    ).fetchall()
    rows = {"f": [], "l": [], "n": [], "d": [], "first_name": [], "last_name": [], "birth_date": []}
    for f, la, n, d in raw:
        first, last = first_name_key(f), last_name_key(la)
        if first is None and n:
            first, last2 = split_full_name(n)
            last = last or last2
        dob = normalize_date(d, region) if d else None
        if first is None and dob is None:
            continue
        for key, value in (("f", f), ("l", la), ("n", n), ("d", d), ("first_name", first),
                           ("last_name", last), ("birth_date", dob)):  # fmt: skip
            rows[key].append(value)
    cur.register("_obs_map", pa.table({k: pa.array(v, pa.string()) for k, v in rows.items()}))
    cur.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _in_obs AS
        SELECT DISTINCT s.sig, m.first_name, m.last_name, m.birth_date
        FROM (SELECT sig, {cols["first"]} AS f, {cols["last"]} AS l, {cols["full"]} AS n, {cols["dob"]} AS d
              FROM {source_table} WHERE person IS NOT NULL) s
        JOIN _obs_map m ON m.f IS NOT DISTINCT FROM s.f AND m.l IS NOT DISTINCT FROM s.l
                       AND m.n IS NOT DISTINCT FROM s.n AND m.d IS NOT DISTINCT FROM s.d
        """
    )
    cur.unregister("_obs_map")


# ----------------------------------------------------------------------------------------
# the resolution, shared by batch and real time


class Resolution:
    """Resolve the signatures in temp table `_in_sigs` (sig, ids, first_ts, first_source,
    first_record_id, members), with observations `_in_obs` and probabilistic links
    `_in_splink(a_sig, b_sig, probability, a_source, a_record_id, b_source, b_record_id)`.

    `incremental`: node ids come from `identity_nodes` (new ones appended); otherwise fresh.
    Results in temp tables `_out_nodes`, `_out_sig_nodes`, `_out_sigs`, `_out_edges`.
    """

    def __init__(self, cur: duckdb.DuckDBPyConnection, config: IdentityConfig, incremental: bool,
                 stats: RunStats | None = None, progress: Progress | None = None,
                 timer: Timer | None = None):  # fmt: skip
        self.cur = cur
        self.config = config
        self.normalizer = Normalizer(config)
        self.rules = Rules(config)
        self.incremental = incremental
        self.stats = stats or RunStats()
        self.timer = timer or Timer(self.stats)
        self.progress = progress

    def _step(self, name: str) -> None:
        if self.progress:
            self.progress(name, 0, 0)

    # -- 1. normalise ----------------------------------------------------------------------
    def normalise(self) -> None:
        cur = self.cur
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _raw_ids AS SELECT sig, i.type AS type, i.value AS raw "
            "FROM (SELECT sig, unnest(ids) AS i FROM _in_sigs) WHERE i.value IS NOT NULL AND i.type IS NOT NULL"
        )
        types = [r[0] for r in cur.execute("SELECT DISTINCT type FROM _raw_ids").fetchall()]
        if self.incremental:
            types += [r[0] for r in cur.execute(
                "SELECT DISTINCT n.type FROM identity_sig_nodes sn JOIN identity_nodes n USING (node) "
                "WHERE sn.sig IN (SELECT sig FROM _in_sigs WHERE ids IS NULL)"
            ).fetchall()]  # fmt: skip
        types = sorted(set(types) | {"user_id", "anonymous_id"})
        cur.register("_rules_arrow", self.rules.table(t for t in types if t != PREVIOUS_ID))
        cur.execute("CREATE OR REPLACE TEMP TABLE _rules AS SELECT * FROM _rules_arrow")
        cur.unregister("_rules_arrow")
        cur.execute(f"INSERT INTO _rules VALUES ({_lit(PREVIOUS_ID)}, 'id', 0, NULL, NULL, true)")
        cur.execute(
            r"""
            CREATE OR REPLACE TEMP TABLE _keyed AS
            SELECT sig, type, kind,
                   CASE kind
                     WHEN 'email' THEN lower(trim(raw))
                     WHEN 'phone' THEN CASE WHEN starts_with(k0, '+') THEN '+' || replace(substr(k0, 2), '+', '')
                                            ELSE replace(k0, '+', '') END
                     WHEN 'id_ci' THEN lower(trim(regexp_replace(raw, '\s+', ' ', 'g')))
                     ELSE trim(regexp_replace(raw, '\s+', ' ', 'g'))
                   END AS key
            FROM (SELECT r.sig, r.type, u.kind, r.raw,
                         CASE WHEN u.kind = 'phone'
                              THEN regexp_replace(replace(trim(r.raw), '(0)', ''), '[^0-9+]', '', 'g') END AS k0
                  FROM _raw_ids r JOIN _rules u ON u.type = r.type)
            """
        )
        self._fill_cache()
        cur.execute(
            """
            CREATE OR REPLACE TEMP TABLE _sn0 AS
            SELECT k.sig, k.type,
                   CASE WHEN k.kind IN ('email', 'phone') THEN n.value ELSE NULLIF(k.key, '') END AS value,
                   CASE WHEN k.kind IN ('email', 'phone') THEN coalesce(n.status, 'invalid')
                        WHEN coalesce(k.key, '') = '' THEN 'invalid' ELSE 'ok' END AS status
            FROM _keyed k
            LEFT JOIN identity_norm n ON n.kind = k.kind AND n.raw = k.key
            """
        )
        # previousId: a user id when one is known with that value, else an anonymous id
        known_users = "SELECT value FROM _sn0 WHERE type = 'user_id' AND status = 'ok'"
        if self.incremental:
            known_users += " UNION ALL SELECT value FROM identity_nodes WHERE type = 'user_id'"
        cur.execute(
            f"""
            UPDATE _sn0 SET type = CASE WHEN value IN ({known_users}) THEN 'user_id' ELSE 'anonymous_id' END
            WHERE type = '{PREVIOUS_ID}'
            """
        )
        self._blocked_table()
        cur.execute(
            """
            CREATE OR REPLACE TEMP TABLE _sn AS
            SELECT DISTINCT s.sig, s.type, s.value,
                   CASE WHEN s.status <> 'ok' THEN s.status
                        WHEN lower(s.value) IN (SELECT value FROM _blocked WHERE type = '*') THEN 'blocked'
                        WHEN EXISTS (SELECT 1 FROM _blocked b WHERE b.type = s.type AND b.value = lower(s.value))
                          THEN 'blocked'
                        WHEN NOT u.link THEN 'unlinked'
                        ELSE 'ok' END AS status,
                   u.priority
            FROM _sn0 s JOIN _rules u ON u.type = s.type
            WHERE s.value IS NOT NULL OR s.status <> 'ok'
            """
        )
        if self.incremental:
            # signatures resolved before: their identifiers are normalised already
            cur.execute(
                """
                INSERT INTO _sn
                SELECT sn.sig, n.type, n.value, CASE WHEN u.link THEN 'ok' ELSE 'unlinked' END, u.priority
                FROM identity_sig_nodes sn
                JOIN (SELECT sig FROM _in_sigs WHERE ids IS NULL) k USING (sig)
                JOIN identity_nodes n ON n.node = sn.node
                JOIN _rules u ON u.type = n.type
                """
            )
        self.timer.lap("normalise")

    def _fill_cache(self) -> None:
        cur = self.cur
        fingerprint = self.normalizer.fingerprint()
        row = one(cur.execute(
            "SELECT value FROM identity_state WHERE key = 'norm_fingerprint'"
        ))
        if row is None or row[0] != fingerprint:
            cur.execute("DELETE FROM identity_norm")
            cur.execute(
                "INSERT OR REPLACE INTO identity_state VALUES ('norm_fingerprint', ?)",
                [fingerprint],
            )
        missing = cur.execute(
            """
            SELECT DISTINCT kind, key FROM _keyed k
            WHERE kind IN ('email', 'phone') AND key IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM identity_norm n WHERE n.kind = k.kind AND n.raw = k.key)
            """
        ).fetchall()
        if not missing:
            return
        results = normalise_values(self.config, missing)
        table = pa.table(
            {
                "kind": pa.array([m[0] for m in missing], pa.string()),
                "raw": pa.array([m[1] for m in missing], pa.string()),
                "value": pa.array([r[0] for r in results], pa.string()),
                "status": pa.array([r[1] for r in results], pa.string()),
            }
        )
        cur.register("_norm_new", table)
        cur.execute("INSERT INTO identity_norm SELECT kind, raw, value, status FROM _norm_new")
        cur.unregister("_norm_new")

    def _blocked_table(self) -> None:
        n = self.normalizer
        pairs: set[tuple[str, str]] = set()
        if self.config.default_blocklist:
            for t, values in DEFAULT_BLOCKED.items():
                pairs.update((t, v) for v in values)
        for t, values in self.config.blocked_values.items():
            pairs.update((t, v.strip().lower()) for v in values)
        del n
        pairs_l = sorted(pairs)
        self.cur.register(
            "_blocked_arrow",
            pa.table(
                {
                    "type": pa.array([p[0] for p in pairs_l], pa.string()),
                    "value": pa.array([p[1] for p in pairs_l], pa.string()),
                }
            ),
        )
        self.cur.execute("CREATE OR REPLACE TEMP TABLE _blocked AS SELECT * FROM _blocked_arrow")
        self.cur.unregister("_blocked_arrow")

    # -- 2. nodes --------------------------------------------------------------------------
    def nodes(self) -> None:
        cur = self.cur
        if self.incremental:
            cur.execute(
                """
                CREATE OR REPLACE TEMP TABLE _nodes AS
                WITH v AS (
                    SELECT type, value, min(s.first_ts) AS first_seen
                    FROM _sn JOIN _in_sigs s USING (sig)
                    WHERE status IN ('ok', 'unlinked') GROUP BY type, value
                ),
                known AS (SELECT v.*, n.node FROM v LEFT JOIN identity_nodes n USING (type, value)),
                top AS (SELECT coalesce(max(node), -1) AS m FROM identity_nodes)
                SELECT coalesce(node, (SELECT m FROM top) + row_number() OVER (PARTITION BY node IS NULL ORDER BY type, value)) AS node,
                       type, value, first_seen
                FROM known
                """
            )
        else:
            cur.execute(
                """
                CREATE OR REPLACE TEMP TABLE _nodes AS
                SELECT (row_number() OVER (ORDER BY type, value) - 1) AS node, type, value, first_seen
                FROM (SELECT type, value, min(s.first_ts) AS first_seen
                      FROM _sn JOIN _in_sigs s USING (sig)
                      WHERE status IN ('ok', 'unlinked') GROUP BY type, value)
                """
            )
        cur.execute(
            """
            CREATE OR REPLACE TEMP TABLE _snl AS
            SELECT s.sig, n.node, s.type, s.value, s.priority, s.status
            FROM _sn s JOIN _nodes n USING (type, value)
            WHERE s.status IN ('ok', 'unlinked')
            """
        )
        self.timer.lap("nodes")

    # -- 3. shared by count, anchors, links --------------------------------------------------
    def links(self) -> None:
        cur = self.cur
        # count-shared identifiers stay shared (counts only grow): in real time the local view
        # sees only part of their rows
        known_shared = ""
        if self.incremental:
            known_shared = """
            UNION
            SELECT n.node FROM identity_nodes n JOIN _nodes USING (node)
            WHERE n.status = 'shared' AND n.component IS NULL
            """
        cur.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _shared AS
            SELECT node FROM _snl WHERE status = 'unlinked' {known_shared}
            UNION
            SELECT a.node
            FROM _snl a JOIN _snl b ON a.sig = b.sig AND b.priority > a.priority AND b.status = 'ok'
            JOIN _rules u ON u.type = a.type
            WHERE a.status = 'ok' AND u.shared_threshold IS NOT NULL
            GROUP BY a.node, b.type, u.shared_threshold
            HAVING count(DISTINCT b.node) > u.shared_threshold
            """
        )
        self._anchors()
        cur.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _links AS
            SELECT a.anchor AS a, s.node AS b,
                   arg_min(a.sig, (coalesce(i.first_ts, {FAR_FUTURE}), i.first_source, i.first_record_id)) AS sig,
                   min(coalesce(i.first_ts, {FAR_FUTURE})) AS ts
            FROM _anchor a
            JOIN _snl s ON s.sig = a.sig AND s.node <> a.anchor AND s.node NOT IN (SELECT node FROM _shared)
            JOIN _in_sigs i ON i.sig = a.sig
            GROUP BY a.anchor, s.node
            """
        )
        # probabilistic links, between the anchors of the two records' signatures
        cur.execute(
            """
            CREATE OR REPLACE TEMP TABLE _plinks AS
            WITH pa AS MATERIALIZED (
                SELECT p.*, x.anchor AS a FROM _in_splink p JOIN _anchor x ON x.sig = p.a_sig
            ),
            pb AS MATERIALIZED (SELECT pa.*, y.anchor AS b FROM pa JOIN _anchor y ON y.sig = pa.b_sig)
            SELECT a, b, max(probability) AS probability,
                   arg_max(struct_pack(a_source := a_source, a_record_id := a_record_id,
                                       b_source := b_source, b_record_id := b_record_id), probability) AS pair
            FROM pb WHERE a <> b
            GROUP BY a, b
            """
        )
        self.timer.lap("links")

    def _anchors(self, extra_shared: str = "") -> None:
        self.cur.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _anchor AS
            SELECT sig, arg_max(node, (priority, type, value)) AS anchor
            FROM _snl
            WHERE status = 'ok' AND node NOT IN (SELECT node FROM _shared) {extra_shared}
            GROUP BY sig
            """
        )

    # -- 4. components ------------------------------------------------------------------------
    def components(self) -> None:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        cur = self.cur
        nodes = (
            cur.execute("SELECT node FROM _nodes ORDER BY node")
            .fetchnumpy()["node"]
            .astype(np.int64)
        )
        edges = cur.execute(
            "SELECT a, b FROM _links UNION ALL SELECT a, b FROM _plinks"
        ).fetchnumpy()
        a = np.asarray(edges["a"], dtype=np.int64)
        b = np.asarray(edges["b"], dtype=np.int64)
        n = len(nodes)
        if self.incremental:
            ia, ib = np.searchsorted(nodes, a), np.searchsorted(nodes, b)
        else:
            ia, ib = a, b  # batch node ids are 0..n-1
        graph = coo_matrix((np.ones(len(ia), dtype=np.int8), (ia, ib)), shape=(n, n))
        count, labels = connected_components(graph, directed=False)
        # label each component by its smallest node id (stable, and a real node)
        first = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, labels, nodes)
        comp = first[labels]
        self.stats.components = int(count)
        cur.register("_comp_arrow", pa.table({"node": nodes, "comp": comp}))
        cur.execute("CREATE OR REPLACE TEMP TABLE _comp AS SELECT * FROM _comp_arrow")
        cur.unregister("_comp_arrow")
        self.timer.lap("components")

    # -- 5. guarded resolution where needed -------------------------------------------------------
    def guard(self, never: list[tuple[int, list[tuple[str, str]], list[tuple[str, str]]]]) -> None:
        cur = self.cur
        conf = self.config.conflicts
        dirty: set[int] = set()
        for (c,) in cur.execute(
            """
            SELECT DISTINCT c.comp FROM _comp c JOIN _nodes n USING (node) JOIN _rules u USING (type)
            WHERE u.max_per_profile IS NOT NULL AND n.node NOT IN (SELECT node FROM _shared)
            GROUP BY c.comp, n.type, u.max_per_profile HAVING count(*) > u.max_per_profile
            """
        ).fetchall():
            dirty.add(c)
        if conf.first_name or conf.birth_date:
            rows = cur.execute(
                """
                SELECT c.comp, list(DISTINCT [o.first_name, o.last_name]) FILTER (WHERE o.first_name IS NOT NULL),
                       list(DISTINCT o.birth_date) FILTER (WHERE o.birth_date IS NOT NULL)
                FROM _in_obs o JOIN _anchor a USING (sig) JOIN _comp c ON c.node = a.anchor
                GROUP BY c.comp
                HAVING count(DISTINCT o.first_name) > 1 OR count(DISTINCT o.birth_date) > 1
                """
            ).fetchall()
            for c, names, dobs in rows:
                names_clash = (
                    conf.first_name
                    and names
                    and not resolver.names_all_compatible(tuple(x) for x in names)
                )
                dobs_clash = conf.birth_date and dobs and not resolver.dobs_all_compatible(dobs)
                if names_clash or dobs_clash:
                    dirty.add(c)
        tags = self._never_merge_tags(never)
        if tags:
            flat = [(node, pair, side) for node, ts in tags.items() for pair, side in ts]
            cur.register(
                "_tag_arrow",
                pa.table(
                    {
                        "node": pa.array([f[0] for f in flat], pa.int64()),
                        "pair": pa.array([f[1] for f in flat], pa.int64()),
                        "side": pa.array([f[2] for f in flat], pa.int64()),
                    }
                ),
            )
            for (c,) in cur.execute(
                "SELECT c.comp FROM _tag_arrow t JOIN _comp c USING (node) GROUP BY c.comp, t.pair "
                "HAVING count(DISTINCT t.side) > 1"
            ).fetchall():
                dirty.add(c)
            cur.unregister("_tag_arrow")
        self.stats.guarded_components = len(dirty)
        self._resolve_dirty(dirty, tags)
        self.timer.lap("guard")

    def _never_merge_tags(self, never) -> dict[int, frozenset]:
        """node -> (pair id, side) for the never-merge pairs whose identifiers are here."""
        if not never:
            return {}
        rows = []
        for pair_id, side_a, side_b in never:
            for side, idents in ((0, side_a), (1, side_b)):
                rows.extend((pair_id, side, t, v) for t, v in idents)
        self.cur.register(
            "_never_arrow",
            pa.table(
                {
                    "pair": pa.array([r[0] for r in rows], pa.int64()),
                    "side": pa.array([r[1] for r in rows], pa.int64()),
                    "type": pa.array([r[2] for r in rows], pa.string()),
                    "value": pa.array([r[3] for r in rows], pa.string()),
                }
            ),
        )
        found = self.cur.execute(
            "SELECT n.node, t.pair, t.side FROM _never_arrow t JOIN _nodes n USING (type, value) ORDER BY ALL"
        ).fetchall()
        self.cur.unregister("_never_arrow")
        tags: dict[int, set] = {}
        for node, pair, side in found:
            tags.setdefault(node, set()).add((pair, side))
        return {node: frozenset(t) for node, t in tags.items()}

    def _resolve_dirty(self, dirty: set[int], tags) -> None:
        cur = self.cur
        cur.execute("CREATE OR REPLACE TEMP TABLE _dirty (comp BIGINT)")
        cur.execute("CREATE OR REPLACE TEMP TABLE _groot (node BIGINT, root BIGINT)")
        cur.execute("CREATE OR REPLACE TEMP TABLE _gshared (node BIGINT)")
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _grefused (a BIGINT, b BIGINT, kind VARCHAR, refused_by VARCHAR)"
        )
        if not dirty:
            return
        cur.register("_dirty_arrow", pa.table({"comp": pa.array(sorted(dirty), pa.int64())}))
        cur.execute("INSERT INTO _dirty SELECT comp FROM _dirty_arrow")
        cur.unregister("_dirty_arrow")
        node_rows = cur.execute(
            """
            SELECT c.comp, n.node, n.type, u.priority, n.node IN (SELECT node FROM _shared)
            FROM _comp c JOIN _dirty USING (comp) JOIN _nodes n USING (node) JOIN _rules u USING (type)
            """
        ).fetchall()
        edge_rows = cur.execute(
            f"""
            SELECT c.comp, l.a, l.b, 'identifier', -ub.priority, l.ts, na.type, na.value, nb.type, nb.value, NULL
            FROM _links l JOIN _comp c ON c.node = l.a JOIN _dirty USING (comp)
            JOIN _nodes na ON na.node = l.a JOIN _nodes nb ON nb.node = l.b JOIN _rules ub ON ub.type = nb.type
            UNION ALL
            SELECT c.comp, l.a, l.b, 'splink', 0, {FAR_FUTURE}, na.type, na.value, nb.type, nb.value, l.probability
            FROM _plinks l JOIN _comp c ON c.node = l.a JOIN _dirty USING (comp)
            JOIN _nodes na ON na.node = l.a JOIN _nodes nb ON nb.node = l.b
            """
        ).fetchall()
        obs_rows = cur.execute(
            """
            SELECT a.anchor, o.first_name, o.last_name, o.birth_date
            FROM _in_obs o JOIN _anchor a USING (sig) JOIN _comp c ON c.node = a.anchor JOIN _dirty USING (comp)
            """
        ).fetchall()
        limits = {
            r.type: r.max_per_profile for r in self.rules.all() if r.max_per_profile is not None
        }
        by_comp_nodes: dict[int, dict[int, tuple[str, int]]] = {}
        for comp, node, node_type, priority, is_shared in node_rows:
            if not is_shared:
                by_comp_nodes.setdefault(comp, {})[node] = (node_type, priority)
        by_comp_edges: dict[int, list[resolver.Edge]] = {}
        for comp, a, b, kind, prio, ts, at, av, bt, bv, prob in edge_rows:
            if kind == "identifier":
                order = (0, prio, ts, at, av, bt, bv)
            else:
                order = (1, -prob, at, av, bt, bv)
            by_comp_edges.setdefault(comp, []).append(resolver.Edge(a, b, order, kind))
        names: dict[int, set] = {}
        dobs: dict[int, set] = {}
        for anchor, first, last, dob in obs_rows:
            if first:
                names.setdefault(anchor, set()).add((first, last))
            if dob:
                dobs.setdefault(anchor, set()).add(dob)
        fnames = {k: frozenset(v) for k, v in names.items()}
        fdobs = {k: frozenset(v) for k, v in dobs.items()}
        conf = self.config.conflicts
        roots, shared, refused = [], [], []
        for comp in sorted(dirty):
            out = resolver.resolve(by_comp_nodes.get(comp, {}), by_comp_edges.get(comp, []), fnames, fdobs,
                                   limits, tags, conf.first_name, conf.birth_date)  # fmt: skip
            roots.extend(out.root.items())
            shared.extend(out.shared)
            refused.extend((e.a, e.b, e.kind, why) for e, why in out.refused)
        cur.register(
            "_groot_arrow",
            pa.table(
                {
                    "node": pa.array([r[0] for r in roots], pa.int64()),
                    "root": pa.array([r[1] for r in roots], pa.int64()),
                }
            ),
        )
        cur.execute("INSERT INTO _groot SELECT * FROM _groot_arrow")
        cur.unregister("_groot_arrow")
        if shared:
            cur.register("_gs_arrow", pa.table({"node": pa.array(sorted(set(shared)), pa.int64())}))
            cur.execute("INSERT INTO _gshared SELECT * FROM _gs_arrow")
            cur.unregister("_gs_arrow")
        if refused:
            cur.register(
                "_gr_arrow",
                pa.table(
                    {
                        "a": pa.array([r[0] for r in refused], pa.int64()),
                        "b": pa.array([r[1] for r in refused], pa.int64()),
                        "kind": pa.array([r[2] for r in refused], pa.string()),
                        "refused_by": pa.array([r[3] for r in refused], pa.string()),
                    }
                ),
            )
            cur.execute("INSERT INTO _grefused SELECT * FROM _gr_arrow")
            cur.unregister("_gr_arrow")

    # -- 6. outputs -----------------------------------------------------------------------------
    def outputs(self) -> None:
        cur = self.cur
        # anchors again, now without the identifiers found shared by conflict
        self._anchors("AND node NOT IN (SELECT node FROM _gshared)")
        cur.execute(
            """
            CREATE OR REPLACE TEMP TABLE _out_nodes AS
            SELECT n.node, n.type, n.value,
                   CASE WHEN n.node IN (SELECT node FROM _shared) OR n.node IN (SELECT node FROM _gshared)
                        THEN 'shared' ELSE 'linked' END AS status,
                   c.comp AS component,
                   CASE WHEN n.node IN (SELECT node FROM _shared) OR n.node IN (SELECT node FROM _gshared) THEN NULL
                        ELSE coalesce(g.root, c.comp) END AS cluster,
                   n.first_seen
            FROM _nodes n
            JOIN _comp c USING (node)
            LEFT JOIN _groot g USING (node)
            """
        )
        # count-shared nodes link nothing, so they are not part of any component
        cur.execute(
            "UPDATE _out_nodes SET component = NULL WHERE node IN (SELECT node FROM _shared)"
        )
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _out_sig_nodes AS SELECT DISTINCT sig, node FROM _snl"
        )
        cur.execute(
            """
            CREATE OR REPLACE TEMP TABLE _out_sigs AS
            SELECT i.sig, a.anchor, i.first_ts, i.first_source, i.first_record_id, i.members
            FROM _in_sigs i LEFT JOIN _anchor a USING (sig)
            """
        )
        cur.execute(
            """
            CREATE OR REPLACE TEMP TABLE _out_edges AS
            SELECT l.a, l.b, 'identifier' AS rule,
                   r.refused_by IS NULL AND l.b NOT IN (SELECT node FROM _gshared) AS accepted,
                   coalesce(r.refused_by, CASE WHEN l.b IN (SELECT node FROM _gshared) THEN 'shared' END) AS refused_by,
                   NULL::DOUBLE AS probability, i.first_source AS source, i.first_record_id AS record_id,
                   NULL::VARCHAR AS other_source, NULL::VARCHAR AS other_record_id,
                   CASE WHEN l.ts < TIMESTAMP '9999-01-01' THEN l.ts END AS ts
            FROM _links l
            JOIN _in_sigs i ON i.sig = l.sig
            LEFT JOIN (SELECT DISTINCT a, b, first(refused_by) AS refused_by FROM _grefused
                       WHERE kind = 'identifier' GROUP BY a, b) r ON r.a = l.a AND r.b = l.b
            UNION ALL
            SELECT l.a, l.b, 'splink', r.refused_by IS NULL, r.refused_by, l.probability,
                   l.pair.a_source, l.pair.a_record_id, l.pair.b_source, l.pair.b_record_id, NULL
            FROM _plinks l
            LEFT JOIN (SELECT a, b, first(refused_by) AS refused_by FROM _grefused
                       WHERE kind = 'splink' GROUP BY a, b) r ON r.a = l.a AND r.b = l.b
            """
        )
        s = self.stats
        s.nodes, s.shared = one(cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'shared') FROM _out_nodes"
        ))
        s.links, s.refused = one(cur.execute(
            "SELECT count(*) FILTER (WHERE accepted), count(*) FILTER (WHERE NOT accepted) FROM _out_edges"
        ))
        self.timer.lap("outputs")

    def run(self, never) -> None:
        self._step("normalise identifiers")
        self.normalise()
        self.nodes()
        self._step("link")
        self.links()
        self.components()
        self._step("guard merges")
        self.guard(never)
        self.outputs()


EDGES_SELECT = """
    SELECT coalesce(na.profile_id, nb.profile_id)::VARCHAR AS profile_id,
           e.a::BIGINT AS a, e.b::BIGINT AS b,
           na.type AS a_type, na.value AS a_value, nb.type AS b_type, nb.value AS b_value,
           e.rule::VARCHAR AS rule, e.accepted::BOOLEAN AS accepted, e.refused_by::VARCHAR AS refused_by,
           e.probability::DOUBLE AS probability, e.source::VARCHAR AS source,
           e.record_id::VARCHAR AS record_id, e.other_source::VARCHAR AS other_source,
           e.other_record_id::VARCHAR AS other_record_id, e.ts::TIMESTAMP AS ts
    FROM _out_edges e JOIN _out_nodes2 na ON na.node = e.a JOIN _out_nodes2 nb ON nb.node = e.b
"""


# ----------------------------------------------------------------------------------------
# normalising many values (emails, phones) in Python, once per distinct value


def _normalise_chunk(args: tuple[dict, list[tuple[str, str]]]) -> list[tuple[str | None, str]]:
    config_data, items = args
    normalizer = Normalizer(IdentityConfig.model_validate(config_data))
    out = []
    for kind, key in items:
        if kind == "email":
            out.append(normalizer.email(key))
        else:
            out.append(normalizer.phone(key))
    return out


def normalise_values(
    config: IdentityConfig, items: list[tuple[str, str]]
) -> list[tuple[str | None, str]]:
    """Normalise (kind, key) pairs; in 2 processes when there are many."""
    if len(items) < 200_000:
        return _normalise_chunk((config.model_dump(), items))
    import multiprocessing as mp
    import os

    workers = max(1, min(os.cpu_count() or 1, 4))
    size = (len(items) + workers * 4 - 1) // (workers * 4)
    chunks = [(config.model_dump(), items[i : i + size]) for i in range(0, len(items), size)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        parts = pool.map(_normalise_chunk, chunks)
    return [r for part in parts for r in part]


__all__ = [
    "BLOCKED",
    "EDGES_SELECT",
    "Resolution",
    "RunStats",
    "members_sql",
    "normalise_observations",
]
