"""Segment JSON-lines files in bulk: DuckDB's JSON functions instead of a Python loop per line.

`normalize_message` (segment.py) is the definition of how a Segment message becomes a row
of the log; it costs ~100 µs of Python per message, hours for the tens of millions of
messages of a large analytics export. This module computes the same row in one SQL pass
over a chunk of lines, for the messages whose every field is of the plain shape SDKs send:

- `type` one of the six types in lower case; `messageId`, `userId`, `anonymousId`,
  `groupId`, `previousId` strings (or absent/null); at least one of userId/anonymousId;
- `event` (track) and `name` (page/screen) strings that start and end with printable ASCII;
- `traits`, `properties`, `context` objects (or absent/null), no duplicate keys at the top
  level of the message or of those objects;
- timestamps ISO 8601 `YYYY-MM-DD[T ]HH:MM:SS[.fff[fff]][Z]` in the years 1900-2200;
- promoted numeric properties JSON numbers (or absent/null/""), promoted text properties
  strings, integers, objects or arrays; email/phone traits strings that start and end
  with printable ASCII.

Every other line (invalid JSON, a number where a string is expected, an offset timestamp,
a message without messageId...) is `eligible = false` and goes through
`normalize_message`, so it gets exactly the row or the error it always got. The one
difference: `traits`/`properties`/`context` are stored as DuckDB writes the JSON rather
than as orjson does — equal in value, and byte for byte equal except for numbers of 1e16
and more (written in full instead of with an exponent). tests/ingest/test_segment_bulk.py
checks both paths give the same rows.
"""

from __future__ import annotations

import json

from panorama.ingest.segment import EVENT_COLUMNS, MESSAGE_TYPES
from panorama.store.schema import NUMERIC_PROPERTIES, PROMOTED_PROPERTIES

_TEXT_IDS = ("messageId", "userId", "anonymousId", "groupId", "previousId")
_OBJECTS = ("traits", "properties", "context")
_TIMES = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
_TOP = ("type", *_TEXT_IDS, "event", "name", *_OBJECTS, *_TIMES)
_IDS = ("email", "phone")
_PROPS = (*PROMOTED_PROPERTIES, "total")
_TIME = r"\d{4}-\d{2}-\d{2}[T ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{3}|\.\d{6})?[Zz]?"
# DuckDB's parser accepts NaN, Infinity and trailing commas, orjson does not: such lines
# (and any line with those words in it) take the Python path, which rejects or loads them.
_LAX = r",[ \t\r\n]*[}\]]|NaN|Infinity"


def _q(name: str) -> str:
    return f'"{name}"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _struct(keys) -> str:
    """A from_json structure reading each key as its JSON text (NULL when absent or null)."""
    return _lit(json.dumps(dict.fromkeys(keys, "JSON")))


# Predicates and values over the JSON text `x` of one value (as from_json gives it).
def _is_str(x: str) -> str:
    return f"starts_with({x}, '\"')"


def _is_obj(x: str) -> str:
    return f"starts_with({x}, '{{')"


def _is_num(x: str) -> str:
    return f"regexp_matches({x}, '^-?[0-9]')"


def _is_int(x: str) -> str:
    return f"regexp_full_match({x}, '-?[0-9]+')"


def _str(x: str) -> str:
    return f"(CASE WHEN {_is_str(x)} THEN (CASE WHEN contains({x}, '\\') THEN json_extract_string({x}, '$') ELSE {x}[2:-2] END) END)"


def _trimmed(s: str) -> str:
    """Python's str.strip() leaves `s` as it is (first and last characters printable ASCII
    other than space; strings with anything else at either end take the Python path)."""
    return f"(ord({s}[1]) BETWEEN 33 AND 126 AND ord({s}[-1]) BETWEEN 33 AND 126)"


def _no_duplicate_keys(obj: str) -> str:
    return f"({obj} IS NULL OR len(json_keys({obj})) = len(list_distinct(json_keys({obj}))))"


def stage_sql(source: str) -> str:
    """SELECT over `_seg_lines(__line, raw)`: for each line the log row (EVENT_COLUMNS but
    `file`; `received_at` defaults to the parameter `$now`), `_eligible` (false: take the
    Python path) and `_screen` (the identifiers the privacy guard checks)."""
    valid = (f"CASE WHEN json_valid(raw) AND regexp_matches(raw, '^[ \\t\\r\\n]*\\{{') "
             f"AND NOT regexp_matches(raw, {_lit(_LAX)}) THEN {_no_duplicate_keys('raw')} ELSE false END")  # fmt: skip
    # Level 1: one parse of the line into the JSON text of each top-level field.
    level1 = (f"SELECT __line, _valid, unnest(CASE WHEN _valid THEN from_json(raw, {_struct(_TOP)}) END) "
              f"FROM (SELECT __line, raw, {valid} AS _valid FROM _seg_lines)")  # fmt: skip
    # Level 2: the nested objects' fields (properties, context.traits, traits).
    ctx = f"(CASE WHEN {_is_obj('context')} THEN from_json(context, {_struct(['traits'])}) END)"
    level2 = (f"SELECT *, {ctx}.traits AS ctx_traits, "
              f"CASE WHEN {_is_obj('properties')} THEN from_json(properties, {_struct(_PROPS)}) END AS p, "
              f"CASE WHEN {_is_obj('traits')} THEN from_json(traits, {_struct(_IDS)}) END AS tr "
              f"FROM l1")  # fmt: skip

    level2b = (f"SELECT *, CASE WHEN {_is_obj('ctx_traits')} THEN from_json(ctx_traits, {_struct(_IDS)}) "
               f"END AS ct FROM l2")  # fmt: skip

    # Level 3: typed values, and whether each field has the plain shape.
    ok: list[str] = []
    values: dict[str, str] = {}
    types = ", ".join(_lit(t) for t in MESSAGE_TYPES)
    values["_type"] = _str('"type"')
    ok.append(f"_type IN ({types})")
    for name in _TEXT_IDS:
        values[f"_{name}"] = f"NULLIF({_str(_q(name))}, '')"
        ok.append(f"({_q(name)} IS NULL OR {_is_str(_q(name))})")
    for name in _OBJECTS:
        ok.append(f"({_q(name)} IS NULL OR {_is_obj(_q(name))})")
    for name in _TIMES:
        sv = _str(_q(name))
        values[f"_ts_{name}"] = (
            f"TRY_CAST(replace(rtrim(NULLIF({sv}, ''), 'Zz'), 'T', ' ') AS TIMESTAMP)"
        )
        ok.append(f"({_q(name)} IS NULL OR {sv} = '' OR regexp_full_match({sv}, {_lit(_TIME)}))")
    ev, nm = _str('"event"'), _str('"name"')
    ok.append(f"(_type <> 'track' OR {_trimmed(ev)})")
    ok.append(f"(_type NOT IN ('page', 'screen') OR {nm} IS NULL OR {nm} = '' OR {_trimmed(nm)})")
    values["_event"] = (f"(CASE WHEN _type = 'track' THEN {ev} WHEN _type IN ('page', 'screen') "
                        f"THEN NULLIF({nm}, '') END)")  # fmt: skip
    # identify's traits fall back on context.traits when it has none of its own
    values["_from_context"] = (f"(_type = 'identify' AND (traits IS NULL OR traits = '{{}}') "
                               f"AND {_is_obj('ctx_traits')})")  # fmt: skip
    for kind in _IDS:
        for holder in ("tr", "ct"):
            sv = _str(f"{holder}.{kind}")
            values[f"_{holder}_{kind}"] = f"NULLIF({sv}, '')"
            ok.append(f"({sv} IS NULL OR {sv} = '' OR {_trimmed(sv)})")
    for name in _PROPS:
        x = f'p."{name}"'
        if name in NUMERIC_PROPERTIES or name == "total":
            values[f"_p_{name}"] = f"(CASE WHEN {_is_num(x)} THEN CAST({x} AS DOUBLE) END)"
            ok.append(f"({x} IS NULL OR {_is_num(x)} OR {_str(x)} = '')")
        else:
            values[f"_p_{name}"] = f"(CASE WHEN {_is_int(x)} THEN CAST({x} AS VARCHAR) ELSE {_str(x)} END)"
            ok.append(
                f"({x} IS NULL OR {_is_str(x)} OR {_is_int(x)} OR {_is_obj(x)} OR starts_with({x}, '['))"
            )
    level3 = ", ".join([*(f"{expr} AS {name}" for name, expr in values.items()),
                        f"COALESCE(_valid AND {' AND '.join(ok)}, false) AS _ok"])  # fmt: skip

    # Level 4: the log row.
    traits = "(CASE WHEN _from_context THEN ctx_traits ELSE traits END)"
    items = [
        "{'type': 'user_id', 'value': _userId}",
        "{'type': 'anonymous_id', 'value': _anonymousId}",
    ]
    for kind in _IDS:
        tr = f"(CASE WHEN _from_context THEN _ct_{kind} ELSE _tr_{kind} END)"
        ct = f"_ct_{kind}"
        items.append(f"{{'type': {_lit(kind)}, 'value': {tr}}}")
        items.append(
            f"{{'type': {_lit(kind)}, 'value': CASE WHEN {ct} IS DISTINCT FROM {tr} THEN {ct} END}}"
        )
    received = "COALESCE(_ts_receivedAt, CAST($now AS TIMESTAMP))"
    columns = {
        "message_id": "_messageId", "type": "_type", "event": "_event", "source": _lit(source),
        "user_id": "_userId", "anonymous_id": "_anonymousId", "group_id": "_groupId",
        "previous_id": "_previousId",
        "timestamp": f"COALESCE(_ts_timestamp, _ts_originalTimestamp, {received})",
        "original_timestamp": "COALESCE(_ts_originalTimestamp, _ts_timestamp)",
        "sent_at": "_ts_sentAt", "received_at": received,
        "identifiers": f"list_filter([{', '.join(items)}], i -> i.value IS NOT NULL)",
        "traits": f"NULLIF({traits}, '{{}}')",
        "properties": "NULLIF(properties, '{}')",
        "context": "NULLIF(context, '{}')",
        **{name: f"_p_{name}" for name in PROMOTED_PROPERTIES},
        "line": "__line",
    }  # fmt: skip
    columns["revenue"] = "COALESCE(_p_revenue, _p_total)"
    assert set(columns) | {"file"} == set(EVENT_COLUMNS)
    # What the privacy guard screens: the identifiers, and previousId as either kind of id.
    columns["_screen"] = ("list_concat(identifiers, CASE WHEN _previousId IS NOT NULL THEN "
                          "[{'type': 'user_id', 'value': _previousId}, "
                          "{'type': 'anonymous_id', 'value': _previousId}] ELSE [] END)")  # fmt: skip
    # a timestamp that has the pattern but is no date (2021-02-30) or is out of range is not plain
    times = " AND ".join(
        f"({_q(n)} IS NULL OR {_str(_q(n))} = '' OR year(_ts_{n}) BETWEEN 1900 AND 2200)"
        for n in _TIMES
    )
    eligible = (f"_ok AND {times} AND _messageId IS NOT NULL AND "
                f"(_userId IS NOT NULL OR _anonymousId IS NOT NULL) AND "
                f"(_type <> 'group' OR _groupId IS NOT NULL) AND (_type <> 'alias' OR _previousId IS NOT NULL) "
                f"AND {_no_duplicate_keys('traits')} AND {_no_duplicate_keys('properties')} AND "
                f"{_no_duplicate_keys('context')} AND {_no_duplicate_keys('ctx_traits')}")  # fmt: skip
    level4 = ", ".join([*(f"{expr} AS {name}" for name, expr in columns.items()),
                        f"COALESCE({eligible}, false) AS _eligible"])  # fmt: skip
    # Each level MATERIALIZED: inlined, every reference to a field would parse the line again.
    return (f"WITH l1 AS MATERIALIZED ({level1}), l2 AS MATERIALIZED ({level2}), "
            f"l2b AS MATERIALIZED ({level2b}), l3 AS MATERIALIZED (SELECT *, {level3} FROM l2b) SELECT {level4} FROM l3")  # fmt: skip


__all__ = ["stage_sql"]
