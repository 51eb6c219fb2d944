"""The segment language: a SQL boolean expression over the profile, checked and compiled once.

    orders >= 2 AND lifecycle_stage <> 'lapsed'
    performed('Order Completed', within='30d') >= 2
    NOT performed('Order Completed', within='90d') AND performed('Order Completed')
    performed('Order Completed', within='90d', where='revenue > 50')
    days_until_anniversary(birthday) BETWEEN 0 AND 7

The text is parsed with sqlglot (DuckDB dialect). Only the profile's known columns (given by
the caller: attributes, traits, RFM, lifecycle, predictions) and an allow-list of functions
may appear; anything else is an error that names it, where it is, and the closest known
name. The result is one DuckDB expression over a flat row per profile (see
`panorama.segments.catalog`), evaluated the same way in batch (all profiles) and in real time
(the profiles an event touched). Event functions become per-profile aggregates over the
profile's events (`EventCondition`); `now()` becomes the evaluation's clock.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Tokenizer, TokenType

from panorama.config import parse_duration
from panorama.store.schema import PROMOTED_PROPERTIES

DIALECT = "duckdb"
# Replaced by the evaluation time (a TIMESTAMP literal, UTC) when a query is built.
NOW_TOKEN = "__PANORAMA_NOW__"

# Event functions: count of matching events, or the time of the latest / first one.
EVENT_FUNCTIONS = {"performed": "count", "last_performed": "last", "first_performed": "first"}
EVENT_KWARGS = ("within", "where")
# Functions of ours besides the event functions.
CLOCK_FUNCTIONS = {"now", "days_since", "days_until_anniversary"}

# sqlglot node types a segment may contain: values, operators and allowed SQL functions.
_STRUCTURE = (
    exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Paren, exp.And, exp.Or,
    exp.Not, exp.Xor, exp.EQ, exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ, exp.GT, exp.GTE, exp.LT,
    exp.LTE, exp.Is, exp.In, exp.Between, exp.Like, exp.ILike, exp.Add, exp.Sub, exp.Mul, exp.Div,
    exp.IntDiv, exp.Mod, exp.Neg, exp.Interval, exp.Var, exp.DataType, exp.DataTypeParam,
    exp.Array, exp.Tuple, exp.Case, exp.If, exp.Cast, exp.TryCast, exp.DPipe,
)  # fmt: skip
_FUNCTIONS: dict[type, str] = {
    exp.Abs: "abs", exp.Round: "round", exp.Floor: "floor", exp.Ceil: "ceil", exp.Sqrt: "sqrt",
    exp.Ln: "ln", exp.Log: "log", exp.Pow: "pow", exp.Sign: "sign", exp.Least: "least",
    exp.Greatest: "greatest", exp.Coalesce: "coalesce", exp.Nullif: "nullif",
    exp.Lower: "lower", exp.Upper: "upper", exp.Length: "length", exp.Trim: "trim",
    exp.Concat: "concat", exp.Substring: "substring", exp.Left: "left", exp.Right: "right",
    exp.Replace: "replace", exp.StartsWith: "starts_with", exp.EndsWith: "ends_with",
    exp.Contains: "contains", exp.StrPosition: "strpos", exp.RegexpLike: "regexp_matches",
    exp.ArrayContains: "list_contains", exp.ArraySize: "len",
    exp.DateDiff: "date_diff", exp.DateTrunc: "date_trunc", exp.Extract: "extract",
    exp.Year: "year", exp.Month: "month", exp.Day: "day", exp.DayOfWeek: "dayofweek",
    exp.DayOfMonth: "dayofmonth", exp.DayOfYear: "dayofyear", exp.Hour: "hour",
    exp.CurrentDate: "current_date", exp.CurrentTimestamp: "current_timestamp",
}  # fmt: skip
ALLOWED_FUNCTIONS = sorted(
    {*_FUNCTIONS.values(), *EVENT_FUNCTIONS, *CLOCK_FUNCTIONS, "if", "cast", "try_cast"}
)
# Event columns a `where=` filter may name; other names are event properties.
EVENT_FILTER_COLUMNS = {
    "type": "VARCHAR", "event": "VARCHAR", "source": "VARCHAR", "user_id": "VARCHAR",
    "anonymous_id": "VARCHAR", "group_id": "VARCHAR", "message_id": "VARCHAR",
    "timestamp": "TIMESTAMP", "received_at": "TIMESTAMP", **PROMOTED_PROPERTIES,
}  # fmt: skip
_JSON_COLUMNS = ("properties", "context", "traits")
_NUMERIC = (exp.Literal,)


class SegmentError(ValueError):
    """An expression that cannot be used; names the problem and points at it."""

    def __init__(self, message: str, text: str | None = None, start: int | None = None,
                 end: int | None = None):  # fmt: skip
        self.message = message
        self.text = text
        self.start = start
        self.end = end
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.text is None or self.start is None:
            return self.message
        line_start = self.text.rfind("\n", 0, self.start) + 1
        line_end = self.text.find("\n", self.start)
        line = self.text[line_start : line_end if line_end >= 0 else None]
        col = self.start - line_start
        width = max(1, (self.end if self.end is not None else self.start) - self.start + 1)
        return f"{self.message} (at column {col + 1})\n    {line}\n    {' ' * col}{'^' * width}"


@dataclass(frozen=True)
class EventCondition:
    """One event function call: an aggregate over each profile's events."""

    kind: str  # count | last | first
    events: tuple[str, ...]  # empty: any event
    within: float | None  # seconds before now
    where_sql: str | None  # compiled filter over the event's columns

    @property
    def alias(self) -> str:
        key = repr((self.kind, self.events, self.within, self.where_sql)).encode()
        return "_ev_" + hashlib.sha1(key).hexdigest()[:12]

    @property
    def time_dependent(self) -> bool:
        return self.within is not None

    def filter_sql(self, now_sql: str) -> str:
        parts = []
        if self.events:
            parts.append("event IN (" + ", ".join(_quote(e) for e in self.events) + ")")
        if self.within is not None:
            parts.append(f"timestamp > {now_sql} - to_microseconds({int(self.within * 1e6)})")
            parts.append(f"timestamp <= {now_sql}")
        if self.where_sql:
            parts.append(f"({self.where_sql})")
        return " AND ".join(parts) or "true"

    def aggregate_sql(self, now_sql: str) -> str:
        agg = {"count": "count(*)", "last": "max(timestamp)", "first": "min(timestamp)"}[self.kind]
        return f"{agg} FILTER (WHERE {self.filter_sql(now_sql)}) AS {self.alias}"

    def value_sql(self) -> str:
        return f"coalesce({self.alias}, 0)" if self.kind == "count" else self.alias


@dataclass(frozen=True)
class CompiledSegment:
    expression: str
    sql: str  # DuckDB boolean over the profile row's columns and event aliases; NOW_TOKEN inside
    columns: frozenset[str]
    events: tuple[EventCondition, ...] = field(default=())
    time_dependent: bool = False

    @property
    def fingerprint(self) -> str:
        return hashlib.sha1(self.sql.encode()).hexdigest()[:16]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def now_sql(when) -> str:
    """The SQL literal for the evaluation clock `when` (a naive UTC datetime)."""
    return f"TIMESTAMP '{when.isoformat(sep=' ')}'"


def bind_now(sql: str, when) -> str:
    return sql.replace(f"CAST('{NOW_TOKEN}' AS TIMESTAMP)", now_sql(when))


def _now_node() -> exp.Expression:
    return exp.Cast(this=exp.Literal.string(NOW_TOKEN), to=exp.DataType.build("TIMESTAMP"))


# -- parsing ------------------------------------------------------------------------------------


def _protect_where_kwarg(text: str) -> str:
    """`performed(..., where='...')`: WHERE is a keyword; rename that argument to `where_` so
    the text parses (found by tokens, so a `where` inside a string is left alone)."""
    try:
        tokens = Tokenizer(dialect=DIALECT).tokenize(text)
    except TokenError as exc:
        raise SegmentError(f"cannot read the expression: {exc}") from None
    cuts = []
    for prev, tok, nxt in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if (prev.token_type == TokenType.COMMA and tok.token_type == TokenType.WHERE
                and nxt.token_type in (TokenType.EQ, TokenType.COLON_EQ)):  # fmt: skip
            cuts.append((tok.start, tok.end + 1))
    for start, end in reversed(cuts):
        text = text[:start] + "where_" + text[end:]
    return text


def parse(text: str) -> exp.Expression:
    """Parse a segment expression (syntax only)."""
    if not text or not text.strip():
        raise SegmentError("the expression is empty")
    source = _protect_where_kwarg(text)
    try:
        tree = sqlglot.parse_one(source, read=DIALECT)
    except ParseError as exc:
        err = exc.errors[0] if exc.errors else {}
        description = err.get("description", str(exc)).split(". Line")[0]
        if description.startswith("Required keyword"):
            description = "incomplete expression (an operator or function lacks an operand)"
        line, col = err.get("line"), err.get("col")
        start = None
        if line and col:
            lines = text.split("\n")
            start = sum(len(x) + 1 for x in lines[: line - 1]) + max(col - 1, 0)
            start = min(start, max(len(text) - 1, 0))
        raise SegmentError(f"syntax error: {description}", text, start) from None
    except TokenError as exc:
        raise SegmentError(f"cannot read the expression: {exc}") from None
    if isinstance(tree, exp.Query | exp.DDL | exp.DML | exp.Command):
        raise SegmentError("a segment is a boolean expression (a WHERE condition), not a statement")
    if tree.find(exp.Query):
        raise SegmentError("subqueries are not allowed in a segment; use the profile's columns and "
                           "performed(...) for events")  # fmt: skip
    return tree


def _position(node: exp.Expression, text: str) -> tuple[int | None, int | None]:
    target = node.this if isinstance(node, exp.Column) else node
    meta = getattr(target, "meta", None) or {}
    if "start" in meta:
        return meta["start"], meta.get("end")
    # Anonymous functions carry no position: find the name in the text
    name = node.name if isinstance(node, exp.Anonymous) else None
    if name:
        match = re.search(rf"\b{re.escape(name)}\s*\(", text, re.IGNORECASE)
        if match:
            return match.start(), match.start() + len(name) - 1
    return None, None


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1, cutoff=0.6)
    if close:
        original = next(k for k in known if k.lower() == close[0])
        return f"; did you mean {original}?"
    return ""


def _string_arg(node: exp.Expression, what: str, text: str) -> str:
    if isinstance(node, exp.Literal) and node.is_string:
        return node.this
    start, end = _position(node, text)
    raise SegmentError(f"{what} must be a quoted string", text, start, end)


def _kwargs(call: exp.Anonymous, text: str) -> tuple[list[exp.Expression], dict[str, exp.Expression]]:
    positional, named = [], {}
    for arg in call.expressions:
        if isinstance(arg, exp.PropertyEQ | exp.Kwarg | exp.EQ) and isinstance(
            arg.this, exp.Column | exp.Identifier
        ):
            key = arg.this.name.lower().removesuffix("_")
            if key not in EVENT_KWARGS:
                start, end = _position(arg.this, text)
                raise SegmentError(
                    f"{call.name}(): unknown argument {arg.this.name!r}; use within='30d' and/or "
                    "where='<condition on the event>'",
                    text, start, end,
                )  # fmt: skip
            named[key] = arg.expression
        else:
            if named:
                raise SegmentError(f"{call.name}(): the event name comes before within=/where=",
                                   text, *_position(call, text))  # fmt: skip
            positional.append(arg)
    return positional, named


def _event_condition(call: exp.Anonymous, text: str) -> EventCondition:
    name = call.name.lower()
    positional, named = _kwargs(call, text)
    if len(positional) > 1:
        raise SegmentError(f"{name}() takes one event name (or a list of names); got {len(positional)} "
                           "positional arguments", text, *_position(call, text))  # fmt: skip
    events: tuple[str, ...] = ()
    if positional:
        arg = positional[0]
        items = arg.expressions if isinstance(arg, exp.Array | exp.Tuple) else [arg]
        events = tuple(_string_arg(i, f"{name}(): the event name", text) for i in items)
        if any(e == "*" for e in events):
            events = ()
    within = None
    if "within" in named:
        raw = _string_arg(named["within"], f"{name}(): within", text)
        try:
            within = parse_duration(raw)
        except ValueError as exc:
            raise SegmentError(f"{name}(): {exc}", text, *_position(named["within"], text)) from None
        if within <= 0:
            raise SegmentError(f"{name}(): within must be positive", text, *_position(named["within"], text))
    where_sql = None
    if "where" in named:
        raw = _string_arg(named["where"], f"{name}(): where", text)
        try:
            where_sql = compile_event_filter(raw)
        except SegmentError as exc:
            raise SegmentError(f"{name}(): where={raw!r}: {exc.message}") from None
    return EventCondition(EVENT_FUNCTIONS[name], events, within, where_sql)


def _in_boolean_context(node: exp.Expression) -> bool:
    parent = node.parent
    while isinstance(parent, exp.Paren):
        node, parent = parent, parent.parent
    return parent is None or isinstance(parent, exp.And | exp.Or | exp.Not | exp.Xor)


def _check_functions(tree: exp.Expression, text: str) -> None:
    for node in tree.walk():
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name not in EVENT_FUNCTIONS and name not in CLOCK_FUNCTIONS:
                raise SegmentError(
                    f"function {node.name}() is not allowed in a segment{_suggest(name, ALLOWED_FUNCTIONS)} "
                    f"(allowed: {', '.join(ALLOWED_FUNCTIONS)})",
                    text, *_position(node, text),
                )  # fmt: skip
        elif isinstance(node, exp.PropertyEQ | exp.Kwarg):
            if not isinstance(node.parent, exp.Anonymous):
                raise SegmentError("named arguments apply to performed() and friends only", text,
                                   *_position(node, text))  # fmt: skip
        elif (isinstance(node, exp.EQ) and isinstance(node.parent, exp.Anonymous)) or (
            isinstance(node, exp.Func) and type(node) in _FUNCTIONS
        ):
            continue  # a named argument of performed(); an allowed function
        elif isinstance(node, _STRUCTURE):
            if isinstance(node, exp.Column) and node.table:
                raise SegmentError(
                    f"write the column {node.name} without a table name ({node.sql(DIALECT)})",
                    text, *_position(node, text),
                )  # fmt: skip
            continue
        elif isinstance(node, exp.Func):
            raise SegmentError(
                f"function {node.sql_name().lower()}() is not allowed in a segment "
                f"(allowed: {', '.join(ALLOWED_FUNCTIONS)})",
                text, *_position(node, text),
            )  # fmt: skip
        else:
            what = {exp.Star: "*", exp.Block: "more than one statement"}.get(type(node))
            what = what or f"{type(node).__name__} ({node.sql(DIALECT)[:40]})"
            raise SegmentError(f"{what} is not allowed: a segment is one boolean expression over "
                               "the profile's columns", text, *_position(node, text))  # fmt: skip


class _AnyColumns(dict):
    """Accepts every column name (checking an expression before the profile's columns are known)."""

    def __contains__(self, key) -> bool:
        return True

    def get(self, key, default=None):
        return key


def check_syntax(text: str) -> None:
    """Everything but the column names: syntax, functions, event-function arguments (config load)."""
    compile_segment(text, _AnyColumns())


def compile_segment(text: str, columns: Mapping[str, str]) -> CompiledSegment:
    """Check `text` against the known `columns` (name -> SQL type) and compile it."""
    tree = parse(text)
    _check_functions(tree, text)
    known = {name.lower(): name for name in columns}
    used: set[str] = set()
    events: dict[str, EventCondition] = {}
    time_dependent = False
    # columns first (their positions are in the original tree)
    for column in list(tree.find_all(exp.Column)):
        if isinstance(column.parent, exp.PropertyEQ | exp.Kwarg | exp.EQ) and column is column.parent.this \
                and isinstance(column.parent.parent, exp.Anonymous):  # fmt: skip
            continue  # an argument name
        if isinstance(column.parent, exp.Anonymous) and column.parent.name.lower() in EVENT_FUNCTIONS:
            continue  # an unquoted event name: performed() says so
        name = column.name
        actual = name if name in columns else known.get(name.lower())
        if actual is None:
            raise SegmentError(
                f"unknown column {name!r}{_suggest(name, list(columns))}", text, *_position(column, text)
            )
        used.add(actual)
        new = exp.column(actual, quoted=True)
        new.this.meta.update(column.this.meta)  # keep the position for later messages
        column.replace(new)
    if not isinstance(tree, exp.Expression):  # pragma: no cover
        raise SegmentError("not an expression")

    def rewrite(node: exp.Expression) -> exp.Expression:
        nonlocal time_dependent
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name in EVENT_FUNCTIONS:
                condition = _event_condition(node, text)
                events[condition.alias] = condition
                time_dependent = time_dependent or condition.time_dependent
                value = sqlglot.parse_one(condition.value_sql(), read=DIALECT)
                if condition.kind == "count" and _in_boolean_context(node):
                    value = exp.paren(exp.GT(this=value, expression=exp.Literal.number(0)))
                return value
            if name == "now":
                time_dependent = True
                return _now_node()
            if name == "days_since":
                time_dependent = True
                arg = _one_arg(node, text)
                return sqlglot.parse_one(
                    f"date_diff('day', CAST(x AS DATE), CAST({_now_node().sql(DIALECT)} AS DATE))",
                    read=DIALECT,
                ).transform(lambda n: arg.copy() if isinstance(n, exp.Column) and n.name == "x" else n)
            if name == "days_until_anniversary":
                time_dependent = True
                arg = _one_arg(node, text)
                return _anniversary(arg)
        if isinstance(node, exp.CurrentTimestamp):
            time_dependent = True
            return _now_node()
        if isinstance(node, exp.CurrentDate):
            time_dependent = True
            return exp.Cast(this=_now_node(), to=exp.DataType.build("DATE"))
        return node

    tree = tree.transform(rewrite)
    sql = tree.sql(dialect=DIALECT)
    return CompiledSegment(text, sql, frozenset(used), tuple(events.values()), time_dependent)


def _one_arg(node: exp.Anonymous, text: str) -> exp.Expression:
    if len(node.expressions) != 1:
        raise SegmentError(f"{node.name}() takes one argument (a date or time column)", text,
                           *_position(node, text))  # fmt: skip
    return node.expressions[0]


def _anniversary(arg: exp.Expression) -> exp.Expression:
    """Days from today until the next anniversary of a date (0 on the day; 29 Feb -> 28 Feb)."""
    today = f"CAST({_now_node().sql(DIALECT)} AS DATE)"
    template = f"""
        CASE WHEN TRY_CAST(x AS DATE) IS NULL THEN NULL
             WHEN CAST(TRY_CAST(x AS DATE) + to_years(year({today}) - year(TRY_CAST(x AS DATE))) AS DATE) >= {today}
             THEN date_diff('day', {today}, CAST(TRY_CAST(x AS DATE) + to_years(year({today}) - year(TRY_CAST(x AS DATE))) AS DATE))
             ELSE date_diff('day', {today}, CAST(TRY_CAST(x AS DATE) + to_years(year({today}) - year(TRY_CAST(x AS DATE)) + 1) AS DATE))
        END
    """
    tree = sqlglot.parse_one(template, read=DIALECT)
    return tree.transform(lambda n: arg.copy() if isinstance(n, exp.Column) and n.name == "x" else n)


# -- event filters (performed(..., where=...), trigger `where`) --------------------------------


def compile_event_filter(text: str) -> str:
    """A condition over one event: event columns, promoted properties (typed) and any other
    property (read from the event's JSON `properties`; compared as a number when the other side
    is a number). `context.x` / `traits.x` read those JSON objects."""
    tree = parse(text)
    _check_functions(_strip_qualifiers(tree.copy()), text)
    for node in tree.walk():
        if isinstance(node, exp.Anonymous) and node.name.lower() in EVENT_FUNCTIONS:
            raise SegmentError(f"{node.name}() cannot be used inside an event filter", text,
                               *_position(node, text))  # fmt: skip

    def rewrite(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.Column):
            return node
        table = node.table.lower() if node.table else ""
        name = node.name
        if table and table not in _JSON_COLUMNS:
            raise SegmentError(f"{node.sql(DIALECT)}: qualify only with properties., context. or traits.",
                               text, *_position(node, text))  # fmt: skip
        if not table and name.lower() in EVENT_FILTER_COLUMNS:
            return exp.column(name.lower(), quoted=True)
        json_col = table or "properties"
        path = "$." + ".".join(f'"{p}"' for p in [name])
        extracted = exp.Anonymous(
            this="json_extract_string",
            expressions=[exp.column(json_col, quoted=True), exp.Literal.string(path)],
        )
        return _maybe_numeric(node, extracted)

    compiled = tree.transform(rewrite)
    return compiled.sql(dialect=DIALECT)


def _strip_qualifiers(tree: exp.Expression) -> exp.Expression:
    for column in tree.find_all(exp.Column):
        if column.table:
            column.set("table", None)
    return tree


def _maybe_numeric(column: exp.Column, extracted: exp.Expression) -> exp.Expression:
    """A JSON property compared with a number is read as a number."""
    parent = column.parent
    while isinstance(parent, exp.Paren):
        parent = parent.parent
    numeric = False
    if isinstance(parent, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE | exp.Between
                  | exp.Add | exp.Sub | exp.Mul | exp.Div):  # fmt: skip
        others = [a for k, a in parent.args.items() if isinstance(a, exp.Expression) and a is not column]
        numeric = any(isinstance(o, exp.Literal) and not o.is_string for o in others) or any(
            isinstance(o, exp.Neg) for o in others
        )
    elif isinstance(parent, exp.In):
        numeric = any(isinstance(o, exp.Literal) and not o.is_string for o in parent.expressions)
    if numeric:
        return exp.TryCast(this=extracted, to=exp.DataType.build("DOUBLE"))
    return extracted
