"""Pairwise precision, recall and F1 of a clustering against a truth file.

Pairs are counted from cluster sizes, never enumerated: with n_ij rows in predicted profile
i and true person j, the pairs both agree on are sum C(n_ij, 2); predicted pairs are
sum_i C(n_i, 2); true pairs sum_j C(n_j, 2) (C(n, 2) = n (n - 1) / 2).

Only rows present in both the prediction and the truth are scored; rows missing from either
side are reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from panorama.store import one


@dataclass
class PairScores:
    rows: int
    rows_missing_in_prediction: int
    rows_missing_in_truth: int
    predicted_profiles: int
    true_persons: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int
    precision: float
    recall: float
    f1: float

    def as_dict(self) -> dict:
        return asdict(self)


def _reader(path: Path) -> str:
    text = str(path).replace("'", "''")
    if path.suffix.lower() == ".parquet":
        return f"read_parquet('{text}')"
    return f"read_csv('{text}', header = true, all_varchar = true)"


def score_tables(con: duckdb.DuckDBPyConnection, predicted: str, truth: str) -> PairScores:
    """`predicted(source, record_id, profile_id)` and `truth(source, record_id, person_id)`
    (SQL relations) -> pairwise scores."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _eval AS
        SELECT t.source, t.record_id, t.person_id, p.profile_id
        FROM (SELECT DISTINCT CAST(source AS VARCHAR) AS source, CAST(record_id AS VARCHAR) AS record_id,
                     CAST(person_id AS VARCHAR) AS person_id FROM {truth}) t
        FULL OUTER JOIN (SELECT DISTINCT CAST(source AS VARCHAR) AS source, CAST(record_id AS VARCHAR) AS record_id,
                     CAST(profile_id AS VARCHAR) AS profile_id FROM {predicted}) p
          USING (source, record_id)
        """
    )
    missing_pred, missing_truth = one(con.execute(
        "SELECT count(*) FILTER (WHERE profile_id IS NULL), count(*) FILTER (WHERE person_id IS NULL) FROM _eval"
    ))
    row = one(con.execute(
        """
        WITH e AS (SELECT * FROM _eval WHERE profile_id IS NOT NULL AND person_id IS NOT NULL),
        cell AS (SELECT count(*)::HUGEINT AS n FROM e GROUP BY profile_id, person_id),
        pred AS (SELECT count(*)::HUGEINT AS n FROM e GROUP BY profile_id),
        tru AS (SELECT count(*)::HUGEINT AS n FROM e GROUP BY person_id)
        SELECT (SELECT count(*) FROM e),
               (SELECT count(*) FROM pred), (SELECT count(*) FROM tru),
               (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM tru),
               (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM pred),
               (SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM cell)
        """
    ))
    con.execute("DROP TABLE _eval")
    rows, n_pred, n_true, true_pairs, pred_pairs, correct = (int(x) for x in row)
    precision = correct / pred_pairs if pred_pairs else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PairScores(rows, int(missing_pred), int(missing_truth), n_pred, n_true, true_pairs, pred_pairs,
                      correct, precision, recall, f1)  # fmt: skip


def evaluate_store(store, truth: Path) -> PairScores:
    """Score the store's current identities (`export identities`) against `truth`
    (CSV or Parquet with source, record_id, person_id)."""
    from panorama.profiles.export import membership_sql

    cur = store.cursor()
    columns = {
        c.lower() for c in cur.execute(f"SELECT * FROM {_reader(truth)} LIMIT 0").fetchdf().columns
    }
    missing = {"source", "record_id", "person_id"} - columns
    if missing:
        raise ValueError(f"{truth}: missing column(s) {', '.join(sorted(missing))}; "
                         "expected source, record_id, person_id")  # fmt: skip
    return score_tables(cur, f"({membership_sql(store)})", _reader(truth))


def evaluate_files(predicted: Path, truth: Path) -> PairScores:
    """Score an `export identities` file against a truth file."""
    con = duckdb.connect()
    try:
        return score_tables(con, _reader(predicted), _reader(truth))
    finally:
        con.close()
