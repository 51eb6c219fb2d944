"""Real receivers for activation tests: an HTTP webhook receiver that verifies signatures, and
an aiosmtpd SMTP server; plus a project writer and the real Segment SDK client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import yaml

from panorama.activate.destinations import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

SECRET = "test-signing-secret"


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    signature_ok: bool

    @property
    def json(self) -> dict:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers with `statuses` in turn (then 200), after
    `delay` seconds; records every request and whether its signature verifies."""

    secret: str = SECRET
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    port: int = 0
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                ok = verify_signature(receiver.secret, body, headers.get(TIMESTAMP_HEADER.lower(), ""),
                                      headers.get(SIGNATURE_HEADER.lower(), ""))  # fmt: skip
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.requests.append(Received(time.monotonic(), self.path, headers, body, status, ok))
                    receiver._lock.notify_all()
                payload = b'{"ok": true}' if status < 300 else b'{"error": "try again"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)  # fmt: skip
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver: condition not met in {timeout} s; got {len(self.requests)} "
                                         f"requests: {[r.body[:120] for r in self.requests]}")
                self._lock.wait(left)
            return list(self.requests)

    def delivered(self) -> list[Received]:
        return [r for r in self.requests if r.status < 300]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        from conftest import free_port

        self.messages: list[EmailMessage] = []
        self.envelopes: list = []
        self._cond = threading.Condition()
        mailbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
                message = message_from_bytes(envelope.content, policy=policy.default)
                with mailbox._cond:
                    mailbox.messages.append(message)
                    mailbox.envelopes.append(envelope)
                    mailbox._cond.notify_all()
                return "250 Message accepted for delivery"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, server_hostname="localhost")
        self.controller.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"mailbox: {len(self.messages)} messages after {timeout} s, wanted {count}")
                self._cond.wait(left)
            return list(self.messages)

    def stop(self) -> None:
        self.controller.stop()


def write_project(directory: Path, **sections) -> Path:
    """panorama.yaml with the given top-level sections (segments, triggers, destinations...)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {"name": "test", **sections}
    (directory / "panorama.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return directory


def sdk_client(url: str, key: str, errors: list | None = None):
    """The real Segment SDK, posting each call at once (sync mode)."""
    from segment.analytics.client import Client

    def on_error(exc, batch):
        if errors is not None:
            errors.append(exc)

    return Client(key, host=url, sync_mode=True, on_error=on_error, max_retries=3, timeout=10)


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> object:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(interval)


def hook_bodies(requests: Iterable[Received]) -> list[dict]:
    return [r.json for r in requests]


def start_process(project: Path, log: Path | None = None, timeout: float = 120.0):
    """`panorama serve` in a subprocess (as conftest's `start_server_process`), with a start-up
    timeout that tolerates a loaded machine."""
    import os
    import subprocess
    import sys

    from conftest import ServerProcess, free_port, wait_until_ready

    port = free_port()
    out = open(log or os.devnull, "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "panorama"), "serve", "--project", str(project), "--port", str(port)],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    out.close()
    handle = ServerProcess(process, f"http://127.0.0.1:{port}", port)
    try:
        wait_until_ready(handle.url, timeout=timeout, process=process)
    except BaseException:
        handle.kill()
        raise
    return handle


def segments_ready(server, timeout: float = 30.0) -> None:
    """Wait for the in-process server's start-up segment refresh (definitions backfilled)."""
    from panorama.segments.realtime import runtime_for

    runtime = wait_until(lambda: runtime_for(server.state.store), timeout=timeout, what="segments runtime")
    assert runtime.ready.wait(timeout), "the start-up segment refresh did not finish"
