"""Abandoned cart by email: events through the HTTP API with the real Segment SDK, a durable
timer, and a real SMTP server (aiosmtpd) receiving the templated email."""

from __future__ import annotations

import time

import pytest

from activate.helpers import Mailbox, sdk_client, wait_until, write_project
from conftest import make_project, start_server

WINDOW = 1.0  # seconds: the abandonment window, short for the test

TEXT = """Hi {{ profile.first_name | default('there') }},

you left {{ event.properties.name }} in your cart.
Here is 10% off: {{ discount_code('CART10') }}
"""


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.stop()


def _project(tmp_path, mailbox: Mailbox):
    project = write_project(
        tmp_path / "project",
        triggers={
            "abandoned_cart": {
                "event": ["Product Added", "Checkout Started"],
                "not_followed_by": "Order Completed",
                "within": f"{WINDOW}s",
                "destinations": "email",
            },
        },
        destinations={
            "email": {
                "type": "email", "host": "127.0.0.1", "port": mailbox.port, "sender": "shop@example.com",
                "subject": "{{ profile.first_name }}, your cart is waiting", "text": TEXT,
                "html": "<p>Hi {{ profile.first_name }}, code <b>{{ discount_code('CART10') }}</b></p>",
                "retry": {"initial": "100ms", "max_attempts": 3},
            },
        },
    )  # fmt: skip
    return project, make_project(project, ("web",))


def test_abandoned_cart_email_reaches_the_smtp_server(tmp_path, mailbox):
    project, keys = _project(tmp_path, mailbox)
    server = start_server(project, keys)
    try:
        client = sdk_client(server.url, keys["web"])
        client.identify("dana", {"email": "dana@example.com", "first_name": "Dana"})
        client.identify("eli", {"email": "eli@example.com", "first_name": "Eli"})
        client.identify("fay", {"first_name": "Fay"})  # no email address
        started = time.monotonic()
        client.track("dana", "Product Added", {"product_id": "p1", "name": "Red Shoes", "price": 60})
        client.track("eli", "Product Added", {"product_id": "p2", "name": "Blue Hat", "price": 20})
        client.track("fay", "Checkout Started", {"name": "Green Scarf"})
        client.track("eli", "Order Completed", {"order_id": "e1", "revenue": 20})  # eli buys: no email
        [message] = mailbox.wait_for(1, timeout=10)
        assert time.monotonic() - started >= WINDOW * 0.9
        assert message["To"] == "dana@example.com" and message["From"] == "shop@example.com"
        assert message["Subject"] == "Dana, your cart is waiting"
        assert message["X-Panorama-Idempotency-Key"].startswith("abandoned_cart:timer:")
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert "Hi Dana," in text and "Red Shoes" in text
        code = text.split("10% off: ")[1].strip()
        assert code.startswith("CART10-") and len(code) == len("CART10-") + 8
        assert code in html  # the same personal code in both parts
        assert mailbox.envelopes[0].rcpt_tos == ["dana@example.com"]
        # fay has no email address: dead with a clear reason, not retried
        wait_until(lambda: server.query("SELECT 1 FROM activation_outbox WHERE profile_id = 'fay' "
                                        "AND status <> 'pending'"), what="fay's delivery attempted")  # fmt: skip
        [(status, error)] = server.query("SELECT status, last_error FROM activation_outbox WHERE profile_id = 'fay'")
        assert status == "dead" and "no email address" in error
        time.sleep(WINDOW + 0.3)
        assert len(mailbox.messages) == 1  # eli's timer was cancelled by the order
        timers = dict(server.query("SELECT profile_id, status FROM activation_timers"))
        assert timers == {"dana": "fired", "eli": "cancelled", "fay": "fired"}
        # a new cart activity starts a new timer; the code is stable per person and trigger
        client.track("dana", "Checkout Started", {"name": "Red Shoes"})
        second = mailbox.wait_for(2, timeout=10)[1]
        assert code in second.get_body(("plain",)).get_content()
    finally:
        server.stop()


def test_cart_activity_pushes_the_timer_back(tmp_path, mailbox):
    project, keys = _project(tmp_path, mailbox)
    server = start_server(project, keys)
    try:
        client = sdk_client(server.url, keys["web"])
        client.identify("gus", {"email": "gus@example.com", "first_name": "Gus"})
        client.track("gus", "Product Added", {"name": "Sock"})
        time.sleep(WINDOW * 0.6)
        last = time.monotonic()
        client.track("gus", "Product Added", {"name": "Other Sock"})
        [message] = mailbox.wait_for(1, timeout=10)
        assert time.monotonic() - last >= WINDOW * 0.9  # due a window after the latest activity
        assert "Other Sock" in message.get_body(("plain",)).get_content()
        time.sleep(0.3)
        assert len(mailbox.messages) == 1
    finally:
        server.stop()
