"""Predictions II building blocks on small hand-made data: empirical-Bayes channel smoothing,
next-purchase scoring and ranking metrics, off-policy estimates, offer eligibility errors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from panorama.config import PredictionsConfig
from panorama.predict import basket, campaigns, synthetic
from panorama.predict.extras import Extras
from panorama.predict.features import Sources
from panorama.predict.service import Predictor

T = dt.datetime(2024, 1, 1)


def _sends(profile: str, channel: str, n: int, engaged: int, start: int = 0) -> list[dict]:
    return [
        {
            "profile_id": profile,
            "campaign_id": f"{channel}{start + i}",
            "channel": channel,
            "discount": 0.0,
            "treated": True,
            "holdout": False,
            "engaged": i < engaged,
            "clicked": i < engaged,
            "redeemed": False,
            "msg_unsubscribed": False,
            "sent_at": T - dt.timedelta(days=100 - i),
        }
        for i in range(n)
    ]


def test_one_open_does_not_make_a_preference():
    rows = []
    rng = np.random.default_rng(0)
    for k in range(300):  # a population: email ~30%, SMS ~10% engagement, with spread
        rows += _sends(f"p{k}", "email", 20, int(rng.binomial(20, rng.beta(3, 7))))
        rows += _sends(f"p{k}", "sms", 20, int(rng.binomial(20, rng.beta(1, 9))))
    rows += _sends("new", "email", 1, 1) + _sends("new", "sms", 30, 9)  # 1/1 email vs 9/30 SMS
    scores, priors = campaigns.channel_scores(pd.DataFrame(rows), ["email", "sms", "push"], T)
    assert 0.2 < priors["email"]["mean"] < 0.4 and 0.05 < priors["sms"]["mean"] < 0.15
    new = scores[scores["profile_id"] == "new"].set_index("channel")
    assert new.at["email", "raw_lift"] > new.at["sms", "raw_lift"]  # unsmoothed: one open wins
    assert new.at["email", "rate"] < 0.5  # shrunk toward the email average
    pref = campaigns.preferred(scores).set_index("profile_id")
    assert pref.at["new", "channel"] == "sms"  # 9 of 30 SMS is ~3x the SMS average: real evidence
    raw = campaigns.preferred(scores, "raw_lift").set_index("profile_id")
    assert raw.at["new", "channel"] == "email"


def test_next_purchase_blends_own_history_and_cooccurrence():
    hist = pd.DataFrame(
        [
            # a: bought x often; b: bought y once; others buy y together with z
            {"profile_id": "a", "item": "x", "weight": 5.0, "last": 1},
            {"profile_id": "b", "item": "y", "weight": 1.0, "last": 1},
            *[
                {"profile_id": f"o{i}", "item": it, "weight": 1.0, "last": 1}
                for i in range(20)
                for it in ("y", "z")
            ],
            *[{"profile_id": f"q{i}", "item": "w", "weight": 3.0, "last": 1} for i in range(40)],
        ]
    )
    profiles = np.array(
        ["a", "b", "nobody"] + [f"o{i}" for i in range(20)] + [f"q{i}" for i in range(40)]
    )
    m = basket.NextPurchase(hist, profiles, alpha=0.5)
    top, _ = m.top_k(3)
    names = m.vocab.names
    assert names[top[0, 0]] == "x"
    assert [names[j] for j in top[1, :2]] == [
        "y",
        "z",
    ]  # z through co-occurrence, above the popular w
    assert names[top[2, 0]] == "w"  # no history: the most popular
    personal = basket.NextPurchase(hist, profiles, alpha=0.0, vocab=m.vocab).top_k(3)[0]
    assert names[personal[1, 1]] == "w"  # without neighbours z is only a popularity tie-break
    assert names[m.last_basket_top_k(2)[1, 0]] == "y"


def test_ranking_metrics_by_hand():
    truth = sparse.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=float))
    top = np.array([[2, 1], [0, 1], [0, 1]])
    r = basket.ranking_metrics(top, truth, k=2)
    assert r["customers"] == 2  # the row without purchases is left out
    assert r["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert r["ndcg@2"] == pytest.approx((1 / (1 + 1 / np.log2(3))) / 2)
    assert r["hit@2"] == pytest.approx(0.5)


def test_off_policy_finds_the_gain_of_targeting_the_responsive():
    rng = np.random.default_rng(1)
    n = 40_000
    responsive = rng.random(n) < 0.3
    holdout = rng.random(n) < 0.2
    base = 0.05
    p = np.where(
        ~holdout & responsive, base + 0.15, base
    )  # the message works only on the responsive
    responded = rng.random(n) < p
    test = pd.DataFrame(
        {
            "campaign_id": "c1",
            "treated": ~holdout,
            "holdout": holdout,
            "discount": 0.0,
            "response_revenue": np.where(responded, 50.0, 0.0),
            "redeemed": False,
        }
    )
    p_t = np.where(responsive, base + 0.15, base) + 0.001
    p_c = np.full(n, base)
    cost_free = campaigns.off_policy(test, p_t, p_c, p_t * 0, np.full(n, 50.0), 0.4)
    assert cost_free["send_share_new_policy"] == pytest.approx(1.0)  # no cost: sending never loses
    # a policy model that knows whom the message moves, and a cost that makes the rest a loss
    p_t2 = np.where(responsive, base + 0.15, base - 0.01)
    res = campaigns.off_policy(test, p_t2, p_c, p_t2 * 0, np.full(n, 50.0), 0.4)
    assert res["send_share_new_policy"] == pytest.approx(responsive.mean())
    # same profit on the responsive, none lost elsewhere: gain ~0 within noise, both estimators agree
    assert abs(res["ips_gain"]) < 4 * res["ips_gain_se"] + 1e-9
    assert abs(res["dr_gain"] - res["ips_gain"]) < 4 * res["ips_gain_se"] + 1e-9
    nobody = res["dr_profit_per_target"]["send_nobody"]
    assert res["dr_profit_per_target"]["new_policy"] > nobody  # targeting beats sending nothing


def test_offer_eligibility_error_names_the_offer(synth_store):
    cfg = PredictionsConfig()
    pr = Predictor(synth_store, cfg, Sources(synthetic.EVENTS_BY_USER, None))
    pr.prepare(T)
    offers = [
        {"name": "ok", "eligibility": None},
        {"name": "VIP", "eligibility": "no_such_column > 1"},
    ]
    with pytest.raises(
        ValueError, match=r"predictions\.offers\[1\] \('VIP'\) eligibility 'no_such_column > 1'"
    ):
        Extras(pr)._eligible(offers, T, np.array(["u0000001"]))


def test_campaign_summary_in_duckdb_equals_pandas_and_offer_features_equal_with_offer():
    import duckdb

    rng = np.random.default_rng(3)
    n = 2_000
    rows = pd.DataFrame(
        {
            "profile_id": [f"p{i}" for i in rng.integers(0, 150, n)],
            "campaign_id": [f"c{i}" for i in range(n)],
            "channel": rng.choice(["email", "sms", "push"], n),
            "discount": rng.choice([0.0, 10.0, 20.0], n),
            "treated": rng.random(n) < 0.9,
            "engaged": rng.random(n) < 0.3,
            "clicked": rng.random(n) < 0.1,
            "redeemed": rng.random(n) < 0.05,
            "msg_unsubscribed": rng.random(n) < 0.01,
            "sent_at": [T - dt.timedelta(days=int(d)) for d in rng.integers(1, 700, n)],
        }
    )
    rows["holdout"] = ~rows["treated"]
    con = duckdb.connect()
    con.register("rows_df", rows)
    con.execute("CREATE TEMP TABLE _predict_campaigns AS SELECT * FROM rows_df")
    cut = T - dt.timedelta(days=30)
    hist = rows[rows["sent_at"] < cut]
    by_pandas, priors_p = campaigns.channel_scores(hist, ["email", "sms", "push"], cut)
    summary = campaigns.sent_summary(con, cut)
    by_sql, priors_s = campaigns.channel_scores(
        None, ["email", "sms", "push"], cut, summary=summary
    )
    assert priors_p.keys() == priors_s.keys()
    for ch, prior in priors_p.items():
        assert prior == pytest.approx(priors_s[ch], rel=1e-12)
    key = ["profile_id", "channel"]
    a = by_pandas.sort_values(key).reset_index(drop=True)
    b = by_sql.sort_values(key).reset_index(drop=True)
    for col in ("sends", "engaged", "rate", "lift", "reachable", "discount_click_lift"):
        np.testing.assert_allclose(a[col].to_numpy(float), b[col].to_numpy(float), rtol=1e-12)
    # every profile as if sent 10% by SMS, or on a per-profile channel: the same as with_offer
    feats = pd.DataFrame({"profile_id": sorted(rows["profile_id"].unique())})
    for name in campaigns.FEATURE_NAMES:
        feats[name] = rng.random(len(feats))
    of = campaigns.OfferFeatures(feats, by_sql)
    chan = rng.choice(["email", "sms", "push"], len(feats)).astype(object)
    for channel in ("sms", chan):
        expected = campaigns.with_offer(feats, channel, 10.0, by_sql)[list(campaigns.X_COLUMNS)]
        got = of.frame(channel, 10.0)
        np.testing.assert_array_equal(expected.to_numpy(float), got.to_numpy(float))
