"""Append-only writers for the demo files: CSV built with vectorised string ops, JSON lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from panorama.demo.util import ts_text

# integer epoch-second columns written as 'YYYY-MM-DD HH:MM:SS' (negative = blank)
TIME_COLUMNS = frozenset({"created_at", "ordered_at", "event_at", "opened_at", "resolved_at",
                          "answered_at", "joined_at", "signup_at", "churn_at", "sent_at"})


def csv_field(values: np.ndarray) -> list[str]:
    """The values as CSV fields: quoted (RFC 4180) only when they hold a comma, quote or newline."""
    items = np.asarray(values).astype(str).tolist()
    joined = "\x00".join(items)
    if "," not in joined and '"' not in joined and "\n" not in joined:
        return items
    return [('"' + v.replace('"', '""') + '"') if ("," in v or '"' in v or "\n" in v) else v for v in items]


class CsvOut:
    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        self.columns = columns
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._fh.write(",".join(columns) + "\n")

    def write(self, data: dict) -> None:
        missing = [c for c in self.columns if c not in data]
        if missing:
            raise KeyError(f"{self.path.name}: missing columns {missing}")
        n = len(data[self.columns[0]])
        if n == 0:
            return
        fields = []
        for name in self.columns:
            col = np.asarray(data[name])
            if len(col) != n:
                raise ValueError(f"{self.path.name}: column {name} has {len(col)} rows, expected {n}")
            if name in TIME_COLUMNS and col.dtype.kind in "iu":
                col = np.where(col < 0, "", ts_text(np.maximum(col, 0)))
            fields.append(csv_field(col))
        self._fh.write("\n".join(map(",".join, zip(*fields, strict=True))))
        self._fh.write("\n")
        self.rows += n

    def close(self) -> None:
        self._fh.close()


class LinesOut:
    def __init__(self, path: Path):
        self.path = path
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "wb")  # noqa: SIM115

    def write(self, lines: list[bytes]) -> None:
        if lines:
            self._fh.write(b"\n".join(lines))
            self._fh.write(b"\n")
            self.rows += len(lines)

    def close(self) -> None:
        self._fh.close()
