"""A project with a known journey structure and a known A/B test, served live, for the Journeys
and Experiments pages and their REST endpoints.

1,200 people (u0001...): every one lands on a page from a campaign source, 70% view a product,
half of those start a checkout, and the experiment EXP-UI (shown on the product page) converts
10% of `control` and 22% of `treatment` with an order 10 minutes after the exposure. Profiles
are joined by email (tests/ui/conftest.by_email), so the data needs no identity resolution."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from conftest import start_server
from panorama.config import init_project, load_project

from .conftest import PASSWORD, UIServer, by_email

PEOPLE = 1200
RATES = {"control": 0.10, "treatment": 0.22}
T0 = dt.datetime(2025, 2, 1, 8, 0, 0)
SOURCES = ("google", "newsletter", "instagram")


def _event(
    mid: str,
    event: str | None,
    ts: dt.datetime,
    user: str,
    props: dict | None = None,
    context: dict | None = None,
    kind: str = "track",
) -> dict:
    ids = [{"type": "user_id", "value": user}, {"type": "email", "value": f"{user}@example.com"}]
    return {"message_id": mid, "type": kind, "event": event, "source": "web", "user_id": user,
            "anonymous_id": None, "group_id": None, "previous_id": None, "timestamp": ts,
            "original_timestamp": None, "sent_at": None, "received_at": ts, "identifiers": ids,
            "traits": None, "properties": orjson.dumps(props).decode() if props else None,
            "context": orjson.dumps(context).decode() if context else None,
            "revenue": (props or {}).get("revenue"), "order_id": (props or {}).get("order_id"),
            "value": None, "file": None, "line": None}  # fmt: skip


def events(seed: int = 11) -> tuple[list[dict], dict]:
    """The events and the truth: exposures and conversions per variant, journey counts."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    truth = {"exposed": dict.fromkeys(RATES, 0), "converted": dict.fromkeys(RATES, 0), "viewed": 0,
             "checkout": 0}  # fmt: skip
    for i in range(PEOPLE):
        user = f"u{i:04d}"
        t = T0 + dt.timedelta(hours=int(rng.integers(0, 24 * 20)))
        rows.append(
            _event(
                f"p-{user}",
                None,
                t,
                user,
                {"path": "/"},
                {"campaign": {"source": SOURCES[i % 3]}},
                kind="page",
            )
        )
        if rng.random() >= 0.7:
            continue
        truth["viewed"] += 1
        t += dt.timedelta(minutes=int(rng.integers(2, 600)))
        rows.append(_event(f"v-{user}", "Product Viewed", t, user, {"product_id": "P1"}))
        variant = "treatment" if i % 2 else "control"
        rows.append(
            _event(
                f"x-{user}",
                "Experiment Viewed",
                t,
                user,
                {"experiment_id": "EXP-UI", "variant": variant},
            )
        )
        truth["exposed"][variant] += 1
        if rng.random() < RATES[variant]:
            truth["converted"][variant] += 1
            rows.append(
                _event(
                    f"o-{user}",
                    "Order Completed",
                    t + dt.timedelta(minutes=10),
                    user,
                    {"order_id": f"O{i}", "revenue": 40.0},
                )
            )
        elif rng.random() < 0.5:
            truth["checkout"] += 1
            rows.append(_event(f"c-{user}", "Checkout Started", t + dt.timedelta(hours=3), user))
    return rows, truth


def build(directory: Path) -> tuple[dict[str, str], dict]:
    from panorama.auth.tokens import create_token
    from panorama.auth.users import create_user
    from panorama.experiments.hypotheses import add, link
    from panorama.ingest.log import append_events, events_table
    from panorama.server.ui.index import build_index
    from panorama.store import open_store

    init_project(directory, name="insights-test", region="GB")
    rows, truth = events()
    tokens = {}
    with open_store(load_project(directory).store_path) as store:
        append_events(store.cursor(), events_table(rows))
        for role in ("marketing", "support", "analyst"):
            create_user(store, role, role, PASSWORD.format(role=role), f"{role.title()} User")
            tokens[role] = create_token(store, f"{role} token", role)[1]
        h = add(store, "Showing delivery dates on the product page lifts conversion", 8, 6, 7)
        link(store, h["id"], "EXP-UI")
        add(store, "A lifestyle hero banner lifts add-to-cart", 5, 4, 9)
        build_index(store)
    return tokens, truth


@pytest.fixture(scope="module")
def insights_server(tmp_path_factory) -> Iterator[UIServer]:
    directory = tmp_path_factory.mktemp("insights") / "project"
    patch = pytest.MonkeyPatch()
    by_email(patch)
    tokens, truth = build(directory)
    server = start_server(directory, {})
    try:
        ui = UIServer(server.url, directory, server, tokens)
        ui.truth = truth  # type: ignore[attr-defined]
        yield ui
    finally:
        server.stop()
        patch.undo()
