"""The demo's segments, triggers and destinations load, and its mailbox keeps what is sent."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest
import yaml

from conftest import free_port
from panorama.config import ConfigError, _YamlLoader, parse_config
from panorama.demo.mailbox import read_mailbox, start_mailbox
from panorama.demo.project import MAILBOX_PORT, config_text


def test_demo_config_declares_segments_triggers_and_destinations(tmp_path):
    config = parse_config(yaml.load(config_text(), Loader=_YamlLoader), tmp_path / "panorama.yaml")
    assert {"prospect", "returning_buyer", "vip", "at_risk_vip", "cart_abandoners"} <= set(config.segments)
    cart = config.triggers["abandoned_cart"]
    assert cart.not_followed_by == "Order Completed" and cart.within == 15 * 60
    assert config.triggers["vip_at_risk"].on == "enter"  # `on:` is a key, not the YAML 1.1 boolean
    assert config.destinations["cart_email"].port == MAILBOX_PORT
    assert config.destinations["vip_audience"].segment == "vip"


def test_yaml_on_off_yes_no_are_strings_true_false_are_booleans():
    data = yaml.load("on: enter\noff: x\nflag: yes\nok: true\nno_: False", Loader=_YamlLoader)
    assert data == {"on": "enter", "off": "x", "flag": "yes", "ok": True, "no_": False}


def test_a_trigger_with_an_unknown_destination_names_it(tmp_path):
    text = config_text().replace("destinations: sales_alert\n  vip_at_risk", "destinations: sales\n  vip_at_risk")
    with pytest.raises(ConfigError, match=r"triggers\.big_order\.destinations.*'sales'"):
        parse_config(yaml.load(text, Loader=_YamlLoader), tmp_path / "panorama.yaml")


def test_mailbox_saves_each_message(tmp_path):
    port = free_port()
    mailbox = start_mailbox(tmp_path / "mailbox", port)
    try:
        for n in (1, 2):
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "shop@example.com", "ann@example.com", f"cart {n}"
            message.set_content(f"Here is 10% off: CART10-{n}")
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.send_message(message)
    finally:
        mailbox.stop()
    saved = read_mailbox(tmp_path / "mailbox")
    assert [m["subject"] for m in saved] == ["cart 1", "cart 2"]
    assert saved[1]["to"] == "ann@example.com" and "CART10-2" in saved[1]["text"]
