"""Predictions II on a small generated demo (real files, real ingestion, real DuckDB): cross-sell,
next purchase, preferred channel and discount, next best offer, NPS -- scores, export columns,
drivers, and backtests against their baselines."""

from __future__ import annotations

import datetime as dt
import shutil

import orjson
import pytest

from panorama.config import PredictionsConfig, load_project
from panorama.predict.extras import Extras
from panorama.predict.features import Sources
from panorama.predict.service import Predictor, profile_scores_sql
from panorama.store import open_store

pytestmark = pytest.mark.xdist_group(name="predict_demo")

RECORD_ID = (
    "CASE WHEN starts_with(e.message_id, e.source || ':') "
    "THEN substr(e.message_id, length(e.source) + 2) ELSE e.message_id END"
)


def truth_sources(store, directory) -> Sources:
    """Events grouped by the generator's true person (identity resolution is tested elsewhere)."""
    store.execute(f"""CREATE OR REPLACE TEMP TABLE _truth_ids AS
                      SELECT * FROM read_csv('{directory / "truth/identities.csv"}', all_varchar = true)""")
    events = f"""SELECT t.person_id AS profile_id, e.* FROM events e
                 JOIN _truth_ids t ON t.source = e.source AND t.record_id = {RECORD_ID}"""
    records = """SELECT t.person_id AS profile_id, r.source, r.ts, r.ingested_at, r.identifiers, r.attributes
                 FROM records r JOIN _truth_ids t USING (source, record_id)"""
    return Sources(events, records)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from typer.testing import CliRunner

    from panorama.cli import app

    d = tmp_path_factory.mktemp("demo_extras") / "demo"
    runner = CliRunner()
    r = runner.invoke(app, ["demo", "generate", str(d), "--customers", "3000", "--seed", "3"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["ingest", "--project", str(d)])
    assert r.exit_code == 0, r.output
    return d


@pytest.fixture
def demo(demo_dir, tmp_path):
    d = tmp_path / "demo"
    shutil.copytree(demo_dir, d)
    proj = load_project(d)
    with open_store(proj.store_path) as store:
        yield d, proj, store


def _end(store) -> dt.datetime:
    last = store.scalar('SELECT max("timestamp") FROM events')
    return dt.datetime.combine(last.date(), dt.time()) + dt.timedelta(days=1)


def test_scores_columns_and_drivers(demo):
    d, proj, store = demo
    cfg = PredictionsConfig.model_validate(
        {
            **proj.config.predictions.model_dump(),
            "offers": [
                {"name": "Spring 20% email", "channel": "email", "discount": 20, "cost": 0.01},
                {"name": "Free gift SMS", "type": "gift", "channel": "sms", "cost": 0.05},
                {"name": "Never", "discount": 30, "eligibility": "1 = 0"},
            ],
        }
    )
    result = Predictor(store, cfg, truth_sources(store, d)).predict(extras=True)
    assert not result.problems, result.problems
    for kind in (
        "cross_sell",
        "upsell",
        "next_purchase",
        "preferred_channel",
        "preferred_discount",
        "next_best_offer",
        "nps",
    ):
        assert result.scored[kind] > 100, kind
    rows = store.execute(f"SELECT * FROM ({profile_scores_sql(store)})").df()
    np_rows = rows[rows["next_purchase_products"].notna()]
    products = orjson.loads(np_rows["next_purchase_products"].iloc[0])
    assert len(products) == 10 and len(set(products)) == 10
    categories = orjson.loads(np_rows["next_purchase_categories"].iloc[0])
    assert len(categories) == len(set(categories)) >= 5
    assert set(rows["preferred_channel"].dropna()) <= {"email", "sms", "push"}
    scores = orjson.loads(rows["channel_scores"].dropna().iloc[0])
    assert all(0 < s["rate"] < 1 for s in scores.values())
    offers = set(rows["next_best_offer"].dropna())
    assert offers <= {"Spring 20% email", "Free gift SMS", "no offer"} and "Never" not in offers
    nbo = rows[rows["next_best_offer"].notna()]
    assert nbo["next_best_offer_probability"].between(0, 1).all()
    assert set(rows["nps_class"].dropna()) <= {"promoter", "passive", "detractor"}
    assert rows["predicted_nps"].dropna().between(0, 10).all()
    assert {"answered", "predicted"} == set(rows["nps_source"].dropna())
    assert rows["cross_sell_probability"].dropna().between(0, 1).all()
    assert rows["preferred_discount"].dropna().isin([0, 10, 15, 20, 25, 30]).all()
    for col in (
        "cross_sell_drivers",
        "next_best_offer_drivers",
        "nps_drivers",
        "preferred_channel_drivers",
        "preferred_discount_drivers",
        "next_purchase_drivers",
    ):
        drivers = orjson.loads(rows[col].dropna().iloc[0])
        assert drivers and drivers[0]["text"], col


def test_backtests_beat_baselines(demo):
    d, proj, store = demo
    pr = Predictor(store, proj.config.predictions, truth_sources(store, d))
    as_of = _end(store) - dt.timedelta(days=200)
    pr.prepare(as_of + dt.timedelta(days=181))
    ex = Extras(pr)
    nxt = ex.eval_next_purchase(as_of)
    model, pop = nxt["products"]["model (TIFU-style)"], nxt["products"]["most popular"]
    assert model["recall@10"] > pop["recall@10"] and model["ndcg@10"] > pop["ndcg@10"]
    assert model["recall@10"] > nxt["products"]["repeat last basket"]["recall@10"]
    xs = ex.eval_cross_sell(as_of)
    assert xs["upsell"]["model_auc"] > xs["upsell"]["category_popularity_auc"]
    off = ex.eval_offers(as_of)
    assert off["response_auc_treated"]["model"] > 0.6
    ch = off["preferred_channel"]
    assert ch["empirical Bayes"] > max(ch["always email"], ch["always sms"], ch["always push"])
    assert {"ips_gain", "dr_gain"} <= set(off["off_policy"])
    n = ex.eval_nps(as_of)
    assert n["model"]["mae"] < 4 and n["comment_sentiment"]["auc_promoter_vs_detractor"] > 0.8


def test_offer_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"offers\.0\.eligibility"):
        PredictionsConfig(offers=[{"name": "x", "eligibility": "churn_probability >"}])
    with pytest.raises(ValueError, match="declared twice"):
        PredictionsConfig(offers=[{"name": "x"}, {"name": "x"}])
    with pytest.raises(ValueError, match=r"offers\.0\.discount"):
        PredictionsConfig(offers=[{"name": "x", "discount": 150}])
