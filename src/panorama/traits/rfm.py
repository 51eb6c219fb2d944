"""RFM: recency, frequency and monetary quintile scores (1-5) and the named segments.

Scores are computed over the **buyers** (profiles with at least one order); others get NULL.
A buyer's score on a dimension is

    score = 1 + floor(5 x (share of buyers with a strictly worse value))

so buyers with equal values always share a score (a tie never splits across quintiles, and the
result does not depend on the engine or the row order). Worse means: longer since the latest
order (R), fewer orders (F), less revenue rounded to cents (M). Equivalently, with the buyers'
values sorted ascending (x_1 <= ... <= x_n) and the breakpoints b_k = x_ceil(k n / 5),
k = 1..4: score = 1 + #{k : value > b_k}. The breakpoints are kept with each batch run and the
real-time path scores updated profiles against them.

Named segments use the widely used R x F grid (F and M are strongly correlated; M is shown but
does not move the segment):

    R \\ F |  1                  2                  3                  4                  5
    ------+---------------------------------------------------------------------------------
      5   |  New                Potential Loyalist Potential Loyalist Champions          Champions
      4   |  Promising          Potential Loyalist Potential Loyalist Loyal              Loyal
      3   |  About to Sleep     About to Sleep     Need Attention     Loyal              Loyal
      2   |  Hibernating        Hibernating        At Risk            At Risk            Can't Lose Them
      1   |  Lost               Lost               At Risk            At Risk            Can't Lose Them
"""

from __future__ import annotations

from panorama.traits.sqlgen import num_literal, q

REQUIRED = ("orders", "revenue", "days_since_last_order")
COLUMNS = ("rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_score", "rfm_segment")

SEGMENTS = (
    "Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention", "About to Sleep",
    "At Risk", "Can't Lose Them", "Hibernating", "Lost",
)  # fmt: skip

GRID: dict[int, dict[int, str]] = {
    5: {1: "New", 2: "Potential Loyalist", 3: "Potential Loyalist", 4: "Champions", 5: "Champions"},
    4: {1: "Promising", 2: "Potential Loyalist", 3: "Potential Loyalist", 4: "Loyal", 5: "Loyal"},
    3: {1: "About to Sleep", 2: "About to Sleep", 3: "Need Attention", 4: "Loyal", 5: "Loyal"},
    2: {1: "Hibernating", 2: "Hibernating", 3: "At Risk", 4: "At Risk", 5: "Can't Lose Them"},
    1: {1: "Lost", 2: "Lost", 3: "At Risk", 4: "At Risk", 5: "Can't Lose Them"},
}


def segment(r: int, f: int) -> str:
    return GRID[r][f]


def _values() -> dict[str, str]:
    # larger is better on every dimension
    return {
        "r": f"-{q('days_since_last_order')}",
        "f": q("orders"),
        "m": f"round({q('revenue')}, 2)",
    }


def breakpoints_sql(final: str) -> str:
    """One row: n (buyers), r1..r4, f1..f4, m1..m4.

    b_k = x_(ceil(k n / 5)) is the smallest value v with #(x <= v) >= ceil(k n / 5): computed from
    the histogram of the values (a few thousand distinct values, not a sort of every buyer)."""
    v = _values()
    parts = []
    for d, x in v.items():
        cols = ", ".join(
            f"min(CASE WHEN cum >= ({k} * total + 4) // 5 THEN v END) AS {d}{k}" for k in range(1, 5)
        )
        parts.append(f"""
            (SELECT max(total) AS n_{d}, {cols} FROM (
                SELECT v, sum(n) OVER (ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum,
                       sum(n) OVER () AS total
                FROM (SELECT {x} AS v, count(*) AS n FROM {final} WHERE {q('orders')} > 0 GROUP BY {x})
            )) {d}
        """)
    cols = ", ".join(f"{d}.{d}{k}" for d in v for k in range(1, 5))
    return f"SELECT coalesce(r.n_r, 0) AS n, {cols} FROM {parts[0]} CROSS JOIN {parts[1]} CROSS JOIN {parts[2]}"


def score_sql(source: str, bp: dict | None) -> str:
    """`source` with rfm_recency/frequency/monetary/score/segment added."""
    v = _values()
    if not bp or not bp.get("n"):
        scores = ", ".join(f"CAST(NULL AS BIGINT) AS {c}" for c in COLUMNS[:3])
        return f"SELECT s.*, {scores}, CAST(NULL AS VARCHAR) AS rfm_score, CAST(NULL AS VARCHAR) AS rfm_segment FROM {source} s"

    def score(d: str) -> str:
        terms = " + ".join(
            f"CASE WHEN {v[d]} > {num_literal(bp[f'{d}{k}'])} THEN 1 ELSE 0 END" for k in range(1, 5)
        )
        return f"CASE WHEN {q('orders')} > 0 THEN 1 + {terms} END"

    grid = " ".join(
        f"WHEN rfm_recency = {r} AND rfm_frequency = {f} THEN '{name.replace(chr(39), chr(39) * 2)}'"
        for r, row in GRID.items()
        for f, name in row.items()
    )
    inner = (
        f"SELECT s.*, {score('r')} AS rfm_recency, {score('f')} AS rfm_frequency, "
        f"{score('m')} AS rfm_monetary FROM {source} s"
    )
    return f"""
        SELECT x.*,
               CAST(rfm_recency AS VARCHAR) || CAST(rfm_frequency AS VARCHAR) || CAST(rfm_monetary AS VARCHAR)
                   AS rfm_score,
               CASE {grid} END AS rfm_segment
        FROM ({inner}) x
    """
