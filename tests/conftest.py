"""Shared fixtures: a project directory and a live Panorama server on a free loopback port.

`live_server` runs the real app under uvicorn (httptools + uvloop, as `panorama serve` does)
in a thread of the test process, on a socket bound to port 0, so tests can also look into
its store (`server.query(...)`). `start_server_process` runs `panorama serve` in a
subprocess, for tests that must kill it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from panorama.config import init_project

START_TIMEOUT = 30.0


def make_project(directory: Path, sources: tuple[str, ...] = ("web",)) -> dict[str, str]:
    """Create a project in `directory` with one write key per source; returns source -> key."""
    from panorama.config import load_project
    from panorama.ingest.keys import create_key
    from panorama.store import open_store

    if not (directory / "panorama.yaml").exists():
        init_project(directory, name="test")
    keys = {}
    with open_store(load_project(directory).store_path) as store:
        for source in sources:
            keys[source] = create_key(store, source)[1]
    return keys


@dataclass
class LiveServer:
    url: str
    project: Path
    keys: dict[str, str]
    app: object = None
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def write_key(self) -> str:
        return next(iter(self.keys.values()))

    @property
    def state(self):
        from panorama.server.app import state

        return state(self.app)

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        """Run SQL on the running server's store (thread-local cursor), once what the server
        acknowledged is loaded from its journal into the log."""
        self.state.writer.flush()
        return self.state.store.execute(sql, params).fetchall()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def wait_until_ready(
    url: str, timeout: float = START_TIMEOUT, process: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"server at {url} not ready after {timeout} s")


def start_server(
    project: Path, keys: dict[str, str], wrap: Callable | None = None, **app_options
) -> LiveServer:
    """Serve `project` in a thread; `wrap(app)` may wrap the ASGI app (fault injection)."""
    import uvicorn

    from panorama.server.app import Tuning, create_app
    from panorama.server.protocol import TrackingProtocol

    # GC and GIL-switch tuning are process-wide: leave the test process as it is.
    app_options.setdefault(
        "tuning",
        Tuning(gc_threshold=None, switch_interval=None, malloc_trim_seconds=None,
               arrow_threads=None, validation_workers=0),
    )
    app = create_app(project, **app_options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # as `panorama serve`: the Tracking API answered before ASGI (panorama.server.protocol)
    config = uvicorn.Config(wrap(app) if wrap else app, http=TrackingProtocol, loop="uvloop",
                            log_level="warning", access_log=False, lifespan="on",
                            server_header=False)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(20)
        sock.close()

    return LiveServer(url, project, keys, app, stop)


@pytest.fixture
def project_dir(tmp_path) -> Path:
    directory = tmp_path / "project"
    init_project(directory, name="test")
    return directory


@pytest.fixture
def live_server(project_dir) -> Iterator[LiveServer]:
    """A running server with write keys for sources `web` and `ios`."""
    keys = make_project(project_dir, ("web", "ios"))
    server = start_server(project_dir, keys)
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    port: int

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server_process(
    project: Path, port: int | None = None, log: Path | None = None
) -> ServerProcess:
    """`panorama serve --project PROJECT --port PORT` in a subprocess, ready to serve."""
    port = port or free_port()
    out = open(log or os.devnull, "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "panorama"),
            "serve",
            "--project",
            str(project),
            "--port",
            str(port),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out.close()
    handle = ServerProcess(process, f"http://127.0.0.1:{port}", port)
    try:
        wait_until_ready(handle.url, process=process)
    except BaseException:
        handle.kill()
        raise
    return handle
