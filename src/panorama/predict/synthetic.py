"""Synthetic customers with known behaviour, written straight into a store's `events` with DuckDB SQL.

For tests and `bench/predict.py` (a million customers in seconds), not for users: the demo
generator (`panorama demo generate`) is the realistic data set. Every customer has a latent
satisfaction s in [0, 1] that sets their lifetime (they stop buying at `churn_at`), their
support tickets and NPS answers; a purchase rate and a spend level set their orders. Pseudo-
random numbers are hashes of (customer, index, salt), so the output is the same on every run
and every thread count.

Events carry the `user_id` identifier; `events_sql_by_user()` maps them to profiles by it (what
identity resolution would do with one strong identifier).
"""

from __future__ import annotations

import datetime as dt

from panorama.store import Store

EVENTS_BY_USER = (
    "SELECT user_id AS profile_id, * FROM events WHERE user_id IS NOT NULL"
)


def generate(store: Store, customers: int, start: dt.date = dt.date(2021, 1, 1),
             end: dt.date = dt.date(2024, 1, 1), source: str = "synth", seed: int = 1,
             emails_per_year: int = 12) -> int:
    """Insert orders, product items, emails, tickets and NPS answers for `customers` people.

    Returns the number of events inserted.
    """
    cur = store.cursor()
    s, e = f"TIMESTAMP '{start}'", f"TIMESTAMP '{end}'"
    cur.execute(f"""
        CREATE OR REPLACE TEMP MACRO _u(a, b, c) AS
            ((hash(a, b, c, {int(seed)}) % 1000003) + 0.5) / 1000003.0;
        CREATE OR REPLACE TEMP MACRO _n(a, b, c) AS
            sqrt(-2 * ln(_u(a, b, c))) * cos(2 * pi() * _u(a, b, c || 'x'));
        CREATE OR REPLACE TEMP TABLE _synth_people AS
        SELECT i,
               'u' || lpad(CAST(i AS VARCHAR), 7, '0') AS user_id,
               sat,
               -- signup: 40% before the window's first year ends, the rest spread over the window
               {s} + to_microseconds(CAST(_u(i, 0, 'signup') * (epoch({e}) - epoch({s}) - 30 * 86400) * 1e6 AS BIGINT))
                   AS signup,
               rate, spend
        FROM (SELECT i, _u(i, 0, 'sat') AS sat,
                     0.5 + 6.0 * _u(i, 0, 'rate') * _u(i, 1, 'rate') AS rate,
                     exp(ln(40) + 0.6 * _n(i, 0, 'spend')) AS spend
              FROM range({int(customers)}) t(i));
        CREATE OR REPLACE TEMP TABLE _synth_life AS
        SELECT *, least(churn_at, {e}) AS active_end,
               greatest(epoch(least(churn_at, {e})) - epoch(signup), 0) / 86400.0 / 365.25 AS years
        FROM (SELECT *, signup + to_microseconds(CAST(
                        -ln(_u(i, 0, 'life')) * (0.4 + 3.5 * sat * sat) * 365.25 * 86400 * 1e6 AS BIGINT))
                        AS churn_at
              FROM _synth_people);
    """)
    before = store.scalar("SELECT count(*) FROM events")
    span = "(epoch(active_end) - epoch(signup)) * 1e6"
    at = lambda salt, k: f"signup + to_microseconds(CAST(_u(i, {k}, '{salt}') * {span} AS BIGINT))"  # noqa: E731
    cols = ("message_id, type, event, source, user_id, timestamp, received_at, identifiers, "
            "revenue, discount, quantity, order_id, product_id, category, price, value, channel, campaign_id")
    cur.execute(f"""
        INSERT INTO events ({cols})
        WITH o AS (
            SELECT i, user_id, k, {at('order', 'k')} AS ts,
                   round(spend * exp(0.35 * _n(i, k, 'amount')), 2) AS amount,
                   CASE WHEN _u(i, k, 'disc') < 0.25 THEN 5.0 ELSE 0.0 END AS discount
            FROM (SELECT *, unnest(range(CAST(floor(rate * years + _u(i, 0, 'n')) AS BIGINT) + 1)) AS k
                  FROM _synth_life WHERE years > 0)
        )
        SELECT '{source}:o' || user_id || '-' || k, 'track', 'Order Completed', '{source}', user_id, ts, ts,
               [{{'type': 'user_id', 'value': user_id}}], amount, discount, 1, user_id || '-' || k,
               NULL, NULL, NULL, NULL, 'web', NULL
        FROM o
        UNION ALL
        SELECT '{source}:i' || user_id || '-' || k, 'track', 'Product Purchased', '{source}', user_id, ts, ts,
               [{{'type': 'user_id', 'value': user_id}}], NULL, NULL, 1, user_id || '-' || k,
               'sku' || CAST(floor(_u(i, k, 'sku') * 200) AS INT),
               'cat' || CAST(floor(_u(i, k, 'cat') * _u(i, 0, 'breadth') * 8) AS INT), amount, NULL, NULL, NULL
        FROM o
    """)
    # emails: sent every month from signup to the end (also after churn); opened while active
    cur.execute(f"""
        INSERT INTO events ({cols})
        WITH m AS (
            SELECT i, user_id, sat, churn_at, k,
                   signup + to_microseconds(CAST(k * 365.25 / {int(emails_per_year)} * 86400 * 1e6 AS BIGINT)) AS ts
            FROM (SELECT *, unnest(range(CAST((epoch({e}) - epoch(signup)) / 86400 / 365.25
                                              * {int(emails_per_year)} AS BIGINT))) AS k
                  FROM _synth_life)
        )
        SELECT '{source}:m' || user_id || '-' || k, 'track', 'Email Sent', '{source}', user_id, ts, ts,
               [{{'type': 'user_id', 'value': user_id}}], NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               'email', 'c' || k
        FROM m WHERE ts < {e}
        UNION ALL
        SELECT '{source}:mo' || user_id || '-' || k, 'track', 'Email Opened', '{source}', user_id,
               ts + INTERVAL 3 HOUR, ts + INTERVAL 3 HOUR,
               [{{'type': 'user_id', 'value': user_id}}], NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               'email', 'c' || k
        FROM m WHERE ts < {e} AND ts < churn_at AND _u(i, k, 'open') < 0.15 + 0.4 * sat
    """)
    # support tickets (more when unhappy, one more shortly before leaving) with CSAT, NPS answers
    cur.execute(f"""
        INSERT INTO events ({cols})
        SELECT '{source}:t' || user_id || '-' || k, 'track', 'Ticket Opened', '{source}', user_id, ts, ts,
               [{{'type': 'user_id', 'value': user_id}}], NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               greatest(1, least(5, round(1 + 4 * sat + 0.7 * _n(i, k, 'csat')))), NULL, NULL
        FROM (SELECT i, user_id, sat, k,
                     CASE WHEN k = 0 THEN churn_at - INTERVAL 20 DAY ELSE {at('ticket', 'k')} END AS ts
              FROM (SELECT *, unnest(range(CAST(floor(3 * (1 - sat) * (1 - sat) * years + _u(i, 0, 'tn'))
                                                AS BIGINT) + 1)) AS k
                    FROM _synth_life WHERE years > 0))
        WHERE ts >= (SELECT min(signup) FROM _synth_people) AND ts < {e}
              AND (k > 0 OR _u(i, 0, 'leave_ticket') < 0.5)
        UNION ALL
        SELECT '{source}:n' || user_id, 'track', 'NPS Survey Answered', '{source}', user_id, ts, ts,
               [{{'type': 'user_id', 'value': user_id}}], NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               greatest(0, least(10, round(1 + 9 * sat + 1.2 * _n(i, 0, 'nps')))), NULL, NULL
        FROM (SELECT *, {at('nps', 0)} AS ts FROM _synth_life WHERE years > 0)
        WHERE _u(i, 0, 'asked') < 0.4
    """)
    return int(store.scalar("SELECT count(*) FROM events")) - int(before)


def truth(store: Store) -> list[tuple]:
    """(user_id, satisfaction, churn_at, rate, spend) of the last generated people."""
    return store.execute("SELECT user_id, sat, churn_at, rate, spend FROM _synth_life ORDER BY i").fetchall()


_COMMENTS = {
    "promoter": [
        "great service and fast delivery",
        "love the range, will order again",
        "excellent quality, happy",
        "friendly staff and quick refund",
        "brilliant app, easy checkout",
    ],
    "passive": [
        "okay overall, delivery a bit slow",
        "fine, prices could be better",
        "decent range, nothing special",
        "average experience",
        "good but the app crashes sometimes",
    ],
    "detractor": [
        "terrible delivery, parcel lost",
        "still waiting for my refund",
        "rude support, never again",
        "poor quality, item broke",
        "out of stock again, very disappointed",
    ],
}


def add_marketing(
    store: Store,
    campaigns: int = 36,
    source: str = "synth",
    target_share: float = 0.4,
    holdout_share: float = 0.1,
) -> int:
    """After `generate` on the same store: monthly campaigns (email / SMS / push in turn, discounts
    0/10/20/30%) to a random share of customers with a random holdout, opens or clicks from a
    latent per-channel response, redemptions (and the orders they cause) from a latent discount
    sensitivity; and comments on the NPS answers. Returns the number of events inserted."""
    cur = store.cursor()
    before = store.scalar("SELECT count(*) FROM events")
    start = store.scalar("SELECT min(signup) FROM _synth_people")
    end = store.scalar(f"SELECT max(timestamp) FROM events WHERE source = '{source}'")
    s, e = f"TIMESTAMP '{start}'", f"TIMESTAMP '{end}'"
    ids = "[{'type': 'user_id', 'value': user_id}]"
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE _synth_msgs AS
        SELECT i, user_id, k, ts, channel, disc, spend, churn_at,
               _u(i, k, 'hold') < {float(holdout_share)} AS hold,
               _u(i, k, 'eng') < 0.04 + 0.45 * _u(i, 0, 'resp_' || channel) AS eng,
               _u(i, k, 'conv') < 0.01 + 0.02 * _u(i, 0, 'resp_' || channel)
                                       * (1 + 2 * _u(i, 0, 'dsens') * disc / 10) AS conv
        FROM (SELECT l.*, k,
                     {s} + to_microseconds(CAST((k * 30.44 + 10) * 86400 * 1e6 AS BIGINT)) AS ts,
                     ['email', 'sms', 'push'][k % 3 + 1] AS channel,
                     [0, 10, 20, 30][(k // 3) % 4 + 1] AS disc
              FROM _synth_life l, range({int(campaigns)}) t(k))
        WHERE ts >= signup AND ts < {e} AND _u(i, k, 'target') < {float(target_share)}
    """)
    prefix = "CASE channel WHEN 'email' THEN 'Email' WHEN 'sms' THEN 'SMS' ELSE 'Push' END"
    cols = (
        "message_id, type, event, source, user_id, timestamp, received_at, identifiers, channel, campaign_id, "
        "properties, revenue, order_id"
    )
    props = "json_object('discount_pct', disc)"
    cur.execute(f"""
        INSERT INTO events ({cols})
        SELECT '{source}:cs' || user_id || '-' || k, 'track',
               CASE WHEN hold THEN 'Campaign Holdout' ELSE {prefix} || ' Sent' END, '{source}', user_id, ts, ts,
               {ids}, channel, 'cmp' || k, {props}, NULL, NULL
        FROM _synth_msgs
        UNION ALL
        SELECT '{source}:ce' || user_id || '-' || k, 'track',
               {prefix} || CASE WHEN channel = 'sms' THEN ' Clicked' ELSE ' Opened' END, '{source}', user_id,
               ts + INTERVAL 2 HOUR, ts + INTERVAL 2 HOUR, {ids}, channel, 'cmp' || k, {props}, NULL, NULL
        FROM _synth_msgs WHERE NOT hold AND eng AND ts < churn_at
        UNION ALL
        SELECT '{source}:cr' || user_id || '-' || k, 'track', 'Offer Redeemed', '{source}', user_id,
               ts + INTERVAL 1 DAY, ts + INTERVAL 1 DAY, {ids}, channel, 'cmp' || k, {props}, NULL, NULL
        FROM _synth_msgs WHERE NOT hold AND conv AND ts < churn_at
        UNION ALL
        SELECT '{source}:co' || user_id || '-' || k, 'track', 'Order Completed', '{source}', user_id,
               ts + INTERVAL 1 DAY, ts + INTERVAL 1 DAY, {ids}, 'web', 'cmp' || k, NULL,
               round(spend * (1 - disc / 100), 2), user_id || '-c' || k
        FROM _synth_msgs WHERE NOT hold AND conv AND ts < churn_at
    """)
    cur.execute("DROP TABLE _synth_msgs")
    cases = " ".join(
        f"WHEN value {cond} THEN {_sql_pick(_COMMENTS[name])}"
        for name, cond in (("promoter", ">= 9"), ("passive", ">= 7"), ("detractor", ">= 0"))
    )
    cur.execute(f"""
        UPDATE events SET properties = json_object('comment', CASE {cases} END)
        WHERE source = '{source}' AND event = 'NPS Survey Answered' AND hash(message_id) % 3 <> 0
    """)
    return int(store.scalar("SELECT count(*) FROM events")) - int(before)


def _sql_pick(options: list[str]) -> str:
    items = ", ".join("'" + o.replace("'", "''") + "'" for o in options)
    return f"[{items}][CAST(hash(message_id) % {len(options)} AS INTEGER) + 1]"
