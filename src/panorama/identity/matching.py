"""Probabilistic matching of person-like records with Splink (DuckDB backend).

Records that share no reliable identifier — a second CRM account under another email, a
loyalty card with a personal address, a trade contact — can still be one person: similar
names (nicknames, typos, first and last swapped), the same date of birth (or day and month
swapped), postcode, address, and similar emails. Splink scores record pairs; its parameters
are estimated from the project's own data without labels (u by random sampling, m by
expectation maximisation). Pairs at or above `identity.splink.threshold` become links in the
identity graph, with their probability, and go through the same merge protection as
deterministic links: a pair whose first names or dates of birth conflict is refused, so
spouses, twins and namesakes stay apart.

Splink runs on its own in-memory DuckDB connection with a copy of the candidate records
(never on the store's connection: DESIGN.md's pitfalls).
"""

from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import dataclass
from functools import lru_cache

import duckdb
import orjson
import pyarrow as pa

from panorama.config import Project, SplinkSettings
from panorama.identity.normalize import (
    canonical_first_name,
    first_name_key,
    last_name_key,
    normalize_address,
    normalize_date,
    normalize_postcode,
    split_full_name,
)
from panorama.store import one
from panorama.store.schema import CURRENT_RECORDS

log = logging.getLogger("panorama.identity")

_KEYS = {
    "first": ("first_name", "firstName", "given_name"),
    "last": ("last_name", "lastName", "surname", "family_name"),
    "full": ("full_name", "name", "fullName"),
    "dob": ("birth_date", "birthday", "date_of_birth", "dob", "dateOfBirth"),
    "postcode": ("postal_code", "postcode", "zip", "postalCode", "zip_code"),
    "address": ("address_line1", "address", "street", "address1"),
    "city": ("city", "town"),
}

# Blocking keys (columns bk_*): a value shared by more than `max_block_size` records is
# dropped from its key, so one common name or a shared mailbox cannot produce millions of pairs.
# The date of birth alone is not a key: at 100k customers it made 97,173 of the 133,033
# corroborated pairs and no accepted match that another key did not find (docs/identity.md).
BLOCKING_KEYS: dict[str, tuple[str, ...]] = {
    "bk_email": ("email_local",),
    "bk_phone": ("phone",),
    "bk_last_dob": ("last_name", "birth_date"),
    "bk_first_dob": ("first_canon", "birth_date"),
    "bk_postcode_first": ("postcode", "first_canon"),
    "bk_name_city": ("first_canon", "last_name", "city"),
    "bk_name": ("first_canon", "last_name"),
    "bk_last_postcode": ("last_name", "postcode"),
    "bk_dob_city": ("birth_date", "city"),
    "bk_postcode": ("postcode",),
}
DEFAULT_BLOCKING = [f"l.{k} = r.{k}" for k in BLOCKING_KEYS]
MIN_RECORDS = 50  # fewer person records than this: nothing to estimate from


def _json(keys: tuple[str, ...]) -> str:
    return (
        "coalesce(" + ", ".join(f"json_extract_string(attributes, '$.\"{k}\"')" for k in keys) + ")"
    )


@dataclass
class Candidates:
    table: pa.Table  # one row per person-like record
    rows: int


def candidates(cur: duckdb.DuckDBPyConnection, project: Project) -> Candidates:
    """The person-like records (with `_sn`, the normalised identifiers, from the resolution)."""
    settings = project.config.identity.splink
    region = project.config.identity.default_region
    sources = settings.sources or [
        n for n, s in project.config.sources.items() if s.kind == "records"
    ]
    if not sources:
        return Candidates(pa.table({}), 0)
    names = ", ".join("'" + s.replace("'", "''") + "'" for s in sources)
    cols = {k: _json(v) for k, v in _KEYS.items()}
    compared = list(settings.compare_identifiers)
    extra_ids = "".join(f", min(s.value) FILTER (WHERE s.type = '{t.replace(chr(39), '')}') AS id_{i}"
                        for i, t in enumerate(compared))  # fmt: skip
    extra_cols = "".join(f", ids.id_{i}" for i in range(len(compared)))
    rows = cur.execute(
        f"""
        WITH r AS (
            SELECT source, record_id, hash(coalesce(identifiers, CAST([] AS STRUCT(type VARCHAR, value VARCHAR)[]))) AS sig,
                   {cols["first"]} AS f, {cols["last"]} AS l, {cols["full"]} AS n, {cols["dob"]} AS d,
                   {cols["postcode"]} AS pc, {cols["address"]} AS ad, {cols["city"]} AS ci
            FROM ({CURRENT_RECORDS}) WHERE source IN ({names}) AND attributes IS NOT NULL
        ),
        ids AS (
            SELECT s.sig, min(s.value) FILTER (WHERE u.kind = 'email') AS email,
                   min(s.value) FILTER (WHERE u.kind = 'phone') AS phone {extra_ids}
            FROM _sn s JOIN _rules u ON u.type = s.type
            WHERE s.status = 'ok' GROUP BY s.sig
        )
        SELECT r.source, r.record_id, r.sig, r.f, r.l, r.n, r.d, r.pc, r.ad, r.ci, ids.email, ids.phone {extra_cols}
        FROM r LEFT JOIN ids USING (sig)
        ORDER BY r.source, r.record_id
        """.replace("{extra_ids}", extra_ids).replace("{extra_cols}", extra_cols)
    ).fetchall()
    if settings.identify_events:
        rows += cur.execute(
            f"""
            SELECT source, message_id, hash(identifiers), json_extract_string(traits, '$.firstName'),
                   json_extract_string(traits, '$.lastName'), json_extract_string(traits, '$.name'),
                   json_extract_string(traits, '$.birthday'), json_extract_string(traits, '$.address.postalCode'),
                   json_extract_string(traits, '$.address.street'), json_extract_string(traits, '$.address.city'),
                   NULL, NULL {", NULL" * len(compared)}
            FROM events WHERE type = 'identify' AND traits IS NOT NULL
              AND coalesce(json_extract_string(traits, '$.firstName'), json_extract_string(traits, '$.name')) IS NOT NULL
            """
        ).fetchall()
    out: dict[str, list] = {k: [] for k in ("unique_id", "source", "record_id", "sig", "first_name", "first_canon",
                                            "last_name", "birth_date", "postcode", "address", "city", "email",
                                            "email_local", "phone")}  # fmt: skip
    for k in range(len(compared)):
        out[f"id_{k}"] = []
    # names, dates and postcodes repeat across records: normalise each distinct value once
    first_key, last_key, canon, split = (lru_cache(maxsize=None)(f) for f in (
        first_name_key, last_name_key, canonical_first_name, split_full_name))  # fmt: skip
    day = lru_cache(maxsize=None)(lambda d: normalize_date(d, region))
    post = lru_cache(maxsize=None)(lambda pc: normalize_postcode(pc, region))
    for i, (source, record_id, sig, f, la, n, d, pc, ad, ci, email, phone, *extra) in enumerate(
        rows
    ):
        first, last = first_key(f), last_key(la)
        if (first is None or last is None) and n:
            f2, l2 = split(n)
            first, last = first or f2, last or l2
        if first is None and last is None:
            continue
        out["unique_id"].append(i)
        out["source"].append(source)
        out["record_id"].append(record_id)
        out["sig"].append(sig)
        out["first_name"].append(first)
        out["first_canon"].append(canon(first))
        out["last_name"].append(last)
        out["birth_date"].append(day(d) if d else None)
        out["postcode"].append(post(pc) if pc else None)
        out["address"].append(normalize_address(ad) if ad else None)
        out["city"].append(ci.strip().lower() if ci and ci.strip() else None)
        out["email"].append(email)
        out["email_local"].append(email.split("@", 1)[0] if email else None)
        out["phone"].append(phone)
        for k, value in enumerate(extra):
            out[f"id_{k}"].append(value)
    types = {"unique_id": pa.int64(), "sig": pa.uint64()}
    table = pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in out.items()})
    keys = dict(BLOCKING_KEYS)
    keys.update({f"bk_id_{k}": (f"id_{k}",) for k in range(len(compared))})
    table = _with_blocking_keys(table, keys, settings.max_block_size)
    return Candidates(table, table.num_rows)


def _with_blocking_keys(table: pa.Table, keys: dict[str, tuple[str, ...]], max_block: int) -> pa.Table:
    """`table` with a column per blocking key: its parts joined by U+001F when none is null,
    null when more than `max_block` rows share the value (counted on a private connection)."""
    con = duckdb.connect()
    try:
        con.execute("SET threads = 2")
        con.register("people", table)
        exprs = []
        for key, parts in keys.items():
            value = " || chr(31) || ".join(f'"{p}"' for p in parts)
            present = " AND ".join(f'"{p}" IS NOT NULL' for p in parts)
            exprs.append(f"CASE WHEN {present} AND count(*) OVER (PARTITION BY {value}) <= {int(max_block)} "
                         f'THEN {value} END AS "{key}"')  # fmt: skip
        return con.execute(f"SELECT *, {', '.join(exprs)} FROM people ORDER BY unique_id").to_arrow_table()
    finally:
        con.close()


def settings_for(settings: SplinkSettings, region: str = "GB", corroborated_only: bool = False):
    """Splink's settings: the comparisons and the blocking rules that make the pairs scored.
    `corroborated_only`: the rules keep only pairs that one of `corroborate` agrees on (SQL in
    DuckDB's dialect)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator

    first = cl.CustomComparison(
        output_column_name="first_name",
        comparison_levels=[
            cll.NullLevel("first_name"),
            cll.ExactMatchLevel("first_name").configure(tf_adjustment_column="first_name"),
            cll.CustomLevel("first_canon_l = first_canon_r", "same name (nickname)"),
            cll.CustomLevel(
                "first_name_l = last_name_r AND last_name_l = first_name_r",
                "first and last swapped",
            ),
            cll.DamerauLevenshteinLevel("first_name", 1),
            cll.CustomLevel(
                "jaro_winkler_similarity(first_name_l, last_name_r) >= 0.9 "
                "AND jaro_winkler_similarity(last_name_l, first_name_r) >= 0.9",
                "swapped, with a typo",
            ),  # fmt: skip
            cll.JaroWinklerLevel("first_name", 0.88),
            cll.CustomLevel(
                "(length(first_name_l) = 1 OR length(first_name_r) = 1) "
                "AND substr(first_name_l, 1, 1) = substr(first_name_r, 1, 1)",
                "initial",
            ),  # fmt: skip
            cll.ElseLevel(),
        ],
    )
    last = cl.CustomComparison(
        output_column_name="last_name",
        comparison_levels=[
            cll.NullLevel("last_name"),
            cll.ExactMatchLevel("last_name").configure(tf_adjustment_column="last_name"),
            cll.CustomLevel(
                "first_name_l = last_name_r AND last_name_l = first_name_r",
                "first and last swapped",
            ),
            cll.DamerauLevenshteinLevel("last_name", 1),
            cll.JaroWinklerLevel("last_name", 0.88),
            cll.ElseLevel(),
        ],
    )
    dob = cl.CustomComparison(
        output_column_name="birth_date",
        comparison_levels=[
            cll.NullLevel("birth_date"),
            cll.ExactMatchLevel("birth_date"),
            cll.CustomLevel(
                "substr(birth_date_l, 1, 4) = substr(birth_date_r, 1, 4) "
                "AND substr(birth_date_l, 6, 2) = substr(birth_date_r, 9, 2) "
                "AND substr(birth_date_l, 9, 2) = substr(birth_date_r, 6, 2)",
                "day and month swapped",
            ),
            cll.DamerauLevenshteinLevel("birth_date", 1),
            cll.ElseLevel(),
        ],
    )
    address = cl.CustomComparison(
        output_column_name="address",
        comparison_levels=[
            cll.NullLevel("address"),
            cll.ExactMatchLevel("address"),
            cll.JaroWinklerLevel("address", 0.9),
            cll.ElseLevel(),
        ],
    )
    city = cl.CustomComparison(
        output_column_name="city",
        comparison_levels=[
            cll.NullLevel("city"),
            cll.ExactMatchLevel("city"),
            cll.JaroWinklerLevel("city", 0.9),
            cll.ElseLevel(),
        ],  # fmt: skip
    )
    if region in ("GB", "GG", "JE", "IM"):
        postcode = cl.PostcodeComparison("postcode")
    else:
        postcode = cl.CustomComparison(
            output_column_name="postcode",
            comparison_levels=[
                cll.NullLevel("postcode"),
                cll.ExactMatchLevel("postcode"),
                cll.DamerauLevenshteinLevel("postcode", 1),
                cll.ElseLevel(),
            ],  # fmt: skip
        )
    phone = cl.CustomComparison(
        output_column_name="phone",
        comparison_levels=[
            cll.NullLevel("phone"),
            cll.ExactMatchLevel("phone"),
            cll.DamerauLevenshteinLevel("phone", 1),
            cll.ElseLevel(),
        ],  # fmt: skip
    )
    identifiers = [
        cl.CustomComparison(
            output_column_name=f"id_{k}",
            comparison_levels=[
                cll.NullLevel(f"id_{k}"),
                cll.ExactMatchLevel(f"id_{k}"),
                cll.DamerauLevenshteinLevel(f"id_{k}", 1),
                cll.DamerauLevenshteinLevel(f"id_{k}", 2),
                cll.ElseLevel(),
            ],  # fmt: skip
        )
        for k in range(len(settings.compare_identifiers))
    ]
    blocking = list(settings.blocking or DEFAULT_BLOCKING)
    if not settings.blocking:
        blocking += [f"l.bk_id_{k} = r.bk_id_{k}" for k in range(len(settings.compare_identifiers))]
    if corroborated_only and settings.corroborate:
        # a pair that no `corroborate` field agrees on is dropped after scoring anyway: not
        # scoring it gives the same links for a fraction of the work
        condition = corroboration(settings.corroborate, "l", "r")
        blocking = [f"({rule}) AND ({condition})" for rule in blocking]
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            first,
            last,
            dob,
            postcode,
            address,
            city,
            cl.EmailComparison("email"),
            phone,
            *identifiers,
        ],  # fmt: skip
        blocking_rules_to_generate_predictions=list(blocking),
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
        additional_columns_to_retain=[],
        max_iterations=20,
    )


@dataclass
class Model:
    linker: object
    con: duckdb.DuckDBPyConnection | None  # None on another backend


def train(table: pa.Table, settings: SplinkSettings, region: str = "GB", db_api=None,
          corroborated_only: bool | None = None) -> Model:
    """A Splink model estimated (unsupervised) on `table`, on its own DuckDB connection, or on
    `db_api` (another Splink backend: `panorama.scale.splink` gives Spark's).
    `corroborated_only` (default: on DuckDB) see `settings_for`."""
    from splink import DuckDBAPI, Linker, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)
    con = None
    duck = db_api is None
    if duck:
        con = duckdb.connect()
        con.execute("SET threads = 2")
        db_api = DuckDBAPI(con)
    full = table
    if settings.training_records and table.num_rows > settings.training_records:
        rows = random.Random(settings.seed).sample(range(table.num_rows), settings.training_records)
        table = table.take(pa.array(sorted(rows), pa.int64()))
    df = db_api.register(table, table_name="panorama_people")
    corroborated_only = duck if corroborated_only is None else corroborated_only
    linker = Linker(df, settings_for(settings, region, corroborated_only), log_level=None)
    try:
        linker.training.estimate_probability_two_random_records_match(
            [
                block_on("email"),
                block_on("phone"),
                block_on("first_canon", "last_name", "birth_date"),
            ],
            recall=0.7,
        )
    except Exception as exc:  # no deterministic pairs to count: keep the default prior
        log.info("splink: prior not estimated (%s)", exc)
    prior = linker._settings_obj._probability_two_random_records_match
    if not 0 < prior < 1:  # no pair agreed on the deterministic rules
        linker._settings_obj._probability_two_random_records_match = 1e-4
    linker.training.estimate_u_using_random_sampling(
        max_pairs=settings.max_pairs, seed=settings.seed
    )
    for rule in (block_on("bk_name_city"), block_on("bk_last_dob"), block_on("bk_postcode_first")):
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                rule, max_pairs=settings.max_pairs
            )
        except Exception as exc:  # too few pairs under this rule to estimate from
            log.info("splink: EM under %s skipped (%s)", rule, exc)
    if table is not full:  # the estimated model, to score every record
        model = linker.misc.save_model_to_json()
        linker = Linker(db_api.register(full, table_name="panorama_people_all"), model, log_level=None)
    return Model(linker, con)


def predict(model: Model, threshold: float) -> pa.Table:
    """Scored pairs at or above `threshold`: unique_id_l, unique_id_r, match_probability,
    match_weight and the comparison levels (gamma_*)."""
    result = model.linker.inference.predict(threshold_match_probability=threshold)
    return result.as_pyarrow_table()


_CORROBORATION = {
    "birth_date": """{a}.birth_date = {b}.birth_date
        OR (substr({a}.birth_date, 1, 4) = substr({b}.birth_date, 1, 4)
            AND substr({a}.birth_date, 6, 2) = substr({b}.birth_date, 9, 2)
            AND substr({a}.birth_date, 9, 2) = substr({b}.birth_date, 6, 2))
        OR damerau_levenshtein({a}.birth_date, {b}.birth_date) <= 1""",
    "postal_code": "{a}.postcode = {b}.postcode",
    "address": "jaro_winkler_similarity({a}.address, {b}.address) >= 0.9",
    "phone": "{a}.phone = {b}.phone",
    "email": "{a}.email = {b}.email",
}


def corroboration(fields, a: str = "a", b: str = "b") -> str:
    """SQL true when one of `fields` agrees between the records aliased `a` and `b`."""
    return "coalesce(" + " OR ".join(f"({_CORROBORATION[f].format(a=a, b=b)})" for f in fields) + ", false)"


def _corroborated(people: pa.Table, pairs: pa.Table, fields: list[str]) -> pa.Table:
    """The pairs on which one of `fields` agrees (with `_row`: the pair's row in `pairs`)."""
    con = duckdb.connect()
    try:
        con.register(
            "people",
            people.select(["unique_id", "birth_date", "postcode", "address", "phone", "email"]),
        )
        con.register("pairs", pairs.select(["unique_id_l", "unique_id_r"]).append_column(
            "_row", pa.array(range(pairs.num_rows), pa.int64())))  # fmt: skip
        keep = con.execute(
            f"""
            SELECT p._row FROM pairs p
            JOIN people a ON a.unique_id = p.unique_id_l JOIN people b ON b.unique_id = p.unique_id_r
            WHERE {corroboration(fields)}
            ORDER BY p._row
            """
        ).fetchnumpy()["_row"]
    finally:
        con.close()
    out = pairs.take(pa.array(keep, pa.int64()))
    return out.append_column("_row", pa.array(keep, pa.int64()))


def score_pairs(cur: duckdb.DuckDBPyConnection, project: Project, db_api=None, lap=None) -> int:
    """Fill temp table `_in_splink` with the pairs at or above the threshold; returns how many.
    `db_api`: the Splink backend that trains and scores (None: DuckDB, see `train`); `lap(name)`
    is called after each part (candidates, estimation, scoring) to time it."""
    lap = lap or (lambda name: None)
    settings = project.config.identity.splink
    found = candidates(cur, project)
    lap("splink candidates")
    if found.rows < MIN_RECORDS:
        return 0
    model = None
    try:
        model = train(found.table, settings, project.config.identity.default_region, db_api)
        lap("splink estimation")
        pairs = predict(model, settings.threshold)
        lap("splink scoring")
    except (
        Exception
    ) as exc:  # a model that cannot be estimated must not stop the deterministic graph
        log.warning("splink matching skipped: %s", exc)
        return 0
    finally:
        if model is not None and model.con is not None:
            with contextlib.suppress(Exception):
                model.con.close()
    if pairs.num_rows == 0:
        return 0
    gammas = [c for c in pairs.column_names if c.startswith("gamma_")]
    evidence = [
        orjson.dumps({g[6:]: int(v) for g, v in zip(gammas, vals, strict=True) if v is not None}).decode()
        for vals in zip(*(pairs.column(g).to_pylist() for g in gammas), strict=True)
    ] if gammas else [None] * pairs.num_rows  # fmt: skip
    if settings.corroborate:
        pairs = _corroborated(found.table, pairs, list(settings.corroborate))
        if pairs.num_rows == 0:
            return 0
        evidence = [evidence[i] for i in pairs.column("_row").to_pylist()]
    cur.register("_splink_people", found.table.select(["unique_id", "sig", "source", "record_id"]))
    cur.register(
        "_splink_pairs",
        pa.table(
            {
                "l": pairs.column("unique_id_l").cast(pa.int64()),
                "r": pairs.column("unique_id_r").cast(pa.int64()),
                "p": pairs.column("match_probability").cast(pa.float64()),
                "evidence": pa.array(evidence, pa.string()),
            }
        ),
    )
    cur.execute(
        """
        INSERT INTO _in_splink
        WITH pa AS MATERIALIZED (
            SELECT p.*, a.sig AS a_sig, a.source AS a_source, a.record_id AS a_record_id
            FROM _splink_pairs p JOIN _splink_people a ON a.unique_id = p.l
        ),
        pb AS MATERIALIZED (
            SELECT pa.*, b.sig AS b_sig, b.source AS b_source, b.record_id AS b_record_id
            FROM pa JOIN _splink_people b ON b.unique_id = pa.r
        )
        SELECT a_sig, b_sig, p, a_source, a_record_id, b_source, b_record_id, evidence
        FROM pb WHERE a_sig <> b_sig
        """
    )
    cur.unregister("_splink_pairs")
    cur.unregister("_splink_people")
    return one(cur.execute("SELECT count(*) FROM _in_splink"))[0]
