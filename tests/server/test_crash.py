"""Crash safety: `panorama serve` killed with SIGKILL mid-load loses no event it answered 200 for.

Client threads send batches with fixed messageIds and note which got a 200. The server is
SIGKILLed while they send (twice, restarting in between); after each kill the store must
hold every acknowledged event. Then the clients retry every unacknowledged batch (as SDKs
do) and the store must hold each sent event exactly once.
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from conftest import make_project, start_server_process
from panorama.config import load_project
from panorama.store import open_store

CLIENTS = 4
BATCH = 50


class Load:
    """Client threads sending batches until stopped; records every batch and its outcome."""

    def __init__(self, url: str, key: str):
        self.url = url
        self.key = key
        self.batches: list[list[str]] = []
        self.acked: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def _new_batch(self) -> int:
        ids = [str(uuid.uuid4()) for _ in range(BATCH)]
        with self.lock:
            self.batches.append(ids)
            return len(self.batches) - 1

    def body(self, index: int) -> dict:
        return {"batch": [{"type": "track", "userId": f"u{n % 17}", "event": "Load", "messageId": mid,
                           "properties": {"n": n, "pad": "x" * 200}}
                          for n, mid in enumerate(self.batches[index])]}  # fmt: skip

    def _run(self) -> None:
        with httpx.Client(auth=(self.key, ""), timeout=5) as client:
            while not self.stop.is_set():
                index = self._new_batch()
                try:
                    r = client.post(self.url + "/v1/batch", json=self.body(index))
                except httpx.HTTPError:
                    continue  # the server died mid-request: this batch is not acknowledged
                if r.status_code == 200 and r.json() == {"success": True}:
                    with self.lock:
                        self.acked.add(index)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def acked_ids(self) -> set[str]:
        with self.lock:
            return {mid for i in self.acked for mid in self.batches[i]}


def _stored(project) -> tuple[set[str], int]:
    with open_store(load_project(project).store_path) as store:
        ids = {r[0] for r in store.execute("SELECT message_id FROM events").fetchall()}
        total = store.scalar("SELECT count(*) FROM events")
    return ids, total


@pytest.mark.xdist_group("crash")
def test_sigkill_mid_load_loses_nothing_acknowledged(project_dir, tmp_path):
    key = make_project(project_dir)["web"]
    log = tmp_path / "server.log"
    server = start_server_process(project_dir, log=log)
    all_acked: set[str] = set()
    loads: list[Load] = []
    try:
        for _round in range(2):
            load = Load(server.url, key)
            loads.append(load)
            load.start()
            deadline = time.monotonic() + 20
            while len(load.acked) < 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(load.acked) >= 20, log.read_text()
            server.kill()  # SIGKILL while the clients are still sending
            load.finish()
            acked = load.acked_ids()
            all_acked |= acked
            stored, total = _stored(project_dir)
            missing = all_acked - stored
            assert not missing, f"{len(missing)} acknowledged events lost"
            assert total == len(stored)
            assert len(load.batches) > len(load.acked), "the kill should interrupt some requests"
            print(
                f"round {_round}: {len(load.acked)} of {len(load.batches)} batches acknowledged; {len(stored)} events stored"
            )
            server = start_server_process(project_dir, port=server.port, log=log)

        # The clients retry what was not acknowledged (same messageIds), as SDKs do.
        with httpx.Client(auth=(key, ""), timeout=10) as client:
            for load in loads:
                for index in range(len(load.batches)):
                    if index not in load.acked:
                        r = client.post(server.url + "/v1/batch", json=load.body(index))
                        assert r.status_code == 200, r.text
    finally:
        server.terminate()
    sent = {mid for load in loads for ids in load.batches for mid in ids}
    stored, total = _stored(project_dir)
    assert stored == sent
    assert total == len(sent)  # exactly once each
