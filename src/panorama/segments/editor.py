"""Editing segment definitions while the server runs: preview an expression, save it.

Definitions live in `panorama.yaml` (`segments:`), the project's one source of truth, so a
segment saved from the web UI is a segment of the project like any other (`panorama segments
refresh`, the pipeline, version control). Saving rewrites only that entry of the file with
ruamel.yaml's round trip (comments, order and layout of the rest are kept), validates the
whole new file with the same loader as `load_project`, and replaces the file atomically.

The running server then swaps its configuration and backfills the segment with the same
engine as `panorama segments refresh` (a changed definition is a backfill: no triggers fire
for the members it finds); from then on the segment is evaluated in real time.

`preview` counts the profiles an expression matches now, with the same checks as `panorama
segments check` (`engine.check_expression`: unknown columns name the closest known one).
"""

from __future__ import annotations

import io
import os
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime

from panorama.config import CONFIG_FILE, ConfigError, Project, ProjectConfig
from panorama.ingest.log import utcnow
from panorama.segments.catalog import Catalog, q
from panorama.segments.engine import check_expression, evaluation_sql
from panorama.segments.language import (
    ALLOWED_FUNCTIONS,
    CLOCK_FUNCTIONS,
    EVENT_FUNCTIONS,
    SegmentError,
)
from panorama.store import Store, one
from panorama.store.schema import PROMOTED_PROPERTIES

_save_lock = threading.Lock()
PREVIEW_SAMPLE = 10


# The live count: over a sample of this many profiles when the read index lists more (the
# estimate is scaled to all of them); never longer than BUDGET seconds.
SAMPLE_PROFILES = 20_000
BUDGET = 5.0


@dataclass
class Preview:
    expression: str
    ok: bool
    error: str | None = None
    members: int | None = None  # matching profiles (estimated when `sampled`)
    profiles: int | None = None  # profiles in all
    sample: list[str] = field(default_factory=list)
    seconds: float = 0.0
    time_dependent: bool = False
    columns: list[str] = field(default_factory=list)
    sampled: int | None = None  # the count is estimated from this many profiles
    note: str | None = None  # valid, but not counted (too slow at this size)


def _index_events_sql(store: Store) -> str | None:
    """The log's events with their profile, from the read index (`ui_members`, materialised and
    sorted by profile) instead of identity's views over the whole log; promoted properties
    are read from `properties` as ingestion derives them."""
    if not store.table_exists("ui_members"):
        return None
    promoted = ", ".join(
        f"TRY_CAST(json_extract_string(properties, '$.{name}') AS {sql_type}) AS {q(name)}"
        for name, sql_type in PROMOTED_PROPERTIES.items()
        if name not in ("revenue", "value")
    )
    return (
        "SELECT profile_id, ts AS timestamp, type, event, source, user_id, anonymous_id, group_id, "
        f"message_id, revenue, value, {promoted}, properties, context, traits "
        "FROM ui_members WHERE kind = 'event'"
    )


def _index_catalog(store: Store, catalog: Catalog) -> Catalog | None:
    """`catalog` reading events and the golden record's attributes from the read index."""
    events = _index_events_sql(store)
    if events is None or not store.table_exists("ui_profiles"):
        return None
    sources = []
    for source in catalog.sources:
        if source.name == "profile" and source.exprs:  # attributes from a JSON column
            source = replace(source, sql="SELECT profile_id, attributes FROM ui_profiles",
                             filtered_sql=None, aggregates={}, events_sql=None)  # fmt: skip
        sources.append(source)
    return replace(catalog, events_sql=events, sources=sources)


def _sample_ids(store: Store, catalog: Catalog, size: int) -> tuple[str | None, int | None]:
    """A random sample of profile ids from the read index, when its ids are the catalog's
    (both come from identity resolution) and it lists more than `size` profiles."""
    if catalog.mode != "resolved" or not store.table_exists("ui_profiles"):
        return None, None
    total = int(store.scalar("SELECT count(*) FROM ui_profiles") or 0)
    if total <= size:
        return None, None
    return (
        f"SELECT profile_id FROM ui_profiles USING SAMPLE reservoir({int(size)} ROWS) REPEATABLE (7)",
        total,
    )


def preview(store: Store, catalog: Catalog, expression: str, now: datetime | None = None,
            sample: int = PREVIEW_SAMPLE, sample_profiles: int = SAMPLE_PROFILES,
            budget: float = BUDGET) -> Preview:  # fmt: skip
    """Check `expression` (as `panorama segments check` does) and count the profiles it matches
    now: over every profile, or estimated from a random sample of `sample_profiles` at scale;
    stopped after `budget` seconds (then only the check's result is given)."""
    import duckdb

    started = time.perf_counter()
    text = (expression or "").strip()
    if not text:
        return Preview(
            expression, False, "Write a condition, e.g. orders >= 2 AND lifecycle_stage = 'active'."
        )
    try:
        compiled = check_expression(store, text, catalog)
    except SegmentError as exc:
        return Preview(expression, False, str(exc), seconds=time.perf_counter() - started)
    ids_sql, total = _sample_ids(store, catalog, sample_profiles)
    sql = evaluation_sql(catalog, {"_preview": compiled}, ids_sql, now or utcnow())
    if ids_sql is not None and (fast_catalog := _index_catalog(store, catalog)) is not None:
        # the sample's events and golden attributes from the read index (a minute or two
        # behind the log at most) instead of identity's views over the whole log
        fast = evaluation_sql(fast_catalog, {"_preview": compiled}, ids_sql, now or utcnow())
        try:
            store.execute(f"EXPLAIN {fast}").fetchall()
            sql = fast
        except duckdb.Error:  # a column the index does not keep (received_at): the log's views
            pass
    flag = q("_preview")
    cur = store.cursor()
    timer = threading.Timer(budget, cur.interrupt)
    timer.start()
    try:
        members, evaluated, ids = one(cur.execute(
            f"SELECT count(*) FILTER (WHERE {flag}), count(*), "
            f"(list(profile_id ORDER BY profile_id) FILTER (WHERE {flag}))[1:{int(sample)}] FROM ({sql})"
        ))
    except duckdb.InterruptException:
        return Preview(expression, True, seconds=time.perf_counter() - started,
                       time_dependent=compiled.time_dependent, columns=sorted(compiled.columns),
                       note=f"The condition is valid. Counting its members takes more than {budget:g} s "
                            "at this size: save it to see them.")  # fmt: skip
    finally:
        timer.cancel()
    members, evaluated = int(members), int(evaluated)
    sampled = None
    if total is not None and evaluated:
        sampled = evaluated
        members = round(members * total / evaluated)
        evaluated = total
    return Preview(expression, True, None, members, evaluated, list(ids or []), time.perf_counter() - started,
                   compiled.time_dependent, sorted(compiled.columns), sampled)  # fmt: skip


def reference(catalog: Catalog) -> dict:
    """What an expression may use: the profile's columns by source, and the functions."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, sql_type in catalog.columns.items():
        owner = catalog.owner.get(name, "profile")
        groups.setdefault("profile" if owner == "_ids" else owner, []).append((name, sql_type))
    return {
        "columns": {k: sorted(v) for k, v in groups.items()},
        "event_functions": sorted(EVENT_FUNCTIONS),
        "clock_functions": sorted(CLOCK_FUNCTIONS),
        "functions": [
            f for f in ALLOWED_FUNCTIONS if f not in EVENT_FUNCTIONS and f not in CLOCK_FUNCTIONS
        ],
    }


def triggers_for(config: ProjectConfig, segment: str) -> list[dict]:
    """The triggers that act on entries to or exits from `segment` (from panorama.yaml)."""
    out = []
    for name, trigger in config.triggers.items():
        if trigger.segment == segment:
            out.append({"name": name, "on": trigger.on, "destinations": list(trigger.destinations),
                        "description": trigger.description,
                        "types": [getattr(config.destinations.get(d), "type", "?") for d in trigger.destinations]})  # fmt: skip
    return out


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: comments, key order and quoting are kept
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def save_definition(
    project: Project, name: str, where: str, description: str | None = None
) -> ProjectConfig:
    """Write segment `name` (new or changed) into panorama.yaml; return the new validated config.

    Raises ConfigError (the message names the key) when the result would not load."""
    from ruamel.yaml.comments import CommentedMap

    file = project.root / CONFIG_FILE
    with _save_lock:
        yaml = _yaml()
        data = yaml.load(file.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ConfigError(f"{file.name}: the file must be a mapping of keys")
        segments = data.get("segments")
        if not isinstance(segments, dict):
            segments = CommentedMap()
            data["segments"] = segments
        entry = segments.get(name)
        description = (description or "").strip() or None
        if isinstance(entry, dict):
            entry["where"] = where
            if description:
                entry["description"] = description
            elif "description" in entry:
                del entry["description"]
        elif description:
            segments[name] = CommentedMap([("where", where), ("description", description)])
        else:
            segments[name] = where  # the shorthand `name: "expression"`
        out = io.StringIO()
        yaml.dump(data, out)
        text = out.getvalue()
        # validate exactly as the server and the CLI will read it, before touching the file
        config = _validate(text, file)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, file)
    return config


def _validate(text: str, file) -> ProjectConfig:
    import yaml

    from panorama.config import _YamlLoader, parse_config

    try:
        data = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:  # pragma: no cover - ruamel wrote it
        raise ConfigError(f"{file.name}: the rewritten file is not valid YAML: {exc}") from None
    return parse_config(data, file)
