"""The demo's files, their columns, and the `panorama.yaml` that maps them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

PROJECT_NAME = "hartley-finch"

# file -> its columns in order (the generator writes exactly these)
FILES: dict[str, list[str]] = {
    "data/crm_contacts.csv": [
        "customer_id", "title", "first_name", "last_name", "email", "phone", "birth_date", "address_line1",
        "city", "postal_code", "created_at", "email_opt_in", "sms_opt_in", "push_opt_in", "signup_source",
    ],
    "data/shop_orders.csv": [
        "order_id", "customer_id", "customer_email", "customer_phone", "loyalty_member_id", "ship_name",
        "ship_postcode", "ordered_at", "channel", "store", "item_count", "subtotal", "discount", "delivery",
        "total", "currency", "coupon_code", "campaign_id",
    ],
    "data/order_items.csv": [
        "item_id", "order_id", "customer_id", "customer_email", "customer_phone", "loyalty_member_id",
        "ordered_at", "product_id", "product_name", "category", "price", "quantity", "discount", "currency",
        "channel",
    ],
    "data/campaign_messages.csv": [
        "message_id", "event", "event_at", "channel", "campaign_id", "campaign_name", "offer_id",
        "discount_pct", "coupon_code", "email", "phone", "user_id", "device_id", "order_id",
    ],
    "data/web_events.jsonl": [],
    "data/support_tickets.csv": [
        "ticket_id", "email", "phone", "opened_at", "channel", "topic", "subject", "priority", "order_id",
        "status", "resolved_at", "resolution_hours", "csat",
    ],
    "data/nps_responses.csv": ["response_id", "email", "answered_at", "score", "comment", "survey", "order_id"],
    "data/loyalty_members.csv": [
        "member_id", "email", "phone", "first_name", "last_name", "tier", "points", "joined_at", "home_store",
    ],
    "data/b2b_contacts.csv": [
        "contact_id", "account_id", "company_name", "company_domain", "work_email", "phone", "first_name",
        "last_name", "job_title", "created_at",
    ],
}

SOURCES: dict[str, dict] = {
    "crm": {
        "path": "data/crm_contacts.csv", "kind": "records", "key": "customer_id", "timestamp": "created_at",
        "identifiers": {"customer_id": "user_id", "email": "email", "phone": "phone"},
        "attributes": {"title": "title", "first_name": "first_name", "last_name": "last_name",
                       "birth_date": "birth_date", "address_line1": "address_line1", "city": "city",
                       "postal_code": "postal_code", "email_opt_in": "email_opt_in",
                       "sms_opt_in": "sms_opt_in", "push_opt_in": "push_opt_in",
                       "signup_source": "signup_source"},
        "formats": {"birth_date": "%d/%m/%Y"},
        "priority": 10,
    },
    "shop": {
        "path": "data/shop_orders.csv", "kind": "events", "event": "Order Completed", "key": "order_id",
        "timestamp": "ordered_at",
        "identifiers": {"customer_id": "user_id", "customer_email": "email", "customer_phone": "phone",
                        "loyalty_member_id": "loyalty_id"},
        "attributes": {"ship_name": "full_name", "ship_postcode": "postal_code"},
        "properties": {"order_id": "order_id", "total": "revenue", "currency": "currency",
                       "discount": "discount", "item_count": "quantity", "channel": "channel",
                       "campaign_id": "campaign_id", "coupon_code": "coupon", "subtotal": "subtotal",
                       "delivery": "delivery", "store": "store"},
        "priority": 5,
    },
    "order_items": {
        "path": "data/order_items.csv", "kind": "events", "event": "Product Purchased", "key": "item_id",
        "timestamp": "ordered_at",
        "identifiers": {"customer_id": "user_id", "customer_email": "email", "customer_phone": "phone",
                        "loyalty_member_id": "loyalty_id"},
        "properties": {"order_id": "order_id", "product_id": "product_id", "product_name": "product_name",
                       "category": "category", "price": "price", "quantity": "quantity",
                       "discount": "discount", "currency": "currency", "channel": "channel"},
    },
    "campaigns": {
        "path": "data/campaign_messages.csv", "kind": "events", "event_column": "event", "key": "message_id",
        "timestamp": "event_at",
        "identifiers": {"email": "email", "phone": "phone", "user_id": "user_id", "device_id": "device_id"},
        "properties": {"channel": "channel", "campaign_id": "campaign_id", "campaign_name": "campaign_name",
                       "offer_id": "offer_id", "discount_pct": "discount_pct", "coupon_code": "coupon",
                       "order_id": "order_id"},
    },
    "web": {"path": "data/web_events.jsonl", "kind": "segment"},
    "support": {
        "path": "data/support_tickets.csv", "kind": "events", "event": "Ticket Opened", "key": "ticket_id",
        "timestamp": "opened_at",
        "identifiers": {"email": "email", "phone": "phone"},
        "properties": {"channel": "channel", "topic": "topic", "subject": "subject", "priority": "priority",
                       "order_id": "order_id", "status": "status", "resolved_at": "resolved_at",
                       "resolution_hours": "resolution_hours", "csat": "value"},
    },
    "nps": {
        "path": "data/nps_responses.csv", "kind": "events", "event": "NPS Survey Answered",
        "key": "response_id", "timestamp": "answered_at",
        "identifiers": {"email": "email"},
        "properties": {"score": "value", "comment": "comment", "survey": "survey", "order_id": "order_id"},
    },
    "loyalty": {
        "path": "data/loyalty_members.csv", "kind": "records", "key": "member_id", "timestamp": "joined_at",
        "identifiers": {"member_id": "loyalty_id", "email": "email", "phone": "phone"},
        "attributes": {"first_name": "first_name", "last_name": "last_name", "tier": "loyalty_tier",
                       "points": "loyalty_points", "home_store": "home_store"},
        "priority": 5,
    },
    "b2b": {
        "path": "data/b2b_contacts.csv", "kind": "records", "key": "contact_id", "timestamp": "created_at",
        "identifiers": {"contact_id": "b2b_contact_id", "work_email": "email", "phone": "phone"},
        "attributes": {"first_name": "first_name", "last_name": "last_name", "company_name": "company",
                       "company_domain": "company_domain", "account_id": "account_id",
                       "job_title": "job_title"},
        "priority": 1,
    },
}

HEADER = """\
# Panorama demo project: Hartley & Finch, a fictional UK retailer (generated by
# `panorama demo generate`). Every person is synthetic; truth/ holds the ground truth.
# Reference for this file: docs/config.md; for the data set: docs/demo-data.md
"""


DESCRIPTIONS = {
    "crm": "customer accounts (some people have two or three)",
    "shop": "orders from the web shop, the app and the stores",
    "order_items": "one row per order line",
    "campaigns": "email / SMS / push messages, opens, clicks, holdouts, redemptions",
    "web": "web and app analytics: Segment-spec messages (identify, track, page, screen, group, alias)",
    "support": "help-desk tickets",
    "nps": "NPS survey answers",
    "loyalty": "loyalty-card members",
    "b2b": "contacts of trade (business) accounts",
}


class _Flow(dict):
    """A mapping written on one line ({a: b, c: d})."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data.items(), flow_style=True))


def config_text() -> str:
    head = {"name": PROJECT_NAME, "store": "panorama.duckdb", "identity": {"default_region": "GB"}}
    parts = [HEADER, yaml.dump(head, Dumper=_Dumper, sort_keys=False), "sources:\n"]
    for name, source in SOURCES.items():
        block = {k: (_Flow(v) if k in ("identifiers", "formats") else v) for k, v in source.items()}
        text = yaml.dump({name: block}, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
        parts.append(f"  # {DESCRIPTIONS[name]}\n")
        parts.append("".join(f"  {line}\n" for line in text.splitlines()))
    parts.append(OFFERS)
    parts.append(ACTIVATION)
    return "".join(parts)


# offers the next-best-offer prediction chooses from (docs/predictions.md, "Predictions II")
OFFERS = """
predictions:
  margin: 0.45
  offers:
    - {name: "New in (email)", type: new_in, channel: email, cost: 0.002}
    - {name: "10% off (email)", channel: email, discount: 10, cost: 0.002}
    - {name: "20% off (SMS)", channel: sms, discount: 20, cost: 0.04}
    - {name: "15% off (push)", channel: push, discount: 15, cost: 0.001}
    - {name: "30% off for Gold and Platinum", discount: 30, cost: 0.002,
       eligibility: "loyalty_tier IN ('Gold', 'Platinum')"}
"""


# segments, triggers and destinations (docs/segments.md, docs/activation.md). The emails go to
# the local mailbox `panorama demo run` starts (MAILBOX_PORT; messages saved in mailbox/).
MAILBOX_PORT = 8025
ACTIVATION = f"""
segments:
  prospect:
    where: "NOT performed('Order Completed')"
    description: known people who have not ordered yet
  returning_buyer:
    where: "performed('Order Completed') >= 2"
    description: two orders or more
  vip:
    where: "predicted_clv > 300 OR loyalty_tier IN ('Gold', 'Platinum')"
    description: the top tenth by predicted value, or a Gold/Platinum card
  at_risk_vip:
    where: "churn_probability > 0.6 AND predicted_clv > 150 AND lifecycle_stage IN ('at_risk', 'lapsed')"
    description: valuable customers the churn model expects to lose
  champions: "rfm_segment = 'Champions'"
  unhappy: "nps_group = 'detractor' OR last_csat <= 2"
  cart_abandoners:
    where: "performed(['Product Added', 'Checkout Started'], within='1d') AND NOT performed('Order Completed', within='1d')"
    recheck_every: 5m

triggers:
  abandoned_cart:                    # a basket not followed by an order: a personal discount
    event: [Product Added, Checkout Started]
    not_followed_by: Order Completed
    within: 15m
    destinations: cart_email
  big_order:
    event: Order Completed
    where: "revenue >= 250"
    destinations: sales_alert
  vip_at_risk:
    segment: at_risk_vip
    on: enter
    destinations: sales_alert

destinations:
  cart_email:
    type: email
    host: 127.0.0.1
    port: {MAILBOX_PORT}
    sender: "Hartley & Finch <hello@hartley-finch.example>"
    subject: "{{{{ profile.first_name or 'Hello' }}}}, your basket is waiting"
    text: |
      Hi {{{{ profile.first_name or 'there' }}}},

      You left something in your basket. Here is 10% off to finish your order:
      {{{{ discount_code('CART10-') }}}} (valid for 7 days).
  sales_alert:
    type: email
    host: 127.0.0.1
    port: {MAILBOX_PORT}
    sender: "Panorama <panorama@hartley-finch.example>"
    to: sales@hartley-finch.example
    subject: "{{{{ trigger }}}}: {{{{ profile.full_name or profile.email or profile.profile_id }}}}"
    text: |
      {{{{ trigger }}}} for {{{{ profile.full_name }}}} <{{{{ profile.email }}}}>
      predicted CLV {{{{ (profile.predicted_clv or 0) | round(2) }}}}, churn risk {{{{ ((profile.churn_probability or 0) * 100) | round | int }}}}%
  vip_audience:
    type: file
    segment: vip
    path: exports/vip-{{timestamp}}.csv
    columns: [email, first_name, last_name, predicted_clv, loyalty_tier]
    every: 1h
  at_risk_audience:
    type: file
    segment: at_risk_vip
    path: exports/at-risk-vip-{{timestamp}}.csv
    mode: delta
    columns: [email, first_name, churn_probability, predicted_clv]
    every: 1h
"""


def write_config(out_dir: Path) -> Path:
    path = out_dir / "panorama.yaml"
    path.write_text(config_text(), encoding="utf-8")
    return path


def add_segments(config: Path, segments: dict[str, str]) -> None:
    """Add `segments` (name -> expression) to a project's panorama.yaml, as the first entries
    of its top-level `segments:` block when it has one (the demo's does)."""
    text = config.read_text(encoding="utf-8")
    lines = "".join(f"  {name}: {json.dumps(where)}\n" for name, where in segments.items())
    if "\nsegments:\n" in "\n" + text:
        text = ("\n" + text).replace("\nsegments:\n", "\nsegments:\n" + lines, 1)[1:]
    else:
        text += "segments:\n" + lines
    config.write_text(text, encoding="utf-8")
