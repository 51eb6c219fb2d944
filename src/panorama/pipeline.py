"""The batch pipeline, in order: what `panorama demo run` (and `panorama run`) execute.

Each step is a CLI command run against a project directory; steps for stages that are not
built yet are simply absent.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Step:
    title: str
    run: Callable[[Path], None]


def _cli(name: str) -> Callable | None:
    cli = importlib.import_module("panorama.cli")
    return getattr(cli, name, None)


def steps() -> list[Step]:
    """The pipeline's steps that exist in this version, in order."""
    found: list[Step] = []
    ingest = _cli("ingest")
    found.append(Step("ingest sources", lambda d: ingest(sources=None, project=d)))
    for title, command in (
        ("resolve identities", "unify"),
        ("compute traits", "traits_compute"),
        ("predict", "predict"),
        ("evaluate segments", "segments_refresh"),
    ):
        fn = _cli(command)
        if fn is not None:
            found.append(Step(title, lambda d, fn=fn: fn(project=d)))
    return found


def serve_command() -> Callable[[Path], None] | None:
    serve = _cli("serve")
    return None if serve is None else (lambda d: serve(project=d))
