"""Backtest predictions II on a demo project, beside the baselines and against the latent truth.

    .venv/bin/panorama demo generate /tmp/demo --customers 20000 && (cd /tmp/demo && panorama ingest)
    .venv/bin/python bench/predict_extras_demo.py /tmp/demo --as-of 2024-01-01 [--json out.json]

Profiles are the generator's true persons (as bench/predict_demo.py --identity truth). Besides
`Extras.evaluate` (observed outcomes after the as-of date), it compares with the truth files:
true caused-conversion probability of each test campaign message (truth/model.json formula,
persons.csv, campaigns.csv, category_preferences.csv) against the predicted uplift; the latent
discount sensitivity against the predicted response curve; the latent preferred channel; the
latent satisfaction of non-respondents against the predicted NPS; comment sentiment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
from panorama.config import load_project  # noqa: E402
from panorama.demo.commerce import MEAN_RESP, conversion_probability  # noqa: E402
from panorama.predict import campaigns, nps  # noqa: E402
from panorama.predict import models as M  # noqa: E402
from panorama.predict.extras import Extras  # noqa: E402
from panorama.predict.service import Predictor  # noqa: E402
from panorama.store import open_store  # noqa: E402
from predict_demo import truth_sources  # noqa: E402


def _rho(a, b) -> float:
    return float(spearmanr(a, b, nan_policy="omit")[0])


def truth_checks(ex: Extras, store, directory: Path, as_of: dt.datetime) -> dict:
    persons = pd.read_csv(directory / "truth/persons.csv", dtype={"person_id": str}).set_index(
        "person_id"
    )
    camps = pd.read_csv(directory / "truth/campaigns.csv").set_index("campaign_id")
    prefs = pd.read_csv(directory / "truth/category_preferences.csv").set_index("person_id")
    out = {}
    # offers: predicted uplift vs the true caused-conversion probability
    ex._campaigns()
    data, _ = ex._offer_training(as_of)
    model = campaigns.OfferModel.fit(data, ex.threads)
    end = as_of + dt.timedelta(days=90 - ex.cfg.response_days)
    test = campaigns.campaigns(ex.cur, as_of, end)
    hist = campaigns.campaigns(ex.cur, None, as_of)
    ch, _ = campaigns.channel_scores(hist, ex.cfg.channels, as_of)
    tf = campaigns.offer_frame(ex.pr.features(as_of), test, ch)
    tf = tf[tf["treated"] & tf["profile_id"].isin(persons.index)].reset_index(drop=True)
    p = persons.loc[tf["profile_id"]]
    c = camps.loc[tf["campaign_id"]]
    resp = np.select(
        [tf["channel"] == "email", tf["channel"] == "sms"],
        [p["email_response"], p["sms_response"]],
        p["push_response"],
    )
    mean = tf["channel"].map(MEAN_RESP).to_numpy()
    cat_col = (
        c["category"]
        .fillna("")
        .str.lower()
        .str.replace(" & ", "_")
        .str.replace(" ", "_")
        .to_numpy()
    )
    pref = np.array(
        [
            prefs.at[pid, col] if col else np.nan
            for pid, col in zip(tf["profile_id"], cat_col, strict=True)
        ]
    )
    rel = np.where(np.isnan(pref), 1.0, np.clip(0.4 + 5.0 * np.nan_to_num(pref), 0.4, 2.5))
    alive = pd.to_datetime(p["churn_at"].replace("", np.nan), errors="coerce")
    alive = (alive.isna() | (alive.to_numpy() > tf["sent_at"].to_numpy())).to_numpy()
    true_uplift = np.where(
        alive,
        conversion_probability(
            resp,
            mean,
            rel,
            p["purchase_rate"].to_numpy(),
            p["discount_sensitivity"].to_numpy(),
            c["discount_pct"].to_numpy(),
        ),
        0.0,
    )
    p_t, p_c = model.p_treated(tf, ex.threads), model.p_control(tf, ex.threads)
    out["uplift_vs_true_caused_conversion"] = {
        "rows": len(tf),
        "mean_true": float(true_uplift.mean()),
        "mean_predicted": float((p_t - p_c).mean()),
        "spearman_T_learner_uplift": _rho(p_t - p_c, true_uplift),
        "spearman_X_learner_uplift": _rho(
            campaigns.XLearner.fit(data, model, ex.threads).uplift(tf, ex.threads), true_uplift
        ),
        "spearman_response_model_only (P_t)": _rho(p_t, true_uplift),
        "spearman_recency_baseline": _rho(-tf["recency_days"].fillna(1e4), true_uplift),
    }
    # discount: predicted response-curve slope vs latent discount sensitivity
    feats = ex.pr.features(as_of)
    feats = feats[
        feats["profile_id"].isin(ch["profile_id"].unique())
        & feats["profile_id"].isin(persons.index)
    ]
    pc = (
        campaigns.preferred(ch)
        .set_index("profile_id")["channel"]
        .reindex(feats["profile_id"])
        .fillna("email")
    )
    chan = pc.to_numpy(dtype=object)
    p0 = model.p_treated(campaigns.with_offer(feats, chan, 0.0, ch), ex.threads)
    p30 = model.p_treated(campaigns.with_offer(feats, chan, 30.0, ch), ex.threads)
    sens = persons.loc[feats["profile_id"], "discount_sensitivity"].to_numpy()
    out["discount_sensitivity"] = {
        "customers": len(feats),
        "spearman_p30_minus_p0": _rho(p30 - p0, sens),
        "spearman_p30_over_p0": _rho(p30 / np.maximum(p0, 1e-9), sens),
    }
    # channel: predicted vs latent preferred channel, customers reached on 2+ channels
    reach = ch[ch["reachable"]]
    multi = reach.groupby("profile_id")["channel"].nunique()
    multi = multi[multi >= 2].index.intersection(persons.index)
    truth = persons.loc[multi, "preferred_channel"]
    res = {"customers": len(multi)}
    for name, col in (("empirical Bayes", "lift"), ("raw rate", "raw_lift")):
        pred = campaigns.preferred(reach, col).set_index("profile_id")["channel"].reindex(multi)
        res[name] = float((pred == truth).mean())
    counts = truth.value_counts(normalize=True)
    res["always the most common"] = float(counts.iloc[0])
    # few messages: where smoothing matters
    few = reach.groupby("profile_id")["sends"].sum()
    few = few[few <= 12].index.intersection(multi)
    for name, col in (
        ("empirical Bayes (<= 12 messages)", "lift"),
        ("raw rate (<= 12 messages)", "raw_lift"),
    ):
        pred = campaigns.preferred(reach, col).set_index("profile_id")["channel"].reindex(few)
        res[name] = float((pred == persons.loc[few, "preferred_channel"]).mean())
    res["customers_with_<=12_messages"] = len(few)
    out["preferred_channel_vs_latent"] = res
    # NPS: predicted score of non-respondents vs latent satisfaction
    ans = nps.answers(ex.cur, ex.pr.fb.sources.events_sql, as_of)
    b = nps.fit_score(ex.pr.features(as_of), ans, ex.threads)
    f = ex.pr.features(as_of)
    f = f[~f["profile_id"].isin(ans["profile_id"]) & f["profile_id"].isin(persons.index)]
    f = f[f["frequency"] > 0]
    pred = M.predict(b, f[list(nps.NPS_FEATURES)], ex.threads)
    sat = persons.loc[f["profile_id"], "satisfaction"].to_numpy()
    out["nps_non_respondents_vs_latent_satisfaction"] = {
        "customers": len(f),
        "spearman_model": _rho(pred, sat),
        "customers_with_csat": int(f["avg_csat"].notna().sum()),
        "spearman_model_on_those": _rho(
            pred[f["avg_csat"].notna().to_numpy()], sat[f["avg_csat"].notna().to_numpy()]
        ),
        "spearman_avg_csat_baseline_on_those": _rho(f["avg_csat"], sat),
    }
    # sentiment vs the generator's comment sentiment
    tc = pd.read_csv(directory / "truth/nps_comments.csv", dtype=str).dropna(subset=["sentiment"])
    later = nps.answers(ex.cur, ex.pr.fb.sources.events_sql, as_of + dt.timedelta(days=180))
    com = ans[ans["comment"].notna()]
    tm = nps.TextModel(com["comment"].tolist(), com["score"].to_numpy(float))
    new = later[(later["ts"] >= as_of) & later["comment"].notna()]
    rid = new["message_id"].str.split(":", n=1).str[-1]
    truth_s = tc.set_index("response_id")["sentiment"].reindex(rid).to_numpy()
    s = tm.sentiment(new["comment"].tolist())
    known = pd.notna(truth_s) & (truth_s != "neutral")
    out["comment_sentiment_vs_truth"] = {
        "test_comments": len(new),
        "with_truth": int(pd.notna(truth_s).sum()),
        "auc_positive_vs_negative": float(roc_auc_score(truth_s[known] == "positive", s[known])),
        "mean_p_positive_by_true_class": {
            c: float(s[truth_s == c].mean()) for c in ("negative", "neutral", "positive")
        },
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("directory", type=Path)
    ap.add_argument("--as-of", default="2024-01-01")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    project = load_project(args.directory)
    as_of = dt.datetime.fromisoformat(args.as_of)
    started = time.perf_counter()
    with open_store(project.store_path) as store:
        pr = Predictor(
            store, project.config.predictions, truth_sources(store, args.directory), log=print
        )
        pr.prepare(as_of + dt.timedelta(days=181))
        ex = Extras(pr)
        report = {"as_of": args.as_of, "observed": ex.evaluate(as_of)}
        report["latent_truth"] = truth_checks(ex, store, args.directory, as_of)
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
