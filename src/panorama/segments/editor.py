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
from dataclasses import dataclass, field
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
from panorama.store import Store

_save_lock = threading.Lock()
PREVIEW_SAMPLE = 10


@dataclass
class Preview:
    expression: str
    ok: bool
    error: str | None = None
    members: int | None = None
    profiles: int | None = None
    sample: list[str] = field(default_factory=list)
    seconds: float = 0.0
    time_dependent: bool = False
    columns: list[str] = field(default_factory=list)


def preview(store: Store, catalog: Catalog, expression: str, now: datetime | None = None,
            sample: int = PREVIEW_SAMPLE) -> Preview:  # fmt: skip
    """Check `expression` and count the profiles it matches now (over every profile)."""
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
    sql = evaluation_sql(catalog, {"_preview": compiled}, None, now or utcnow())
    cur = store.cursor()
    members, profiles = cur.execute(
        f"SELECT count(*) FILTER (WHERE {q('_preview')}), count(*) FROM ({sql})").fetchone()  # fmt: skip
    ids = [r[0] for r in cur.execute(
        f"SELECT profile_id FROM ({sql}) WHERE {q('_preview')} ORDER BY profile_id LIMIT {int(sample)}").fetchall()]  # fmt: skip
    return Preview(expression, True, None, int(members), int(profiles), ids, time.perf_counter() - started,
                   compiled.time_dependent, sorted(compiled.columns))  # fmt: skip


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
