"""The model registry: every trained model, versioned per kind, in `predict_models`.

A model records its training window(s), feature names and feature-set version, parameters,
validation metrics beside the baselines, global importance, the fingerprint of the data it
was trained on, and whether it was accepted (and why not). Scoring uses the latest accepted
model of a kind (by as-of date, then version) with the same horizon and feature set.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import orjson

from panorama.store import Store, one


@dataclass
class ModelRecord:
    model_id: str
    kind: str
    version: int
    created_at: dt.datetime
    as_of: dt.datetime
    horizon_days: int
    windows: list
    features: list[str]
    feature_set: str
    params: dict
    metrics: dict
    importance: list
    data_fingerprint: str
    config_hash: str
    n_train: int
    status: str
    reason: str | None
    train_seconds: float
    artifact: dict = field(repr=False, default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


_COLUMNS = ("model_id", "kind", "version", "created_at", "as_of", "horizon_days", "windows", "features",
            "feature_set", "params", "metrics", "importance", "data_fingerprint", "config_hash",
            "n_train", "status", "reason", "train_seconds", "artifact")
_JSON = {"windows", "features", "params", "metrics", "importance", "artifact"}


def _row(row: tuple) -> ModelRecord:
    data = dict(zip(_COLUMNS, row, strict=True))
    for key in _JSON:
        data[key] = orjson.loads(data[key]) if data[key] is not None else None
    return ModelRecord(**data)


def register(store: Store, **fields) -> ModelRecord:
    """Insert a new version of `fields['kind']`; returns the stored record."""
    kind = fields["kind"]
    with store.transaction() as cur:
        version = one(cur.execute(
            "SELECT coalesce(max(version), 0) + 1 FROM predict_models WHERE kind = ?", [kind]
        ))[0]
        record = ModelRecord(model_id=f"{kind}-v{version}", version=version,
                             created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None), **fields)
        values = [getattr(record, c) for c in _COLUMNS]
        values = [orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode() if c in _JSON else v
                  for c, v in zip(_COLUMNS, values, strict=True)]
        cur.execute(f"INSERT INTO predict_models ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    values)
    return record


def get(store: Store, model_id: str) -> ModelRecord | None:
    row = one(store.execute(f"SELECT {', '.join(_COLUMNS)} FROM predict_models WHERE model_id = ?",
                        [model_id]))
    return _row(row) if row else None


def reusable(store: Store, kind: str, as_of: dt.datetime, horizon_days: int, fingerprint: str,
             config_hash: str, feature_set: str) -> ModelRecord | None:
    """A model trained for exactly this as-of date, horizon, data and settings."""
    row = one(store.execute(
        f"""SELECT {', '.join(_COLUMNS)} FROM predict_models
            WHERE kind = ? AND as_of = ? AND horizon_days = ? AND data_fingerprint = ?
              AND config_hash = ? AND feature_set = ?
            ORDER BY version DESC LIMIT 1""",
        [kind, as_of, horizon_days, fingerprint, config_hash, feature_set],
    ))
    return _row(row) if row else None


def latest_accepted(store: Store, kind: str, horizon_days: int, feature_set: str,
                    not_after: dt.datetime | None = None) -> ModelRecord | None:
    """The latest accepted model (by as-of date, then version), trained as of `not_after` or before."""
    row = one(store.execute(
        f"""SELECT {', '.join(_COLUMNS)} FROM predict_models
            WHERE kind = ? AND horizon_days = ? AND feature_set = ? AND status = 'accepted'
              AND (CAST(? AS TIMESTAMP) IS NULL OR as_of <= CAST(? AS TIMESTAMP))
            ORDER BY as_of DESC, version DESC LIMIT 1""",
        [kind, horizon_days, feature_set, not_after, not_after],
    ))
    return _row(row) if row else None


def list_models(store: Store, kind: str | None = None) -> list[ModelRecord]:
    sql = f"SELECT {', '.join(_COLUMNS[:-1])}, NULL FROM predict_models"
    params: list = []
    if kind:
        sql += " WHERE kind = ?"
        params.append(kind)
    rows = store.execute(sql + " ORDER BY kind, version", params).fetchall()
    return [_row(r) for r in rows]
