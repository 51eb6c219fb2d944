"""Trait definitions: the built-in set, the user's `traits:` from panorama.yaml, and their
compilation into checked SQL fragments (DuckDB dialect, transpiled to Spark by sqlglot).

A trait is either an **aggregation** over the profile's events (or current source records)
with optional filters (`event`, `type`, `source`, `where`), a time `window` and de-duplication
(`unique_by`), or an **expression** (`expr`) over other traits. The user's traits override
built-ins of the same name; a null value drops a built-in.

Names in `where`, `property` and `unique_by` refer to event columns (`event`, `type`, `source`,
`timestamp`, `user_id`, ...), to the promoted typed properties (`revenue`, `category`, ...) or,
for any other name, to the JSON property of that name. For `attribute` traits they refer to the
record's attributes (and `source`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import orjson
import sqlglot
from sqlglot import exp

from panorama.config import ProjectConfig, TraitConfig
from panorama.store.schema import NUMERIC_PROPERTIES, PROMOTED_PROPERTIES

DIALECT = "duckdb"
SESSION_GAP_SECONDS = 30 * 60

# event-table columns a trait may refer to (besides the promoted properties); timestamp -> ts
EVENT_COLUMNS = ("message_id", "type", "event", "source", "user_id", "anonymous_id", "group_id", "timestamp")
NUMERIC_AGGS = frozenset({"sum", "avg", "min", "max"})
# aggregations whose real-time update needs the profile's history (recomputed from the log)
HISTORY_AGGS = frozenset({"distinct_count", "most_frequent", "list_distinct", "previous_time"})
TIME_AGGS = frozenset({"first_time", "last_time", "previous_time", "days_since_first", "days_since_last"})

# outbound messages are not the customer "being seen"
OUTBOUND = r"(Sent|Delivered|Bounced|Holdout)$"
# message events (email/SMS/push platforms) are not web or app sessions
MESSAGING = r"^(Email|SMS|Push|Campaign) "
RESOLVED_STATUSES = ("solved", "resolved", "closed")


class TraitError(ValueError):
    """A trait definition that cannot be compiled; the message names `traits.<name>.<key>`."""


@dataclass(frozen=True)
class Trait:
    name: str
    spec: TraitConfig
    builtin: bool
    description: str


def _t(description: str, **spec) -> tuple[str, dict]:
    return description, spec


def _event_file_sources(config: ProjectConfig) -> list[str]:
    return sorted(n for n, s in config.sources.items() if s.kind == "events")


def _sql_list(values: list[str]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


AMOUNT = "coalesce(revenue, value, price * coalesce(quantity, 1))"


def builtin_specs(config: ProjectConfig) -> dict[str, tuple[str, dict]]:
    """The default trait set: name -> (description, TraitConfig fields)."""
    p = config.predictions
    m = config.metrics
    purchases = {"event": list(p.purchase_events), "unique_by": "order_id"}
    items = [e for e in p.item_events if e not in p.purchase_events] or list(p.item_events)
    tickets = list(m.ticket_events)
    files = _event_file_sources(config)
    web_where = "type IN ('page', 'screen')" + (
        f" OR (type = 'track' AND source NOT IN {_sql_list(files)})" if files else " OR type = 'track'"
    )
    seen_where = f"NOT regexp_matches(coalesce(event, ''), '{OUTBOUND}')"
    web_where = f"({web_where}) AND NOT regexp_matches(coalesce(event, ''), '{MESSAGING}')"
    resolved = _sql_list(list(RESOLVED_STATUSES))
    specs: dict[str, tuple[str, dict]] = {
        # purchases: one per order id (the shop's order and the web's Order Completed are one order)
        "orders": _t("orders placed (distinct order ids)", agg="count", **purchases),
        "revenue": _t("revenue of all orders", agg="sum", property=AMOUNT, **purchases),
        "avg_order_value": _t("revenue / orders", expr="revenue / nullif(orders, 0)"),
        "first_order_at": _t("time of the first order", agg="first_time", **purchases),
        "last_order_at": _t("time of the latest order", agg="last_time", **purchases),
        "previous_order_at": _t("time of the order before the latest", agg="previous_time", **purchases),
        "days_since_first_order": _t("whole days from the first order to the as-of time",
                                     agg="days_since_first", **purchases),
        "days_since_last_order": _t("whole days from the latest order to the as-of time",
                                    agg="days_since_last", **purchases),
        "avg_days_between_orders": _t(
            "(days from the first to the latest order) / (orders - 1)",
            expr="(days_since_first_order - days_since_last_order) / nullif(orders - 1, 0)"),
        "purchase_frequency": _t(
            "orders per year since the first order (over at least a year)",
            expr="orders * 365 / greatest(days_since_first_order, 365)"),
        "orders_90d": _t("orders in the 90 days before the as-of time", agg="count", window="90d", **purchases),
        "orders_365d": _t("orders in the 365 days before the as-of time", agg="count", window="365d",
                          **purchases),
        "revenue_365d": _t("revenue in the 365 days before the as-of time", agg="sum", property=AMOUNT,
                           window="365d", **purchases),
        "discounted_orders": _t("orders with a discount", agg="count", where="discount > 0", **purchases),
        "discount_share": _t("discounted orders / orders", expr="discounted_orders / nullif(orders, 0)"),
        "favorite_category": _t("most frequent category of the items bought (ties: the latest)",
                                event=items, agg="most_frequent", property="category"),
        "categories_purchased": _t("categories bought (sorted list)", event=items, agg="list_distinct",
                                   property="category"),
        # messages (email, SMS, push)
        "email_sent": _t("emails sent", event=["Email Sent", "Email Delivered"], agg="count"),
        "email_opened": _t("emails opened", event=["Email Opened"], agg="count"),
        "email_clicked": _t("emails clicked", event=["Email Clicked", "Email Link Clicked"], agg="count"),
        "email_open_rate": _t("emails opened / sent (at most 1)",
                              expr="CASE WHEN email_sent > 0 THEN least(1, email_opened / email_sent) END"),
        "email_click_rate": _t("emails clicked / sent (at most 1)",
                               expr="CASE WHEN email_sent > 0 THEN least(1, email_clicked / email_sent) END"),
        "email_unsubscribed_at": _t("time of the latest email unsubscribe", event=["Email Unsubscribed"],
                                    agg="last_time"),
        "sms_sent": _t("SMS sent", event=["SMS Sent", "SMS Delivered"], agg="count"),
        "sms_clicked": _t("SMS clicked", event=["SMS Clicked", "SMS Link Clicked"], agg="count"),
        "sms_click_rate": _t("SMS clicked / sent (at most 1)",
                             expr="CASE WHEN sms_sent > 0 THEN least(1, sms_clicked / sms_sent) END"),
        "push_sent": _t("push notifications sent", event=["Push Sent", "Push Delivered"], agg="count"),
        "push_opened": _t("push notifications opened", event=["Push Opened"], agg="count"),
        "push_clicked": _t("push notifications clicked", event=["Push Clicked"], agg="count"),
        "push_open_rate": _t("push opened / sent (at most 1)",
                             expr="CASE WHEN push_sent > 0 THEN least(1, push_opened / push_sent) END"),
        "push_click_rate": _t("push clicked / sent (at most 1)",
                              expr="CASE WHEN push_sent > 0 THEN least(1, push_clicked / push_sent) END"),
        "last_engaged_at": _t("time of the latest message open or click",
                              event=["Email Opened", "Email Clicked", "Email Link Clicked", "SMS Clicked",
                                     "SMS Link Clicked", "Push Opened", "Push Clicked"], agg="last_time"),
        # support and satisfaction
        "tickets": _t("support tickets", event=tickets, agg="count"),
        "tickets_365d": _t("support tickets in the 365 days before the as-of time", event=tickets,
                           agg="count", window="365d"),
        "tickets_resolved": _t(f"tickets whose status is one of {', '.join(RESOLVED_STATUSES)}",
                               event=tickets, agg="count", where=f"lower(status) IN {resolved}"),
        "tickets_unresolved": _t("tickets - tickets_resolved", expr="tickets - tickets_resolved"),
        "avg_resolution_hours": _t("mean resolution time of the tickets (hours)", event=tickets, agg="avg",
                                   property="resolution_hours"),
        "last_csat": _t("latest CSAT answer (1-5)", event=list(m.csat_events), agg="last",
                        property=m.csat_property, where=f"{m.csat_property} BETWEEN 1 AND 5"),
        "avg_csat": _t("mean CSAT answer (1-5)", event=list(m.csat_events), agg="avg",
                       property=m.csat_property, where=f"{m.csat_property} BETWEEN 1 AND 5"),
        "last_nps": _t("latest NPS answer (0-10)", event=list(m.nps_events), agg="last",
                       property=m.nps_property, where=f"{m.nps_property} BETWEEN 0 AND 10"),
        "nps_group": _t("promoter (9-10), passive (7-8) or detractor (0-6), from the latest NPS answer",
                        expr="CASE WHEN last_nps >= 9 THEN 'promoter' WHEN last_nps >= 7 THEN 'passive' "
                             "WHEN last_nps >= 0 THEN 'detractor' END"),
        # loyalty programme (source records)
        "loyalty_tier": _t("loyalty tier (latest loyalty record)", attribute="loyalty_tier", agg="last"),
        "loyalty_points": _t("loyalty points (latest loyalty record)", attribute="loyalty_points",
                             agg="last", cast="number"),
        # web and app
        "web_sessions": _t("web/app sessions (30 minutes of inactivity end a session)",
                           agg="sessions", where=web_where),
        "web_sessions_30d": _t("web/app sessions in the 30 days before the as-of time", agg="sessions",
                               where=web_where, window="30d"),
        "first_seen_at": _t("time of the first event the person caused (not messages sent to them)",
                            agg="first_time", where=seen_where),
        "last_seen_at": _t("time of the latest event the person caused (not messages sent to them)",
                           agg="last_time", where=seen_where),
        "days_since_last_seen": _t("whole days from last_seen_at to the as-of time", agg="days_since_last",
                                   where=seen_where),
    }
    return specs


def trait_set(config: ProjectConfig) -> list[Trait]:
    """Built-ins (minus those set to null) then the user's new traits, in a stable order."""
    out: dict[str, Trait] = {}
    for name, (description, fields) in builtin_specs(config).items():
        if name in config.traits:
            continue
        out[name] = Trait(name, TraitConfig(**fields, description=description), True, description)
    for name, spec in config.traits.items():
        if spec is None:
            continue
        description = spec.description or _describe(spec)
        out[name] = Trait(name, spec, False, description)
    return list(out.values())


def _describe(spec: TraitConfig) -> str:
    if spec.expr:
        return spec.expr
    what = spec.agg or ""
    if spec.property or spec.attribute:
        what += f" of {spec.property or spec.attribute}"
    if spec.event:
        events = spec.event if isinstance(spec.event, list) else [spec.event]
        what += f" over {', '.join(events)}"
    if spec.window:
        what += f" in the last {spec.window}"
    if spec.where:
        what += f" where {spec.where}"
    return what


# -- compilation ----------------------------------------------------------------------------


def _as_list(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def window_days(window: str | None) -> int | None:
    if window is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*([dwy])\s*", window)
    assert m, window
    return int(m.group(1)) * {"d": 1, "w": 7, "y": 365}[m.group(2)]


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def parse_expression(text: str, where: str) -> exp.Expression:
    """One SQL expression (no statement, no subquery); `where` prefixes error messages."""
    try:
        trees = sqlglot.parse(text, read=DIALECT)
    except sqlglot.errors.ParseError as exc:
        raise TraitError(f"{where}: not a SQL expression: {str(exc).splitlines()[0]}") from None
    if len(trees) != 1 or trees[0] is None:
        raise TraitError(f"{where}: give exactly one SQL expression")
    tree = trees[0]
    if not isinstance(tree, exp.Condition) or tree.find(exp.Query, exp.Subquery):
        raise TraitError(f"{where}: must be an expression, not a query or statement")
    return tree


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Columns:
    """The input columns the compiled traits read: event columns, promoted properties, JSON
    properties (event), and JSON attributes (records)."""

    event: set[str] = field(default_factory=set)
    json: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)
    # JSON property -> the events whose rows need it (None: every row); parsing JSON is slow
    json_events: dict[str, set[str] | None] = field(default_factory=dict)


def json_alias(name: str) -> str:
    return f"p__{name}"


def attr_alias(name: str) -> str:
    return f"a__{name}"


class _Rewriter:
    def __init__(self, where: str, records: bool, cols: Columns):
        self.where = where
        self.records = records
        self.cols = cols

    def column(self, name: str) -> exp.Expression:
        if not _IDENT.fullmatch(name):
            raise TraitError(f"{self.where}: {name!r} is not a plain property name")
        if self.records:
            if name == "source":
                return exp.column("source")
            self.cols.attributes.add(name)
            return exp.column(attr_alias(name))
        if name == "timestamp":
            return exp.column("ts")
        if name in EVENT_COLUMNS or name in PROMOTED_PROPERTIES:
            self.cols.event.add(name)
            return exp.column(name)
        self.cols.json.add(name)
        return exp.column(json_alias(name))

    def is_text_json(self, node: exp.Expression) -> bool:
        return isinstance(node, exp.Column) and node.name.startswith(("p__", "a__"))

    def rewrite(self, text: str, numeric: bool = False) -> str:
        tree = parse_expression(text, self.where)

        def fix(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column):
                if node.table:
                    raise TraitError(f"{self.where}: {node.sql()}: use plain property names")
                return self.column(node.name)
            return node

        tree = tree.transform(fix)

        # JSON values are text: compare them with numbers as numbers
        def numeric_json(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Binary) and isinstance(
                node, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE
            ):
                left, right = node.left, node.right
                if self.is_text_json(left) and _is_number(right):
                    node.set("this", _try_double(left))
                elif self.is_text_json(right) and _is_number(left):
                    node.set("expression", _try_double(right))
            elif isinstance(node, exp.Between) and self.is_text_json(node.this):
                if _is_number(node.args.get("low")) or _is_number(node.args.get("high")):
                    node.set("this", _try_double(node.this))
            elif (isinstance(node, exp.In) and self.is_text_json(node.this)
                  and any(_is_number(e) for e in node.expressions)):  # fmt: skip
                node.set("this", _try_double(node.this))
            return node

        tree = tree.transform(numeric_json, copy=False)
        if numeric and (self.is_text_json(tree) or not _is_numeric_expr(tree)):
            tree = _try_double(tree)
        return tree.sql(dialect=DIALECT)


def _is_number(node: exp.Expression | None) -> bool:
    if isinstance(node, exp.Neg):
        node = node.this
    return isinstance(node, exp.Literal) and not node.is_string


def _try_double(node: exp.Expression) -> exp.Expression:
    return exp.TryCast(this=node.copy(), to=exp.DataType.build("DOUBLE"))


def _is_numeric_expr(node: exp.Expression) -> bool:
    """A promoted numeric column, or arithmetic/coalesce over such columns and numbers."""
    if isinstance(node, exp.Column):
        return node.name in NUMERIC_PROPERTIES
    if _is_number(node):
        return True
    if isinstance(node, exp.Paren):
        return _is_numeric_expr(node.this)
    if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div):
        return _is_numeric_expr(node.left) and _is_numeric_expr(node.right)
    if isinstance(node, exp.Coalesce):
        return all(_is_numeric_expr(e) for e in [node.this, *node.expressions])
    if isinstance(node, exp.Cast | exp.TryCast):
        return node.to.is_type(*exp.DataType.NUMERIC_TYPES)
    return False


@dataclass(frozen=True)
class Compiled:
    """One aggregation trait, compiled: SQL over the narrow event (or record) relation."""

    trait: Trait
    relation: str  # "events", "records", or a de-duplicated relation key "u<k>"
    base: str  # SQL condition selecting the trait's rows before dedup (event/type/source)
    cond: str  # full condition on the relation's rows (where + window)
    value: str | None  # SQL of the aggregated value
    window: int | None  # days
    filter: str = "TRUE"  # `cond` without the window


@dataclass(frozen=True)
class Dedup:
    key: str  # relation name suffix
    base: str
    unique_by: str


@dataclass(frozen=True)
class Expression:
    trait: Trait
    sql: str
    depends: tuple[str, ...]


@dataclass
class Plan:
    traits: list[Trait]
    aggregations: list[Compiled]
    expressions: list[list[Expression]]  # layers, each depending only on earlier ones
    dedups: list[Dedup]
    columns: Columns
    signature: str

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.traits]


def _filters(spec: TraitConfig, rw: _Rewriter) -> list[str]:
    parts = []
    events = _as_list(spec.event)
    if events:
        rw.cols.event.add("event")
        parts.append("event IN " + _sql_list(events))
    types = _as_list(spec.type)
    if types:
        rw.cols.event.add("type")
        parts.append("type IN " + _sql_list(types))
    sources = _as_list(spec.source)
    if sources:
        rw.cols.event.add("source")
        parts.append("source IN " + _sql_list(sources))
    return parts


def _where(spec: TraitConfig, rw: _Rewriter) -> str | None:
    if spec.where is None:
        return None
    if isinstance(spec.where, dict):
        parts = []
        for key, value in spec.where.items():
            col = rw.column(key).sql(dialect=DIALECT)
            if isinstance(value, list):
                numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
                if numeric and col.startswith(("p__", "a__")):
                    col = f"TRY_CAST({col} AS DOUBLE)"
                parts.append(f"{col} IN ({', '.join(_literal(v) for v in value)})")
            else:
                if isinstance(value, int | float) and not isinstance(value, bool) and col.startswith(("p__", "a__")):
                    col = f"TRY_CAST({col} AS DOUBLE)"
                parts.append(f"{col} = {_literal(value)}")
        return " AND ".join(parts) or None
    return rw.rewrite(spec.where)


def _and(parts: list[str | None]) -> str:
    parts = [f"({p})" for p in parts if p]
    return " AND ".join(parts) if parts else "TRUE"


def compile_plan(config: ProjectConfig) -> Plan:
    """Check and compile every trait; raises TraitError naming `traits.<name>.<key>`."""
    return compile_traits(trait_set(config), config.lifecycle.model_dump())


def traits_to_json(traits: list[Trait]) -> list[dict]:
    return [{"name": t.name, "builtin": t.builtin, "description": t.description,
             "spec": t.spec.model_dump(exclude_none=True)} for t in traits]  # fmt: skip


def traits_from_json(data: list[dict]) -> list[Trait]:
    return [Trait(d["name"], TraitConfig(**d["spec"]), d["builtin"], d["description"]) for d in data]


def compile_traits(traits: list[Trait], lifecycle: dict | None = None) -> Plan:
    cols = Columns(event={"message_id", "timestamp"})
    aggs: list[Compiled] = []
    dedups: dict[tuple[str, str], Dedup] = {}
    exprs: list[Expression] = []
    names = {t.name for t in traits}
    for trait in traits:
        spec = trait.spec
        where = f"panorama.yaml: traits.{trait.name}"
        if spec.expr is not None:
            exprs.append(_compile_expr(trait, names, where))
            continue
        records = spec.attribute is not None
        rw = _Rewriter(f"{where}.where", records, cols)
        base_parts = _filters(spec, rw) if not records else []
        if records and spec.source:
            base_parts.append("source IN " + _sql_list(_as_list(spec.source) or []))
        cond_where = _where(spec, rw)
        days = window_days(spec.window)
        window = f"ts >= {{window_start_{days}}}" if days else None
        value = None
        key_sql = ""
        numeric = spec.agg in NUMERIC_AGGS
        if records:
            cols.attributes.add(spec.attribute)  # type: ignore[arg-type]
            value = attr_alias(spec.attribute)  # type: ignore[arg-type]
            if numeric:
                value = f"TRY_CAST({value} AS DOUBLE)"
        elif spec.property is not None:
            value = _Rewriter(f"{where}.property", False, cols).rewrite(spec.property, numeric=numeric)
        relation = "records" if records else "events"
        base = _and(base_parts)
        if spec.unique_by is not None:
            key_sql = _Rewriter(f"{where}.unique_by", False, cols).rewrite(spec.unique_by)
            dk = (base, key_sql)
            if dk not in dedups:
                dedups[dk] = Dedup(f"u{len(dedups) + 1}", base, key_sql)
            relation = dedups[dk].key
            cond = _and([cond_where, window])
            filt = _and([cond_where])
        else:
            cond = _and([*base_parts, cond_where, window])
            filt = _and([*base_parts, cond_where])
        compiled = Compiled(trait, relation, base, cond, value, days, filt)
        aggs.append(compiled)
        if not records:
            events = _as_list(spec.event)
            text = " ".join(x for x in (base, cond, value or "", key_sql if spec.unique_by else "") if x)
            for name in set(re.findall(r"\bp__([A-Za-z0-9_]+)", text)):
                gate = cols.json_events.setdefault(name, set())
                if gate is None or not events:
                    cols.json_events[name] = None
                else:
                    gate.update(events)
    layers = _layers(exprs, {a.trait.name for a in aggs})
    signature = hashlib.sha256(
        orjson.dumps(
            {"traits": [[t.name, t.spec.model_dump()] for t in traits],
             "lifecycle": lifecycle, "session_gap": SESSION_GAP_SECONDS},
            option=orjson.OPT_SORT_KEYS,
        )
    ).hexdigest()[:16]  # fmt: skip
    return Plan(traits, aggs, layers, list(dedups.values()), cols, signature)


def _compile_expr(trait: Trait, names: set[str], where: str) -> Expression:
    tree = parse_expression(trait.spec.expr or "", f"{where}.expr")
    deps = []
    for col in tree.find_all(exp.Column):
        if col.table or col.name not in names:
            raise TraitError(f"{where}.expr: {col.sql()!r} is not a trait (known: {', '.join(sorted(names))})")
        if col.name == trait.name:
            raise TraitError(f"{where}.expr: a trait cannot refer to itself")
        deps.append(col.name)

    def quote(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column):
            return exp.column(node.name, quoted=True)
        return node

    sql = tree.transform(quote).sql(dialect=DIALECT)
    return Expression(trait, sql, tuple(dict.fromkeys(deps)))


def _layers(exprs: list[Expression], done: set[str]) -> list[list[Expression]]:
    layers: list[list[Expression]] = []
    pending = list(exprs)
    known = set(done)
    while pending:
        layer = [e for e in pending if set(e.depends) <= known]
        if not layer:
            cycle = ", ".join(e.trait.name for e in pending)
            raise TraitError(f"panorama.yaml: traits: expressions refer to each other in a cycle: {cycle}")
        layers.append(layer)
        known |= {e.trait.name for e in layer}
        pending = [e for e in pending if e not in layer]
    return layers
