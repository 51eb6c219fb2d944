"""The demo data generator: determinism, config, ground truth, messiness and behavioural signal."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import phonenumbers
import pytest
import yaml

from panorama.config import load_project
from panorama.demo.generate import generate
from panorama.demo.project import FILES

CUSTOMERS = 1500
CHUNK = 600  # several chunks, so chunk boundaries are exercised
JUNK_PHONES = {"0000000000", "00000000000", "07000000000", "01234567890", "1234567890"}
TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    summary = generate(out, customers=CUSTOMERS, seed=11, chunk_size=CHUNK)
    (out / "summary.json").write_text(json.dumps(summary, default=str))
    return out


def _csv(demo: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(demo / name, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def persons(demo) -> pd.DataFrame:
    p = _csv(demo, "truth/persons.csv")
    for col in ("satisfaction", "purchase_rate", "discount_sensitivity", "email_response"):
        p[col] = p[col].astype(float)
    p["churn_ts"] = pd.to_datetime(p["churn_at"].replace("", None))
    return p.set_index("person_id")


@pytest.fixture(scope="module")
def truth(demo) -> pd.DataFrame:
    return _csv(demo, "truth/identities.csv")


@pytest.fixture(scope="module")
def web(demo) -> pd.DataFrame:
    with open(demo / "data/web_events.jsonl", "rb") as fh:
        rows = [orjson.loads(line) for line in fh]
    df = pd.DataFrame(rows)
    df["ts"] = pd.to_datetime(df["timestamp"].str.replace("Z", "", regex=False))
    return df


def _with_person(df: pd.DataFrame, truth: pd.DataFrame, source: str, key: str) -> pd.DataFrame:
    t = truth[truth.source == source][["record_id", "person_id"]]
    merged = df.merge(t, left_on=key, right_on="record_id", how="left")
    assert merged.person_id.notna().all()
    return merged


def _digest(directory: Path) -> dict[str, str]:
    return {str(f.relative_to(directory)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(directory.rglob("*")) if f.is_file()}


# --- shape ----------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    generate(tmp_path / "a", customers=300, seed=3, chunk_size=120)
    generate(tmp_path / "b", customers=300, seed=3, chunk_size=120)
    generate(tmp_path / "c", customers=300, seed=4, chunk_size=120)
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert len(a) >= 14
    assert a == b
    differing = [k for k in a if a[k] != c.get(k)]
    assert "data/crm_contacts.csv" in differing and "data/web_events.jsonl" in differing


def test_summary_counts_match_files(demo):
    summary = json.loads((demo / "summary.json").read_text())
    assert summary["persons"] == CUSTOMERS
    for path, rows in summary["files"].items():
        with open(demo / path, "rb") as fh:
            lines = sum(1 for _ in fh)
        header = 0 if path.endswith(".jsonl") else 1
        # CSV fields never contain line breaks, so lines = rows + header
        assert lines - header == rows, path
        assert rows > 0, path
    assert set(summary["files"]) == set(FILES)


def test_config_validates_and_every_mapped_column_exists(demo):
    from panorama.demo.project import SOURCES

    project = load_project(demo)
    cfg = project.config
    assert cfg.identity.default_region == "GB"
    assert yaml.safe_load((demo / "panorama.yaml").read_text())["sources"] == SOURCES
    assert set(cfg.sources) == {"crm", "shop", "order_items", "campaigns", "web", "support", "nps", "loyalty", "b2b"}
    for name, source in cfg.sources.items():
        path = project.source_path(source)
        assert path.exists(), name
        if source.kind == "segment":
            continue
        header = path.read_text(encoding="utf-8").split("\n", 1)[0].split(",")
        assert header == FILES[source.path], name
        missing = set(source.columns()) - set(header)
        assert not missing, f"{name}: {missing}"


def test_timestamps_are_iso_utc(demo, web):
    project = load_project(demo)
    for name, source in project.config.sources.items():
        if source.kind == "segment":
            continue
        df = _csv(demo, source.path)
        assert df[source.timestamp].str.match(TS).all(), name
        assert df[source.key].is_unique, name
    assert web["timestamp"].str.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$").all()
    assert web["messageId"].is_unique
    assert set(web["type"]) == {"identify", "track", "page", "screen", "group", "alias"}
    assert (web["userId"].notna() | web["anonymousId"].notna()).all()


def test_files_ingest_without_rejections(tmp_path):
    from panorama.ingest.files import ingest_source
    from panorama.store import open_store

    generate(tmp_path, customers=150, seed=5)
    project = load_project(tmp_path)
    with open_store(project.store_path) as store:
        for name in project.config.sources:
            result = ingest_source(store, project, name)
            assert result.rows_read > 0, name
            assert result.rejected == 0, name
            assert result.loaded == result.rows_read, name


# --- ground truth ---------------------------------------------------------------------------


def test_truth_covers_every_row_of_every_source(demo, truth, persons, web):
    project = load_project(demo)
    assert not truth.duplicated(["source", "record_id"]).any()
    assert truth.person_id.isin(persons.index).all()
    for name, source in project.config.sources.items():
        keys = web["messageId"] if source.kind == "segment" else _csv(demo, source.path)[source.key]
        truth_keys = truth.loc[truth.source == name, "record_id"]
        assert len(keys) == len(truth_keys), name
        assert set(keys) == set(truth_keys), name
    assert persons.index.is_unique and len(persons) == CUSTOMERS
    assert persons["email"].is_unique


def test_people_appear_in_several_sources_and_some_in_one(truth, persons):
    per_person = truth.groupby("person_id").source.nunique()
    assert (per_person >= 4).mean() > 0.3
    assert (per_person == 1).sum() >= 10


def test_experiment_truth_is_consistent(demo):
    experiments = json.loads((demo / "truth/experiments.json").read_text())
    by_id = {e["experiment_id"]: e for e in experiments}
    checkout = by_id["EXP-CHECKOUT-1PAGE"]
    assert checkout["true_relative_lift"] > 0
    rates = list(checkout["expected_conversion_rate"].values())
    assert rates[1] > rates[0]
    assert by_id["EXP-HERO-BANNER"]["true_relative_lift"] == 0
    campaigns = _csv(demo, "truth/campaigns.csv")
    assert len(campaigns) > 100
    assert (campaigns.true_uplift.astype(float) > 0).all()


# --- messiness ------------------------------------------------------------------------------


def test_duplicate_crm_accounts(demo, truth, persons):
    crm = _with_person(_csv(demo, "data/crm_contacts.csv"), truth, "crm", "customer_id")
    records = crm.groupby("person_id").size()
    assert (records >= 2).sum() >= 20
    dups = crm[crm.person_id.isin(records[records >= 2].index)]
    # duplicates differ somewhere: email, first name (nickname) or phone
    differs = dups.groupby("person_id").agg(lambda s: s.nunique() > 1)
    assert differs.email.sum() > 5 and differs.first_name.sum() > 2
    assert differs.last_name.sum() >= 1  # a new surname (marriage) or a typo


def test_names_swapped_or_misspelt(demo, truth, persons):
    crm = _with_person(_csv(demo, "data/crm_contacts.csv"), truth, "crm", "customer_id")
    canon_first = crm.person_id.map(persons.first_name).str.lower()
    canon_last = crm.person_id.map(persons.last_name).str.lower()
    first, last = crm.first_name.str.strip().str.lower(), crm.last_name.str.strip().str.lower()
    assert ((first == canon_last) & (last == canon_first)).sum() >= 3
    same_letters = last.map(sorted) == canon_last.map(sorted)
    assert ((last != canon_last) & same_letters).sum() >= 3  # transposed letters


def test_email_variants_case_whitespace_gmail_and_typos(demo, truth):
    frames = []
    for name, path, col in (("crm", "data/crm_contacts.csv", "email"), ("shop", "data/shop_orders.csv", "customer_email"),
                            ("loyalty", "data/loyalty_members.csv", "email"), ("nps", "data/nps_responses.csv", "email")):
        key = load_key(name)
        df = _with_person(_csv(demo, path), truth, name, key)
        frames.append(df[[col, "person_id"]].rename(columns={col: "email"}))
    emails = pd.concat(frames)
    emails = emails[emails.email != ""]
    lower = emails.assign(norm=emails.email.str.strip().str.lower())
    per_norm = lower.groupby("norm").email.nunique()
    assert (per_norm > 1).sum() > 20  # same address written differently (case / whitespace)
    assert emails.email.str.contains(r"^\s|\s$", regex=True).sum() > 5
    assert emails.email.str.contains(r"\+[a-z0-9]+@gmail\.com", case=False, regex=True).sum() > 3
    assert emails.email.str.contains("gmial.com|gmail.co$|hotmial|outlok|yaho.co", regex=True).sum() > 3
    assert emails.email.isin(["test@test.com", "noemail@noemail.com", "none@none.com", "a@a.com",
                              "no@email.com"]).sum() > 0
    # one person, several distinct normalised addresses (alt emails, typos)
    assert (lower.groupby("person_id").norm.nunique() >= 2).sum() > 50


def load_key(source: str) -> str:
    from panorama.demo.project import SOURCES

    return SOURCES[source]["key"]


def test_phone_formats_and_validity(demo, truth):
    crm = _csv(demo, "data/crm_contacts.csv")
    phones = crm.phone[crm.phone != ""]
    styles = {
        "spaced": r"^0\d{3,4} \d", "compact": r"^0\d{10}$", "intl": r"^\+44 \d", "e164": r"^\+44\d{10}$",
        "0044": r"^0044 ", "paren": r"^\(0",
    }
    for style, pattern in styles.items():
        assert phones.str.contains(pattern, regex=True).sum() > 3, style
    real = [x for x in phones if x not in JUNK_PHONES]
    valid = sum(phonenumbers.is_valid_number(phonenumbers.parse(x, "GB")) for x in real)
    assert valid / len(real) > 0.97


def _e164(x: str) -> str:
    """E.164 of a valid number, '' for blanks and junk."""
    try:
        number = phonenumbers.parse(x, "GB")
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(number) or x in JUNK_PHONES:
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_households_share_landlines_across_people(demo, truth, persons):
    crm = _with_person(_csv(demo, "data/crm_contacts.csv"), truth, "crm", "customer_id")
    crm["e164"] = crm.phone.map(_e164)
    crm = crm[(crm.e164 != "") & ~crm.e164.str.startswith("+447")]
    people_per_phone = crm.groupby("e164").person_id.nunique()
    shared = people_per_phone[people_per_phone >= 2].index
    assert len(shared) >= 5
    sample = crm[crm.e164.isin(shared)]
    households = sample.person_id.map(persons.household_id)
    assert (sample.assign(h=households).groupby("e164").h.nunique() == 1).all()


def test_twins_namesakes_and_shared_devices(persons, truth, web):
    twins = persons[persons.twin_of != ""]
    assert len(twins) >= 10
    other = persons.loc[twins.twin_of]
    assert (twins.birth_date.values == other.birth_date.values).all()
    assert (twins.last_name.values == other.last_name.values).all()
    assert (twins.address_line1.values == other.address_line1.values).all()
    assert (twins.first_name.values != other.first_name.values).all()
    assert (twins.email.values != other.email.values).all()
    ns = persons[persons.namesake_of != ""]
    assert len(ns) >= 5
    ref = persons.loc[ns.namesake_of]
    assert (ns.first_name.values == ref.first_name.values).all()
    assert (ns.household_id.values != ref.household_id.values).all()
    w = web.merge(truth[truth.source == "web"], left_on="messageId", right_on="record_id")
    people_per_anon = w.groupby("anonymousId").person_id.nunique()
    assert (people_per_anon >= 2).sum() >= 3
    # a shared device carries logins of more than one user id
    users_per_anon = w[w.type == "identify"].groupby("anonymousId").userId.nunique()
    assert (users_per_anon >= 2).sum() >= 1


def test_names_vary_and_b2b_mailboxes_are_shared(demo, truth):
    orders = _csv(demo, "data/shop_orders.csv")
    names = orders.ship_name[orders.ship_name != ""]
    assert names.str.contains(", ").sum() > 10  # "Last, First"
    assert (names == names.str.upper()).sum() > 10
    b2b = _with_person(_csv(demo, "data/b2b_contacts.csv"), truth, "b2b", "contact_id")
    generic = b2b[b2b.work_email.str.match(r"^(info|office|hello|accounts|admin)@")]
    assert (generic.groupby("work_email").person_id.nunique() >= 2).any()
    guests = orders[(orders.customer_id == "") & (orders.channel == "web")]
    assert len(guests) > 50 and (guests.customer_email != "").all()


# --- behaviour follows the latent traits ----------------------------------------------------


def test_nps_follows_satisfaction(demo, truth, persons):
    nps = _with_person(_csv(demo, "data/nps_responses.csv"), truth, "nps", "response_id")
    nps["score"] = nps.score.astype(int)
    nps["sat"] = nps.person_id.map(persons.satisfaction)
    high = nps[nps.sat > 0.75].score.mean()
    low = nps[nps.sat < 0.45].score.mean()
    assert high - low > 2.5
    # negative comments for every score up to 6 (the generator's "negative" sentiment); about 75% of
    # them use one of these words (vocab.NPS_PHRASES and closers), so the bound leaves sampling room
    detractor_comments = nps[(nps.score <= 6) & (nps.comment != "")].comment
    promoter_comments = nps[(nps.score >= 9) & (nps.comment != "")].comment
    negative = "late|nightmare|expensive|dropped|rude|crashing|hassle|waiting|disappointed|never|boring|apart"
    assert detractor_comments.str.contains(negative, case=False).mean() > 0.65
    assert promoter_comments.str.contains(negative, case=False).mean() < 0.2


def test_churned_people_stop_buying_and_engaging(demo, truth, persons, web):
    churned = persons[persons.churn_ts.notna()]
    assert 0.15 < len(churned) / len(persons) < 0.7
    checks = [
        ("shop", "data/shop_orders.csv", "order_id", "ordered_at", None),
        ("support", "data/support_tickets.csv", "ticket_id", "opened_at", None),
        ("nps", "data/nps_responses.csv", "response_id", "answered_at", None),
        ("campaigns", "data/campaign_messages.csv", "message_id", "event_at",
         r"Opened|Clicked|Redeemed|Unsubscribed"),
    ]
    for source, path, key, ts, event_filter in checks:
        df = _with_person(_csv(demo, path), truth, source, key)
        if event_filter:
            df = df[df.event.str.contains(event_filter)]
        when = pd.to_datetime(df[ts])
        churn = df.person_id.map(persons.churn_ts)
        assert not (when > churn).any(), source
    w = web.merge(truth[truth.source == "web"], left_on="messageId", right_on="record_id")
    assert not (w.ts > w.person_id.map(persons.churn_ts)).any()
    # and the satisfied churn less
    sat = persons.satisfaction
    assert persons[sat > 0.75].churn_ts.notna().mean() < persons[sat < 0.45].churn_ts.notna().mean()


def test_purchase_rate_drives_orders_and_satisfaction_drives_tickets(demo, truth, persons):
    orders = _with_person(_csv(demo, "data/shop_orders.csv"), truth, "shop", "order_id")
    counts = orders.groupby("person_id").size().reindex(persons.index, fill_value=0)
    assert counts.corr(persons.purchase_rate, method="spearman") > 0.5
    tickets = _with_person(_csv(demo, "data/support_tickets.csv"), truth, "support", "ticket_id")
    t = tickets.groupby("person_id").size().reindex(persons.index, fill_value=0)
    sat = persons.satisfaction
    assert t[sat < 0.45].mean() > 2 * t[sat > 0.75].mean()
    # favourite category bought most
    items = _with_person(_csv(demo, "data/order_items.csv"), truth, "order_items", "item_id")
    items["top"] = items.person_id.map(persons.top_category)
    assert (items.category == items.top).mean() > 0.25


def test_campaign_holdouts_measure_a_real_uplift(demo, truth, persons):
    msgs = _with_person(_csv(demo, "data/campaign_messages.csv"), truth, "campaigns", "message_id")
    orders = _with_person(_csv(demo, "data/shop_orders.csv"), truth, "shop", "order_id")
    orders["t"] = pd.to_datetime(orders.ordered_at)
    sends = msgs[msgs.event.isin(["Email Sent", "SMS Sent", "Push Sent", "Campaign Holdout"])].copy()
    sends["t"] = pd.to_datetime(sends.event_at)
    sends["holdout"] = sends.event == "Campaign Holdout"
    pairs = sends[["person_id", "t", "holdout", "discount_pct"]].merge(
        orders[["person_id", "t"]], on="person_id", how="left", suffixes=("", "_o"))
    pairs["hit"] = (pairs.t_o > pairs.t) & (pairs.t_o <= pairs.t + pd.Timedelta(days=7))
    per_send = pairs.groupby(["person_id", "t", "holdout", "discount_pct"]).hit.any().reset_index()
    rate = per_send.groupby("holdout").hit.mean()
    assert rate[False] > rate[True] + 0.01
    # discount-sensitive people respond to bigger discounts far more
    redeemed = msgs[msgs.event == "Offer Redeemed"]
    treated = msgs[msgs.event.isin(["Email Sent", "SMS Sent", "Push Sent"])]
    sens = persons.discount_sensitivity
    hi = sens[sens > 1.2].index
    lo = sens[sens < 0.4].index
    big = lambda df: df[df.discount_pct.astype(int) >= 20]  # noqa: E731
    rate_hi = big(redeemed).person_id.isin(hi).sum() / max(big(treated).person_id.isin(hi).sum(), 1)
    rate_lo = big(redeemed).person_id.isin(lo).sum() / max(big(treated).person_id.isin(lo).sum(), 1)
    assert rate_hi > 1.5 * rate_lo


def test_channel_responsiveness_shows_in_opens(demo, truth, persons):
    msgs = _with_person(_csv(demo, "data/campaign_messages.csv"), truth, "campaigns", "message_id")
    email = msgs[msgs.channel == "email"]
    per = email.groupby("person_id").event.agg(
        sent=lambda s: (s == "Email Sent").sum(), opened=lambda s: (s == "Email Opened").sum())
    per = per[per.sent >= 5]
    per["rate"] = per.opened / per.sent
    resp = per.index.map(persons.email_response)
    assert np.corrcoef(per.rate, resp)[0, 1] > 0.5


def test_experiment_conversion_in_the_data(web, truth):
    w = web.merge(truth[truth.source == "web"], left_on="messageId", right_on="record_id")
    views = w[(w.event == "Experiment Viewed")].copy()
    props = pd.json_normalize(views.properties.tolist())
    views["experiment_id"] = props.experiment_id.values
    views["variant"] = props.variant.values
    assert set(views.experiment_id) == {"EXP-CHECKOUT-1PAGE", "EXP-HERO-BANNER"}
    # each exposed person sees one variant of an experiment
    assert (views.groupby(["experiment_id", "person_id"]).variant.nunique() == 1).all()
    orders = w[w.event == "Order Completed"][["person_id", "ts"]]
    m = views[["person_id", "ts", "experiment_id", "variant"]].merge(orders, on="person_id", suffixes=("", "_o"))
    conv = m[(m.ts_o >= m.ts) & (m.ts_o <= m.ts + pd.Timedelta(hours=1))]
    converted = set(zip(conv.experiment_id, conv.person_id, strict=True))
    views["conv"] = [(e, p) in converted for e, p in zip(views.experiment_id, views.person_id, strict=True)]
    rate = views[views.experiment_id == "EXP-CHECKOUT-1PAGE"].groupby("variant").conv.mean()
    assert rate["one_page_checkout"] > rate["control"]


def test_experiment_mechanism_has_the_true_effect_at_scale():
    """At scale the measured lift is within 3 standard errors of the truth (+25% and 0%)."""
    from panorama.demo.commerce import run_experiments
    from panorama.demo.people import EmailRegistry, make_people
    from panorama.demo.world import build_world

    world = build_world(1)
    rng = np.random.default_rng(2)
    people = make_people(world, rng, 100_000, 0, 0, 100_000, EmailRegistry())
    ex, _ = run_experiments(world, rng, people)
    for e, experiment in enumerate(world.experiments):
        c = ex.converted[(ex.experiment == e) & (ex.variant == 0)]
        t = ex.converted[(ex.experiment == e) & (ex.variant == 1)]
        lift = t.mean() / c.mean() - 1
        # delta-method standard error of a ratio of two proportions
        se = (t.mean() / c.mean()) * np.sqrt(t.var() / len(t) / t.mean() ** 2 + c.var() / len(c) / c.mean() ** 2)
        assert se < 0.05
        assert abs(lift - experiment.relative_lift) < 3 * se, (experiment.experiment_id, lift, se)


@pytest.mark.parametrize("customers", [1, 7])
def test_tiny_data_sets_work(tmp_path, customers):
    summary = generate(tmp_path, customers=customers, seed=5)
    assert summary["persons"] == customers
    truth = _csv(tmp_path, "truth/identities.csv")
    assert len(truth) == summary["rows"]
    load_project(tmp_path)
