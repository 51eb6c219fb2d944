"""Generate the demo project: multi-source data for a fictional UK retailer + ground truth.

    summary = generate(out_dir, customers=10_000, seed=7)

People are generated in chunks (vectorised with numpy, one `Generator` per chunk derived
from the seed), and every file is appended chunk by chunk, so memory stays bounded at any
size and the same seed gives byte-identical files. See docs/demo-data.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from panorama.demo import vocab
from panorama.demo.commerce import (
    CONVERSION_BASE,
    MEAN_RESP,
    esp_addresses,
    loyalty_join,
    make_crm,
    make_orders,
    run_campaigns,
    run_experiments,
)
from panorama.demo.output import CsvOut, LinesOut
from panorama.demo.people import EmailRegistry, People, make_people, preferred_channel
from panorama.demo.project import FILES, SOURCES, write_config
from panorama.demo.service import make_b2b, make_loyalty, make_nps, make_tickets
from panorama.demo.util import date_text, money, sreplace, ts_text, uuids
from panorama.demo.web import device_ids, kiosk_ids, make_web
from panorama.demo.world import World, build_world

Progress = Callable[[str, int, int], None]
CHUNK_SIZE = 5_000

PERSON_COLUMNS = [
    "person_id", "household_id", "household_size", "gender", "first_name", "last_name", "birth_date",
    "email", "alt_email", "mobile", "landline", "address_line1", "city", "postcode",
    "signup_at", "churn_at", "churned", "is_customer", "purchase_rate", "basket_size", "spend_tier",
    "top_category", "second_category", "channel_web", "channel_app", "channel_store", "preferred_channel",
    "email_response", "sms_response", "push_response", "discount_sensitivity", "satisfaction",
    "pain_topic", "delight_topic", "has_account", "crm_records", "newsletter_only", "has_web", "has_app",
    "loyalty_member", "b2b_contact", "twin_of", "namesake_of", "shared_device", "orders", "revenue",
    "last_order_at", "mean_lifetime_years", "p_active_next_365d", "expected_orders_next_365d",
]


def _e164(nsn: np.ndarray) -> np.ndarray:
    return np.where(nsn == "", "", np.strings.add("+44", np.asarray(nsn).astype(str)))


def _flag(x: np.ndarray) -> np.ndarray:
    return np.where(x, "true", "false")


def _num(x: np.ndarray, decimals: int = 4) -> np.ndarray:
    return np.char.mod(f"%.{decimals}f", np.asarray(x, dtype=float))


def _campaign_table(world: World, rng: np.random.Generator, p: People, crm, esp: np.ndarray, ev,
                    orders) -> dict:
    m = len(ev.person)
    srt = np.lexsort((ev.person, ev.time))
    person, camp, name, t, ind = ev.person[srt], ev.campaign[srt], ev.event[srt], ev.time[srt], ev.induced[srt]
    camps = world.campaigns
    channel = np.array([c.channel for c in camps])[camp] if m else np.zeros(0, str)
    primary_id = np.where(crm.primary >= 0, crm.customer_id[np.maximum(crm.primary, 0)], "") \
        if len(crm.customer_id) else np.full(p.n, "")
    is_email, is_sms, is_push = channel == "email", channel == "sms", channel == "push"
    prefix = np.where(is_email, "em_", np.where(is_sms, "sms_", "push_"))
    mid = np.strings.add(prefix, np.strings.slice(sreplace(uuids(rng, m), "-", ""), 0, 24))
    order_id = np.where(ind >= 0, orders.order_id[orders.induced_pos[np.maximum(ind, 0)]] if m and len(orders.order_id)
                        else "", "")
    return {
        "message_id": mid, "event": name, "event_at": t, "channel": channel,
        "campaign_id": np.array([c.campaign_id for c in camps])[camp],
        "campaign_name": np.array([c.name for c in camps])[camp],
        "offer_id": np.array([c.offer_id for c in camps])[camp],
        "discount_pct": np.array([str(c.discount_pct) for c in camps])[camp],
        "coupon_code": np.array([c.coupon for c in camps])[camp],
        "email": np.where(is_email, esp[person], ""),
        "phone": np.where(is_sms, _e164(p.mobile[person]), ""),
        "user_id": np.where(is_push, primary_id[person], ""),
        "device_id": np.where(is_push, device_ids(world, p)[person], ""),
        "order_id": order_id,
        "_person": person,
    }


def _persons_table(world: World, p: People, crm, orders, web_shared: np.ndarray, b2b_person: np.ndarray) -> dict:
    top2 = np.argsort(-p.cat_pref, axis=1, kind="stable")[:, :2]
    names = world.catalog.category_names
    n_orders = np.bincount(orders.person, minlength=p.n)
    revenue = np.bincount(orders.person, weights=orders.total, minlength=p.n).astype("int64")
    last = np.full(p.n, -1, dtype="int64")
    np.maximum.at(last, orders.person, orders.time)
    crm_records = np.bincount(crm.person, minlength=p.n)
    is_b2b = np.zeros(p.n, dtype=bool)
    is_b2b[b2b_person] = True
    ids = p.person_id
    topics = np.array(vocab.NPS_TOPICS)
    return {
        "person_id": ids, "household_id": p.household_id, "household_size": p.household_size.astype(str),
        "gender": np.where(p.gender == 1, "female", "male"), "first_name": p.first, "last_name": p.last,
        "birth_date": date_text(p.birth_day, "%Y-%m-%d"), "email": p.email, "alt_email": p.alt_email,
        "mobile": _e164(p.mobile), "landline": _e164(p.landline), "address_line1": p.house, "city": p.city,
        "postcode": p.postcode, "signup_at": p.signup, "churn_at": p.churn, "churned": _flag(p.churn >= 0),
        "is_customer": _flag(p.is_customer), "purchase_rate": _num(p.purchase_rate, 3),
        "basket_size": _num(p.basket_size, 2), "spend_tier": np.array(["budget", "mid", "premium"])[p.spend_tier],
        "top_category": names[top2[:, 0]], "second_category": names[top2[:, 1]],
        "channel_web": _num(p.channel_mix[:, 0], 3), "channel_app": _num(p.channel_mix[:, 1], 3),
        "channel_store": _num(p.channel_mix[:, 2], 3), "preferred_channel": preferred_channel(p),
        "email_response": _num(p.email_resp), "sms_response": _num(p.sms_resp),
        "push_response": _num(p.push_resp), "discount_sensitivity": _num(p.discount_sens),
        "satisfaction": _num(p.satisfaction), "pain_topic": topics[p.pain_topic],
        "delight_topic": topics[p.delight_topic], "has_account": _flag(p.has_account),
        "crm_records": crm_records.astype(str), "newsletter_only": _flag(p.newsletter),
        "has_web": _flag(p.has_web), "has_app": _flag(p.has_app), "loyalty_member": _flag(p.is_loyalty),
        "b2b_contact": _flag(is_b2b),
        "twin_of": np.where(p.twin_of >= 0, ids[np.maximum(p.twin_of, 0)], ""),
        "namesake_of": np.where(p.namesake_of >= 0, ids[np.maximum(p.namesake_of, 0)], ""),
        "shared_device": _flag(web_shared), "orders": n_orders.astype(str), "revenue": money(revenue),
        "last_order_at": np.where(last >= 0, ts_text(np.maximum(last, 0)), ""),
        # the future after the data ends, from the same model: churn is memoryless
        "mean_lifetime_years": _num(p.mean_life, 3),
        "p_active_next_365d": _num(np.where(p.churn >= 0, 0.0, np.exp(-1.0 / p.mean_life))),
        "expected_orders_next_365d": _num(np.where(
            p.churn >= 0, 0.0, p.purchase_rate * p.mean_life * (1 - np.exp(-1.0 / p.mean_life))), 3),
    }


def generate(out_dir: Path | str, customers: int, seed: int, progress: Progress | None = None,
             chunk_size: int = CHUNK_SIZE) -> dict:
    """Write the demo data set, `panorama.yaml` and `truth/` into `out_dir`; return a summary."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(seed)
    writers = {path: CsvOut(out / path, cols) for path, cols in FILES.items() if path.endswith(".csv")}
    web_out = LinesOut(out / "data/web_events.jsonl")
    truth_ids = CsvOut(out / "truth/identities.csv", ["source", "record_id", "person_id"])
    truth_persons = CsvOut(out / "truth/persons.csv", PERSON_COLUMNS)
    truth_nps = CsvOut(out / "truth/nps_comments.csv", ["response_id", "person_id", "sentiment", "topics"])
    cat_names = [c.lower().replace(" & ", "_").replace(" ", "_") for c in world.catalog.category_names.tolist()]
    truth_prefs = CsvOut(out / "truth/category_preferences.csv", ["person_id", *cat_names])
    registry = EmailRegistry()
    n_camp = len(world.campaigns)
    camp_tot = {k: np.zeros(n_camp) for k in ("targeted", "holdout", "expected_incremental", "converted")}
    n_exp = len(world.experiments)
    exp_tot = {k: np.zeros((n_exp, 2)) for k in ("exposed", "converted", "expected_conversions")}
    offsets = {"orders": 0, "tickets": 0, "nps": 0}
    n_chunks = (customers + chunk_size - 1) // chunk_size
    source_of = {cfg["path"]: name for name, cfg in SOURCES.items()}

    def truth(path: str, keys: np.ndarray, person: np.ndarray, p: People) -> None:
        truth_ids.write({"source": np.full(len(keys), source_of[path]), "record_id": keys,
                         "person_id": p.person_id[person]})

    try:
        for ci in range(n_chunks):
            first = ci * chunk_size
            n = min(chunk_size, customers - first)
            rng = np.random.default_rng([seed, ci, 0x5EED])
            p = make_people(world, rng, n, first, ci, chunk_size, registry)
            crm = make_crm(world, rng, p)
            esp = esp_addresses(p, crm, rng)
            joined = loyalty_join(rng, p)
            camp_ev, camp_ind, camp_truth = run_campaigns(world, rng, p, crm, esp)
            ex, ex_ind = run_experiments(world, np.random.default_rng([seed, ci, 0xE4]), p)  # own stream
            orders, items = make_orders(world, rng, p, crm, [camp_ind, ex_ind], joined, offsets["orders"])
            offsets["orders"] += len(orders.person)
            b2b = make_b2b(world, rng, p, ci, chunk_size)
            web = make_web(world, rng, p, crm, orders, items, ex, esp, b2b.account, b2b.company, b2b.domain,
                           web_out.write)
            tickets = make_tickets(world, rng, p, orders, offsets["tickets"])
            offsets["tickets"] += len(tickets.person)
            nps = make_nps(world, rng, p, orders, offsets["nps"])
            offsets["nps"] += len(nps.person)
            loyalty = make_loyalty(world, rng, p, orders, joined)
            campaign_rows = _campaign_table(world, rng, p, crm, esp, camp_ev, orders)

            crm_cols = dict(crm.table)
            crm_order = np.argsort(crm.created, kind="stable")
            crm_cols = {k: np.asarray(v)[crm_order] for k, v in crm_cols.items()}
            writers["data/crm_contacts.csv"].write(crm_cols)
            truth("data/crm_contacts.csv", crm_cols["customer_id"], crm.person[crm_order], p)
            bt = orders.by_time
            writers["data/shop_orders.csv"].write({k: v[bt] for k, v in orders.table.items()})
            truth("data/shop_orders.csv", orders.order_id[bt], orders.person[bt], p)
            rank = np.empty(len(bt), dtype="int64")
            rank[bt] = np.arange(len(bt))
            it = np.argsort(rank[items.order], kind="stable")
            writers["data/order_items.csv"].write({k: v[it] for k, v in items.table.items()})
            truth("data/order_items.csv", items.table["item_id"][it], orders.person[items.order[it]], p)
            writers["data/campaign_messages.csv"].write(campaign_rows)
            truth("data/campaign_messages.csv", campaign_rows["message_id"], campaign_rows["_person"], p)
            truth("data/web_events.jsonl", web.message_id, web.person, p)
            writers["data/support_tickets.csv"].write(tickets.columns)
            truth("data/support_tickets.csv", tickets.columns["ticket_id"], tickets.person, p)
            writers["data/nps_responses.csv"].write(nps.columns)
            truth("data/nps_responses.csv", nps.columns["response_id"], nps.person, p)
            truth_nps.write({"response_id": nps.columns["response_id"], "person_id": p.person_id[nps.person],
                             "sentiment": np.where(nps.extra["has_comment"], nps.extra["sentiment"], ""),
                             "topics": nps.extra["topics"]})
            writers["data/loyalty_members.csv"].write(loyalty.columns)
            truth("data/loyalty_members.csv", loyalty.columns["member_id"], loyalty.person, p)
            writers["data/b2b_contacts.csv"].write(b2b.table.columns)
            truth("data/b2b_contacts.csv", b2b.table.columns["contact_id"], b2b.table.person, p)
            truth_persons.write(_persons_table(world, p, crm, orders, web.anon_shared, b2b.table.person))
            truth_prefs.write({"person_id": p.person_id,
                               **{name: _num(p.cat_pref[:, i]) for i, name in enumerate(cat_names)}})

            for k, v in (("targeted", camp_truth.targeted), ("holdout", camp_truth.holdout),
                         ("expected_incremental", camp_truth.expected_incremental),
                         ("converted", camp_truth.converted)):
                camp_tot[k] += v
            for e in range(n_exp):
                for var in (0, 1):
                    sel = (ex.experiment == e) & (ex.variant == var)
                    lift = world.experiments[e].relative_lift if var == 1 else 0.0
                    exp_tot["exposed"][e, var] += sel.sum()
                    exp_tot["converted"][e, var] += ex.converted[sel].sum()
                    exp_tot["expected_conversions"][e, var] += np.clip(ex.base_p[sel] * (1 + lift), 0, 1).sum()
            if progress:
                progress("people", first + n, customers)
    finally:
        for w in (*writers.values(), web_out, truth_ids, truth_persons, truth_nps, truth_prefs):
            w.close()

    if progress:
        progress("ground truth", 0, 1)
    _write_campaign_truth(out, world, camp_tot)
    _write_experiments(out, world, exp_tot)
    _write_model(out, world)
    write_config(out)
    if progress:
        progress("ground truth", 1, 1)
    files = {path: w.rows for path, w in writers.items()}
    files["data/web_events.jsonl"] = web_out.rows
    files = {path: files[path] for path in FILES}
    return {
        "files": files,
        "rows": int(sum(files.values())),
        "persons": customers,
        "seed": seed,
        "start": str(ts_text(np.array([world.start]))[0]),
        "end": str(ts_text(np.array([world.end]))[0]),
        "truth": {"truth/identities.csv": truth_ids.rows, "truth/persons.csv": truth_persons.rows},
        "seconds": round(time.perf_counter() - started, 3),
    }


def _write_campaign_truth(out: Path, world: World, tot: dict) -> None:
    camps = world.campaigns
    treated = tot["targeted"] - tot["holdout"]
    w = CsvOut(out / "truth/campaigns.csv", [
        "campaign_id", "name", "channel", "sent_at", "offer_id", "discount_pct", "category", "coupon_code",
        "targeted", "holdout", "treated", "expected_incremental_conversions", "true_uplift",
        "caused_conversions"])
    cats = world.catalog.category_names
    w.write({
        "campaign_id": np.array([c.campaign_id for c in camps]), "name": np.array([c.name for c in camps]),
        "channel": np.array([c.channel for c in camps]), "sent_at": np.array([c.send_at for c in camps]),
        "offer_id": np.array([c.offer_id for c in camps]),
        "discount_pct": np.array([str(c.discount_pct) for c in camps]),
        "category": np.array([cats[c.category] if c.category >= 0 else "" for c in camps]),
        "coupon_code": np.array([c.coupon for c in camps]),
        "targeted": tot["targeted"].astype(int).astype(str), "holdout": tot["holdout"].astype(int).astype(str),
        "treated": treated.astype(int).astype(str),
        "expected_incremental_conversions": _num(tot["expected_incremental"], 2),
        "true_uplift": _num(np.divide(tot["expected_incremental"], treated, out=np.zeros(len(camps)),
                                      where=treated > 0), 5),
        "caused_conversions": tot["converted"].astype(int).astype(str),
    })
    w.close()


def _write_experiments(out: Path, world: World, tot: dict) -> None:
    result = []
    for e_i, e in enumerate(world.experiments):
        exposed = tot["exposed"][e_i]
        expected = tot["expected_conversions"][e_i]
        conv = tot["converted"][e_i]
        base_rate = expected[0] / exposed[0] if exposed[0] else 0.0
        # expected conversion rate of the treatment population had it been in control
        treat_base = expected[1] / (1 + e.relative_lift) / exposed[1] if exposed[1] else 0.0
        result.append({
            "experiment_id": e.experiment_id,
            "name": e.name,
            "start": ts_text(np.array([e.start]))[0],
            "end": ts_text(np.array([e.end]))[0],
            "variants": list(e.variants),
            "assignment": "50/50 by person, exposure logged as 'Experiment Viewed' (properties experiment_id, variant)",
            "metric": "conversion: an Order Completed within 1 hour after the person's Experiment Viewed",
            "true_relative_lift": e.relative_lift,
            "true_absolute_effect": round(treat_base * e.relative_lift, 6),
            "expected_conversion_rate": {e.variants[0]: round(base_rate, 6),
                                         e.variants[1]: round(expected[1] / exposed[1], 6) if exposed[1] else 0.0},
            "exposed": {e.variants[0]: int(exposed[0]), e.variants[1]: int(exposed[1])},
            "converted_in_session": {e.variants[0]: int(conv[0]), e.variants[1]: int(conv[1])},
            "note": "Conversions counted here are those of the exposure session; organic orders by "
                    "the same people within the hour can add a few more in both arms.",
        })
    (out / "truth/experiments.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def _write_model(out: Path, world: World) -> None:
    model = {
        "retailer": "Hartley & Finch (fictional, UK)",
        "seed": world.seed,
        "window": {"start": ts_text(np.array([world.start]))[0], "end": ts_text(np.array([world.end]))[0]},
        "currency": "GBP",
        "campaign_conversion": {
            "formula": "p = base * (resp / mean_resp[channel]) * relevance * (0.35 + min(purchase_rate, 6) / 6)"
                       " * (1 + discount_sensitivity * discount_pct / 10), capped at 0.9; 0 after churn and "
                       "for holdouts",
            "base": CONVERSION_BASE,
            "mean_resp": MEAN_RESP,
            "resp": "email_response / sms_response / push_response of the person (truth/persons.csv)",
            "relevance": "1 for whole-range campaigns; clip(0.4 + 5 * preference for the campaign's "
                         "category, 0.4, 2.5) for category campaigns",
            "window": "the caused order comes within ~7 days of the send, carries campaign_id and the "
                      "coupon code, and an 'Offer Redeemed' message with its order_id",
        },
        "organic_orders": "Poisson process at purchase_rate per year between max(signup, start) and "
                          "churn_at (or the end), with weekly/yearly seasonality (Black Friday, Christmas, "
                          "January sales); new customers who sign up in the window often order at sign-up",
        "churn": "exponential time to churn from max(signup, start) with mean (0.9 + 6 * satisfaction^2) "
                 "years; after churn_at a person places no orders and engages with nothing",
        "nps": "score ~ round(Normal(1.5 + 9 * mood, 1.3)) clipped to 0..10; mood = satisfaction, minus "
               "0.2 in the 90 days before churn. Comments follow the score band and the person's "
               "pain_topic (negative) or delight_topic (positive)",
        "csat": "round(1 + 4 * (0.65 * satisfaction + 0.35 * speed) + Normal(0, 0.6)) clipped to 1..5",
        "tickets": "per order with p = 0.02 + 0.16 * (1 - satisfaction)^2, plus a Poisson rate of "
                   "0.08 + 0.5 * (1 - satisfaction)^2 per year, plus one from 25% of leavers",
        "identity_traps": [
            "duplicate CRM accounts (new customer_id, nickname, another email or a typo)",
            "households share address, landline and IP; twins share surname, birth date and address",
            "namesakes: different people with the same first and last name (namesake_of)",
            "shared household tablets and store kiosks: one anonymousId used by several people",
            "B2B shared mailboxes (info@, office@...) and company switchboard numbers",
            "junk values: " + ", ".join(vocab.JUNK_EMAILS + vocab.JUNK_PHONES),
        ],
        "kiosk_anonymous_ids": kiosk_ids(world).tolist(),
        "revenue_of_record": "shop source (data/shop_orders.csv); web Order Completed messages repeat "
                             "the web and app orders with the same order_id",
    }
    (out / "truth/model.json").write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")


__all__ = ["generate"]
