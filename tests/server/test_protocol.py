"""The Tracking API answered at the HTTP protocol (`panorama.server.protocol`) answers exactly
as the ASGI way does, keeps connections usable, and applies the same protections."""

from __future__ import annotations

import socket

import httpx
import orjson
import pytest

from conftest import make_project, start_server
from server import test_api
from server.test_api import OK, _mid, post

CASES = test_api.test_bad_input_is_refused_precisely.pytestmark[0].args[1]
# A request through a proxy goes the ASGI way (its X-Forwarded-For names the client).
VIA_ASGI = {"x-forwarded-for": "198.51.100.7"}
COMPARED = ("content-type", "access-control-allow-origin", "x-content-type-options",
            "cache-control", "referrer-policy")  # fmt: skip


@pytest.mark.parametrize(("path", "raw", "headers", "status", "code", "message"), CASES)
def test_both_ways_answer_alike(live_server, path, raw, headers, status, code, message):
    direct = post(live_server, path, None, raw=raw, headers=headers)
    through_asgi = post(live_server, path, None, raw=raw, headers={**headers, **VIA_ASGI})
    assert direct.status_code == through_asgi.status_code == status
    assert direct.json() == through_asgi.json()
    assert {h: direct.headers.get(h) for h in COMPARED} == {h: through_asgi.headers.get(h) for h in COMPARED}
    assert "server" not in direct.headers and direct.headers["x-content-type-options"] == "nosniff"


def test_good_requests_both_ways_and_keep_alive(live_server):
    ids = [_mid() for _ in range(4)]
    with httpx.Client(auth=(live_server.write_key, "")) as client:  # one connection, reused
        for i, message_id in enumerate(ids):
            headers = VIA_ASGI if i % 2 else {}
            r = client.post(live_server.url + "/v1/track", headers=headers,
                            json={"userId": "u", "event": "E", "messageId": message_id})  # fmt: skip
            assert r.status_code == 200 and r.json() == OK
        assert client.get(live_server.url + "/health").status_code == 200
    stored = live_server.query("SELECT message_id FROM events WHERE message_id IN (SELECT unnest(?))", [ids])
    assert sorted(r[0] for r in stored) == sorted(ids)


def _raw_request(path: str, key: str, body: bytes, close: bool = False) -> bytes:
    import base64

    auth = base64.b64encode(f"{key}:".encode()).decode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n").encode() + body  # fmt: skip


def _read_answers(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    data = b""
    answers = []
    while len(answers) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        while b"\r\n\r\n" in data:
            head, rest = data.split(b"\r\n\r\n", 1)
            length = int([ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0].split(b":")[1])
            if len(rest) < length:
                break
            answers.append((int(head.split(b" ")[1]), rest[:length]))
            data = rest[length:]
    return answers


def test_pipelined_requests_are_answered_in_order(live_server):
    ids = [_mid() for _ in range(3)]
    port = int(live_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(_raw_request("/v1/track", live_server.write_key,
                                           orjson.dumps({"userId": "u", "event": "E", "messageId": m}))
                              for m in ids)
                     + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
        answers = _read_answers(sock, 4)
    assert [status for status, _ in answers] == [200, 200, 200, 200]
    assert [orjson.loads(body) for _, body in answers[:3]] == [OK] * 3
    assert live_server.query("SELECT count(*) FROM events WHERE message_id IN (SELECT unnest(?))", [ids])[0][0] == 3


def test_connection_close_and_oversized_declared_length(live_server):
    port = int(live_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        big = b'{"userId": "u", "event": "E", "p": "' + b"x" * 40_000 + b'"}'
        sock.sendall(_raw_request("/v1/track", live_server.write_key, big))
        sock.sendall(_raw_request("/v1/track", live_server.write_key,
                                  orjson.dumps({"userId": "u", "event": "E", "messageId": _mid()}), close=True))  # fmt: skip
        answers = _read_answers(sock, 2)
        assert [status for status, _ in answers] == [413, 200]
        assert orjson.loads(answers[0][1])["code"] == "message_too_large"
        assert sock.recv(10) == b""  # closed as asked


def test_failed_keys_lock_the_address_out(project_dir):
    from panorama.config import load_project

    keys = make_project(project_dir, ("web",))
    config = load_project(project_dir).config
    limit = config.server.auth_failure_limit
    server = start_server(project_dir, keys)
    try:
        for _ in range(limit):
            r = httpx.post(server.url + "/v1/track", json={"userId": "u", "event": "E"}, auth=("wrong", ""))
            assert r.status_code == 401
        r = httpx.post(server.url + "/v1/track", json={"userId": "u", "event": "E"}, auth=(keys["web"], ""))
        assert r.status_code == 429 and r.json()["code"] == "too_many_failures"
        assert int(r.headers["retry-after"]) >= 1 and r.headers["x-content-type-options"] == "nosniff"
    finally:
        server.stop()
