"""The real-time API with `engine: spark`: committed events also go to the Parquet log.

The HTTP ingestion path is unchanged (validate -> commit to the store's log -> identity,
traits, segments, triggers in the writer thread). This stage adds a hook that hands each
committed batch to a `MicroBatchWriter`, which appends to `<log_path>/events/date=.../source=...`
every `spark.micro_batch_rows` events or `spark.micro_batch_seconds`, and at shutdown. The
store's log stays the durable copy: `panorama scale sync` (and every Spark run) appends what
the Parquet log misses since its watermark, and readers drop duplicates by `message_id`.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from panorama.ingest import hooks
from panorama.store import Store

log = logging.getLogger("panorama.scale")
STAGE = 50  # before identity (100): the log comes first
NAME = "parquet-log"
_writers: dict[int, object] = {}


def on_events(store: Store, events: pa.Table) -> None:
    writer = _writers.get(id(store))
    if writer is not None:
        writer.append(events)


class Handle:
    def __init__(self, store: Store, writer):
        self.store = store
        self.writer = writer

    def stop(self) -> None:
        _writers.pop(id(self.store), None)
        try:
            self.writer.close()
        except Exception:  # the store's log has every event; `panorama scale sync` catches up
            log.exception("Parquet log: final flush failed")


class _Nothing:
    def stop(self) -> None:
        pass


def start(state) -> Handle | _Nothing:
    """Started with the server (`server.app.REALTIME_MODULES`); a no-op unless `engine: spark`."""
    config = state.project.config
    if config.engine != "spark":
        return _Nothing()
    from panorama.scale.log import MicroBatchWriter
    from panorama.scale.pipeline import log_path

    writer = MicroBatchWriter(log_path(state.project), config.spark.micro_batch_rows,
                              config.spark.micro_batch_seconds)  # fmt: skip
    _writers[id(state.store)] = writer
    hooks.register(STAGE, NAME, on_events)
    return Handle(state.store, writer)
