"""Append-only writers for the demo files: CSV built with vectorised string ops, JSON lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from panorama.demo.util import ts_text

SD = np.dtypes.StringDType()

# integer epoch-second columns written as 'YYYY-MM-DD HH:MM:SS' (negative = blank)
TIME_COLUMNS = frozenset({"created_at", "ordered_at", "event_at", "opened_at", "resolved_at",
                          "answered_at", "joined_at", "signup_at", "churn_at", "sent_at"})


def csv_field(values: np.ndarray) -> np.ndarray:
    """Quote the values that need it (a comma, quote or line break), RFC 4180 style."""
    v = np.asarray(values).astype(SD)
    if len(v) == 0:
        return v
    needs = (np.strings.find(v, ",") >= 0) | (np.strings.find(v, '"') >= 0) | (np.strings.find(v, "\n") >= 0)
    if not needs.any():
        return v
    quoted = np.strings.add(np.strings.add('"', np.strings.replace(v, '"', '""')), '"')
    return np.where(needs, quoted, v)


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
        line = None
        for name in self.columns:
            col = np.asarray(data[name])
            if len(col) != n:
                raise ValueError(f"{self.path.name}: column {name} has {len(col)} rows, expected {n}")
            if name in TIME_COLUMNS and col.dtype.kind in "iu":
                col = np.where(col < 0, "", ts_text(np.maximum(col, 0)))
            field = csv_field(col)
            line = field if line is None else np.strings.add(np.strings.add(line, ","), field)
        self._fh.write("\n".join(line.tolist()))
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
