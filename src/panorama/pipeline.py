"""The batch pipeline, in order: what `panorama demo run` executes.

Each step is a command function (the same one the CLI runs) applied to a project
directory; steps whose module is not built yet are absent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from panorama.modules import optional_import

# (title, "module:function"); each function takes `project: Path`.
STEPS = (
    ("ingest sources", "panorama.cli:ingest_all"),
    ("resolve identities", "panorama.identity.commands:unify"),
    ("record consent", "panorama.privacy.consent_commands:sync"),
    ("compute traits", "panorama.traits.commands:compute"),
    ("predict", "panorama.predict.commands:predict"),
    ("evaluate segments", "panorama.segments.commands:refresh"),
)
SERVE = "panorama.server.commands:serve"
# Steps that follow `engine:` in panorama.yaml (duckdb: the commands above; spark: docs/scale.md).
ENGINE_STEPS = {
    "resolve identities": "panorama.scale.commands:unify",
    "compute traits": "panorama.scale.commands:compute",
    "evaluate segments": "panorama.scale.commands:segments",
}


@dataclass(frozen=True)
class Step:
    title: str
    run: Callable[[Path], None]


def _resolve(target: str) -> Callable | None:
    module_name, _, function = target.partition(":")
    module = optional_import(module_name)
    return None if module is None else getattr(module, function, None)


def steps() -> list[Step]:
    """The pipeline's steps that exist in this version, in order."""
    found = []
    for title, target in STEPS:
        fn = _resolve(ENGINE_STEPS.get(title, target)) or _resolve(target)
        if fn is not None:
            found.append(Step(title, lambda d, fn=fn: fn(project=d)))
    return found


def serve_command() -> Callable[[Path], None] | None:
    serve = _resolve(SERVE)
    return None if serve is None else (lambda d: serve(project=d))
