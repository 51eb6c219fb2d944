"""The hypothesis backlog: ideas scored by ICE (impact, confidence, ease; 1-10 each), ranked by
their mean, linked to the experiment that tests them; the outcome is the experiment's verdict
(or one recorded by hand). Table `hypotheses` (panorama.journeys.schema, migration 800)."""

from __future__ import annotations

from datetime import UTC, datetime

from panorama.store import Store, one

STATUSES = ("backlog", "running", "won", "lost", "inconclusive", "dropped")


class HypothesisError(Exception):
    pass


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _score(name: str, value: int) -> int:
    if not isinstance(value, int) or not 1 <= value <= 10:
        raise HypothesisError(f"{name}: give a whole number from 1 to 10 (got {value!r})")
    return value


def add(store: Store, title: str, impact: int, confidence: int, ease: int, description: str | None = None) -> dict:
    if not title.strip():
        raise HypothesisError("title: give the hypothesis (e.g. 'a one-page checkout lifts conversion')")
    row = one(store.execute(
        "INSERT INTO hypotheses (title, description, impact, confidence, ease, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [title.strip(), description, _score("impact", impact), _score("confidence", confidence),
         _score("ease", ease), _now(), _now()]))  # fmt: skip
    return get(store, int(row[0]))


def get(store: Store, hypothesis_id: int) -> dict:
    rows = _rows(store, "WHERE id = ?", [hypothesis_id])
    if not rows:
        raise HypothesisError(f"no hypothesis {hypothesis_id}; see `panorama hypotheses list`")
    return rows[0]


def _rows(store: Store, where: str = "", params: list | None = None) -> list[dict]:
    result = store.execute(
        "SELECT id, title, description, impact, confidence, ease, "
        "round((impact + confidence + ease) / 3.0, 2) AS ice, status, experiment, outcome, created_at, updated_at "
        f"FROM hypotheses {where} ORDER BY ice DESC, impact DESC, id", params or [])  # fmt: skip
    names = [d[0] for d in result.description]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]


def ranked(store: Store, status: str | None = None) -> list[dict]:
    """The backlog ranked by ICE score (mean of impact, confidence and ease), best first."""
    if not store.table_exists("hypotheses"):  # a read-only store opened before migration 800
        return []
    rows = _rows(store, "WHERE status = ?", [status]) if status else _rows(store)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def link(store: Store, hypothesis_id: int, experiment: str, status: str = "running") -> dict:
    get(store, hypothesis_id)
    store.execute("UPDATE hypotheses SET experiment = ?, status = ?, updated_at = ? WHERE id = ?",
                  [experiment, status, _now(), hypothesis_id])
    return get(store, hypothesis_id)


def record_outcome(store: Store, hypothesis_id: int, status: str, outcome: str | None = None) -> dict:
    if status not in STATUSES:
        raise HypothesisError(f"status {status!r}: use one of {', '.join(STATUSES)}")
    get(store, hypothesis_id)
    store.execute("UPDATE hypotheses SET status = ?, outcome = coalesce(?, outcome), updated_at = ? WHERE id = ?",
                  [status, outcome, _now(), hypothesis_id])
    return get(store, hypothesis_id)


def outcome_from_analysis(result: dict) -> tuple[str, str]:
    """(status, outcome text) from an experiment analysis (`analysis.analyze`)."""
    verdict = result["verdict"]
    if verdict == "running" or verdict.startswith("invalid"):
        return ("running" if verdict == "running" else "inconclusive"), verdict
    parts = []
    for c in result["comparisons"]:
        if c.get("rel_lift") is not None:
            lo, hi = c["rel_ci"]
            parts.append(f"{c['variant']}: {c['rel_lift']:+.1%} (95% CI {lo:+.1%} to {hi:+.1%}), p={c['p_value']:.3g}")
    text = f"{verdict}; " + "; ".join(parts)
    if "beats" in verdict:
        return "won", text
    if "worse" in verdict:
        return "lost", text
    return "inconclusive", text


def evaluate(store: Store, config, hypothesis_id: int, events_sql: str | None = None) -> dict:
    """Analyse the linked experiment and record its outcome on the hypothesis."""
    from panorama.experiments.analysis import analyze

    h = get(store, hypothesis_id)
    if not h["experiment"]:
        raise HypothesisError(f"hypothesis {hypothesis_id} has no experiment; "
                              f"`panorama hypotheses link {hypothesis_id} EXPERIMENT`")
    status, text = outcome_from_analysis(analyze(store, config, h["experiment"], events_sql=events_sql))
    return record_outcome(store, hypothesis_id, status, text)
