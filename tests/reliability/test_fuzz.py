"""Bad input, generated: the Tracking API, every route of the OpenAPI spec (schemathesis), the
config loader, the file readers and the segment parser. No 500s, no crash, every rejection
precise, nothing accepted twice or lost. Each property runs a bounded number of examples from
a fresh random seed (hypothesis prints the seed of a failure so it can be replayed)."""

from __future__ import annotations

import contextlib
import gzip
import json
import string

import httpx
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from conftest import make_project, start_server
from panorama.config import ConfigError, load_project, parse_config

pytestmark = pytest.mark.xdist_group("fuzz")

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
HTTP = settings(FAST, max_examples=25)

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
                     max_leaves=12)  # fmt: skip
_KEYS = ["type", "userId", "anonymousId", "event", "name", "groupId", "previousId", "traits", "properties",
         "context", "timestamp", "originalTimestamp", "sentAt", "messageId", "integrations"]  # fmt: skip
_TYPES = st.sampled_from(
    ["identify", "track", "page", "screen", "group", "alias", "Track", "bogus", ""]
)
_TIMES = st.sampled_from(["2024-03-01T10:00:00Z", "2024-03-01", "1709287200", "not a date", "9999-99-99",
                          "0001-01-01T00:00:00Z", ""]) | st.integers(-(10**15), 10**15)  # fmt: skip


@st.composite
def messages(draw) -> dict:
    """Messages that are often nearly right: spec keys with good, wrong-typed or odd values."""
    message = {}
    for key in draw(st.lists(st.sampled_from(_KEYS), unique=True, max_size=len(_KEYS))):
        if key == "type":
            value = draw(_TYPES | _json)
        elif key in ("timestamp", "originalTimestamp", "sentAt"):
            value = draw(_TIMES | _json)
        elif key in ("traits", "properties", "context"):
            value = draw(st.dictionaries(st.sampled_from(["email", "revenue", "price", "phone", "x", "traits"]),
                                         _json, max_size=4) | _json)  # fmt: skip
        else:
            value = draw(_text | _json)
        message[key] = value
    return message


def _fresh_ids(batch: list) -> list:
    """Unique message ids (hypothesis repeats drawn values across examples)."""
    import uuid

    for m in batch:
        if isinstance(m, dict):
            m["messageId"] = uuid.uuid4().hex
    return batch


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    project = tmp_path_factory.mktemp("fuzz") / "project"
    keys = make_project(project, ("web",))
    from panorama.auth.tokens import create_token
    from panorama.store import open_store

    with open_store(load_project(project).store_path) as store:
        token = create_token(store, "fuzz", "admin")[1]
    live = start_server(project, keys)
    live.token = token
    yield live
    live.stop()


def _check_error(r: httpx.Response) -> None:
    assert r.status_code in (400, 401, 413, 415), (r.status_code, r.text[:300])
    body = r.json()
    assert body["success"] is False and body["code"] and body["message"]
    if body["code"] == "invalid_message":
        assert body["field"] and body["reason"] and body["message"].startswith(body["field"])


@HTTP
@given(batch=st.lists(messages() | _json, max_size=8), gzipped=st.booleans())
def test_batches_store_exactly_the_accepted_messages(server, batch, gzipped):
    batch = _fresh_ids(batch)
    body = json.dumps(
        {"batch": batch}
    ).encode()  # stdlib: integers of any size, as clients may send
    headers = {"content-type": "application/json"}
    if gzipped:
        body, headers["content-encoding"] = gzip.compress(body), "gzip"
    r = httpx.post(
        server.url + "/v1/batch",
        content=body,
        headers=headers,
        auth=(server.write_key, ""),
        timeout=30,
    )
    assert r.status_code == 200, r.text[:300]
    rejected = r.json().get("rejected", [])
    assert all(x["field"] and x["reason"] for x in rejected)
    bad = {x["index"] for x in rejected}
    sent = [m["messageId"] for i, m in enumerate(batch) if isinstance(m, dict) and i not in bad]
    ids = [m["messageId"] for m in batch if isinstance(m, dict)]
    stored = server.query(
        "SELECT message_id FROM events WHERE message_id IN (SELECT unnest(?))", [ids]
    )
    assert sorted(r[0] for r in stored) == sorted(sent)  # nothing lost, nothing extra
    again = httpx.post(
        server.url + "/v1/batch", content=body, headers=headers, auth=(server.write_key, "")
    )
    assert again.status_code == 200
    count = server.query(
        "SELECT count(*) FROM events WHERE message_id IN (SELECT unnest(?))", [ids]
    )[0][0]
    assert count == len(sent)  # a retry is stored once


@HTTP
@given(
    message=messages() | _json,
    path=st.sampled_from(["/v1/track", "/v1/identify", "/v1/p", "/v1/a", "/v1/g"]),
)
def test_single_messages_get_200_or_a_precise_error(server, message, path):
    message = _fresh_ids([message])[0]
    r = httpx.post(
        server.url + path,
        content=json.dumps(message).encode(),
        auth=(server.write_key, ""),
        timeout=30,
    )
    if r.status_code == 200:
        assert r.json() == {"success": True}
        assert (
            server.query(
                "SELECT count(*) FROM events WHERE message_id = ?", [message["messageId"]]
            )[0][0]
            == 1
        )
    else:
        _check_error(r)


@HTTP
@given(body=st.binary(max_size=300), encoding=st.sampled_from([None, "gzip", "deflate", "br", "identity"]),
       auth=st.sampled_from(["key", "none", "garbage", "bearer"]))  # fmt: skip
def test_raw_bodies_never_500(server, body, encoding, auth):
    headers = {"content-encoding": encoding} if encoding else {}
    if auth == "key":
        kwargs = {"auth": (server.write_key, "")}
    elif auth == "garbage":
        headers["authorization"] = "Basic !!!"
    elif auth == "bearer":
        headers["authorization"] = "Bearer x"
    r = httpx.post(server.url + "/v1/batch", content=body, headers=headers, timeout=30,
                   **(kwargs if auth == "key" else {}))  # fmt: skip
    if r.status_code != 200:
        _check_error(r)


def test_every_operation_of_the_openapi_spec(server):
    """schemathesis: valid and invalid requests for every operation in /openapi.json, with an
    admin token (API) and the write key (Tracking API); nothing answers 5xx."""
    import schemathesis
    from schemathesis import GenerationMode

    spec = httpx.get(server.url + "/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    auth_headers = {"authorization": f"Bearer {server.token}"}
    basic = httpx.BasicAuth(server.write_key, "")
    failures, count = [], 0
    client = httpx.Client(timeout=30)

    def make_run(operation, mode):
        api = not operation.path.startswith("/v1/")

        @settings(
            max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            nonlocal count
            kwargs = case.as_transport_kwargs(base_url=server.url)
            headers = {**(kwargs.get("headers") or {}), **(auth_headers if api else {})}
            request = httpx.Request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                                    headers=headers, content=_content(kwargs))  # fmt: skip
            if not api:
                request = next(basic.auth_flow(request))
            r = client.send(request)
            count += 1
            if r.status_code >= 500 and r.status_code != 501:
                failures.append((operation.label, r.status_code, r.text[:200]))

        return run

    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            with contextlib.suppress(
                Unsatisfiable
            ):  # nothing to make invalid (no parameters, no body)
                make_run(result.ok(), mode)()
    assert count > 60
    assert not failures, failures[:5]


def _content(kwargs: dict) -> bytes | None:
    if "json" in kwargs:
        return json.dumps(kwargs["json"], default=str).encode()
    data = kwargs.get("data") or kwargs.get("content")
    if isinstance(data, str):
        return data.encode()
    return data if isinstance(data, bytes) else None


# -- the config loader ------------------------------------------------------------------------------

_VALID = {"name": "x", "sources": {"crm": {"path": "c.csv", "kind": "records", "key": "id", "timestamp": "ts",
                                           "identifiers": {"email": "email"}}},
          "segments": {"buyers": "orders >= 1"}, "consent": {"require_opt_in": ["email"]}}  # fmt: skip


@st.composite
def mutated_configs(draw):
    config = orjson.loads(orjson.dumps(_VALID))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from([("name",), ("sources",), ("sources", "crm"), ("sources", "crm", "kind"),
                                     ("sources", "crm", "identifiers"), ("segments", "buyers"), ("consent",),
                                     ("consent", "require_opt_in"), ("server",), ("identity", "default_region"),
                                     ("destinations",), ("triggers",), ("sources", "crm", "nope")]))  # fmt: skip
        holder = config
        for key in path[:-1]:
            holder = holder.setdefault(key, {}) if isinstance(holder, dict) else {}
        if isinstance(holder, dict):
            holder[path[-1]] = draw(_json)
    return config


@FAST
@given(config=mutated_configs())
def test_config_loader_accepts_or_names_the_key(config):
    try:
        parse_config(config)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("panorama.yaml:") and len(message) > len("panorama.yaml: ")


@FAST
@given(text=st.text(alphabet=string.printable, max_size=200))
def test_config_file_of_any_text(tmp_path_factory, text):
    directory = tmp_path_factory.mktemp("cfg")
    (directory / "panorama.yaml").write_text(text)
    try:
        load_project(directory)
    except ConfigError as exc:
        assert "panorama.yaml" in str(exc)


# -- the file readers ----------------------------------------------------------------------------------

_CELL = st.text(
    alphabet=st.sampled_from(list('ab,"\n\r;é\\ 0123456789-:@.') + ["\x00", "\ufeff"]), max_size=12
)


@HTTP
@given(
    rows=st.lists(st.lists(_CELL, min_size=0, max_size=5), max_size=8), raw=st.binary(max_size=80)
)
def test_csv_files_load_or_dead_letter_every_line_once(tmp_path_factory, rows, raw):
    from panorama.ingest.files import IngestError, ingest_source
    from panorama.store import open_store

    directory = tmp_path_factory.mktemp("csv")
    (directory / "panorama.yaml").write_text(yaml.safe_dump({"name": "f", "sources": {"s": {
        "path": "s.csv", "kind": "events", "event": "E", "key": "id", "timestamp": "ts",
        "identifiers": {"email": "email"}, "properties": {"amount": "revenue"}}}}))  # fmt: skip
    lines = ["id,ts,email,amount"] + [",".join(r) for r in rows]
    (directory / "s.csv").write_bytes(("\n".join(lines) + "\n").encode() + raw)
    project = load_project(directory)
    with open_store(project.store_path) as store:
        try:
            first = ingest_source(store, project, "s")
        except IngestError as exc:
            assert "s.csv" in str(exc)
            return
        assert first.rows_read == first.loaded + first.duplicates + first.rejected
        dead = store.execute("SELECT line, field, reason FROM dead_letters").fetchall()
        assert all(line is not None and reason for line, _, reason in dead)
        assert len(dead) == first.rejected
        second = ingest_source(store, project, "s")  # the same file again: nothing new
        assert second.loaded == 0 and store.scalar("SELECT count(*) FROM events") == first.loaded
        assert store.scalar("SELECT count(*) FROM dead_letters") == len(dead)


# -- the segment parser --------------------------------------------------------------------------

_TOKENS = st.sampled_from(["orders", ">=", "1", "AND", "OR", "NOT", "(", ")", "'x'", "performed(", "'Order'",
                           "within", "=", "'30 days'", ",", "count", "revenue", "now()", "days_since(", "last_seen",
                           ";", "DROP TABLE events", "--", "*", "SELECT", "IN", "[", "]", "NULL", "IS", "1e309",
                           "\"", "`", "\\", "CAST(", "AS", "int", "unknown_col"])  # fmt: skip


@FAST
@given(parts=st.lists(_TOKENS, max_size=10) | st.lists(st.text(max_size=8), max_size=4))
def test_segment_parser_compiles_or_explains(parts):
    from panorama.segments.language import SegmentError, compile_segment

    text = " ".join(parts)
    try:
        compiled = compile_segment(
            text, {"orders": "BIGINT", "revenue": "DOUBLE", "last_seen": "TIMESTAMP"}
        )
    except SegmentError as exc:
        assert str(exc)
        return
    assert compiled.sql and ";" not in compiled.sql
