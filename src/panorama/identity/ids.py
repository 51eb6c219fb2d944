"""Stable profile ids, the merge journal, and writing a resolution back to the store.

A profile keeps its id across runs. Each resolved cluster of identifiers takes the ids its
identifiers had before:

* every previous profile has one *home*: the cluster holding most of its identifiers;
* a cluster that is home to several previous profiles keeps the oldest one's id (earliest
  first member, then the id) — the others are recorded as merged into it (journal, with the
  rule and the evidence that joined them; lookups by the old id follow `merged_into`);
* a cluster that is home to none takes back an id its identifiers once had (a split-off part
  gets its previous id again), else a new id derived from its earliest member.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import orjson
import pyarrow as pa

from panorama.store import one

MAX_EVIDENCE_IDENTIFIERS = 50


def new_profile_id(source: str, record_id: str, salt: int = 0) -> str:
    text = f"{source}\x1f{record_id}" + (f"\x1f{salt}" if salt else "")
    return "p_" + hashlib.md5(text.encode()).hexdigest()[:16]


def loner_profile_id_sql(source: str = "source", record_id: str = "record_id") -> str:
    """SQL for the profile id of a member that stands alone (same as `new_profile_id`)."""
    return f"'p_' || substr(md5({source} || chr(31) || {record_id}), 1, 16)"


@dataclass
class Assignment:
    cluster_ids: dict[int, str] = field(default_factory=dict)
    merges: list[tuple[str, str, int]] = field(default_factory=list)  # survivor, absorbed, cluster
    revived: list[tuple[str, int]] = field(default_factory=list)
    created: list[tuple[str, int]] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    fresh: int | None = None  # first resolution: this many clusters, their ids in `_assign`

    @property
    def profiles(self) -> int:
        return self.fresh if self.fresh is not None else len(self.cluster_ids)


_CLUSTER_FIRST = """
    SELECT n.cluster, min(s.first_ts) AS first_ts,
           arg_min(s.first_source, (coalesce(s.first_ts, TIMESTAMP '9999-12-31'), s.first_source, s.first_record_id)) AS first_source,
           arg_min(s.first_record_id, (coalesce(s.first_ts, TIMESTAMP '9999-12-31'), s.first_source, s.first_record_id)) AS first_record_id
    FROM _out_sigs s JOIN _out_nodes n ON n.node = s.anchor
    WHERE n.cluster IS NOT NULL GROUP BY n.cluster
"""


def _assign_fresh(cur: duckdb.DuckDBPyConnection) -> Assignment | None:
    """The first resolution of a store (no profile ids yet), in SQL: every cluster takes the id
    derived from its earliest member, as `assign` would give it. None when the store has ids
    already, or when two clusters would take one id (`assign` salts those)."""
    if one(cur.execute(
        "SELECT EXISTS (SELECT 1 FROM identity_profiles) OR EXISTS (SELECT 1 FROM identity_nodes)"
    ))[0]:
        return None
    cur.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _fresh AS
        SELECT *, {loner_profile_id_sql("first_source", "first_record_id")} AS profile_id
        FROM ({_CLUSTER_FIRST})
        """
    )
    clusters, distinct = one(cur.execute(
        "SELECT count(*), count(DISTINCT profile_id) FROM _fresh"
    ))
    if clusters != distinct:  # a missing first member (NULL id) or two clusters on one id
        return None
    cur.execute("CREATE OR REPLACE TEMP TABLE _assign AS SELECT cluster, profile_id FROM _fresh ORDER BY cluster")
    return Assignment(fresh=clusters)


def assign(cur: duckdb.DuckDBPyConnection, scope_profiles: list[str] | None) -> Assignment:
    """Give every cluster in `_out_nodes` a profile id. Previous ids come from `identity_nodes`
    (by type and value). `scope_profiles`: the previous profiles being re-resolved (None: all)."""
    if scope_profiles is None and (fresh := _assign_fresh(cur)) is not None:
        return fresh
    prev_rows = cur.execute(
        """
        SELECT o.cluster, p.profile_id, p.origin_profile, count(*)
        FROM _out_nodes o JOIN identity_nodes p USING (type, value)
        WHERE o.cluster IS NOT NULL AND (p.profile_id IS NOT NULL OR p.origin_profile IS NOT NULL)
        GROUP BY ALL
        """
    ).fetchall()
    keys = {
        c: (ts or datetime.max, src or "", rid or "")
        for c, ts, src, rid in cur.execute(_CLUSTER_FIRST).fetchall()
    }
    prev_counts: dict[str, Counter] = {}
    origins: dict[int, Counter] = {}
    for cluster, prev, origin, n in prev_rows:
        if cluster not in keys:
            continue
        if prev is not None:
            prev_counts.setdefault(prev, Counter())[cluster] += n
        if origin is not None:
            origins.setdefault(cluster, Counter())[origin] += n
    profiles = {
        pid: (status, (ts or datetime.max, src or "", rid or ""))
        for pid, status, ts, src, rid in cur.execute(
            "SELECT profile_id, status, first_ts, first_source, first_record_id FROM identity_profiles"
            + (
                ""
                if scope_profiles is None
                else " WHERE profile_id IN (SELECT profile_id FROM _scope_profiles)"
            )
        ).fetchall()
    }
    out = Assignment()
    homes: dict[int, list[str]] = {}
    for prev, counter in prev_counts.items():
        home = min(counter, key=lambda c: (-counter[c], keys[c]))
        homes.setdefault(home, []).append(prev)
    used: set[str] = set()
    order = sorted(keys, key=lambda c: keys[c])
    for cluster in order:
        homed = homes.get(cluster)
        if homed:
            homed.sort(key=lambda p: (profiles.get(p, ("", (datetime.max, "", "")))[1], p))
            survivor = homed[0]
            out.cluster_ids[cluster] = survivor
            used.add(survivor)
            out.merges.extend((survivor, absorbed, cluster) for absorbed in homed[1:])
            used.update(homed[1:])
    unhomed = [c for c in order if c not in out.cluster_ids]
    # the status of every id an unhomed cluster could take (its identifiers' origins, and the
    # id derived from its first member), in one query
    candidates = {o for c in unhomed for o in origins.get(c, ())}
    candidates |= {new_profile_id(keys[c][1], keys[c][2]) for c in unhomed}
    status = _statuses(cur, candidates)

    def free(pid: str) -> bool:
        if pid in used:
            return False
        if pid in prev_counts:
            return True  # re-resolved here and not taken
        return status.get(pid) != "active"

    for cluster in unhomed:
        revived = next(
            (
                o
                for o, _ in sorted(
                    origins.get(cluster, Counter()).items(), key=lambda kv: (-kv[1], kv[0])
                )
                if free(o)
            ),
            None,
        )
        if revived is not None:
            out.cluster_ids[cluster] = revived
            out.revived.append((revived, cluster))
            used.add(revived)
            continue
        _, src, rid = keys[cluster]
        salt = 0
        pid = new_profile_id(src, rid)
        while not free(pid):
            salt += 1
            pid = new_profile_id(src, rid, salt)
            status.update(_statuses(cur, {pid}))
        out.cluster_ids[cluster] = pid
        used.add(pid)
        (out.revived if pid in status else out.created).append((pid, cluster))
    absorbed = {m[1] for m in out.merges}
    for prev in prev_counts:
        if prev not in used and prev not in absorbed:
            out.retired.append(prev)
    if scope_profiles is not None:
        for prev in scope_profiles:
            if prev not in used and prev not in absorbed and prev not in prev_counts:
                out.retired.append(prev)
    return out


def _statuses(cur, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    cur.register("_cand_arrow", pa.table({"profile_id": pa.array(sorted(ids), pa.string())}))
    rows = cur.execute(
        "SELECT p.profile_id, p.status FROM identity_profiles p JOIN _cand_arrow USING (profile_id)"
    ).fetchall()
    cur.unregister("_cand_arrow")
    return dict(rows)


def apply(
    cur: duckdb.DuckDBPyConnection,
    assignment: Assignment,
    origin: str,
    now: datetime,
    everything: bool = False,
) -> None:
    """Create `_out_nodes2` (with profile ids), update `identity_profiles`, write the journal.
    `everything`: this resolution covers the whole graph (active profiles not assigned are
    retired)."""
    if assignment.fresh is None:
        items = sorted(assignment.cluster_ids.items())
        cur.register("_assign_arrow", pa.table({
            "cluster": pa.array([c for c, _ in items], pa.int64()),
            "profile_id": pa.array([p for _, p in items], pa.string()),
        }))  # fmt: skip
        cur.execute("CREATE OR REPLACE TEMP TABLE _assign AS SELECT * FROM _assign_arrow")
        cur.unregister("_assign_arrow")
    cur.execute(
        """
        CREATE OR REPLACE TEMP TABLE _out_nodes2 AS
        SELECT o.*, a.profile_id,
               coalesce(p.origin_profile, a.profile_id) AS origin_profile
        FROM _out_nodes o
        LEFT JOIN _assign a USING (cluster)
        LEFT JOIN identity_nodes p USING (type, value)
        """
    )
    if assignment.fresh is not None:  # every profile is new: nothing to merge, revive or retire
        cur.execute(
            """
            INSERT INTO identity_profiles
            SELECT profile_id, 'active', NULL, $now, $now, first_ts, first_source, first_record_id
            FROM _fresh ORDER BY profile_id
            """,
            {"now": now},
        )
        return
    _journal_merges(cur, assignment, origin, now)
    # profiles: new, revived (active again), survivors touched, absorbed (merged), retired
    keys = cur.execute(
        """
        SELECT a.profile_id, min(s.first_ts),
               arg_min(s.first_source, (coalesce(s.first_ts, TIMESTAMP '9999-12-31'), s.first_source, s.first_record_id)),
               arg_min(s.first_record_id, (coalesce(s.first_ts, TIMESTAMP '9999-12-31'), s.first_source, s.first_record_id))
        FROM _out_sigs s JOIN _out_nodes n ON n.node = s.anchor JOIN _assign a USING (cluster)
        GROUP BY a.profile_id
        """
    ).fetchall()
    rows = [(pid, "active", None, now, now, ts, src, rid) for pid, ts, src, rid in keys]
    cur.register(
        "_prof_arrow",
        pa.table(
            {
                "profile_id": pa.array([r[0] for r in rows], pa.string()),
                "status": pa.array([r[1] for r in rows], pa.string()),
                "merged_into": pa.array([r[2] for r in rows], pa.string()),
                "created_at": pa.array([r[3] for r in rows], pa.timestamp("us")),
                "updated_at": pa.array([r[4] for r in rows], pa.timestamp("us")),
                "first_ts": pa.array([r[5] for r in rows], pa.timestamp("us")),
                "first_source": pa.array([r[6] for r in rows], pa.string()),
                "first_record_id": pa.array([r[7] for r in rows], pa.string()),
            }
        ),
    )
    changed = (
        {p for p, _ in assignment.created}
        | {p for p, _ in assignment.revived}
        | {m[0] for m in assignment.merges}
    )
    cur.register("_changed_arrow", pa.table({"profile_id": pa.array(sorted(changed), pa.string())}))
    # existing active profiles keep created_at and first member; revived ones become active
    cur.execute(
        """
        UPDATE identity_profiles SET status = 'active', merged_into = NULL, updated_at = x.updated_at
        FROM _prof_arrow x
        WHERE identity_profiles.profile_id = x.profile_id
          AND (identity_profiles.status <> 'active'
               OR identity_profiles.profile_id IN (SELECT profile_id FROM _changed_arrow))
        """
    )
    cur.execute(
        """
        INSERT INTO identity_profiles
        SELECT * FROM _prof_arrow x
        WHERE NOT EXISTS (SELECT 1 FROM identity_profiles p WHERE p.profile_id = x.profile_id)
        """
    )
    cur.unregister("_prof_arrow")
    cur.unregister("_changed_arrow")
    for survivor, absorbed, _ in assignment.merges:
        cur.execute(
            "UPDATE identity_profiles SET status = 'merged', merged_into = ?, updated_at = ? WHERE profile_id = ?",
            [survivor, now, absorbed],
        )
        # earlier merges into the absorbed profile now point at the survivor
        cur.execute(
            "UPDATE identity_profiles SET merged_into = ? WHERE merged_into = ? AND status = 'merged'",
            [survivor, absorbed],
        )
    for pid in assignment.retired:
        cur.execute(
            "UPDATE identity_profiles SET status = 'retired', updated_at = ? WHERE profile_id = ? AND status = 'active'",
            [now, pid],
        )
        cur.execute(
            "INSERT INTO identity_journal (occurred_at, action, profile_id, rule, evidence, origin) VALUES (?, 'retire', ?, ?, ?, ?)",
            [now, pid, "no identifiers left", None, origin],
        )
    if everything:
        cur.execute(
            """
            INSERT INTO identity_journal (occurred_at, action, profile_id, rule, origin)
            SELECT ?, 'retire', profile_id, 'no identifiers left', ? FROM identity_profiles
            WHERE status = 'active' AND profile_id NOT IN (SELECT profile_id FROM _assign)
            """,
            [now, origin],
        )
        cur.execute(
            "UPDATE identity_profiles SET status = 'retired', updated_at = ? "
            "WHERE status = 'active' AND profile_id NOT IN (SELECT profile_id FROM _assign)",
            [now],
        )
    for pid, _ in assignment.revived:
        cur.execute(
            "INSERT INTO identity_journal (occurred_at, action, profile_id, rule, evidence, origin) VALUES (?, 'revive', ?, ?, ?, ?)",
            [now, pid, "identifiers of this profile stand apart again", None, origin],
        )


def _journal_merges(cur, assignment: Assignment, origin: str, now: datetime) -> None:
    if not assignment.merges:
        return
    clusters = sorted({c for _, _, c in assignment.merges})
    cur.register("_mc_arrow", pa.table({"cluster": pa.array(clusters, pa.int64())}))
    idents = cur.execute(
        """
        SELECT o.cluster, p.profile_id, o.type, o.value
        FROM _out_nodes o JOIN _mc_arrow USING (cluster) JOIN identity_nodes p USING (type, value)
        WHERE p.profile_id IS NOT NULL ORDER BY o.type, o.value
        """
    ).fetchall()
    edges = cur.execute(
        """
        SELECT na.cluster, na.type, na.value, nb.type, nb.value, pa_.profile_id, pb.profile_id,
               e.rule, e.probability, e.source, e.record_id, e.other_source, e.other_record_id, e.ts
        FROM _out_edges e
        JOIN _out_nodes na ON na.node = e.a JOIN _out_nodes nb ON nb.node = e.b
        JOIN _mc_arrow mc ON mc.cluster = na.cluster
        LEFT JOIN identity_nodes pa_ ON pa_.type = na.type AND pa_.value = na.value
        LEFT JOIN identity_nodes pb ON pb.type = nb.type AND pb.value = nb.value
        WHERE e.accepted
        ORDER BY e.rule DESC, e.ts NULLS LAST, na.type, na.value, nb.type, nb.value
        """
    ).fetchall()
    cur.unregister("_mc_arrow")
    by_profile: dict[tuple[int, str], list[dict]] = {}
    for cluster, pid, t, v in idents:
        by_profile.setdefault((cluster, pid), []).append({"type": t, "value": v})
    for survivor, absorbed, cluster in assignment.merges:
        link = None
        for e in edges:
            if e[0] != cluster:
                continue
            pa_, pb = e[5], e[6]
            if (pa_ == absorbed) != (pb == absorbed):  # crosses from the absorbed part
                link = e
                break
        if link is None:  # joined through identifiers new in this run
            link = next((e for e in edges if e[0] == cluster and absorbed in (e[5], e[6])), None)
        evidence = {
            "absorbed_identifiers": by_profile.get((cluster, absorbed), [])[
                :MAX_EVIDENCE_IDENTIFIERS
            ],
            "survivor_identifiers": by_profile.get((cluster, survivor), [])[
                :MAX_EVIDENCE_IDENTIFIERS
            ],
        }
        rule = "identifier"
        if link is not None:
            (_, at, av, bt, bv, _, _, kind, prob, src, rid, osrc, orid, ts) = link
            rule = f"splink (p={prob:.3f})" if kind == "splink" else f"same {bt}"
            evidence["link"] = {"from": {"type": at, "value": av}, "to": {"type": bt, "value": bv},
                                "rule": kind, "record": {"source": src, "record_id": rid},
                                "at": ts.isoformat() if ts else None}  # fmt: skip
            if kind == "splink":
                evidence["link"]["probability"] = prob
                evidence["link"]["other_record"] = {"source": osrc, "record_id": orid}
        cur.execute(
            "INSERT INTO identity_journal (occurred_at, action, profile_id, other_id, rule, evidence, origin) "
            "VALUES (?, 'merge', ?, ?, ?, ?, ?)",
            [now, survivor, absorbed, rule, orjson.dumps(evidence).decode(), origin],
        )
