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
