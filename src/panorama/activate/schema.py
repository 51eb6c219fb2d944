"""Tables of the activation module (migrations 500-599)."""

from __future__ import annotations

from panorama.store.schema import Migration

_V500 = """
-- The durable outbox: every action to deliver, with its state. Delivery is at-least-once;
-- `idempotency_key` is unique (enqueueing the same action twice stores it once) and is sent
-- with every attempt so receivers can drop repeats.
--   status: pending -> delivered | dead (attempts exhausted or a permanent error)
--           | suppressed (consent refused)
CREATE SEQUENCE activation_outbox_ids START 1;
CREATE TABLE activation_outbox (
    id BIGINT PRIMARY KEY DEFAULT nextval('activation_outbox_ids'),
    idempotency_key VARCHAR NOT NULL UNIQUE,
    destination VARCHAR NOT NULL,
    trigger VARCHAR,
    kind VARCHAR NOT NULL,
    profile_id VARCHAR,
    payload JSON NOT NULL,
    status VARCHAR NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    last_attempt_at TIMESTAMP,
    delivered_at TIMESTAMP,
    last_error VARCHAR,
    last_status INTEGER
);

-- Durable timers of "event not followed by another within a delay" triggers: one pending
-- timer per trigger and profile (a new start event pushes its due time back).
--   status: pending -> fired | cancelled (the follow-up event came)
CREATE TABLE activation_timers (
    trigger VARCHAR NOT NULL,
    profile_id VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,
    started_at TIMESTAMP NOT NULL,
    due_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    resolved_at TIMESTAMP
);

-- Bookkeeping: the received_at of the latest event processed, file exports' last run.
CREATE TABLE activation_state (
    key VARCHAR PRIMARY KEY,
    value VARCHAR
);
"""

MIGRATIONS: list[Migration] = [Migration(500, "activation: outbox, timers, state", _V500)]
