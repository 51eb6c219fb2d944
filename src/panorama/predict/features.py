"""Point-in-time features: for a cutoff T, one row per profile built only from data before T.

Everything is computed in DuckDB SQL over a narrow copy of the profile-resolved log
(`profile_events_sql`), so a feature set for a million profiles is a few vectorised queries.
The rule that makes it leak-free is simple and tested: every query reads
``_predict_events WHERE ts < T`` (events strictly before the cutoff) and source records whose
business timestamp is before T; a record's attributes (e.g. loyalty tier) are used only from a
version that was *ingested* before T, because records carry no history of their attributes.

Each feature has a description and a sentence template, so a model's per-customer
contributions read as plain facts ("no order for 143 days", "3 support tickets in 30 days").

Known limit: profiles come from the current identity graph. A merge caused by data after T
can join two histories that were separate at T (docs/predictions.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from panorama.config import PredictionsConfig
from panorama.store import Store, one

FEATURE_SET = "fs2"  # bump when the feature definitions change (models record it)
DAY_S = 86400.0


def _n(v: float) -> str:
    v = float(v)
    return f"{v:,.0f}" if abs(v - round(v)) < 1e-9 or abs(v) >= 100 else f"{v:,.1f}"


def _money(v: float) -> str:
    return f"{float(v):,.2f}"


def _days(v: float) -> str:
    v = float(v)
    if v >= 730:
        return f"{v / 365.25:.1f} years"
    return f"{v:,.0f} day" + ("" if round(v) == 1 else "s")


def _plural(v: float, one: str, many: str | None = None) -> str:
    many = many or one + "s"
    return f"{_n(v)} {one if round(float(v)) == 1 else many}"


def _pct(v: float) -> str:
    return f"{100 * float(v):.0f}%"


_TIERS = {1: "Bronze", 2: "Silver", 3: "Gold", 4: "Platinum"}


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    sentence: Callable[[float | None], str]


def _f(name: str, description: str, sentence: Callable[[float | None], str]) -> Feature:
    return Feature(name, description, sentence)


FEATURES: tuple[Feature, ...] = (
    # purchases (RFM, inter-purchase times, trend)
    _f("recency_days", "days since the last purchase",
       lambda v: "never ordered" if v is None else f"no order for {_days(v)}"),
    _f("frequency", "purchases before the cutoff",
       lambda v: "no orders yet" if not v else f"{_plural(v, 'order')} in total"),
    _f("orders_30d", "purchases in the last 30 days", lambda v: f"{_plural(v or 0, 'order')} in the last 30 days"),
    _f("orders_90d", "purchases in the last 90 days", lambda v: f"{_plural(v or 0, 'order')} in the last 90 days"),
    _f("orders_180d", "purchases in the last 180 days", lambda v: f"{_plural(v or 0, 'order')} in the last 180 days"),
    _f("orders_365d", "purchases in the last 365 days", lambda v: f"{_plural(v or 0, 'order')} in the last year"),
    _f("revenue_total", "revenue of all purchases",
       lambda v: "no spend yet" if not v else f"spent {_money(v)} in total"),
    _f("revenue_90d", "revenue in the last 90 days", lambda v: f"spent {_money(v or 0)} in the last 90 days"),
    _f("revenue_365d", "revenue in the last 365 days", lambda v: f"spent {_money(v or 0)} in the last year"),
    _f("revenue_prev_365d", "revenue 365-730 days before the cutoff",
       lambda v: f"spent {_money(v or 0)} in the year before last"),
    _f("spend_trend", "log((revenue last 365 d + 1) / (revenue the 365 d before + 1))",
       lambda v: "no spend trend yet" if v is None else
       ("spend up on the year before" if v > 0.05 else "spend down on the year before" if v < -0.05
        else "spend flat on the year before")),
    _f("order_trend", "orders in the last 180 d minus orders in the 180 d before",
       lambda v: "ordering as often as before" if not v else
       f"{_plural(abs(v), 'order')} {'more' if v > 0 else 'fewer'} in the last 6 months than in the 6 before"),
    _f("avg_order_value", "mean revenue per purchase",
       lambda v: "no orders yet" if v is None else f"average order {_money(v)}"),
    _f("max_order_value", "largest purchase", lambda v: "no orders yet" if v is None else f"largest order {_money(v)}"),
    _f("days_since_first_order", "days since the first purchase",
       lambda v: "never ordered" if v is None else f"first order {_days(v)} ago"),
    _f("mean_gap_days", "mean days between purchase days",
       lambda v: "no repeat order yet" if v is None else f"orders every {_days(v)} on average"),
    _f("gap_std_days", "standard deviation of days between purchase days",
       lambda v: "no repeat pattern yet" if v is None else f"gaps between orders vary by {_days(v)}"),
    _f("recency_ratio", "days since the last purchase / mean gap",
       lambda v: "no usual gap yet" if v is None else f"last order {v:.1f}x their usual gap ago"),
    _f("discount_share", "share of purchases with a discount",
       lambda v: "no orders yet" if v is None else f"{_pct(v)} of orders used a discount"),
    _f("categories", "distinct categories bought",
       lambda v: "no category bought yet" if not v else f"bought from {_plural(v, 'category', 'categories')}"),
    _f("products", "distinct products bought",
       lambda v: "no product bought yet" if not v else f"bought {_plural(v, 'different product')}"),
    # messaging engagement (email, SMS, push)
    _f("messages_90d", "messages sent to them in the last 90 days",
       lambda v: f"received {_plural(v or 0, 'message')} in 90 days"),
    _f("opens_90d", "messages opened in the last 90 days", lambda v: f"opened {_plural(v or 0, 'message')} in 90 days"),
    _f("clicks_90d", "messages clicked in the last 90 days",
       lambda v: f"clicked {_plural(v or 0, 'message')} in 90 days"),
    _f("open_rate_365d", "opens / messages in the last 365 days",
       lambda v: "no messages in the last year" if v is None else f"opened {_pct(v)} of messages in the last year"),
    _f("click_rate_365d", "clicks / messages in the last 365 days",
       lambda v: "no messages in the last year" if v is None else f"clicked {_pct(v)} of messages in the last year"),
    _f("unsubscribed", "has unsubscribed (1) or not (0)",
       lambda v: "unsubscribed from messages" if v else "still subscribed (or never messaged)"),
    _f("days_since_engagement", "days since the last open or click",
       lambda v: "never opened or clicked a message" if v is None else f"last opened or clicked a message {_days(v)} ago"),
    _f("offers_redeemed_365d", "offers redeemed in the last 365 days",
       lambda v: f"redeemed {_plural(v or 0, 'offer')} in the last year"),
    # web and app activity
    _f("web_events_30d", "page views, screens and browsing events in the last 30 days",
       lambda v: f"{_plural(v or 0, 'site or app event')} in 30 days"),
    _f("web_days_90d", "days with site or app activity in the last 90 days",
       lambda v: f"visited on {_plural(v or 0, 'day')} in the last 90 days"),
    _f("days_since_web", "days since the last site or app activity",
       lambda v: "never visited the site or app" if v is None else f"last visit {_days(v)} ago"),
    _f("product_views_30d", "products viewed in the last 30 days",
       lambda v: f"viewed {_plural(v or 0, 'product')} in 30 days"),
    _f("cart_adds_90d", "products added to the cart in the last 90 days",
       lambda v: f"added {_plural(v or 0, 'product')} to the cart in 90 days"),
    _f("checkouts_90d", "checkouts started in the last 90 days",
       lambda v: f"started {_plural(v or 0, 'checkout')} in 90 days"),
    # support and satisfaction
    _f("tickets_30d", "support tickets in the last 30 days",
       lambda v: f"{_plural(v or 0, 'support ticket')} in 30 days"),
    _f("tickets_365d", "support tickets in the last 365 days",
       lambda v: f"{_plural(v or 0, 'support ticket')} in the last year"),
    _f("last_csat", "last CSAT answer (1-5)",
       lambda v: "no CSAT answer" if v is None else f"last CSAT score {_n(v)}/5"),
    _f("avg_csat", "mean CSAT answer", lambda v: "no CSAT answer" if v is None else f"average CSAT {v:.1f}/5"),
    _f("last_nps", "last NPS answer (0-10)",
       lambda v: "never answered an NPS survey" if v is None else f"last NPS answer {_n(v)}/10"),
    # relationship
    _f("tenure_days", "days since first seen (any event or record)",
       lambda v: "new" if v is None else f"known for {_days(v)}"),
    _f("days_since_activity", "days since the last event of any kind",
       lambda v: "no activity" if v is None else f"last activity of any kind {_days(v)} ago"),
    _f("loyalty_member", "loyalty member (1) or not (0)",
       lambda v: "loyalty member" if v else "not a loyalty member"),
    _f("loyalty_days", "days since joining the loyalty programme",
       lambda v: "not a loyalty member" if v is None else f"loyalty member for {_days(v)}"),
    _f("loyalty_tier", "loyalty tier rank (1 Bronze .. 4 Platinum), if known at the cutoff",
       lambda v: "loyalty tier unknown" if v is None else f"loyalty tier {_TIERS.get(round(v), _n(v))}"),
    # subscriptions
    _f("subscription_active", "has an active subscription (last subscription event is a start or renewal)",
       lambda v: "active subscriber" if v else "no active subscription"),
    _f("subscription_days", "days since the subscription started or was last renewed",
       lambda v: "no active subscription" if v is None else f"subscribed or renewed {_days(v)} ago"),
    _f("subscription_cancels", "subscriptions cancelled before",
       lambda v: "never cancelled a subscription" if not v else f"cancelled {_plural(v, 'subscription')} before"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
BY_NAME = {f.name: f for f in FEATURES}


def sentence(name: str, value: float | None) -> str:
    if value is not None and value != value:  # NaN
        value = None
    feature = BY_NAME.get(name)
    return feature.sentence(value) if feature else f"{name} = {value}"


def ts_literal(t: dt.datetime) -> str:
    return f"TIMESTAMP '{t.strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


@dataclass(frozen=True)
class Sources:
    """SQL of the inputs: events with `profile_id`, and records with `profile_id` (or None)."""

    events_sql: str
    records_sql: str | None

    @classmethod
    def from_store(cls, store: Store) -> Sources:
        from panorama.profiles import profile_events_sql
        from panorama.profiles.export import membership_sql

        records = f"""
            SELECT m.profile_id, r.source, r.ts, r.ingested_at, r.identifiers, r.attributes
            FROM records r JOIN ({membership_sql(store)}) m
              ON m.source = r.source AND m.record_id = r.record_id
        """
        return cls(profile_events_sql(store), records)


class FeatureBuilder:
    """Features and labels at cutoffs, over a narrow copy of the log before `until`.

    The copy lives in temporary tables of the store's cursor for the calling thread.
    """

    def __init__(self, store: Store, config: PredictionsConfig, sources: Sources | None = None):
        self.store = store
        self.config = config
        self.sources = sources or Sources.from_store(store)
        self.until: dt.datetime | None = None

    @property
    def cur(self):
        return self.store.cursor()

    def prepare(self, until: dt.datetime) -> None:
        """Copy events strictly before `until` (and the records) into temporary tables."""
        purchase = _sql_list(self.config.purchase_events)
        items = _sql_list(self.config.item_events)
        sub_start = _sql_list(self.config.subscription.start_events)
        sub_cancel = _sql_list(self.config.subscription.cancel_events)
        self.cur.execute(f"""
            CREATE OR REPLACE TEMP TABLE _predict_events AS
            SELECT profile_id, ts, kind,
                   CASE WHEN kind = 'purchase' THEN coalesce(order_id, message_id) END AS oid,
                   CASE WHEN kind = 'purchase'
                        THEN coalesce(revenue, value, price * coalesce(quantity, 1), 0) END AS amount,
                   CASE WHEN kind = 'purchase' THEN coalesce(discount, 0) END AS discount,
                   CASE WHEN is_item THEN category END AS category,
                   CASE WHEN is_item THEN product_id END AS product_id,
                   CASE WHEN kind IN ('ticket', 'nps') THEN value END AS value
            FROM (
                SELECT profile_id, "timestamp" AS ts, message_id, order_id, revenue, value, price,
                       quantity, discount, category, product_id,
                       list_contains({items}, event) AS is_item,
                       CASE
                         WHEN list_contains({purchase}, event) THEN 'purchase'
                         WHEN list_contains({sub_start}, event) THEN 'sub_start'
                         WHEN list_contains({sub_cancel}, event) THEN 'sub_cancel'
                         WHEN type IN ('page', 'screen') THEN 'web'
                         WHEN type <> 'track' OR event IS NULL THEN 'other'
                         WHEN regexp_matches(lower(event), '^(product|products) (viewed|list viewed|searched|clicked)')
                           THEN 'view'
                         WHEN regexp_matches(lower(event), '^(product added|cart viewed|product added to wishlist)')
                           THEN 'cart'
                         WHEN lower(event) IN ('checkout started', 'checkout step viewed', 'payment info entered')
                           THEN 'checkout'
                         WHEN regexp_matches(lower(event), '(unsubscribed|opted out)') THEN 'unsub'
                         WHEN regexp_matches(lower(event), '^(email|sms|push|message|notification|in-app).*(clicked)')
                           THEN 'click'
                         WHEN regexp_matches(lower(event), '^(email|sms|push|message|notification|in-app).*(opened|viewed)')
                           THEN 'open'
                         WHEN regexp_matches(lower(event), '^(email|sms|push|message|notification|in-app).*(sent|delivered)')
                           THEN 'sent'
                         WHEN regexp_matches(lower(event), '(offer|coupon|promotion) (redeemed|applied)') THEN 'redeemed'
                         WHEN regexp_matches(lower(event), 'ticket (opened|created|submitted)') THEN 'ticket'
                         WHEN regexp_matches(lower(event), '(nps|net promoter)') THEN 'nps'
                         ELSE 'other'
                       END AS kind
                FROM ({self.sources.events_sql})
                WHERE "timestamp" < {ts_literal(until)}
            )
        """)
        if self.sources.records_sql:
            self.cur.execute(f"""
                CREATE OR REPLACE TEMP TABLE _predict_records AS
                SELECT profile_id, ts, ingested_at,
                       list_contains(list_transform(identifiers, x -> x.type), 'loyalty_id')
                         OR json_exists(attributes, '$.loyalty_tier') AS is_loyalty,
                       CASE lower(attributes->>'loyalty_tier')
                         WHEN 'bronze' THEN 1 WHEN 'silver' THEN 2 WHEN 'gold' THEN 3
                         WHEN 'platinum' THEN 4 END AS tier
                FROM ({self.sources.records_sql})
                WHERE ts < {ts_literal(until)}
            """)
        else:
            self.cur.execute(
                "CREATE OR REPLACE TEMP TABLE _predict_records (profile_id VARCHAR, ts TIMESTAMP, "
                "ingested_at TIMESTAMP, is_loyalty BOOLEAN, tier INTEGER)"
            )
        self.until = until

    def _check(self, cutoff: dt.datetime) -> None:
        if self.until is None or cutoff > self.until:
            raise RuntimeError(f"prepare(until >= {cutoff}) first")

    def span(self) -> dict:
        """First and last purchase and event times, and profile counts, in the copy."""
        row = one(self.cur.execute("""
            SELECT min(ts) FILTER (kind = 'purchase'), max(ts) FILTER (kind = 'purchase'),
                   min(ts), max(ts), count(*) FILTER (kind = 'purchase'),
                   count(DISTINCT profile_id) FILTER (kind = 'purchase'),
                   min(ts) FILTER (kind IN ('sub_start', 'sub_cancel')),
                   count(*) FILTER (kind IN ('sub_start', 'sub_cancel'))
            FROM _predict_events
        """))
        keys = ("first_purchase", "last_purchase", "first_event", "last_event", "purchases", "buyers",
                "first_subscription", "subscription_events")
        return dict(zip(keys, row, strict=True))

    def features(self, cutoff: dt.datetime) -> pd.DataFrame:
        """One row per profile seen before `cutoff` (any event or record): profile_id + FEATURES."""
        self._check(cutoff)
        c = ts_literal(cutoff)
        d = lambda n: f"{c} - INTERVAL {n} DAY"  # noqa: E731
        age = lambda col: f"(epoch({c}) - epoch({col})) / {DAY_S}"  # noqa: E731
        sql = f"""
        WITH ev AS (SELECT * FROM _predict_events WHERE ts < {c}),
        orders AS (
            SELECT profile_id, oid, min(ts) AS ts, max(amount) AS amount, max(discount) AS discount
            FROM ev WHERE kind = 'purchase' GROUP BY profile_id, oid
        ),
        o AS (
            SELECT profile_id,
                   count(*) AS frequency, min(ts) AS first_order, max(ts) AS last_order,
                   sum(amount) AS revenue_total, avg(amount) AS avg_order_value,
                   max(amount) AS max_order_value,
                   count(*) FILTER (ts >= {d(30)}) AS orders_30d,
                   count(*) FILTER (ts >= {d(90)}) AS orders_90d,
                   count(*) FILTER (ts >= {d(180)}) AS orders_180d,
                   count(*) FILTER (ts >= {d(360)} AND ts < {d(180)}) AS orders_prev_180d,
                   count(*) FILTER (ts >= {d(365)}) AS orders_365d,
                   coalesce(sum(amount) FILTER (ts >= {d(90)}), 0) AS revenue_90d,
                   coalesce(sum(amount) FILTER (ts >= {d(365)}), 0) AS revenue_365d,
                   coalesce(sum(amount) FILTER (ts >= {d(730)} AND ts < {d(365)}), 0) AS revenue_prev_365d,
                   avg(CASE WHEN discount > 0 THEN 1.0 ELSE 0.0 END) AS discount_share
            FROM orders GROUP BY profile_id
        ),
        days AS (SELECT DISTINCT profile_id, CAST(ts AS DATE) AS day FROM orders),
        gaps AS (
            SELECT profile_id, avg(gap) AS mean_gap_days, stddev_samp(gap) AS gap_std_days
            FROM (SELECT profile_id,
                         date_diff('day', lag(day) OVER (PARTITION BY profile_id ORDER BY day), day) AS gap FROM days)
            WHERE gap IS NOT NULL GROUP BY profile_id
        ),
        it AS (
            SELECT profile_id, count(DISTINCT category) AS categories,
                   count(DISTINCT product_id) AS products
            FROM ev WHERE category IS NOT NULL OR product_id IS NOT NULL GROUP BY profile_id
        ),
        a AS (
            SELECT profile_id, min(ts) AS first_seen, max(ts) AS last_seen,
                   count(*) FILTER (kind = 'sent' AND ts >= {d(90)}) AS messages_90d,
                   count(*) FILTER (kind = 'open' AND ts >= {d(90)}) AS opens_90d,
                   count(*) FILTER (kind = 'click' AND ts >= {d(90)}) AS clicks_90d,
                   count(*) FILTER (kind = 'sent' AND ts >= {d(365)}) AS messages_365d,
                   count(*) FILTER (kind = 'open' AND ts >= {d(365)}) AS opens_365d,
                   count(*) FILTER (kind = 'click' AND ts >= {d(365)}) AS clicks_365d,
                   max(CASE WHEN kind = 'unsub' THEN 1 ELSE 0 END) AS unsubscribed,
                   max(ts) FILTER (kind IN ('open', 'click')) AS last_engagement,
                   count(*) FILTER (kind = 'redeemed' AND ts >= {d(365)}) AS offers_redeemed_365d,
                   count(*) FILTER (kind IN ('web', 'view', 'cart', 'checkout') AND ts >= {d(30)}) AS web_events_30d,
                   count(DISTINCT CAST(ts AS DATE)) FILTER (kind IN ('web', 'view', 'cart', 'checkout')
                                                           AND ts >= {d(90)}) AS web_days_90d,
                   max(ts) FILTER (kind IN ('web', 'view', 'cart', 'checkout')) AS last_web,
                   count(*) FILTER (kind = 'view' AND ts >= {d(30)}) AS product_views_30d,
                   count(*) FILTER (kind = 'cart' AND ts >= {d(90)}) AS cart_adds_90d,
                   count(*) FILTER (kind = 'checkout' AND ts >= {d(90)}) AS checkouts_90d,
                   count(*) FILTER (kind = 'ticket' AND ts >= {d(30)}) AS tickets_30d,
                   count(*) FILTER (kind = 'ticket' AND ts >= {d(365)}) AS tickets_365d,
                   arg_max(value, ts) FILTER (kind = 'ticket' AND value BETWEEN 1 AND 5) AS last_csat,
                   avg(value) FILTER (kind = 'ticket' AND value BETWEEN 1 AND 5) AS avg_csat,
                   arg_max(value, ts) FILTER (kind = 'nps' AND value BETWEEN 0 AND 10) AS last_nps,
                   arg_max(kind, ts) FILTER (kind IN ('sub_start', 'sub_cancel')) AS last_sub_kind,
                   max(ts) FILTER (kind = 'sub_start') AS last_sub_start,
                   count(*) FILTER (kind = 'sub_cancel') AS sub_cancels
            FROM ev GROUP BY profile_id
        ),
        rec AS (
            SELECT profile_id, min(ts) AS first_record,
                   min(ts) FILTER (is_loyalty) AS loyalty_since,
                   arg_max(tier, ingested_at) FILTER (is_loyalty AND tier IS NOT NULL
                                                      AND ingested_at < {c}) AS loyalty_tier
            FROM _predict_records WHERE ts < {c} GROUP BY profile_id
        ),
        ids AS (SELECT profile_id FROM a UNION SELECT profile_id FROM rec)
        SELECT ids.profile_id,
               {age('o.last_order')} AS recency_days,
               coalesce(o.frequency, 0) AS frequency,
               coalesce(o.orders_30d, 0) AS orders_30d,
               coalesce(o.orders_90d, 0) AS orders_90d,
               coalesce(o.orders_180d, 0) AS orders_180d,
               coalesce(o.orders_365d, 0) AS orders_365d,
               coalesce(o.revenue_total, 0) AS revenue_total,
               coalesce(o.revenue_90d, 0) AS revenue_90d,
               coalesce(o.revenue_365d, 0) AS revenue_365d,
               coalesce(o.revenue_prev_365d, 0) AS revenue_prev_365d,
               CASE WHEN o.frequency > 0 THEN ln((o.revenue_365d + 1) / (o.revenue_prev_365d + 1)) END
                   AS spend_trend,
               coalesce(o.orders_180d, 0) - coalesce(o.orders_prev_180d, 0) AS order_trend,
               o.avg_order_value, o.max_order_value,
               {age('o.first_order')} AS days_since_first_order,
               g.mean_gap_days, g.gap_std_days,
               {age('o.last_order')} / CASE WHEN g.mean_gap_days > 0 THEN g.mean_gap_days END AS recency_ratio,
               o.discount_share,
               coalesce(it.categories, 0) AS categories,
               coalesce(it.products, 0) AS products,
               coalesce(a.messages_90d, 0) AS messages_90d,
               coalesce(a.opens_90d, 0) AS opens_90d,
               coalesce(a.clicks_90d, 0) AS clicks_90d,
               CASE WHEN a.messages_365d > 0 THEN least(a.opens_365d / a.messages_365d, 1) END AS open_rate_365d,
               CASE WHEN a.messages_365d > 0 THEN least(a.clicks_365d / a.messages_365d, 1) END AS click_rate_365d,
               coalesce(a.unsubscribed, 0) AS unsubscribed,
               {age('a.last_engagement')} AS days_since_engagement,
               coalesce(a.offers_redeemed_365d, 0) AS offers_redeemed_365d,
               coalesce(a.web_events_30d, 0) AS web_events_30d,
               coalesce(a.web_days_90d, 0) AS web_days_90d,
               {age('a.last_web')} AS days_since_web,
               coalesce(a.product_views_30d, 0) AS product_views_30d,
               coalesce(a.cart_adds_90d, 0) AS cart_adds_90d,
               coalesce(a.checkouts_90d, 0) AS checkouts_90d,
               coalesce(a.tickets_30d, 0) AS tickets_30d,
               coalesce(a.tickets_365d, 0) AS tickets_365d,
               a.last_csat, a.avg_csat, a.last_nps,
               {age('least(coalesce(a.first_seen, rec.first_record), coalesce(rec.first_record, a.first_seen))')}
                   AS tenure_days,
               {age('a.last_seen')} AS days_since_activity,
               CASE WHEN rec.loyalty_since IS NOT NULL THEN 1 ELSE 0 END AS loyalty_member,
               {age('rec.loyalty_since')} AS loyalty_days,
               rec.loyalty_tier,
               CASE WHEN a.last_sub_kind = 'sub_start' THEN 1 ELSE 0 END AS subscription_active,
               CASE WHEN a.last_sub_kind = 'sub_start' THEN {age('a.last_sub_start')} END AS subscription_days,
               coalesce(a.sub_cancels, 0) AS subscription_cancels
        FROM ids
        LEFT JOIN o USING (profile_id)
        LEFT JOIN gaps g USING (profile_id)
        LEFT JOIN it USING (profile_id)
        LEFT JOIN a USING (profile_id)
        LEFT JOIN rec USING (profile_id)
        ORDER BY ids.profile_id
        """
        df = self.cur.execute(sql).df()
        for name in FEATURE_NAMES:  # float32: half the memory; LightGBM bins the values anyway
            df[name] = pd.to_numeric(df[name], errors="coerce").astype("float32")
        return df[["profile_id", *FEATURE_NAMES]]

    def labels(self, cutoff: dt.datetime, horizon_days: int) -> pd.DataFrame:
        """Per profile with a purchase in [cutoff, cutoff + horizon): orders and revenue."""
        end = cutoff + dt.timedelta(days=horizon_days)
        self._check(end)
        return self.cur.execute(f"""
            SELECT profile_id, count(*) AS future_orders, sum(amount) AS future_revenue
            FROM (SELECT profile_id, oid, max(amount) AS amount FROM _predict_events
                  WHERE kind = 'purchase' AND ts >= {ts_literal(cutoff)} AND ts < {ts_literal(end)}
                  GROUP BY profile_id, oid)
            GROUP BY profile_id
        """).df()

    def cancellations(self, cutoff: dt.datetime, horizon_days: int) -> pd.DataFrame:
        """Profiles with a subscription cancellation in [cutoff, cutoff + horizon)."""
        end = cutoff + dt.timedelta(days=horizon_days)
        self._check(end)
        return self.cur.execute(f"""
            SELECT DISTINCT profile_id, 1.0 AS cancelled FROM _predict_events
            WHERE kind = 'sub_cancel' AND ts >= {ts_literal(cutoff)} AND ts < {ts_literal(end)}
        """).df()

    def rfm_summary(self, cutoff: dt.datetime) -> pd.DataFrame:
        """BTYD inputs per customer (lifetimes' conventions, days): x repeat purchase days,
        t_x days from first to last purchase day, T days from the first purchase day to the
        cutoff, monetary = mean revenue of the repeat purchase days (0 when x = 0)."""
        self._check(cutoff)
        c = ts_literal(cutoff)
        return self.cur.execute(f"""
            WITH d AS (
                SELECT profile_id, CAST(ts AS DATE) AS day, sum(amount) AS amount
                FROM (SELECT profile_id, oid, min(ts) AS ts, max(amount) AS amount
                      FROM _predict_events WHERE kind = 'purchase' AND ts < {c} GROUP BY profile_id, oid)
                GROUP BY profile_id, day
            ), f AS (SELECT profile_id, min(day) AS first_day FROM d GROUP BY profile_id)
            SELECT d.profile_id,
                   count(*) - 1 AS x,
                   CAST(date_diff('day', f.first_day, max(d.day)) AS DOUBLE) AS t_x,
                   (epoch({c}) - epoch(CAST(f.first_day AS TIMESTAMP))) / {DAY_S} AS T,
                   coalesce(avg(d.amount) FILTER (d.day > f.first_day), 0) AS monetary
            FROM d JOIN f USING (profile_id)
            GROUP BY d.profile_id, f.first_day
            ORDER BY d.profile_id
        """).df()

    def fingerprint(self, cutoff: dt.datetime) -> str:
        """A hash of the data before `cutoff` a model depends on (events and their profiles)."""
        self._check(cutoff)
        c = ts_literal(cutoff)
        row = one(self.cur.execute(f"""
            SELECT count(*), count(DISTINCT profile_id),
                   coalesce(sum(hash(profile_id, ts, kind, oid, amount, category, value)), 0)
            FROM _predict_events WHERE ts < {c}
        """))
        rec = one(self.cur.execute(f"""
            SELECT count(*), coalesce(sum(hash(profile_id, ts, is_loyalty,
                                               CASE WHEN ingested_at < {c} THEN tier END)), 0)
            FROM _predict_records WHERE ts < {c}
        """))
        text = f"{FEATURE_SET}|{row}|{rec}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]
