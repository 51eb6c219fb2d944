"""Exports of identities, identifiers and profiles (CSV or Parquet).

Membership comes from `panorama.profiles.membership_sql`: the identity graph once
`panorama unify` has run, otherwise one profile per source record or event.
"""

from __future__ import annotations

from pathlib import Path

from panorama.store import Store

SUFFIXES = (".csv", ".parquet")


class ExportError(Exception):
    pass


def _copy(store: Store, sql: str, out: Path) -> int:
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise ExportError(f"{out}: unsupported output type {suffix or '(none)'}; use .csv or .parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = "(FORMAT csv, HEADER true)" if suffix == ".csv" else "(FORMAT parquet)"
    tmp = out.with_name(out.name + ".tmp")
    store.execute(f"COPY ({sql}) TO '{str(tmp).replace(chr(39), chr(39) * 2)}' {fmt}")
    tmp.replace(out)  # never leave a half-written export under the real name
    return int(store.scalar(f"SELECT count(*) FROM ({sql})"))


def membership_sql(store: Store) -> str:
    """(source, record_id, profile_id) for every record and event."""
    from panorama.profiles.provisional import membership_sql as provisional

    try:
        from panorama.identity.export import membership_sql as resolved
    except ModuleNotFoundError:
        return provisional(store)
    return resolved(store) or provisional(store)


def export_identities(store: Store, out: Path) -> int:
    sql = f"SELECT source, record_id, profile_id FROM ({membership_sql(store)}) ORDER BY source, record_id"
    return _copy(store, sql, out)


def identifiers_sql(store: Store) -> str:
    try:
        from panorama.identity.export import identifiers_sql as resolved
    except ModuleNotFoundError:
        resolved = None
    if resolved is not None and (sql := resolved(store)):
        return sql
    from panorama.profiles.provisional import identifiers_sql as provisional

    return provisional(store)


def export_identifiers(store: Store, out: Path) -> int:
    return _copy(store, f"SELECT profile_id, type, value FROM ({identifiers_sql(store)}) ORDER BY ALL", out)


def profiles_sql(store: Store) -> str:
    try:
        from panorama.identity.export import profiles_sql as resolved
    except ModuleNotFoundError:
        resolved = None
    if resolved is not None and (sql := resolved(store)):
        return sql
    from panorama.profiles.provisional import profiles_sql as provisional

    return provisional(store)


def _with_predictions(store: Store, sql: str) -> str:
    """Add the latest predictions (churn_probability, predicted_clv, their drivers as JSON) when
    `panorama predict` has run."""
    try:
        from panorama.predict.service import profile_scores_sql
    except ModuleNotFoundError:
        return sql
    scores = profile_scores_sql(store)
    if scores is None:
        return sql
    return f"SELECT p.*, s.* EXCLUDE (profile_id) FROM ({sql}) p LEFT JOIN ({scores}) s USING (profile_id)"


def export_profiles(store: Store, out: Path) -> int:
    return _copy(store, f"SELECT * FROM ({_with_predictions(store, profiles_sql(store))}) ORDER BY profile_id", out)
