"""Project configuration: one `panorama.yaml` per project, validated into typed settings.

Every error names the key path and the problem, e.g.
``panorama.yaml: sources.crm.kind: must be one of records, events, segment (got 'record')``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

CONFIG_FILE = "panorama.yaml"
SOURCE_SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl", ".ndjson")


class ConfigError(Exception):
    """A project configuration that cannot be used; the message names the key and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """One input system: a file (or DB table) of records, events or Segment messages."""

    path: str | None = None
    table: str | None = None
    database: str | None = None
    kind: Literal["records", "events", "segment"]
    key: str | None = None
    timestamp: str | None = None
    event: str | None = None
    event_column: str | None = None
    identifiers: dict[str, str] = Field(default_factory=dict)
    attributes: dict[str, str] = Field(default_factory=dict)
    properties: dict[str, str] = Field(default_factory=dict)
    formats: dict[str, str] = Field(default_factory=dict)
    delimiter: str | None = None
    priority: int = 0

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        if (self.path is None) == (self.table is None):
            raise ValueError("give exactly one of `path` (a file) or `table` (a database table)")
        if self.path is not None and not self.path.lower().endswith(SOURCE_SUFFIXES):
            raise ValueError(
                f"path {self.path!r}: unsupported file type; use one of {', '.join(SOURCE_SUFFIXES)}"
            )
        if self.kind in ("records", "events"):
            if not self.key:
                raise ValueError(f"`key` is required for a {self.kind} source")
            if not self.timestamp:
                raise ValueError(f"`timestamp` is required for a {self.kind} source")
        if self.kind == "events" and bool(self.event) == bool(self.event_column):
            raise ValueError("an events source needs exactly one of `event` or `event_column`")
        if self.kind != "events" and (self.event or self.event_column):
            raise ValueError("`event`/`event_column` only apply to kind: events")
        if self.kind == "segment" and (self.key or self.identifiers or self.attributes):
            raise ValueError(
                "a segment source takes its key (messageId) and identifiers from the messages; "
                "remove `key`, `identifiers` and `attributes`"
            )
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError("`delimiter` must be a single character")
        unknown = set(self.formats) - (
            set(self.attributes) | set(self.properties) | {self.timestamp or ""}
        )
        if unknown:
            raise ValueError(
                f"formats: column(s) {sorted(unknown)} are not the timestamp, an attribute or a property"
            )
        return self

    def columns(self) -> list[str]:
        """The input columns this source reads, in a stable order."""
        cols: list[str] = []
        for col in (self.key, self.timestamp, self.event_column):
            if col and col not in cols:
                cols.append(col)
        for mapping in (self.identifiers, self.attributes, self.properties):
            cols.extend(c for c in mapping if c not in cols)
        return cols


class IdentifierRule(_Strict):
    """How one identifier type links profiles (docs/identity.md). Unset keys take the type's
    defaults (by name: `user_id` 100, other ids 90, `email` 80, `phone` 60, `device_id` 40,
    `anonymous_id` 20)."""

    # how values are normalised: email, phone, id (exact, trimmed), id_ci (case-insensitive)
    kind: Literal["email", "phone", "id", "id_ci"] | None = None
    # trust: links are applied in priority order; when a limit would be broken the
    # lower-priority link is the one refused, and a record's profile follows its
    # highest-priority identifier
    priority: Annotated[int, Field(ge=0, le=1000)] | None = None
    # at most this many distinct values of this type in one profile
    max_per_profile: Annotated[int, Field(ge=1)] | None = None
    # a value seen together with more than this many distinct values of one higher-priority
    # type is shared (a household landline, info@ mailbox, a kiosk's anonymousId): it stops
    # linking
    shared_threshold: Annotated[int, Field(ge=1)] | None = None
    # false: kept on profiles but never used to link
    link: bool = True


class EmailRules(_Strict):
    """Email normalisation beyond case and whitespace."""

    # domains whose mailboxes ignore a "+tag" in the local part ("*" = every domain)
    plus_tags: list[str] = Field(default_factory=lambda: ["*"])
    # domains whose mailboxes ignore dots in the local part (Gmail does: ["gmail.com",
    # "googlemail.com"]); off by default: measured on the demo data, dot variants of different
    # people collide more often than one person types both (docs/identity.md)
    ignore_dots: list[str] = Field(default_factory=list)
    # domain -> the domain it is another name of (e.g. {googlemail.com: gmail.com}); off by
    # default for the same reason
    domain_aliases: dict[str, str] = Field(default_factory=dict)
    # correct one-letter typos of well-known consumer domains (gmial.com -> gmail.com)
    fix_domain_typos: bool = True


class ConflictRules(_Strict):
    """Person attributes that keep two profiles apart when they disagree (a merge through a
    shared identifier is refused). Compared on records and identify calls only."""

    first_name: bool = True
    birth_date: bool = True


class SplinkSettings(_Strict):
    """Probabilistic matching of person-like records that share no reliable identifier."""

    enabled: bool = True
    # pairs at or above this match probability become links (0.9-0.999)
    threshold: Annotated[float, Field(ge=0.9, le=0.999)] = 0.95
    # SQL blocking rules over l./r. columns first_name, last_name, birth_date, postal_code,
    # address, email, email_local, phone, city (default: docs/identity.md)
    blocking: list[str] | None = None
    # sources whose records take part (default: every records source)
    sources: list[str] | None = None
    # include identify calls carrying a name (web sign-ups)
    identify_events: bool = False
    # record pairs sampled to estimate u (and at most this many pairs per EM run)
    max_pairs: Annotated[int, Field(ge=10_000)] = 1_000_000
    # the model is estimated on a random sample of at most this many records, then scores
    # all of them (EM's pairs grow with the square of the blocks); null: on every record
    training_records: Annotated[int, Field(ge=1_000)] | None = 300_000
    # a match also needs one of these to agree (empty: no requirement): names and emails alone
    # do not tell namesakes or same-named family members apart. birth_date: exact, day and
    # month swapped, or one typo; postal_code, phone, email: exact; address: Jaro-Winkler >= 0.9
    corroborate: list[Literal["birth_date", "postal_code", "address", "phone", "email"]] = Field(
        default_factory=lambda: ["birth_date"])
    # blocking values shared by more records than this are not used to form pairs
    max_block_size: Annotated[int, Field(ge=2)] = 50
    # identifier types also compared fuzzily (exact, one or two typos) and used for blocking,
    # e.g. a national id typed by hand
    compare_identifiers: list[str] = Field(default_factory=list)
    seed: int = 42


SurvivorshipRule = Literal["most_recent", "most_frequent", "source_priority", "first_seen"]


class SurvivorshipConfig(_Strict):
    """Which value of an attribute wins on the golden record."""

    default: SurvivorshipRule = "most_recent"
    # attribute -> a rule, or a list of sources (a custom order; then most recent)
    attributes: dict[str, SurvivorshipRule | list[str]] = Field(default_factory=dict)


class IdentityConfig(_Strict):
    default_region: str = "US"
    identifiers: dict[str, IdentifierRule] = Field(default_factory=dict)
    # identifier type (or "*" for every type) -> values that never link (compared after
    # normalisation); added to the built-in list unless default_blocklist is false
    blocked_values: dict[str, list[str]] = Field(default_factory=dict)
    default_blocklist: bool = True
    email: EmailRules = Field(default_factory=EmailRules)
    conflicts: ConflictRules = Field(default_factory=ConflictRules)
    splink: SplinkSettings = Field(default_factory=SplinkSettings)
    survivorship: SurvivorshipConfig = Field(default_factory=SurvivorshipConfig)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        import phonenumbers

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}; use an ISO 3166 code such as GB or US")
        return value.upper()


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    # failed authentications per client address per minute before it is locked out (429)
    auth_failure_limit: Annotated[int, Field(ge=1)] = 30
    # Tracking API requests per second per client address (bursts of twice that); null: no limit
    ingest_rate_limit: Annotated[float, Field(gt=0)] | None = None
    # DuckDB's memory limit in the server process ("4GB", "512MB"); big scans and sorts (the
    # UI's read index, the consent rebuild) spill to disk beyond it. null: DuckDB's 80% of RAM.
    memory_limit: Annotated[str, Field(pattern=r"^\s*\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$")] | None = None


class ChurnPredictionConfig(_Strict):
    """Churn: P(no purchase in the next `horizon_days`) for every customer."""

    horizon_days: Annotated[int, Field(ge=7, le=1095)] = 90


class ClvPredictionConfig(_Strict):
    """Customer lifetime value: expected revenue in the next `horizon_days`."""

    horizon_days: Annotated[int, Field(ge=7, le=1095)] = 365


class SubscriptionPredictionConfig(_Strict):
    """Subscription churn: P(an active subscriber cancels in the next `horizon_days`); trained only
    when the log has subscription events."""

    horizon_days: Annotated[int, Field(ge=7, le=1095)] = 90
    start_events: list[str] = Field(
        default_factory=lambda: ["Subscription Started", "Subscription Renewed", "Trial Converted"])
    cancel_events: list[str] = Field(
        default_factory=lambda: ["Subscription Cancelled", "Subscription Canceled", "Subscription Ended"])


class OfferConfig(_Strict):
    """An offer the next-best-offer model may choose (docs/predictions.md, "Next best offer")."""

    name: Annotated[str, Field(min_length=1)]
    type: Literal["discount", "new_in", "free_shipping", "gift", "points", "content"] = "discount"
    # the message channel it goes out on (null: the customer's preferred channel)
    channel: Literal["email", "sms", "push"] | None = None
    discount: Annotated[float, Field(ge=0, le=100)] = 0.0  # percent off the order
    category: str | None = None  # a category offer (null: the whole range)
    margin: Annotated[float, Field(ge=0, le=1)] | None = None  # gross margin rate (null: predictions.margin)
    cost: Annotated[float, Field(ge=0)] = 0.0  # cost per message sent
    eligibility: str | None = None  # a segment expression; null: everyone

    @field_validator("eligibility")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from panorama.segments.language import SegmentError, check_syntax

        try:
            check_syntax(value)
        except SegmentError as exc:
            raise ValueError(str(exc)) from None
        return value


class HorizonConfig(_Strict):
    horizon_days: Annotated[int, Field(ge=7, le=1095)] = 90


class NextPurchaseConfig(_Strict):
    """Next purchase: top-k products and categories (TIFU-KNN style)."""

    horizon_days: Annotated[int, Field(ge=7, le=1095)] = 90
    top_k: Annotated[int, Field(ge=1, le=100)] = 10
    half_life_days: Annotated[float, Field(gt=0)] = 180.0  # time decay of a customer's own purchases
    neighbour_weight: Annotated[float, Field(ge=0, le=1)] = 0.3  # share of item-item co-occurrence


class PredictionsConfig(_Strict):
    """Predictions (docs/predictions.md)."""

    # events that are purchases (deduplicated per profile by order_id); revenue is taken from
    # the promoted `revenue` column, else `value`, else price x quantity
    purchase_events: list[str] = Field(default_factory=lambda: ["Order Completed"])
    # events that are purchased line items (category breadth)
    item_events: list[str] = Field(default_factory=lambda: ["Product Purchased", "Order Completed"])
    churn: ChurnPredictionConfig = Field(default_factory=ChurnPredictionConfig)
    clv: ClvPredictionConfig = Field(default_factory=ClvPredictionConfig)
    subscription: SubscriptionPredictionConfig = Field(default_factory=SubscriptionPredictionConfig)
    # stacked past training windows (labels of each end before the as-of date)
    training_windows: Annotated[int, Field(ge=1, le=24)] = 4
    # days between the cutoffs of consecutive training windows (default: min(horizon, 90))
    window_step_days: Annotated[int, Field(ge=1, le=1095)] | None = None
    # data sufficiency: minimum history before a training cutoff, minimum rows and classes
    min_history_days: Annotated[int, Field(ge=0)] = 90
    min_training_profiles: Annotated[int, Field(ge=1)] = 200
    min_class_count: Annotated[int, Field(ge=1)] = 30
    # cap on stacked training rows (uniform sample of profiles beyond it)
    max_training_rows: Annotated[int, Field(ge=1000)] = 1_000_000
    threads: Annotated[int, Field(ge=1, le=256)] = 2
    # predictions II (docs/predictions.md): propensities, next purchase, offers, channel, discount, NPS
    cross_sell: HorizonConfig = Field(default_factory=HorizonConfig)
    next_purchase: NextPurchaseConfig = Field(default_factory=NextPurchaseConfig)
    offers: list[OfferConfig] = Field(default_factory=list)
    margin: Annotated[float, Field(ge=0, le=1)] = 0.4  # default gross margin rate of an order
    response_days: Annotated[int, Field(ge=1, le=90)] = 7  # a campaign response: an order within N days
    channels: list[str] = Field(default_factory=lambda: ["email", "sms", "push"])

    @model_validator(mode="after")
    def _unique_offers(self):
        seen: set[str] = set()
        for i, offer in enumerate(self.offers):
            if offer.name in seen:
                raise ValueError(f"offers[{i}].name {offer.name!r} is declared twice")
            seen.add(offer.name)
        return self


TRAIT_AGGREGATIONS = (
    "count", "sum", "avg", "min", "max", "first", "last", "first_time", "last_time",
    "previous_time", "days_since_first", "days_since_last", "distinct_count", "most_frequent",
    "list_distinct", "sessions",
)


class TraitConfig(_Strict):
    """One computed trait (docs/traits.md): an aggregation over a profile's events (or source
    records), with optional filters and a time window; or `expr`, a SQL expression over other
    traits."""

    event: str | list[str] | None = None
    type: str | list[str] | None = None
    source: str | list[str] | None = None
    attribute: str | None = None
    property: str | None = None
    agg: Literal[TRAIT_AGGREGATIONS] | None = None  # type: ignore[valid-type]
    where: str | dict[str, str | int | float | bool | list[str | int | float]] | None = None
    window: str | None = None
    unique_by: str | None = None
    expr: str | None = None
    cast: Literal["number", "integer", "text", "boolean"] | None = None
    description: str | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        import re

        if value is not None and not re.fullmatch(r"\s*\d+\s*[dwy]\s*", value):
            raise ValueError(f"window {value!r}: use a number of days, weeks or years, e.g. 90d, 12w, 1y")
        return value

    @model_validator(mode="after")
    def _check(self) -> TraitConfig:
        if self.expr is not None:
            extra = [k for k in ("event", "type", "source", "attribute", "property", "agg", "where",
                                 "window", "unique_by") if getattr(self, k) is not None]  # fmt: skip
            if extra:
                raise ValueError(f"`expr` is computed from other traits; remove {', '.join(extra)}")
            return self
        if self.agg is None:
            raise ValueError("give `agg` (an aggregation) or `expr` (a formula over other traits)")
        needs_value = self.agg in ("sum", "avg", "min", "max", "first", "last", "distinct_count",
                                   "most_frequent", "list_distinct")  # fmt: skip
        if needs_value and not (self.property or self.attribute):
            raise ValueError(f"agg {self.agg} needs `property` (an event property) or `attribute`")
        if self.attribute is not None:
            if self.property or self.event or self.type or self.unique_by or self.window:
                raise ValueError("`attribute` reads source records: `property`, `event`, `type`, "
                                 "`unique_by` and `window` apply to events only")
            if self.agg == "sessions":
                raise ValueError("agg sessions applies to events only")
        return self


class LifecycleConfig(_Strict):
    """Lifecycle stage thresholds in days (docs/traits.md). Unset thresholds are derived from the
    data's inter-purchase times: `active_days` = the `active_quantile` of the gaps between a
    customer's consecutive purchase days, `lapsed_days` = the `lapsed_quantile`."""

    new_days: Annotated[int, Field(ge=1)] | None = None
    active_days: Annotated[int, Field(ge=1)] | None = None
    lapsed_days: Annotated[int, Field(ge=1)] | None = None
    active_quantile: Annotated[float, Field(gt=0, lt=1)] = 0.75
    lapsed_quantile: Annotated[float, Field(gt=0, lt=1)] = 0.9
    # fewer repeat-purchase gaps than this: use the fixed fallbacks 90 / 365 days
    min_gaps: Annotated[int, Field(ge=1)] = 30

    @model_validator(mode="after")
    def _order(self) -> LifecycleConfig:
        if self.active_quantile >= self.lapsed_quantile:
            raise ValueError("active_quantile must be below lapsed_quantile")
        if self.active_days and self.lapsed_days and self.active_days >= self.lapsed_days:
            raise ValueError("active_days must be below lapsed_days")
        return self


class MetricsConfig(_Strict):
    """Customer metrics (docs/metrics.md)."""

    # profit = revenue x gross_margin (historical CLV)
    gross_margin: Annotated[float, Field(gt=0, le=1)] = 1.0
    # survey answers: the score is the property `nps_property` (0-10) / `csat_property` (1-5)
    nps_events: list[str] = Field(default_factory=lambda: ["NPS Survey Answered"])
    nps_property: str = "value"
    csat_events: list[str] = Field(
        default_factory=lambda: ["Ticket Opened", "Ticket Solved", "CSAT Survey Answered"]
    )
    csat_property: str = "value"
    # support tickets (tickets, resolution)
    ticket_events: list[str] = Field(default_factory=lambda: ["Ticket Opened", "Ticket Created"])


# -- segments, triggers, destinations (docs/segments.md, docs/activation.md) --------------------

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | int | float) -> float:
    """Seconds in a duration: a number of seconds, or `500ms`, `30s`, `30m`, `2h`, `7d`, `1w`."""
    import re

    if isinstance(value, bool):
        raise ValueError(f"duration {value!r}: use e.g. 30s, 30m, 2h, 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*", str(value))
        if not match:
            raise ValueError(f"duration {value!r}: use a number and a unit (ms, s, m, h, d, w), e.g. 30m")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError(f"duration {value!r} is negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class SegmentConfig(_Strict):
    """A segment: a SQL boolean expression over the profile (docs/segments.md)."""

    where: str
    description: str | None = None
    # how often conditions that change with time alone (performed(..., within=...), now())
    # are re-checked by the running server
    recheck_every: Duration = 60.0

    @field_validator("where")
    @classmethod
    def _expression(cls, value: str) -> str:
        # syntax, functions and event-function arguments now; column names need the store
        from panorama.segments.language import SegmentError, check_syntax

        try:
            check_syntax(value)
        except SegmentError as exc:
            raise ValueError(str(exc)) from None
        return value


class RetryConfig(_Strict):
    """Delivery retries: exponential backoff from `initial` doubling up to `max`, with jitter."""

    max_attempts: Annotated[int, Field(ge=1, le=100)] = 10
    initial: Duration = 1.0
    max: Duration = 3600.0


class WebhookDestinationConfig(_Strict):
    """POST a JSON body signed with HMAC-SHA256 over `<timestamp>.<body>`."""

    type: Literal["webhook"]
    url: str
    # the signing secret; `env:NAME` reads it from the environment
    secret: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 10.0
    retry: RetryConfig = Field(default_factory=RetryConfig)
    # deliveries in flight at once (order across them is not kept)
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url {value!r}: must start with http:// or https://")
        return value


class EmailDestinationConfig(_Strict):
    """Send an email through SMTP; subject and bodies are Jinja2 templates over the profile."""

    type: Literal["email"]
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password: str | None = None  # `env:NAME` reads it from the environment
    sender: str
    to: str = "{{ profile.email }}"
    subject: str
    text: str | None = None  # inline template, or `file:` + a path relative to the project
    html: str | None = None
    timeout: Duration = 10.0
    retry: RetryConfig = Field(default_factory=RetryConfig)
    concurrency: Annotated[int, Field(ge=1, le=64)] = 2

    @model_validator(mode="after")
    def _body(self) -> EmailDestinationConfig:
        if not self.text and not self.html:
            raise ValueError("give `text` and/or `html` (a template, inline or file:PATH)")
        return self


class FileDestinationConfig(_Strict):
    """Export a segment's members to CSV or Parquet: the full list, or the entries and exits
    since the previous export (`delta`)."""

    type: Literal["file"]
    segment: str
    path: str  # relative to the project; may contain {timestamp}
    mode: Literal["full", "delta"] = "full"
    columns: list[str] | None = None  # profile columns to include (default: profile_id only)
    every: Duration | None = None  # the running server exports this often

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.lower().endswith((".csv", ".parquet")):
            raise ValueError(f"path {value!r}: use a .csv or .parquet file")
        return value


DestinationConfig = Annotated[
    WebhookDestinationConfig | EmailDestinationConfig | FileDestinationConfig,
    Field(discriminator="type"),
]


class TriggerConfig(_Strict):
    """When to act (docs/activation.md): on entering or leaving a segment, on an event, or on
    an event not followed by another within a delay (abandoned cart)."""

    segment: str | None = None
    on: Literal["enter", "exit"] = "enter"
    event: str | list[str] | None = None
    where: str | None = None  # a condition over the event's columns and properties
    not_followed_by: str | list[str] | None = None
    within: Duration | None = None
    destinations: list[str] = Field(min_length=1)
    description: str | None = None

    @field_validator("destinations", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("where")
    @classmethod
    def _event_filter(cls, value: str | None) -> str | None:
        if value is not None:
            from panorama.segments.language import SegmentError, compile_event_filter

            try:
                compile_event_filter(value)
            except SegmentError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _check(self) -> TriggerConfig:
        if (self.segment is None) == (self.event is None):
            raise ValueError("give exactly one of `segment` (entry/exit) or `event`")
        if self.segment is not None and (self.where or self.not_followed_by or self.within):
            raise ValueError("`where`, `not_followed_by` and `within` apply to event triggers")
        if (self.not_followed_by is None) != (self.within is None):
            raise ValueError("`not_followed_by` and `within` go together (e.g. within: 30m)")
        return self


# -- journeys and experiments (docs/journeys.md, docs/experiments.md) ---------------------------

JOURNEY_STAGES_DEFAULT: dict[str, list[str]] = {
    # the Segment e-commerce spec's events (and page/screen calls, named "Page Viewed" and
    # "Screen Viewed"), by the stage of the customer journey they show
    "awareness": ["Page Viewed", "Screen Viewed", "Products Searched", "Product List Viewed",
                  "Product List Filtered", "Promotion Viewed", "Promotion Clicked", "Email Opened",
                  "Email Clicked", "SMS Clicked", "Push Opened", "Push Clicked"],
    "consideration": ["Product Viewed", "Product Clicked", "Product Added", "Product Removed",
                      "Cart Viewed", "Product Added to Wishlist", "Signed Up", "Newsletter Subscribed",
                      "Experiment Viewed"],
    "purchase": ["Checkout Started", "Checkout Step Viewed", "Checkout Step Completed",
                 "Payment Info Entered", "Coupon Applied", "Order Completed"],
    "retention": ["Order Refunded", "Order Cancelled", "Ticket Opened", "NPS Survey Answered",
                  "Subscription Renewed", "Offer Redeemed"],
    "advocacy": ["Review Submitted", "Product Reviewed", "Referral Sent", "Product Shared",
                 "Cart Shared"],
}


class JourneysConfig(_Strict):
    """Journey stages (docs/journeys.md): stage -> the events that show it, in journey order."""

    stages: dict[str, list[str]] = Field(default_factory=lambda: dict(JOURNEY_STAGES_DEFAULT))
    # a purchase event by a profile that already purchased counts in this stage (repeat orders
    # are retention); null keeps it in its own stage
    repeat_purchase_stage: str | None = "retention"
    purchase_events: list[str] = Field(default_factory=lambda: ["Order Completed"])
    # default funnel steps (stage names or event names), in order
    funnel: list[str] | None = None
    # a profile whose last stage is older than this (before the period end) has stalled there
    stall_after: Duration = 30 * 86400.0

    @model_validator(mode="after")
    def _check(self) -> JourneysConfig:
        if not self.stages:
            raise ValueError("stages: give at least one stage")
        seen: dict[str, str] = {}
        for stage, events in self.stages.items():
            for event in events:
                if event in seen and seen[event] != stage:
                    raise ValueError(f"stages: event {event!r} is in both {seen[event]!r} and {stage!r}")
                seen[event] = stage
        if self.repeat_purchase_stage is not None and self.repeat_purchase_stage not in self.stages:
            raise ValueError(f"repeat_purchase_stage: unknown stage {self.repeat_purchase_stage!r}; "
                             f"stages: {', '.join(self.stages)}")
        return self


class ExperimentConfig(_Strict):
    """A declared A/B test (docs/experiments.md). Exposure: the first `assignment_event` of a
    profile whose `id_property` equals `experiment_id`; its `variant_property` is the variant."""

    experiment_id: str | None = None  # default: the experiment's name in this file
    description: str | None = None
    # the first variant is the control
    variants: list[str] | None = Field(default=None, min_length=2)
    # expected traffic share per variant (default: equal)
    weights: list[float] | None = None
    assignment_event: str = "Experiment Viewed"
    id_property: str = "experiment_id"
    variant_property: str = "variant"
    metric: Literal["conversion", "revenue", "retention"] = "conversion"
    metric_event: str | list[str] = "Order Completed"
    # the metric counts events within this time after the profile's exposure
    window: Duration = 3600.0
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    power: Annotated[float, Field(gt=0.5, lt=1)] = 0.8
    # minimum detectable effect, relative to the control (0.1 = +10%), for the planned sample size
    mde: Annotated[float, Field(gt=0)] | None = None
    baseline: Annotated[float, Field(gt=0)] | None = None
    # fixed horizon: results are final at this exposure count per variant and/or this end time
    sample_size: Annotated[int, Field(ge=2)] | None = None
    start: str | None = None
    end: str | None = None
    # always-valid (mSPRT) analysis: look at any time without inflating false positives
    sequential: bool = False
    hypothesis: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        if self.weights is not None:
            if self.variants is None or len(self.weights) != len(self.variants):
                raise ValueError("weights: give one weight per variant (and list the variants)")
            if any(w <= 0 for w in self.weights):
                raise ValueError("weights: every weight must be positive")
        for key in ("start", "end"):
            value = getattr(self, key)
            if value is not None:
                from datetime import datetime

                try:
                    datetime.fromisoformat(value)
                except ValueError:
                    raise ValueError(f"{key}: {value!r} is not an ISO date (YYYY-MM-DD[ HH:MM])") from None
        return self


# -- consent (docs/privacy.md) -------------------------------------------------------------------

CONSENT_PURPOSES = ["email", "sms", "push", "analytics", "personalisation"]


class ConsentEventRule(_Strict):
    purpose: str
    granted: bool


class ConsentConfig(_Strict):
    """Consent per person and purpose (docs/privacy.md): where changes come from, what needs an
    opt-in, and which purposes each destination serves."""

    purposes: list[str] = Field(default_factory=lambda: list(CONSENT_PURPOSES))
    # purposes that need a recorded opt-in; the others are allowed unless opted out
    require_opt_in: list[str] = Field(default_factory=list)
    # source-record attributes and identify traits -> purpose (yes/no, true/false, 1/0, opt-in/out);
    # `<purpose>_opt_in`, `<purpose>_consent` and `consent_<purpose>` are recognised without listing
    attributes: dict[str, str] = Field(default_factory=dict)
    # event name -> the change it records (besides `Consent Updated` with properties purpose, granted)
    events: dict[str, ConsentEventRule] = Field(default_factory=dict)
    # destination -> purposes it serves (default: email destinations serve `email`)
    destinations: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("destinations", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check(self) -> ConsentConfig:
        known = set(self.purposes)
        used = [("require_opt_in", p) for p in self.require_opt_in]
        used += [(f"attributes.{k}", p) for k, p in self.attributes.items()]
        used += [(f"events.{k}.purpose", r.purpose) for k, r in self.events.items()]
        used += [(f"destinations.{k}", p) for k, ps in self.destinations.items() for p in ps]
        for where, purpose in used:
            if purpose not in known:
                raise ValueError(f"{where}: unknown purpose {purpose!r}; purposes: {', '.join(self.purposes)}")
        return self


class SparkConfig(_Strict):
    """`engine: spark`: the batch pipeline on Apache Spark, the log as Parquet (docs/scale.md)."""

    # any Spark master: local[N] / local[*], spark://host:port, yarn, k8s://https://...
    master: str = "local[2]"
    # the Parquet log (partitioned by date and source): a directory, or s3a://, gs://, abfss:// ...
    log_path: str = "log"
    driver_memory: str = "2g"
    # extra Spark settings passed through as-is (spark.executor.memory, spark.hadoop.fs.s3a...)
    conf: dict[str, str] = Field(default_factory=dict)
    # the real-time API appends to the Parquet log in micro-batches of this many events or seconds
    micro_batch_rows: Annotated[int, Field(ge=1)] = 10_000
    micro_batch_seconds: Annotated[float, Field(gt=0)] = 5.0

    @field_validator("master")
    @classmethod
    def _master(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"local(\[(\d+|\*)(,\d+)?\])?|(spark|mesos|k8s)://\S+|yarn", value):
            raise ValueError(f"{value!r}: use local[N], local[*], spark://host:port, yarn or k8s://...")
        return value


class ProjectConfig(_Strict):
    name: str
    store: str = "panorama.duckdb"
    # where the batch pipeline runs: duckdb (the store file) or spark (docs/scale.md)
    engine: Literal["duckdb", "spark"] = "duckdb"
    spark: SparkConfig = Field(default_factory=SparkConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    predictions: PredictionsConfig = Field(default_factory=PredictionsConfig)
    # computed traits by name (a null value drops a built-in trait); docs/traits.md
    traits: dict[str, TraitConfig | None] = Field(default_factory=dict)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    # segments, triggers and destinations by name (docs/segments.md, docs/activation.md)
    segments: dict[str, SegmentConfig] = Field(default_factory=dict)
    triggers: dict[str, TriggerConfig] = Field(default_factory=dict)
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    # journey stages and declared A/B tests (docs/journeys.md, docs/experiments.md)
    journeys: JourneysConfig = Field(default_factory=JourneysConfig)
    experiments: dict[str, ExperimentConfig] = Field(default_factory=dict)
    # consent per purpose and suppression (docs/privacy.md)
    consent: ConsentConfig = Field(default_factory=ConsentConfig)

    @field_validator("traits")
    @classmethod
    def _trait_names(cls, traits: dict[str, TraitConfig | None]) -> dict[str, TraitConfig | None]:
        import re

        for name in traits:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
                raise ValueError(f"trait name {name!r}: use lower-case letters, digits and '_', "
                                 "starting with a letter")
        return traits

    @field_validator("sources")
    @classmethod
    def _source_names(cls, sources: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        for name in sources:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"source name {name!r}: use letters, digits, '_' or '-'")
        return sources

    @field_validator("segments", mode="before")
    @classmethod
    def _segment_shorthand(cls, value: Any) -> Any:
        # `name: "expression"` is short for `name: {where: "expression"}`
        if isinstance(value, dict):
            return {k: {"where": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("segments", "triggers", "destinations")
    @classmethod
    def _activation_names(cls, value: dict) -> dict:
        import re

        for name in value:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,62}", name):
                raise ValueError(f"name {name!r}: use letters, digits, '_' or '-', starting with a letter")
        return value

    @model_validator(mode="after")
    def _activation_references(self) -> ProjectConfig:
        for name, trigger in self.triggers.items():
            if trigger.segment is not None and trigger.segment not in self.segments:
                raise ValueError(f"triggers.{name}.segment: unknown segment {trigger.segment!r}; "
                                 f"configured: {', '.join(self.segments) or '(none)'}")
            for dest in trigger.destinations:
                if dest not in self.destinations:
                    raise ValueError(f"triggers.{name}.destinations: unknown destination {dest!r}; "
                                     f"configured: {', '.join(self.destinations) or '(none)'}")
                if self.destinations[dest].type == "file":
                    raise ValueError(f"triggers.{name}.destinations: {dest!r} is a file export of a "
                                     "segment; triggers send to webhook or email destinations")
        for name, dest in self.destinations.items():
            if dest.type == "file" and dest.segment not in self.segments:
                raise ValueError(f"destinations.{name}.segment: unknown segment {dest.segment!r}; "
                                 f"configured: {', '.join(self.segments) or '(none)'}")
        return self


class Project:
    """A loaded project: its directory and validated config."""

    def __init__(self, root: Path, config: ProjectConfig):
        self.root = root
        self.config = config

    @property
    def store_path(self) -> Path:
        return (self.root / self.config.store).resolve()

    def source_path(self, source: SourceConfig) -> Path:
        assert source.path is not None
        return (self.root / source.path).resolve()


def _format_validation_error(file: Path, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif "input" in item and item["type"] not in ("value_error",):
            message = f"{message} (got {item['input']!r})"
        lines.append(f"{file.name}: {key}: {message}")
    return "\n".join(lines)


def parse_config(data: Any, file: Path = Path(CONFIG_FILE)) -> ProjectConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{file.name}: the file must be a mapping of keys (name, store, sources, ...)")
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(file, exc)) from None


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads on/off/yes/no as booleans,
    which would turn a trigger's `on: enter` into the key True."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_project(directory: Path | str = ".") -> Project:
    root = Path(directory).resolve()
    file = root / CONFIG_FILE
    if not file.exists():
        raise ConfigError(f"{file}: not found; run `panorama init {directory}` to create a project")
    try:
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=_YamlLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{file.name}:{where}: invalid YAML: {problem}") from None
    return Project(root, parse_config(data, file))


TEMPLATE = """\
# Panorama project configuration. Reference: docs/config.md
name: {name}
store: panorama.duckdb            # DuckDB file, relative to this directory
identity:
  default_region: {region}              # phone numbers without a country code
sources: {{}}
# sources:
#   crm:
#     path: data/crm_contacts.csv
#     kind: records                 # records | events | segment
#     key: customer_id
#     timestamp: created_at
#     identifiers: {{customer_id: crm_id, email: email, phone: phone}}
#     attributes: {{first_name: first_name, last_name: last_name}}
#     formats: {{created_at: "%Y-%m-%d %H:%M:%S"}}
"""


def init_project(directory: Path | str, name: str | None = None, region: str = "US") -> Path:
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    file = root / CONFIG_FILE
    if file.exists():
        raise ConfigError(f"{file}: already exists; not overwritten")
    file.write_text(TEMPLATE.format(name=name or root.resolve().name, region=region), encoding="utf-8")
    return file
