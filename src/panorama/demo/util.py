"""Small vectorised helpers shared by the demo generator (times, ids, grouping, sampling)."""

from __future__ import annotations

import numpy as np

DAY = 86_400
YEAR = 365.25 * DAY

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_POS = np.r_[0:8, 9:13, 14:18, 19:23, 24:36]


def sreplace(values, old: str, new: str) -> np.ndarray:
    """np.strings.replace that also accepts an empty array (numpy fails on those)."""
    values = np.asarray(values)
    if values.size == 0:
        return values.astype(str)
    return np.strings.replace(values, old, new)


def ts_text(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds -> 'YYYY-MM-DD HH:MM:SS' (UTC)."""
    text = np.datetime_as_string(np.asarray(seconds, dtype="int64").astype("datetime64[s]"), unit="s")
    return sreplace(text, "T", " ")


def iso_z(seconds: np.ndarray, millis: np.ndarray) -> np.ndarray:
    """Epoch seconds + milliseconds -> 'YYYY-MM-DDTHH:MM:SS.mmmZ' (UTC)."""
    ms = np.asarray(seconds, dtype="int64") * 1000 + np.asarray(millis, dtype="int64")
    return np.strings.add(np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms"), "Z")


def date_text(days: np.ndarray, fmt: str = "%d/%m/%Y") -> np.ndarray:
    """Days since 1970-01-01 -> a date string in `fmt` (only %d/%m/%Y and %Y-%m-%d)."""
    iso = np.datetime_as_string(np.asarray(days, dtype="int64").astype("datetime64[D]"))
    if fmt == "%Y-%m-%d":
        return iso
    y, m, d = np.strings.slice(iso, 0, 4), np.strings.slice(iso, 5, 7), np.strings.slice(iso, 8, 10)
    return cat(d, "/", m, "/", y)


def cat(*parts) -> np.ndarray:
    """Element-wise string concatenation of arrays and/or scalars."""
    out = np.asarray(parts[0]).astype(str)
    for part in parts[1:]:
        out = np.strings.add(out, np.asarray(part).astype(str))
    return out


def zpad(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers -> zero-padded decimal strings of `width` characters."""
    values = np.asarray(values, dtype="int64")
    powers = 10 ** np.arange(width - 1, -1, -1, dtype="int64")
    digits = ((values[:, None] // powers) % 10 + 48).astype(np.uint8)
    return np.ascontiguousarray(digits).view(f"S{width}").ravel().astype(f"U{width}")


def money(pence: np.ndarray) -> np.ndarray:
    """Integer pence -> '12.34'."""
    pence = np.asarray(pence, dtype="int64")
    sign = np.where(pence < 0, "-", "")
    pence = np.abs(pence)
    return cat(sign, (pence // 100).astype(str), ".", zpad(pence % 100, 2))


def uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random version-4 UUID strings."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = np.empty((n, 32), np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 15]
    out = np.full((n, 36), ord("-"), np.uint8)
    out[:, _UUID_POS] = hexed
    return out.view("S36").ravel().astype("U36")


def starts_of(counts: np.ndarray) -> np.ndarray:
    """Start offsets of consecutive groups of the given sizes."""
    starts = np.zeros(len(counts), dtype="int64")
    if len(counts) > 1:
        np.cumsum(counts[:-1], out=starts[1:])
    return starts


def rank_in_groups(counts: np.ndarray) -> np.ndarray:
    """For groups laid out consecutively with these sizes: 0,1,..,k-1 within each group."""
    counts = np.asarray(counts, dtype="int64")
    total = int(counts.sum())
    return np.arange(total, dtype="int64") - np.repeat(starts_of(counts), counts)




def choice_rows(rng: np.random.Generator, cum: np.ndarray) -> np.ndarray:
    """Sample one column per row from row-wise cumulative probabilities (last column = 1)."""
    u = rng.random(len(cum))[:, None]
    return np.minimum((u > cum).sum(axis=1), cum.shape[1] - 1)


def pick(rng: np.random.Generator, options, n: int, p=None) -> np.ndarray:
    """n draws from a tuple of strings (optionally weighted), as a string array."""
    arr = np.asarray(options)
    if p is not None:
        p = np.asarray(p, dtype=float)
        p = p / p.sum()
    return arr[rng.choice(len(arr), size=n, p=p)]


def zipf_weights(n: int, s: float = 0.9) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()
