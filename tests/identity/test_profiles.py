"""Golden record, profile reads, exports, evaluation and the CLI."""

from __future__ import annotations

import csv

import duckdb
from typer.testing import CliRunner

from panorama.cli import app
from panorama.identity.evaluate import evaluate_files, score_tables

from .conftest import write_project

runner = CliRunner()


def test_pair_scores_from_cluster_sizes(tmp_path):
    # truth: A = r1 r2 r3, B = r4 r5; predicted: P1 = r1 r2, P2 = r3 r4 r5, r6 only predicted
    truth = tmp_path / "truth.csv"
    truth.write_text("source,record_id,person_id\n" + "".join(
        f"s,r{i},{p}\n" for i, p in [(1, "A"), (2, "A"), (3, "A"), (4, "B"), (5, "B")]))  # fmt: skip
    pred = tmp_path / "pred.csv"
    pred.write_text("source,record_id,profile_id\n" + "".join(
        f"s,r{i},{p}\n" for i, p in [(1, "P1"), (2, "P1"), (3, "P2"), (4, "P2"), (5, "P2"), (6, "P3")]))  # fmt: skip
    s = evaluate_files(pred, truth)
    # true pairs C(3,2)+C(2,2) = 4; predicted C(2,2)+C(3,2) = 4; correct: (r1,r2), (r4,r5) = 2
    assert (s.true_pairs, s.predicted_pairs, s.correct_pairs) == (4, 4, 2)
    assert s.precision == s.recall == s.f1 == 0.5
    assert s.rows == 5 and s.rows_missing_in_truth == 1 and s.rows_missing_in_prediction == 0
    con = duckdb.connect()
    perfect = score_tables(con, f"(SELECT source, record_id, person_id AS profile_id FROM read_csv('{truth}'))",
                           f"read_csv('{truth}')")  # fmt: skip
    assert perfect.f1 == 1.0


def test_golden_record_rules(tmp_path):
    project = write_project(tmp_path / "p")
    project.ingest()
    project.unify()
    from panorama.profiles.read import get_profile

    with project.store(read_only=True) as store:
        rob = get_profile(store, "email:ROB.SMITH@gmail.com", project.project.config)
    assert rob is not None
    a = rob.attributes
    # names by source priority (CRM 10 over shop 5), then the latest: the second account's "Bob"
    assert a["first_name"]["value"] == "Bob" and a["first_name"]["source"] == "crm"
    assert a["first_name"]["rule"] == "source_priority"
    # email: the value most rows carry
    assert a["email"]["value"] == "rob.smith@gmail.com" and a["email"]["rule"] == "most_frequent"
    assert a["birth_date"]["value"] == "1980-02-01"
    assert {"source": "crm", "record_id": "C1"} in [{"source": r["source"], "record_id": r["record_id"]}
                                                     for r in rob.records]  # fmt: skip
    assert rob.events["count"] == 2  # the two shop orders
    assert {i["type"] for i in rob.identifiers} >= {"email", "phone", "user_id"}

    config = project.root / "panorama.yaml"
    config.write_text(config.read_text().replace(
        "  splink: {enabled: false}",
        "  splink: {enabled: false}\n  survivorship: {attributes: {first_name: first_seen, full_name: [shop]}}"))  # fmt: skip
    with project.store(read_only=True) as store:
        rob = get_profile(store, rob.profile_id, project.project.config)
    assert rob.attributes["first_name"]["value"] == "Robert"
    assert rob.attributes["full_name"]["source"] == "shop"


def test_exports_and_cli(tmp_path):
    project = write_project(tmp_path / "p")
    project.ingest()
    result = runner.invoke(app, ["unify", "--project", str(project.root)])
    assert result.exit_code == 0, result.output
    assert "profiles" in result.output
    out = tmp_path / "identities.csv"
    result = runner.invoke(
        app, ["export", "identities", "-o", str(out), "--project", str(project.root)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 9 + 3 + 6 + 15  # every record and event once
    assert len({(r["source"], r["record_id"]) for r in rows}) == len(rows)
    ids = tmp_path / "identifiers.csv"
    assert (
        runner.invoke(
            app, ["export", "identifiers", "-o", str(ids), "--project", str(project.root)]
        ).exit_code
        == 0
    )
    idents = list(csv.DictReader(ids.open()))
    assert {"profile_id", "type", "value"} <= set(idents[0])
    profiles = tmp_path / "profiles.csv"
    result = runner.invoke(
        app, ["export", "profiles", "-o", str(profiles), "--project", str(project.root)]
    )
    assert result.exit_code == 0, result.output
    prow = list(csv.DictReader(profiles.open()))
    assert len({r["profile_id"] for r in prow}) == len(prow) == len({r["profile_id"] for r in rows})
    assert "first_name" in prow[0] and "provenance" in prow[0]

    result = runner.invoke(
        app, ["profile", "show", "phone:07911 123456", "--project", str(project.root)]
    )
    assert result.exit_code == 0, result.output
    assert "Smith" in result.output and "golden record" in result.output
    result = runner.invoke(
        app, ["profile", "show", "nobody@nowhere.org", "--project", str(project.root)]
    )
    assert result.exit_code == 1 and "no profile" in result.output

    truth = tmp_path / "truth.csv"
    with truth.open("w") as f:
        f.write("source,record_id,person_id\n")
        for r in rows:
            f.write(f"{r['source']},{r['record_id']},{r['profile_id']}\n")
    result = runner.invoke(
        app,
        ["evaluate", "identity", "--truth", str(truth), "--json", "--project", str(project.root)],
    )
    assert result.exit_code == 0, result.output
    assert '"f1":1.0' in result.output
    result = runner.invoke(app, ["evaluate", "identity", "--truth", str(tmp_path / "missing.csv"),
                                 "--project", str(project.root)])  # fmt: skip
    assert result.exit_code == 1 and "not found" in result.output


def test_before_unify_exports_are_provisional(tmp_path):
    from panorama.identity.export import membership_sql

    project = write_project(tmp_path / "p")
    project.ingest()
    with project.store(read_only=True) as store:
        assert membership_sql(store) is None
    assert len(project.membership()) == 9 + 3 + 6 + 15  # one profile per row
