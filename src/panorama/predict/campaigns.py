"""Campaign history: preferred channel, offer response (uplift), preferred discount, next best offer.

Campaign history is read from the log: every event with a `campaign_id` whose name is a message
event (`Email|SMS|Push ... Sent|Opened|Clicked`, `Campaign Holdout`, `Offer Redeemed`). One row
per (profile, campaign): channel, discount (`discount_pct` property), sent or held out (control),
engaged (opened or clicked), and the *response*: an order within `predictions.response_days` of
the send -- the same outcome for the treated and the held-out, so their difference is the uplift.

- Preferred channel: per channel, engaged messages / messages, smoothed toward the channel's
  mean with a Beta prior fitted by the method of moments (empirical Bayes), as a lift over the
  channel's mean; the preferred channel has the highest lift among the channels the customer
  was reached on in the last year.
- Offer response: a T-learner: LightGBM P(response | x, offer) on the treated, and
  P(response | x) on the control groups (holdouts), with the offer's discount and channel as
  features. Uplift = P_t - P_c. Expected incremental profit of an offer for a customer:
  AOV x [P_t x (margin - discount) - P_c x margin] - cost.
- Preferred discount: the discount level (of those in the history) maximising that profit.
- Off-policy: on the campaigns after the as-of date, IPS and doubly-robust estimates of the
  profit of "send only where the expected profit is positive" against the current policy
  ("send to everyone targeted"), using the randomised holdouts as the logging propensities.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from panorama.predict import models as M
from panorama.predict.features import BY_NAME, FEATURE_NAMES, Feature, ts_literal
from panorama.store import one

MESSAGE_EVENT = r"^(email|sms|push|message|notification|in-app|campaign|offer|coupon)"
CHANNEL_FEATURES = ("ch_email", "ch_sms", "ch_push")
OFFER_FEATURES = (
    Feature(
        "offer_discount", "the offer's discount (%)", lambda v: f"a {float(v or 0):.0f}% discount"
    ),
    Feature("ch_email", "sent by email", lambda v: "sent by email" if v else "not by email"),
    Feature("ch_sms", "sent by SMS", lambda v: "sent by SMS" if v else "not by SMS"),
    Feature("ch_push", "sent by push", lambda v: "sent by push" if v else "not by push"),
    Feature(
        "discount_click_lift",
        "their click rate on discounted messages / on messages without a discount (smoothed)",
        lambda v: (
            "no click history"
            if v is None
            else f"clicks {float(v):.1f}x as often when the message carries a discount"
        ),
    ),
    Feature(
        "discount_redeem_rate",
        "their redemptions / discounted messages received (smoothed)",
        lambda v: (
            "no discounted messages"
            if v is None
            else f"redeemed {100 * float(v):.1f}% of discounted offers"
        ),
    ),
    Feature(
        "channel_lift",
        "their engagement on the offer's channel / the channel's average",
        lambda v: (
            "no engagement history on this channel"
            if v is None
            else f"engages {float(v):.1f}x as much as average on this channel"
        ),
    ),
)
OFFER_FEATURE_NAMES = tuple(f.name for f in OFFER_FEATURES)
for _f in OFFER_FEATURES:
    BY_NAME.setdefault(_f.name, _f)
X_COLUMNS = (*FEATURE_NAMES, *OFFER_FEATURE_NAMES)


def prepare(cur, events_sql: str, until: dt.datetime, response_days: int) -> int:
    """Temp table `_predict_campaigns`: one row per (profile, campaign) sent or held out before `until`."""
    u = ts_literal(until)
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE _predict_campaigns AS
        WITH m AS (
            SELECT profile_id, campaign_id, "timestamp" AS ts, lower(event) AS ev, lower(channel) AS channel,
                   TRY_CAST(json_extract_string(properties, '$.discount_pct') AS DOUBLE) AS discount_pct
            FROM ({events_sql})
            WHERE campaign_id IS NOT NULL AND "timestamp" < {u}
              AND regexp_matches(lower(event), '{MESSAGE_EVENT}')
        ), c AS (
            SELECT profile_id, campaign_id,
                   min(ts) FILTER (regexp_matches(ev, '(sent|delivered|holdout|control)$')) AS sent_at,
                   any_value(channel) FILTER (channel IN ('email', 'sms', 'push')) AS channel,
                   coalesce(max(discount_pct), 0) AS discount,
                   bool_or(regexp_matches(ev, '(sent|delivered)$')) AS treated,
                   bool_or(regexp_matches(ev, '(holdout|control)')) AS holdout,
                   bool_or(regexp_matches(ev, '(opened|clicked)$')) AS engaged,
                   bool_or(regexp_matches(ev, 'clicked$')) AS clicked,
                   bool_or(regexp_matches(ev, '(redeemed|applied)')) AS redeemed,
                   bool_or(regexp_matches(ev, '(unsubscribed|opted out)')) AS msg_unsubscribed
            FROM m GROUP BY profile_id, campaign_id
        ), o AS (
            SELECT profile_id, oid, min(ts) AS ts, max(amount) AS amount
            FROM _predict_events WHERE kind = 'purchase' GROUP BY profile_id, oid
        )
        SELECT c.profile_id, c.campaign_id, c.sent_at, c.channel, c.discount,
               c.treated AND NOT c.holdout AS treated, c.holdout, c.engaged, c.clicked, c.redeemed, c.msg_unsubscribed,
               count(o.oid) > 0 AS responded, coalesce(sum(o.amount), 0) AS response_revenue
        FROM c LEFT JOIN o ON o.profile_id = c.profile_id AND o.ts >= c.sent_at
                          AND o.ts < c.sent_at + INTERVAL {int(response_days)} DAY
        WHERE c.sent_at IS NOT NULL AND c.channel IS NOT NULL
        GROUP BY ALL
    """)
    return one(cur.execute("SELECT count(*) FROM _predict_campaigns"))[0]


def campaigns(cur, start: dt.datetime | None, end: dt.datetime) -> pd.DataFrame:
    lo = f"AND sent_at >= {ts_literal(start)}" if start else ""
    return cur.execute(f"""SELECT * FROM _predict_campaigns WHERE sent_at < {ts_literal(end)} {lo}
                           ORDER BY profile_id, sent_at""").df()


def responses_complete(cur, end: dt.datetime, response_days: int) -> pd.DataFrame:
    """Campaign rows whose response window ends by `end` (so their outcome is known at `end`)."""
    return campaigns(cur, None, end - dt.timedelta(days=response_days))


# --- preferred channel (empirical Bayes) ---------------------------------------------------------


SUMMARY_COLUMNS = ("sends", "engaged", "last", "unsub", "c_hi", "n_hi", "c_lo", "n_lo", "r_hi")


def sent_summary(cur, cutoff: dt.datetime) -> pd.DataFrame:
    """`summarise_sent` of the campaign rows sent before `cutoff`, aggregated in DuckDB (at a
    million customers the rows themselves are tens of millions)."""
    click = "CAST(clicked AS DOUBLE)"
    return cur.execute(f"""
        SELECT profile_id, channel, count(*) AS sends, sum(CAST(engaged AS BIGINT)) AS engaged,
               max(sent_at) AS last, bool_or(msg_unsubscribed) AS unsub,
               coalesce(sum({click}) FILTER (discount > 0), 0) AS c_hi,
               CAST(count(*) FILTER (discount > 0) AS DOUBLE) AS n_hi,
               coalesce(sum({click}) FILTER (NOT discount > 0), 0) AS c_lo,
               CAST(count(*) FILTER (NOT discount > 0) AS DOUBLE) AS n_lo,
               coalesce(sum(CAST(redeemed AS DOUBLE)) FILTER (discount > 0), 0) AS r_hi
        FROM _predict_campaigns WHERE treated AND sent_at < {ts_literal(cutoff)}
        GROUP BY profile_id, channel ORDER BY profile_id, channel
    """).df()


def sent_offers(cur, cutoff: dt.datetime) -> pd.DataFrame:
    """(channel, discount, treated) of the messages sent before `cutoff`, one row per pair."""
    return cur.execute(f"""
        SELECT DISTINCT channel, discount, treated FROM _predict_campaigns
        WHERE treated AND sent_at < {ts_literal(cutoff)} ORDER BY channel, discount
    """).df()


def summarise_sent(hist: pd.DataFrame) -> pd.DataFrame:
    """Per (profile, channel) of the sent rows of `hist`: sends, engaged, last send, unsubscribed,
    and the sums behind the discount features (clicks and messages with / without a discount,
    redemptions)."""
    sent = hist[hist["treated"]]
    has = sent["discount"] > 0
    clicked = sent["clicked"].astype(float) if "clicked" in sent else sent["engaged"].astype(float)
    f = pd.DataFrame(
        {
            "profile_id": sent["profile_id"],
            "channel": sent["channel"],
            "engaged": sent["engaged"],
            "sent_at": sent["sent_at"],
            "msg_unsubscribed": sent["msg_unsubscribed"],
            "c_hi": clicked * has,
            "n_hi": has.astype(float),
            "c_lo": clicked * ~has,
            "n_lo": (~has).astype(float),
            "r_hi": sent["redeemed"].astype(float) * has,
        }
    )
    return (
        f.groupby(["profile_id", "channel"])
        .agg(
            sends=("engaged", "size"),
            engaged=("engaged", "sum"),
            last=("sent_at", "max"),
            unsub=("msg_unsubscribed", "max"),
            c_hi=("c_hi", "sum"),
            n_hi=("n_hi", "sum"),
            c_lo=("c_lo", "sum"),
            n_lo=("n_lo", "sum"),
            r_hi=("r_hi", "sum"),
        )
        .reset_index()
    )


def channel_scores(
    hist: pd.DataFrame,
    channels: list[str],
    cutoff: dt.datetime,
    reach_days: int = 365,
    summary: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per profile and channel: sends, engaged, the smoothed engagement rate and its lift; the
    preferred channel. `hist`: campaign rows sent before `cutoff`, or None with `summary` (from
    `sent_summary`)."""
    g = summarise_sent(hist) if summary is None else summary
    out = []
    priors = {}
    for ch in channels:
        d = g.loc[
            g["channel"] == ch, ["profile_id", "channel", "sends", "engaged", "last", "unsub"]
        ]
        if d.empty:
            continue
        m = d["engaged"].sum() / d["sends"].sum()
        many = d[d["sends"] >= 3]
        rate = many["engaged"] / many["sends"]
        noise = (m * (1 - m) / many["sends"]).mean() if len(many) else 0.0
        between = float(rate.var()) - float(noise) if len(many) > 1 else 0.0
        kappa = (
            float(np.clip(m * (1 - m) / between - 1, 2.0, 500.0))
            if between > 1e-9 and 0 < m < 1
            else 50.0
        )
        priors[ch] = {"mean": float(m), "strength": kappa}
        d = d.assign(
            rate=(d["engaged"] + kappa * m) / (d["sends"] + kappa), raw=d["engaged"] / d["sends"]
        )
        d["lift"] = d["rate"] / max(m, 1e-9)
        d["raw_lift"] = d["raw"] / max(m, 1e-9)
        reachable = (d["last"] >= cutoff - dt.timedelta(days=reach_days)) & ~d["unsub"].astype(bool)
        d["reachable"] = reachable
        out.append(d)
    disc = discount_features(g)
    out = [d.merge(disc, on="profile_id", how="left") for d in out]
    if not out:
        return pd.DataFrame(
            columns=[
                "profile_id",
                "channel",
                "sends",
                "engaged",
                "rate",
                "lift",
                "raw_lift",
                "reachable",
            ]
        ), priors
    return pd.concat(out, ignore_index=True), priors


def discount_features(summary: pd.DataFrame, strength: float = 10.0) -> pd.DataFrame:
    """Per profile: smoothed click rate on discounted / undiscounted messages, and redemption rate
    (from `summarise_sent` / `sent_summary`)."""
    g = summary.groupby("profile_id")[["c_hi", "n_hi", "c_lo", "n_lo", "r_hi"]].sum()
    n_hi, n_lo = g["n_hi"].sum(), g["n_lo"].sum()
    m_hi = g["c_hi"].sum() / n_hi if n_hi else 0.0
    m_lo = g["c_lo"].sum() / n_lo if n_lo else 0.0
    m_r = g["r_hi"].sum() / n_hi if n_hi else 0.0
    k = strength
    rate_hi = (g["c_hi"] + k * np.nan_to_num(m_hi)) / (g["n_hi"] + k)
    rate_lo = (g["c_lo"] + k * np.nan_to_num(m_lo)) / (g["n_lo"] + k)
    out = pd.DataFrame(
        {
            "discount_click_lift": (rate_hi / np.maximum(rate_lo, 1e-6)).astype("float32"),
            "discount_redeem_rate": (
                (g["r_hi"] + 2 * k * np.nan_to_num(m_r)) / (g["n_hi"] + 2 * k)
            ).astype("float32"),
        }
    )
    return out.reset_index()


def preferred(scores: pd.DataFrame, column: str = "lift") -> pd.DataFrame:
    """profile_id, preferred channel (highest `column` among reachable channels)."""
    s = scores[scores["reachable"]] if "reachable" in scores else scores
    s = s.sort_values(
        ["profile_id", column, "sends"], ascending=[True, False, False], kind="stable"
    )
    return s.drop_duplicates("profile_id")[["profile_id", "channel", column]]


# --- offer response: T-learner -----------------------------------------------------------------


def offer_frame(feats: pd.DataFrame, rows: pd.DataFrame, ch_scores: pd.DataFrame) -> pd.DataFrame:
    """Campaign rows joined to the customer's features (as of the window's cutoff) and offer features."""
    df = rows.merge(feats, on="profile_id", how="inner")
    df["offer_discount"] = df["discount"].astype("float32")
    for ch in ("email", "sms", "push"):
        df[f"ch_{ch}"] = (df["channel"] == ch).astype("float32")
    lift = ch_scores[["profile_id", "channel", "lift"]].rename(columns={"lift": "channel_lift"})
    df = df.merge(lift, on=["profile_id", "channel"], how="left")
    df = df.merge(_customer_level(ch_scores), on="profile_id", how="left")
    df["channel_lift"] = df["channel_lift"].astype("float32")
    return df


@dataclass
class OfferModel:
    treated: lgb.Booster
    control: lgb.Booster
    n_treated: int
    n_control: int
    redeem: lgb.Booster | None = (
        None  # P(redeems the offer | x, offer); None: every responder redeems
    )

    @classmethod
    def fit(cls, train: pd.DataFrame, threads: int) -> OfferModel:
        t = train[train["treated"]]
        c = train[train["holdout"]]
        if len(c) < 50 or c["responded"].sum() < 10 or t["responded"].sum() < 10:
            raise ValueError(
                f"{len(t):,} treated and {len(c):,} held-out campaign rows with "
                f"{int(t['responded'].sum())} and {int(c['responded'].sum())} responses; need at "
                "least 50 held-out rows and 10 responses in each group"
            )
        bt = _fit(t, threads)
        bc = _fit(c, threads, small=True)
        br = _fit(t, threads, target="redeemed") if t["redeemed"].sum() >= 10 else None
        return cls(bt, bc, len(t), len(c), br)

    def p_treated(self, X: pd.DataFrame, threads: int = 2) -> np.ndarray:
        return M.predict(self.treated, X[list(X_COLUMNS)], threads)

    def p_control(self, X: pd.DataFrame, threads: int = 2) -> np.ndarray:
        return M.predict(self.control, X[list(X_COLUMNS)], threads)

    def p_redeem(self, X: pd.DataFrame, p_t: np.ndarray, threads: int = 2) -> np.ndarray:
        """P(the offer is redeemed): the discount is paid only then (at most P(response))."""
        if self.redeem is None:
            return p_t
        return np.minimum(M.predict(self.redeem, X[list(X_COLUMNS)], threads), p_t)


@dataclass
class XLearner:
    """Kunzel et al. (2019): impute each unit's effect with the other group's response model,
    regress the imputed effects on x in each group, and weight the two by the treated share."""

    tau_treated: lgb.Booster
    tau_control: lgb.Booster
    treated_share: float

    @classmethod
    def fit(cls, train: pd.DataFrame, model: OfferModel, threads: int) -> XLearner:
        t = train[train["treated"]]
        c = train[train["holdout"]]
        d_t = t["responded"].to_numpy(float) - model.p_control(t, threads)
        d_c = model.p_treated(c, threads) - c["responded"].to_numpy(float)
        return cls(_fit_reg(t, d_t, threads), _fit_reg(c, d_c, threads), len(t) / (len(t) + len(c)))

    def uplift(self, X: pd.DataFrame, threads: int = 2) -> np.ndarray:
        cols = list(X_COLUMNS)
        e = self.treated_share
        return e * M.predict(self.tau_control, X[cols], threads) + (1 - e) * M.predict(
            self.tau_treated, X[cols], threads
        )


def _fit_reg(df: pd.DataFrame, y: np.ndarray, threads: int) -> lgb.Booster:
    va = np.random.default_rng(9).random(len(df)) < 0.25
    X = df[list(X_COLUMNS)]
    b = M.fit_booster("regression", X[~va], y[~va], threads, X[va], y[va])
    return M.fit_booster(
        "regression", X, y, threads, rounds=max(int((b.best_iteration or 10) * 1.25), 5)
    )


def _fit(
    df: pd.DataFrame, threads: int, small: bool = False, target: str = "responded"
) -> lgb.Booster:
    """Binary LightGBM with early stopping on a random quarter, then refitted on all."""
    rng = np.random.default_rng(5)
    ids = df["profile_id"].unique()
    held = set(ids[rng.random(len(ids)) < 0.25])
    va = df["profile_id"].isin(held).to_numpy()
    X, y = df[list(X_COLUMNS)], df[target].to_numpy(float)
    p = {
        **M.BASE_PARAMS,
        "objective": "binary",
        "metric": "binary_logloss",
        "num_threads": threads if len(df) >= M.SMALL_ROWS else 1,
        "min_data_in_leaf": 100 if small else 200,
        "learning_rate": 0.08,
    }
    tr = lgb.Dataset(X[~va], label=y[~va])
    b = lgb.train(
        p,
        tr,
        num_boost_round=300,
        valid_sets=[lgb.Dataset(X[va], label=y[va], reference=tr)],
        callbacks=[lgb.early_stopping(30, verbose=False)],
    )
    rounds = max(int((b.best_iteration or b.num_trees()) * 1.25), 5)
    return lgb.train(p, lgb.Dataset(X, label=y), num_boost_round=rounds)


def with_offer(
    feats: pd.DataFrame, channel: np.ndarray | str, discount: float, ch_scores: pd.DataFrame
) -> pd.DataFrame:
    """Features of every profile as if sent the offer (discount, channel)."""
    X = feats[["profile_id", *FEATURE_NAMES]].copy()
    X["offer_discount"] = np.float32(discount)
    ch = np.broadcast_to(np.asarray(channel, dtype=object), len(X))
    for c in ("email", "sms", "push"):
        X[f"ch_{c}"] = (ch == c).astype("float32")
    lift = ch_scores.set_index(["profile_id", "channel"])["lift"]
    key = pd.MultiIndex.from_arrays([X["profile_id"].to_numpy(), ch])
    X["channel_lift"] = lift.reindex(key).to_numpy(dtype="float32")
    cust = _customer_level(ch_scores).set_index("profile_id").reindex(X["profile_id"].to_numpy())
    for col in CUSTOMER_COLUMNS:
        X[col] = cust[col].to_numpy(dtype="float32")
    return X


CUSTOMER_COLUMNS = ("discount_click_lift", "discount_redeem_rate")


class OfferFeatures:
    """`with_offer` for many offers over the same profiles: the customer's features, discount
    features and per-channel lifts are looked up once; an offer only fills in its discount and
    channel columns. `frame` gives the same values as `with_offer` (as float64, in `X_COLUMNS`
    order), so the models score them identically."""

    def __init__(self, feats: pd.DataFrame, ch_scores: pd.DataFrame):
        profiles = feats["profile_id"].to_numpy()
        n = len(profiles)
        self.n = n
        self.X = np.empty((n, len(X_COLUMNS)))
        self.X[:, : len(FEATURE_NAMES)] = feats[list(FEATURE_NAMES)].to_numpy(dtype=float)
        self.col = {c: i for i, c in enumerate(X_COLUMNS)}
        cust = _customer_level(ch_scores).set_index("profile_id").reindex(profiles)
        for c in CUSTOMER_COLUMNS:
            self.X[:, self.col[c]] = cust[c].to_numpy(dtype="float32")
        self.channels = ("email", "sms", "push")
        lift = ch_scores[ch_scores["channel"].isin(self.channels)]
        self.lift = np.full((n, len(self.channels)), np.nan, dtype="float32")
        rows = pd.Index(profiles).get_indexer(lift["profile_id"])
        cols = pd.Index(self.channels).get_indexer(lift["channel"])
        ok = rows >= 0
        self.lift[rows[ok], cols[ok]] = lift["lift"].to_numpy(dtype="float32")[ok]

    def matrix(self, channel: np.ndarray | str, discount: float | np.ndarray) -> np.ndarray:
        """(profiles x X_COLUMNS) float64: every profile as if sent (`discount`, `channel`)."""
        X = self.X.copy()
        X[:, self.col["offer_discount"]] = np.asarray(discount, dtype="float32")
        ch = np.broadcast_to(np.asarray(channel, dtype=object), self.n)
        idx = np.full(self.n, -1)
        for k, c in enumerate(self.channels):
            hit = ch == c
            X[:, self.col[f"ch_{c}"]] = hit
            idx[hit] = k
        X[:, self.col["channel_lift"]] = np.where(
            idx >= 0, self.lift[np.arange(self.n), np.maximum(idx, 0)], np.nan
        )
        return X

    def frame(self, channel: np.ndarray | str, discount: float | np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(self.matrix(channel, discount), columns=list(X_COLUMNS), copy=False)


def _customer_level(ch_scores: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in CUSTOMER_COLUMNS if c in ch_scores]
    out = ch_scores.drop_duplicates("profile_id")[["profile_id", *cols]]
    for c in CUSTOMER_COLUMNS:
        if c not in out:
            out = out.assign(**{c: np.nan})
    return out


def profit(
    p_t: np.ndarray,
    p_c: np.ndarray,
    p_r: np.ndarray,
    aov: np.ndarray,
    margin: float,
    discount: float,
    cost: float,
) -> np.ndarray:
    """Expected incremental profit of sending: AOV x [margin x (P_t - P_c) - d x P_redeem] - cost."""
    return aov * (margin * (p_t - p_c) - discount / 100.0 * p_r) - cost


# --- off-policy evaluation ---------------------------------------------------------------------


def off_policy(
    test: pd.DataFrame,
    p_t: np.ndarray,
    p_c: np.ndarray,
    p_r: np.ndarray,
    aov: np.ndarray,
    margin: float,
) -> dict:
    """IPS and doubly-robust profit per targeted customer of "send iff expected profit > 0" vs
    "send to everyone targeted" (the current policy), on logged campaigns with random holdouts."""
    share = test.groupby("campaign_id")["holdout"].transform("mean").to_numpy()
    ok = (share > 0) & (share < 1)
    test, p_t, p_c, p_r, aov, share = test[ok], p_t[ok], p_c[ok], p_r[ok], aov[ok], share[ok]
    if not len(test):
        return {}
    d = test["discount"].to_numpy() / 100.0
    treated = test["treated"].to_numpy()
    rev = test["response_revenue"].to_numpy()
    # realised profit of the window's orders: the margin, less the discount where it was redeemed
    r = rev * (margin - d * test["redeemed"].to_numpy())
    q_t = aov * (p_t * margin - p_r * d)
    q_c = p_c * aov * margin
    send = (q_t - q_c) > 0
    prop = np.where(treated, 1 - share, share)  # P(logged action)

    def estimates(policy: np.ndarray) -> tuple[float, float, float, float]:
        match = policy == treated
        ips = match * r / prop
        q_pi = np.where(policy, q_t, q_c)
        q_a = np.where(treated, q_t, q_c)
        dr = q_pi + match * (r - q_a) / prop
        n = len(r)
        return ips.mean(), ips.std() / np.sqrt(n), dr.mean(), dr.std() / np.sqrt(n)

    new = estimates(send)
    cur = estimates(np.ones(len(r), bool))
    none = estimates(np.zeros(len(r), bool))
    # the gain's standard error from the paired per-row differences
    match_n, match_c = send == treated, treated
    diff_ips = (match_n * r / prop) - (match_c * r / prop)
    q_pi_n, q_pi_c = np.where(send, q_t, q_c), q_t
    q_a = np.where(treated, q_t, q_c)
    diff_dr = (q_pi_n + match_n * (r - q_a) / prop) - (q_pi_c + match_c * (r - q_a) / prop)
    n = len(r)
    return {
        "rows": int(n),
        "campaigns": int(test["campaign_id"].nunique()),
        "send_share_new_policy": float(send.mean()),
        "ips_profit_per_target": {
            "new_policy": new[0],
            "current_policy": cur[0],
            "send_nobody": none[0],
        },
        "dr_profit_per_target": {
            "new_policy": new[2],
            "current_policy": cur[2],
            "send_nobody": none[2],
        },
        "ips_gain": float(diff_ips.mean()),
        "ips_gain_se": float(diff_ips.std() / np.sqrt(n)),
        "dr_gain": float(diff_dr.mean()),
        "dr_gain_se": float(diff_dr.std() / np.sqrt(n)),
    }
