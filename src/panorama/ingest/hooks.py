"""Real-time hooks: what runs after events are committed to the log.

The real-time path (DESIGN.md) is: commit to log -> update the identity graph -> update
incremental traits -> re-evaluate segments -> enqueue triggered actions. Each stage
registers one hook here (in order of `stage`); the server's writer thread calls `run` with
every committed micro-batch of new events. Hooks must be idempotent and fast (batched).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from panorama.store import Store

# stage numbers: identity 100, traits 300, segments 400, activation 500
Hook = Callable[[Store, pa.Table], None]


@dataclass(frozen=True)
class _Registered:
    stage: int
    name: str
    fn: Hook


_hooks: list[_Registered] = []


def register(stage: int, name: str, fn: Hook) -> None:
    """Add (or replace, by name) a hook."""
    global _hooks
    _hooks = sorted([h for h in _hooks if h.name != name] + [_Registered(stage, name, fn)],
                    key=lambda h: h.stage)  # fmt: skip


def registered() -> list[str]:
    return [h.name for h in _hooks]


def run(store: Store, events: pa.Table) -> None:
    """Run every hook over a committed batch (rows with the events table's columns)."""
    for hook in _hooks:
        hook.fn(store, events)
