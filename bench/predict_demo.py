"""Backtest churn and CLV on a demo project, beside the baselines and against the latent truth.

    .venv/bin/panorama demo generate /tmp/demo --customers 20000 && (cd /tmp/demo && panorama ingest)
    .venv/bin/python bench/predict_demo.py /tmp/demo --as-of 2023-08-16 [--identity truth|store]

`--identity truth` groups events by the generator's true person (truth/identities.csv), which
measures the models apart from identity resolution; `store` reads events through
`profile_events_sql` (the resolved profiles after `panorama unify`). Besides the observed
outcome, churn scores are also compared with the latent truth: whether the person's
generated churn date falls before the end of the horizon.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from panorama.config import load_project
from panorama.predict.commands import report_markdown
from panorama.predict.features import FEATURE_NAMES, Sources
from panorama.predict.service import Predictor
from panorama.store import open_store

RECORD_ID = ("CASE WHEN starts_with(e.message_id, e.source || ':') "
             "THEN substr(e.message_id, length(e.source) + 2) ELSE e.message_id END")


def truth_sources(store, directory: Path) -> Sources:
    store.execute(f"""CREATE OR REPLACE TEMP TABLE _truth_ids AS
                      SELECT * FROM read_csv('{directory / 'truth/identities.csv'}', all_varchar = true)""")
    events = f"""SELECT t.person_id AS profile_id, e.* FROM events e
                 JOIN _truth_ids t ON t.source = e.source AND t.record_id = {RECORD_ID}"""
    records = """SELECT t.person_id AS profile_id, r.source, r.ts, r.ingested_at, r.identifiers, r.attributes
                 FROM records r JOIN _truth_ids t USING (source, record_id)"""
    return Sources(events, records)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("directory", type=Path)
    ap.add_argument("--as-of", default="2023-08-16")
    ap.add_argument("--identity", choices=("truth", "store"), default="truth")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    project = load_project(args.directory)
    as_of = dt.datetime.fromisoformat(args.as_of)
    with open_store(project.store_path) as store:
        sources = truth_sources(store, args.directory) if args.identity == "truth" else None
        predictor = Predictor(store, project.config.predictions, sources, log=print)
        report = predictor.evaluate(as_of, save=False)
        print(report_markdown(report))
        if "churn" in report["results"] and args.identity == "truth":
            h = project.config.predictions.churn.horizon_days
            test = predictor.labelled(as_of, h)
            test = test[test["frequency"] > 0]
            persons = store.execute(f"""
                SELECT person_id AS profile_id, TRY_CAST(nullif(churn_at, '') AS TIMESTAMP) AS churn_at
                FROM read_csv('{args.directory / 'truth/persons.csv'}', all_varchar = true)""").df()
            test = test.merge(persons, on="profile_id", how="left")
            latent = (test["churn_at"].notna() & (test["churn_at"] < as_of + dt.timedelta(days=h))).to_numpy()
            # retrain exactly as the backtest did to get the model's scores for the same rows
            cand = predictor.train("churn", as_of)
            p = cand.boosters["churn"].predict(test[list(FEATURE_NAMES)])
            observed = test["churned"].to_numpy()
            print(f"\nlatent truth: {latent.mean():.3f} of the {len(test):,} customers had churned (latent) "
                  f"by {as_of + dt.timedelta(days=h):%Y-%m-%d}; observed no-purchase rate {observed.mean():.3f}")
            print(f"ROC AUC of the churn model against latent churn: {roc_auc_score(latent, p):.3f}; "
                  f"against the observed label: {roc_auc_score(observed, p):.3f}; "
                  f"observed label against latent churn (the ceiling of an observable label): "
                  f"{roc_auc_score(latent, observed):.3f}")
            report["latent"] = {"latent_rate": float(latent.mean()), "auc_latent": float(roc_auc_score(latent, p)),
                                "auc_observed": float(roc_auc_score(observed, p)),
                                "auc_label_vs_latent": float(roc_auc_score(latent, observed)),
                                "n": int(len(test)), "latent_ok": bool(np.isfinite(p).all())}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
