"""CRM accounts, loyalty membership, campaign sends and responses, experiment exposures, and
the orders and line items they all lead to — for one chunk of people, vectorised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from panorama.demo import messy, vocab
from panorama.demo.people import People
from panorama.demo.util import DAY, YEAR, cat, choice_rows, money, rank_in_groups, starts_of, zpad
from panorama.demo.world import World

_CRM_MULT = 48_271  # coprime to 10**8
_ORDER_CHANNELS = np.array(vocab.CHANNELS)

# response model constants (also written to truth/model.json)
CONVERSION_BASE = 0.02
MEAN_RESP = {"email": 0.286, "sms": 0.126, "push": 0.204}


def conversion_probability(resp, mean_resp, relevance, purchase_rate, discount_sens, discount_pct):
    """P(order within 7 days caused by a campaign message) for a reachable, active person."""
    propensity = 0.35 + np.minimum(purchase_rate, 6.0) / 6.0
    return np.clip(CONVERSION_BASE * (resp / mean_resp) * relevance * propensity
                   * (1.0 + discount_sens * discount_pct / 10.0), 0, 0.9)


def experiment_base_conversion(purchase_rate, has_account):
    return 0.06 + 0.22 * np.minimum(purchase_rate, 8.0) / 8.0 + 0.05 * has_account


@dataclass
class Crm:
    person: np.ndarray  # per record
    rank: np.ndarray  # 0 primary, 1.. duplicates
    customer_id: np.ndarray
    created: np.ndarray
    email: np.ndarray  # as stored on the record
    phone: np.ndarray
    table: dict
    primary: np.ndarray  # per person: record index or -1
    dup: np.ndarray  # per person: first duplicate record index or -1


def make_crm(world: World, rng: np.random.Generator, p: People) -> Crm:
    n = p.n
    long_enough = p.active_end - p.active_start > 30 * DAY
    n_rec = np.where(p.has_account, 1 + long_enough * ((rng.random(n) < 0.07) + (rng.random(n) < 0.012)), 0)
    person = np.repeat(np.arange(n), n_rec)
    rank = rank_in_groups(n_rec)
    m = len(person)
    gidx = p.offset + person
    cid = cat("C", zpad((((gidx * 4 + rank) * _CRM_MULT + world.seed * 7 + 11) % 10**8), 8))
    # a second account is opened later, while the person is still active
    span = p.active_end - p.active_start
    created = np.where(rank == 0, p.signup[person],
                       p.active_start[person] + ((0.1 + 0.9 * rng.random(m)) * span[person]).astype("int64"))
    created = np.minimum(created, world.end - 3600)
    dup = rank > 0

    first = p.first[person].copy()
    nick, has_nick = messy.nickname_of(first, rng)
    first = np.where(dup & has_nick & (rng.random(m) < 0.45), nick, first)
    last = p.last[person].copy()
    # a later account after marriage: new surname, same person
    married = dup & (p.gender[person] == 1) & (rng.random(m) < 0.12)
    last = np.where(married, rng.choice(vocab.SURNAMES, m), last)
    first = messy.name_typos(first, rng, np.where(dup, 0.04, 0.01))
    last = messy.name_typos(last, rng, 0.015)
    first = messy.case_variants(first, rng, 0.03, 0.02)
    last = messy.case_variants(last, rng, 0.03, 0.02)
    last = np.where(rng.random(m) < 0.02, np.strings.add(last, " "), last)
    # first and last name entered the wrong way round
    swap = rng.random(m) < 0.01
    first, last = np.where(swap, last, first), np.where(swap, first, last)

    base_email = np.where((p.alt_email[person] != "") & ((dup & (rng.random(m) < 0.5)) | (rng.random(m) < 0.08)),
                          p.alt_email[person], p.email[person])
    codes = np.where(dup, messy.random_email_codes(rng, m, 0.6, (0, 0.3, 0.05, 0.12, 0.05, 0.25, 0.1, 0.05, 0.08)),
                     messy.random_email_codes(rng, m, 0.12, (0, 0.45, 0.2, 0, 0, 0.1, 0.05, 0, 0.2)))
    email = messy.email_variants(base_email, codes, rng)
    email = np.where(rng.random(m) < 0.03, "", email)

    # phone: mostly the mobile; the household landline for some; sometimes blank
    use_land = (p.landline[person] != "") & ((p.mobile[person] == "") | (rng.random(m) < 0.22))
    nsn = np.where(use_land, p.landline[person], p.mobile[person])
    area = np.where(use_land, p.landline_area_len[person], 4)
    phone = messy.format_phones(nsn, area, messy.phone_styles(rng, m))
    phone = np.where(rng.random(m) < np.where(dup, 0.25, 0.08), "", phone)

    junk = rng.random(m) < 0.003
    email = np.where(junk, rng.choice(vocab.JUNK_EMAILS, m), email)
    phone = np.where(junk & (rng.random(m) < 0.7), rng.choice(vocab.JUNK_PHONES, m), phone)

    birth = p.birth_day[person]
    dob = np.strings.add("", _dmy(birth))
    swapped = _dmy(birth, swap=True)
    dob = np.where(dup & (rng.random(m) < 0.1) & (swapped != ""), swapped, dob)
    dob = np.where(rng.random(m) < 0.18, "", dob)

    moved = dup & (rng.random(m) < 0.15)
    new_house = cat(rng.integers(1, 120, m).astype(str), " ", rng.choice(vocab.STREET_NAMES, m), " ",
                    rng.choice([t[0] for t in vocab.STREET_TYPES], m))
    street = np.where(rng.random(m) < 0.25, p.house_short[person], p.house[person])
    street = np.where(moved, new_house, street)
    street = messy.case_variants(street, rng, 0.02, 0.03)
    postcode = messy.postcode_variants(p.postcode[person], rng, 0.15)
    postcode = np.where(moved, cat(np.strings.slice(p.postcode[person], 0, 2), rng.integers(1, 9, m).astype(str), " ",
                                   rng.integers(1, 9, m).astype(str), "XY"), postcode)
    opt = {
        "email_opt_in": np.where(p.email_opt[person] | (dup & (rng.random(m) < 0.5)), "true", "false"),
        "sms_opt_in": np.where(p.sms_opt[person] & ~dup, "true", "false"),
        "push_opt_in": np.where(p.push_opt[person] & ~dup, "true", "false"),
    }
    source = np.where(p.has_app[person] & (rng.random(m) < 0.3), "app",
                      np.where(p.channel_mix[person, 2] > 0.5, "store", "web"))
    table = {
        "customer_id": cid, "title": np.where(rng.random(m) < 0.3, "", p.title[person]),
        "first_name": first, "last_name": last, "email": email, "phone": phone, "birth_date": dob,
        "address_line1": street, "city": p.city[person], "postal_code": postcode,
        "created_at": created, **opt, "signup_source": source,
    }
    primary = np.full(n, -1)
    primary[person[rank == 0]] = np.flatnonzero(rank == 0)
    dup_first = np.full(n, -1)
    dup_first[person[rank == 1]] = np.flatnonzero(rank == 1)
    return Crm(person, rank, cid, created, email, phone, table, primary, dup_first)


def _dmy(days: np.ndarray, swap: bool = False) -> np.ndarray:
    iso = np.datetime_as_string(days.astype("datetime64[D]"))
    y, mth, d = np.strings.slice(iso, 0, 4), np.strings.slice(iso, 5, 7), np.strings.slice(iso, 8, 10)
    if not swap:
        return cat(d, "/", mth, "/", y)
    ok = (d.astype(int) <= 12) & (d != mth)
    return np.where(ok, cat(mth, "/", d, "/", y), "")


@dataclass
class InducedOrders:
    person: np.ndarray
    time: np.ndarray
    campaign: np.ndarray  # campaign index or -1
    experiment: np.ndarray  # experiment index or -1
    exposure: np.ndarray  # exposure row or -1


@dataclass
class CampaignEvents:
    person: np.ndarray
    campaign: np.ndarray
    event: np.ndarray  # event name
    time: np.ndarray
    induced: np.ndarray  # for 'Offer Redeemed': row in the induced orders, else -1


@dataclass
class CampaignTruth:
    targeted: np.ndarray  # per campaign
    holdout: np.ndarray
    expected_incremental: np.ndarray  # sum over treated of P(conversion caused by message)
    converted: np.ndarray


def esp_addresses(p: People, crm: Crm, rng: np.random.Generator) -> np.ndarray:
    """The email the email platform sends to: the account's address, trimmed; newsletter typed."""
    out = np.full(p.n, "", dtype=object)
    has = crm.primary >= 0
    out[has] = np.strings.strip(crm.email[crm.primary[has]])
    nl = p.newsletter
    codes = messy.random_email_codes(rng, int(nl.sum()), 0.15, (0, 0.5, 0, 0, 0.2, 0.15, 0.1, 0, 0.05))
    out[nl] = messy.email_variants(p.email[nl], codes, rng)
    out = out.astype(str)
    return np.where(np.isin(out, vocab.JUNK_EMAILS), "", out)


def run_campaigns(world: World, rng: np.random.Generator, p: People, crm: Crm, esp_email: np.ndarray,
                  ) -> tuple[CampaignEvents, InducedOrders, CampaignTruth]:
    n = p.n
    n_c = len(world.campaigns)
    subscribed = p.email_opt & (esp_email != "")
    bad_address = np.strings.find(esp_email, "@") < 0
    for typo in {t for ts in vocab.DOMAIN_TYPOS.values() for t in ts}:
        bad_address |= np.strings.endswith(esp_email, "@" + typo)
    ev_person, ev_camp, ev_name, ev_time, ev_ind = [], [], [], [], []
    ind_person, ind_time, ind_camp = [], [], []
    t_targeted, t_holdout, t_expected, t_converted = (np.zeros(n_c) for _ in range(4))
    n_induced = 0

    def emit(mask_idx, c, name, times, induced=None):
        ev_person.append(mask_idx)
        ev_camp.append(np.full(len(mask_idx), c))
        ev_name.append(np.full(len(mask_idx), name, dtype=object))
        ev_time.append(times)
        ev_ind.append(np.full(len(mask_idx), -1) if induced is None else induced)

    for c in world.campaigns:
        t = c.send_at
        if c.channel == "email":
            reach = subscribed & (p.esp_known_at <= t)
            resp, prefix = p.email_resp, "Email"
        elif c.channel == "sms":
            reach = p.sms_opt & (p.signup <= t) & (p.mobile != "")
            resp, prefix = p.sms_resp, "SMS"
        else:
            reach = p.push_opt & (p.signup <= t)
            resp, prefix = p.push_resp, "Push"
        if c.category >= 0:
            rel = np.clip(0.4 + 5.0 * p.cat_pref[:, c.category], 0.4, 2.5)
            share = np.clip(c.target_share * (0.4 + 3.0 * p.cat_pref[:, c.category]), 0, 0.95)
        else:
            rel = np.ones(n)
            share = np.full(n, c.target_share)
        target = reach & (rng.random(n) < share)
        holdout = target & (rng.random(n) < c.holdout_share)
        treated = target & ~holdout
        alive = p.active_end > t
        sent_t = t + rng.integers(0, 900, n)

        tr = np.flatnonzero(treated)
        ho = np.flatnonzero(holdout)
        emit(ho, c.index, "Campaign Holdout", sent_t[ho])
        if c.channel == "email":
            bounced = treated & bad_address
            b = np.flatnonzero(bounced)
            emit(np.flatnonzero(treated & ~bounced), c.index, "Email Sent", sent_t[treated & ~bounced])
            emit(b, c.index, "Email Bounced", sent_t[b] + 5)
            subscribed &= ~bounced
            treated = treated & ~bounced
        else:
            emit(tr, c.index, f"{prefix} Sent", sent_t[tr])

        p_conv = np.where(treated & alive, conversion_probability(
            resp, MEAN_RESP[c.channel], rel, p.purchase_rate, p.discount_sens, c.discount_pct), 0.0)
        converted = rng.random(n) < p_conv
        engaged_p = np.where(alive, resp, 0.0)
        open_t = sent_t + np.minimum(rng.exponential(5 * 3600, n), 4 * DAY).astype("int64") + 30
        click_t = open_t + rng.integers(5, 900, n)
        conv_t = click_t + np.minimum(rng.exponential(2 * 3600, n), 6 * DAY).astype("int64") + 60
        # nobody engages after they have churned
        in_life = click_t < p.active_end
        conv_t = np.minimum(conv_t, p.active_end - 1)
        converted &= in_life & (conv_t > click_t)
        if c.channel == "sms":
            opened = np.zeros(n, dtype=bool)
            clicked = treated & in_life & ((rng.random(n) < engaged_p * 1.2 * rel / (rel + 0.5)) | converted)
        else:
            opened = treated & in_life & ((rng.random(n) < engaged_p) | converted)
            click_p = np.clip(0.12 * rel * (1 + 0.5 * p.discount_sens * c.discount_pct / 10), 0, 0.9)
            clicked = opened & ((rng.random(n) < click_p) | converted)
        if c.channel != "sms":
            o = np.flatnonzero(opened)
            emit(o, c.index, f"{prefix} Opened", open_t[o])
        k = np.flatnonzero(clicked)
        emit(k, c.index, f"{prefix} Clicked", click_t[k])
        if c.channel == "email":
            unsub = treated & (open_t + 60 < p.active_end) & (rng.random(n) < 0.002 + 0.012 * (1 - p.satisfaction))
            u = np.flatnonzero(unsub)
            emit(u, c.index, "Email Unsubscribed", open_t[u] + 60)
            subscribed &= ~unsub
        cv = np.flatnonzero(converted)
        ind_person.append(cv)
        ind_time.append(conv_t[cv])
        ind_camp.append(np.full(len(cv), c.index))
        emit(cv, c.index, "Offer Redeemed", conv_t[cv] + 2, np.arange(n_induced, n_induced + len(cv)))
        n_induced += len(cv)
        t_targeted[c.index] = target.sum()
        t_holdout[c.index] = holdout.sum()
        t_expected[c.index] = p_conv[treated].sum()
        t_converted[c.index] = len(cv)

    def join(parts, dtype="int64"):
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    events = CampaignEvents(join(ev_person), join(ev_camp), join(ev_name, object).astype(str),
                            join(ev_time), join(ev_ind))
    induced = InducedOrders(join(ind_person), join(ind_time), join(ind_camp),
                            np.full(n_induced, -1), np.full(n_induced, -1))
    return events, induced, CampaignTruth(t_targeted, t_holdout, t_expected, t_converted)


@dataclass
class Exposures:
    person: np.ndarray
    experiment: np.ndarray
    variant: np.ndarray  # 0 control, 1 treatment
    time: np.ndarray
    base_p: np.ndarray
    converted: np.ndarray


def run_experiments(world: World, rng: np.random.Generator, p: People) -> tuple[Exposures, InducedOrders]:
    parts = []
    for e_i, e in enumerate(world.experiments):
        lo = np.maximum(p.active_start, e.start)
        hi = np.minimum(p.active_end, e.end)
        eligible = p.has_web & (hi - lo > DAY)
        visit = 1 - np.exp(-(2.0 + 1.5 * np.minimum(p.purchase_rate, 8)) * (e.end - e.start) / YEAR)
        exposed = np.flatnonzero(eligible & (rng.random(p.n) < e.exposure_share * visit))
        k = len(exposed)
        t = lo[exposed] + (rng.random(k) * (hi[exposed] - lo[exposed])).astype("int64")
        variant = (rng.random(k) < 0.5).astype(int)
        base = experiment_base_conversion(p.purchase_rate[exposed], p.has_account[exposed])
        prob = np.clip(base * np.where(variant == 1, 1 + e.relative_lift, 1.0), 0, 1)
        converted = rng.random(k) < prob
        parts.append((exposed, np.full(k, e_i), variant, t, base, converted))
    cols = [np.concatenate([part[i] for part in parts]) for i in range(6)]
    ex = Exposures(*cols)
    conv = np.flatnonzero(ex.converted)
    induced = InducedOrders(ex.person[conv], ex.time[conv] + rng.integers(4 * 60, 25 * 60, len(conv)),
                            np.full(len(conv), -1), ex.experiment[conv], conv)
    return ex, induced


@dataclass
class Orders:
    person: np.ndarray
    time: np.ndarray
    channel: np.ndarray  # 0 web 1 app 2 store
    campaign: np.ndarray
    experiment: np.ndarray
    exposure: np.ndarray
    order_id: np.ndarray
    customer_id: np.ndarray
    email: np.ndarray
    phone: np.ndarray
    loyalty_id: np.ndarray
    logged_in: np.ndarray
    subtotal: np.ndarray  # pence
    discount: np.ndarray
    total: np.ndarray
    coupon: np.ndarray
    n_units: np.ndarray
    item_start: np.ndarray
    item_count: np.ndarray
    table: dict
    induced_pos: np.ndarray  # for induced orders (campaign first, then experiments): order row
    by_time: np.ndarray  # row order for writing (by time)


@dataclass
class Items:
    order: np.ndarray
    product: np.ndarray
    qty: np.ndarray
    price: np.ndarray
    discount: np.ndarray
    table: dict


def loyalty_ids(world: World, p: People) -> np.ndarray:
    gidx = p.offset + np.arange(p.n)
    return cat("LM", zpad((gidx * 387_420_489 + world.seed * 7_919 + 5) % 10**9, 9))


def loyalty_join(rng: np.random.Generator, p: People) -> np.ndarray:
    span = np.maximum(p.active_end - p.active_start, DAY)
    before = p.signup < p.active_start
    joined = np.where(before & (rng.random(p.n) < 0.5),
                      p.signup + (rng.random(p.n) * (p.active_start - p.signup)).astype("int64"),
                      p.active_start + (rng.random(p.n) * 0.4 * span).astype("int64"))
    return joined


def make_orders(world: World, rng: np.random.Generator, p: People, crm: Crm, induced: list[InducedOrders],
                loyalty_joined: np.ndarray, order_offset: int) -> tuple[Orders, Items]:
    n = p.n
    # organic orders: a welcome order at sign-up for new customers, then a seasonal Poisson process
    years = (p.active_end - p.active_start) / YEAR
    welcome = p.is_customer & (p.signup >= world.start) & (rng.random(n) < 0.7) & (p.signup < p.active_end)
    k = rng.poisson(p.purchase_rate * years)
    org_person = np.repeat(np.arange(n), k)
    channel = choice_rows(rng, np.cumsum(p.channel_mix[org_person], axis=1))
    org_time = world.sample_times(rng, p.active_start[org_person], p.active_end[org_person], channel == 2)
    w = np.flatnonzero(welcome)
    w_time = np.minimum(p.signup[w] + rng.integers(60, 2 * DAY, len(w)), p.active_end[w] - 1)
    w_channel = choice_rows(rng, np.cumsum(p.channel_mix[w], axis=1))

    ind = InducedOrders(*(np.concatenate([getattr(x, f) for x in induced]) for f in
                          ("person", "time", "campaign", "experiment", "exposure")))
    mix = p.channel_mix[ind.person, :2] + 1e-9
    ind_channel = np.where(ind.experiment >= 0, 0, (rng.random(len(ind.person)) < mix[:, 1] / mix.sum(axis=1)).astype(int))

    person = np.concatenate([org_person, w, ind.person]).astype("int64")
    time = np.concatenate([org_time, w_time, ind.time]).astype("int64")
    chan = np.concatenate([channel, w_channel, ind_channel])
    camp = np.concatenate([np.full(len(org_person) + len(w), -1), ind.campaign])
    expt = np.concatenate([np.full(len(org_person) + len(w), -1), ind.experiment])
    expo = np.concatenate([np.full(len(org_person) + len(w), -1), ind.exposure])
    order = np.lexsort((time, person))
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    induced_pos = inv[len(org_person) + len(w):]
    person, time, chan, camp, expt, expo = (a[order] for a in (person, time, chan, camp, expt, expo))
    m = len(person)
    # order numbers increase with time (within a chunk of people)
    by_time = np.lexsort((person, time))
    seq = np.empty(m, dtype="int64")
    seq[by_time] = np.arange(m)
    order_id = cat("ORD", zpad(order_offset + seq, 8))
    is_first = np.r_[True, person[1:] != person[:-1]] if m else np.zeros(0, dtype=bool)

    # who is logged in, and with which account
    has_acc = crm.primary[person] >= 0
    web_app = chan < 2
    logged = has_acc & web_app & ((chan == 1) | (rng.random(m) < 0.78)) & (time >= p.signup[person])
    use_dup = (crm.dup[person] >= 0) & (time > crm.created[np.maximum(crm.dup[person], 0)]) & (rng.random(m) < 0.6)
    rec = np.where(use_dup, crm.dup[person], crm.primary[person])
    customer_id = np.where(logged, crm.customer_id[np.maximum(rec, 0)], "")
    acct_email = np.strings.strip(crm.email[np.maximum(rec, 0)]) if len(crm.email) else np.full(m, "")

    # guest checkouts type their email, often not quite as on file
    guest_base = np.where((p.alt_email[person] != "") & (rng.random(m) < 0.12), p.alt_email[person], p.email[person])
    guest_email = messy.email_variants(guest_base, messy.random_email_codes(rng, m, 0.4), rng)
    receipt = messy.email_variants(p.email[person], messy.random_email_codes(rng, m, 0.2), rng)
    loyal = p.is_loyalty[person] & (time >= loyalty_joined[person]) & (rng.random(m) < np.where(chan == 2, 0.85, 0.3))
    lid = np.where(loyal, loyalty_ids(world, p)[person], "")
    store_email = (chan == 2) & (rng.random(m) < 0.4)
    email = np.where(logged, np.where(acct_email == "", guest_email, acct_email),
                     np.where(web_app, guest_email, np.where(store_email, receipt, "")))
    nsn = np.where(p.mobile[person] != "", p.mobile[person], p.landline[person])
    area = np.where(p.mobile[person] != "", 4, p.landline_area_len[person])
    phone_txt = messy.format_phones(nsn, area, messy.phone_styles(rng, m))
    want_phone = np.where(web_app, rng.random(m) < 0.55,
                          (loyal & (rng.random(m) < 0.3)) | (~loyal & ~store_email & (rng.random(m) < 0.6)))
    phone = np.where(want_phone, phone_txt, "")
    # an in-store sale must carry something: fall back to an e-receipt
    none = (chan == 2) & (lid == "") & (email == "") & (phone == "")
    email = np.where(none, receipt, email)
    junk = (chan == 2) & (rng.random(m) < 0.015)
    email = np.where(junk, rng.choice(vocab.JUNK_EMAILS, m), email)
    phone = np.where(junk & (rng.random(m) < 0.6), rng.choice(vocab.JUNK_PHONES, m), phone)

    # some orders are for (and addressed to) someone else in the household
    other = np.where(p.household[np.minimum(person + 1, n - 1)] == p.household[person], np.minimum(person + 1, n - 1),
                     np.maximum(person - 1, 0))
    for_other = (p.household_size[person] >= 2) & (p.household[other] == p.household[person]) & \
        (rng.random(m) < 0.06)
    recipient = np.where(for_other, other, person)
    ship_name = messy.full_names(p.first[recipient], messy.name_typos(p.last[recipient], rng, 0.01),
                                 p.title[recipient], messy.name_styles(rng, m), rng)
    ship_name = np.where(web_app, ship_name, "")
    ship_pc = np.where(web_app, messy.postcode_variants(p.postcode[person], rng, 0.2), "")

    # coupons: the campaign's offer, or a public code now and then
    coupon_names = np.array(vocab.PUBLIC_COUPONS)
    pub_pct = np.array([10, 0, 15, 10, 5])
    pub = rng.integers(0, len(coupon_names), m)
    use_pub = (camp < 0) & (rng.random(m) < np.where(is_first, 0.3, 0.05)) & web_app
    pub = np.where(is_first & use_pub, 0, pub)
    camp_pct = np.array([c.discount_pct for c in world.campaigns] + [0])[camp]
    camp_code = np.array([c.coupon for c in world.campaigns] + [""])[camp]
    pct = np.where(camp >= 0, camp_pct, np.where(use_pub, pub_pct[pub], 0))
    coupon = np.where(camp >= 0, camp_code, np.where(use_pub, coupon_names[pub], ""))

    # line items
    lines = np.minimum(1 + rng.poisson(p.basket_size[person] - 1), 12)
    it_order = np.repeat(np.arange(m), lines)
    it_person = person[it_order]
    cum = np.cumsum(p.cat_pref[it_person], axis=1)
    category = choice_rows(rng, cum)
    camp_cat = np.array([c.category for c in world.campaigns] + [-1])[camp[it_order]]
    category = np.where((camp_cat >= 0) & (rng.random(len(it_order)) < 0.6), camp_cat, category)
    product = world.catalog.sample(rng, category, p.spend_tier[it_person])
    product = np.minimum(product, len(world.catalog.product_id) - 1)
    category = world.catalog.category[product]
    qty = 1 + rng.poisson(world.catalog.extra_qty[category])
    price = world.catalog.price_pence[product]
    line_disc = np.round(price * qty * pct[it_order] / 100).astype("int64")
    subtotal = np.bincount(it_order, weights=price * qty, minlength=m).astype("int64")
    disc = np.bincount(it_order, weights=line_disc, minlength=m).astype("int64")
    units = np.bincount(it_order, weights=qty, minlength=m).astype("int64")
    delivery = np.where(web_app & (subtotal - disc < 4000) & (coupon != "FREESHIP"), 399, 0)
    total = subtotal - disc + delivery
    item_start = starts_of(lines)

    store_name = np.where(chan == 2, rng.choice(vocab.STORES, m), "")
    table = {
        "order_id": order_id, "customer_id": customer_id, "customer_email": email, "customer_phone": phone,
        "loyalty_member_id": lid, "ship_name": ship_name, "ship_postcode": ship_pc, "ordered_at": time,
        "channel": _ORDER_CHANNELS[chan], "store": store_name, "item_count": units.astype(str),
        "subtotal": money(subtotal), "discount": money(disc), "delivery": money(delivery),
        "total": money(total), "currency": np.full(m, "GBP"), "coupon_code": coupon,
        "campaign_id": np.array([c.campaign_id for c in world.campaigns] + [""])[camp],
    }
    line_no = rank_in_groups(lines) + 1
    cat_names = world.catalog.category_names
    items_table = {
        "item_id": cat(order_id[it_order], "-", line_no.astype(str)), "order_id": order_id[it_order],
        "customer_id": customer_id[it_order], "customer_email": email[it_order],
        "customer_phone": phone[it_order], "loyalty_member_id": lid[it_order], "ordered_at": time[it_order],
        "product_id": world.catalog.product_id[product], "product_name": world.catalog.name[product],
        "category": cat_names[category], "price": money(price), "quantity": qty.astype(str),
        "discount": money(line_disc), "currency": np.full(len(it_order), "GBP"),
        "channel": _ORDER_CHANNELS[chan[it_order]],
    }
    orders = Orders(person, time, chan, camp, expt, expo, order_id, customer_id, email, phone, lid, logged,
                    subtotal, disc, total, coupon, units, item_start, lines, table, induced_pos, by_time)
    items = Items(it_order, product, qty, price, line_disc, items_table)
    return orders, items
