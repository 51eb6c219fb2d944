"""Support tickets, NPS survey answers, loyalty members and B2B contacts for one chunk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from panorama.demo import messy, vocab
from panorama.demo.commerce import Orders, loyalty_ids
from panorama.demo.people import People
from panorama.demo.util import DAY, YEAR, cat, sreplace, zpad
from panorama.demo.world import World


@dataclass
class Table:
    columns: dict
    person: np.ndarray
    extra: dict | None = None


def _contact_email(rng, p: People, person: np.ndarray, p_variant: float) -> np.ndarray:
    base = np.where((p.alt_email[person] != "") & (rng.random(len(person)) < 0.15), p.alt_email[person], p.email[person])
    return messy.email_variants(base, messy.random_email_codes(rng, len(person), p_variant), rng)


def _phone(rng, p: People, person: np.ndarray, styles=None) -> np.ndarray:
    nsn = np.where(p.mobile[person] != "", p.mobile[person], p.landline[person])
    area = np.where(p.mobile[person] != "", 4, p.landline_area_len[person])
    st = messy.phone_styles(rng, len(person)) if styles is None else styles
    return messy.format_phones(nsn, area, st)


def make_tickets(world: World, rng: np.random.Generator, p: People, orders: Orders, id_offset: int) -> Table:
    topics = vocab.TICKET_TOPICS
    order_topics = [i for i, t in enumerate(topics) if t[1]]
    other_topics = [i for i, t in enumerate(topics) if not t[1]]
    # tickets about orders: more likely for unhappy people
    sat_o = p.satisfaction[orders.person]
    about = np.flatnonzero(rng.random(len(orders.person)) < 0.02 + 0.16 * (1 - sat_o) ** 2)
    t1 = orders.time[about] + rng.integers(DAY // 2, 12 * DAY, len(about))
    per1 = orders.person[about]
    top1 = np.array(order_topics)[rng.integers(0, len(order_topics), len(about))]
    # other tickets while active, and a last one from some people just before they leave
    years = (p.active_end - p.active_start) / YEAR
    k = rng.poisson((0.08 + 0.5 * (1 - p.satisfaction) ** 2) * years)
    per2 = np.repeat(np.arange(p.n), k)
    t2 = world.sample_times(rng, p.active_start[per2], p.active_end[per2])
    top2 = np.array(other_topics)[rng.integers(0, len(other_topics), len(per2))]
    leavers = np.flatnonzero((p.churn >= 0) & (rng.random(p.n) < 0.25) & (p.churn - 20 * DAY > p.active_start))
    t3 = p.churn[leavers] - rng.integers(DAY, 20 * DAY, len(leavers))
    top3 = np.full(len(leavers), [t[0] for t in topics].index("Account / login"))
    person = np.concatenate([per1, per2, leavers])
    time = np.concatenate([t1, t2, t3])
    topic = np.concatenate([top1, top2, top3])
    order_ref = np.concatenate([orders.order_id[about], np.full(len(per2) + len(leavers), "")])
    keep = time < np.minimum(p.active_end[person], world.end)
    person, time, topic, order_ref = person[keep], time[keep], topic[keep], order_ref[keep]
    srt = np.lexsort((person, time))
    person, time, topic, order_ref = person[srt], time[srt], topic[srt], order_ref[srt]
    m = len(person)
    sat = p.satisfaction[person]

    prio_w = np.array([t[2] for t in topics])
    cum = np.cumsum(prio_w[topic], axis=1)
    cum[:, -1] = 1
    priority = (rng.random(m)[:, None] > cum).sum(axis=1)
    hours = rng.lognormal(np.log(20), 1.0, m) * np.array([1.4, 1.0, 0.6, 0.3])[priority]
    hours = np.round(np.clip(hours, 0.1, 24 * 30), 1)
    resolved_t = time + (hours * 3600).astype("int64")
    open_ = (resolved_t >= world.end) | (rng.random(m) < 0.02)
    fast = np.clip(1 - np.log1p(hours) / np.log1p(24 * 14), 0, 1)
    csat = np.clip(np.round(1 + 4 * (0.65 * sat + 0.35 * fast) + rng.normal(0, 0.6, m)), 1, 5).astype(int)
    answered = ~open_ & (rng.random(m) < 0.35)
    channel = rng.choice(3, size=m, p=[0.5, 0.25, 0.25])
    email = _contact_email(rng, p, person, 0.2)
    phone = _phone(rng, p, person)
    by_phone = (channel == 1) & (phone != "")
    email = np.where(by_phone & (rng.random(m) < 0.7), "", email)
    phone = np.where(by_phone, phone, "")
    email = np.where((email == "") & (phone == ""), p.email[person], email)
    subjects = np.array([s for t in topics for s in t[3]])
    sub_start = np.cumsum([0] + [len(t[3]) for t in topics])[:-1]
    sub_n = np.array([len(t[3]) for t in topics])
    subject = subjects[sub_start[topic] + (rng.random(m) * sub_n[topic]).astype(int)]
    ticket_id = cat("TCK-", zpad(id_offset + np.arange(m), 7))
    columns = {
        "ticket_id": ticket_id, "email": email, "phone": phone, "opened_at": time,
        "channel": np.array(vocab.TICKET_CHANNELS)[channel], "topic": np.array([t[0] for t in topics])[topic],
        "subject": subject, "priority": np.array(vocab.PRIORITIES)[priority], "order_id": order_ref,
        "status": np.where(open_, "open", "solved"),
        "resolved_at": np.where(open_, -1, resolved_t),
        "resolution_hours": np.where(open_, "", hours.astype(str)),
        "csat": np.where(answered, csat.astype(str), ""),
    }
    return Table(columns, person)


def make_nps(world: World, rng: np.random.Generator, p: People, orders: Orders, id_offset: int) -> Table:
    # after some orders, and a relationship survey about twice a year
    o = np.flatnonzero(rng.random(len(orders.person)) < 0.12 * 0.35)
    per1 = orders.person[o]
    t1 = orders.time[o] + rng.integers(5 * DAY, 15 * DAY, len(o))
    known = p.email_opt
    years = (p.active_end - p.active_start) / YEAR
    k = np.where(known, rng.poisson(2 * 0.2 * years), 0)
    per2 = np.repeat(np.arange(p.n), k)
    t2 = world.sample_times(rng, p.active_start[per2], p.active_end[per2])
    person = np.concatenate([per1, per2])
    time = np.concatenate([t1, t2])
    trigger = np.r_[np.full(len(per1), "post_purchase"), np.full(len(per2), "relationship")]
    order_ref = np.r_[orders.order_id[o], np.full(len(per2), "")]
    keep = time < p.active_end[person]
    person, time, trigger, order_ref = person[keep], time[keep], trigger[keep], order_ref[keep]
    srt = np.lexsort((person, time))
    person, time, trigger, order_ref = person[srt], time[srt], trigger[srt], order_ref[srt]
    m = len(person)
    sat = p.satisfaction[person]
    # unhappier in the last months before leaving
    near_churn = (p.churn[person] >= 0) & (p.churn[person] - time < 90 * DAY)
    mood = np.clip(sat - np.where(near_churn, 0.2, 0), 0, 1)
    score = np.clip(np.round(rng.normal(1.5 + 9.0 * mood, 1.3)), 0, 10).astype(int)
    sentiment = np.where(score >= 9, "positive", np.where(score >= 7, "neutral", "negative"))
    comment_p = np.where(score <= 6, 0.6, np.where(score >= 9, 0.45, 0.3))
    has_comment = rng.random(m) < comment_p
    n_top = len(vocab.NPS_TOPICS)
    main = np.where(sentiment == "negative", p.pain_topic[person],
                    np.where(sentiment == "positive", p.delight_topic[person], rng.integers(0, n_top, m)))
    second = np.where(rng.random(m) < 0.35, (main + rng.integers(1, n_top, m)) % n_top, -1)
    r = rng.integers(0, 1 << 30, (m, 3))
    comments = np.empty(m, dtype=object)
    topics_txt = np.empty(m, dtype=object)
    for i in np.flatnonzero(has_comment).tolist():
        s = sentiment[i]
        t_a = vocab.NPS_TOPICS[main[i]]
        phrases = vocab.NPS_PHRASES[(t_a, s)]
        text = phrases[r[i, 0] % len(phrases)]
        tops = [t_a]
        if second[i] >= 0:
            t_b = vocab.NPS_TOPICS[second[i]]
            ph = vocab.NPS_PHRASES[(t_b, s)]
            other = ph[r[i, 1] % len(ph)]
            text += f" and {other[:1].lower()}{other[1:]}" if r[i, 1] % 2 == 0 else f". {other}"
            tops.append(t_b)
        closer = vocab.NPS_CLOSERS[s][r[i, 2] % len(vocab.NPS_CLOSERS[s])]
        comments[i] = (text + ". " + closer).strip() if closer else text + "."
        topics_txt[i] = ";".join(tops)
    comments[~has_comment] = ""
    topics_txt[~has_comment] = ""
    email = _contact_email(rng, p, person, 0.1)
    response_id = cat("NPS-", zpad(id_offset + np.arange(m), 7))
    columns = {
        "response_id": response_id, "email": email, "answered_at": time, "score": score.astype(str),
        "comment": comments.astype(str), "survey": trigger, "order_id": order_ref,
    }
    return Table(columns, person, {"sentiment": sentiment, "topics": topics_txt.astype(str),
                                   "has_comment": has_comment})


def make_loyalty(world: World, rng: np.random.Generator, p: People, orders: Orders, joined: np.ndarray) -> Table:
    person = np.flatnonzero(p.is_loyalty & (joined < world.end))
    m = len(person)
    spent = np.bincount(orders.person, weights=orders.total * (orders.time >= joined[orders.person]),
                        minlength=p.n) / 100
    recent = np.bincount(orders.person, weights=orders.total * (orders.time >= world.end - 365 * DAY),
                         minlength=p.n) / 100
    tier_i = np.digitize(recent[person], [200, 600, 1500])
    tier = np.array(["Bronze", "Silver", "Gold", "Platinum"])[tier_i]
    redeemed = (rng.random(m) < 0.5) * spent[person] * rng.uniform(0, 0.8, m)
    points = np.maximum(0, spent[person] + rng.integers(0, 300, m) - redeemed).astype(int)
    first, has_nick = messy.nickname_of(p.first[person], rng)
    first = np.where(has_nick & (rng.random(m) < 0.2), first, p.first[person])
    first = messy.case_variants(first, rng, 0.05, 0.03)
    last = messy.case_variants(p.last[person], rng, 0.05, 0.03)
    email = _contact_email(rng, p, person, 0.25)
    email = np.where(rng.random(m) < 0.08, "", email)
    phone = _phone(rng, p, person)
    phone = np.where(rng.random(m) < 0.1, "", phone)
    junk = rng.random(m) < 0.004
    phone = np.where(junk, rng.choice(vocab.JUNK_PHONES, m), phone)
    columns = {
        "member_id": loyalty_ids(world, p)[person], "email": email, "phone": phone, "first_name": first,
        "last_name": last, "tier": tier, "points": points.astype(str), "joined_at": joined[person],
        "home_store": rng.choice(vocab.STORES, m),
    }
    srt = np.argsort(joined[person], kind="stable")
    return Table({k: np.asarray(v)[srt] for k, v in columns.items()}, person[srt])


@dataclass
class B2B:
    table: Table
    account: np.ndarray  # per person: account id or ''
    company: np.ndarray
    domain: np.ndarray


def make_b2b(world: World, rng: np.random.Generator, p: People, chunk_index: int, chunk_size: int) -> B2B:
    person = np.flatnonzero(p.is_b2b)
    rng.shuffle(person)
    m = len(person)
    # group contacts into accounts of 1-6 people (from different households)
    sizes = []
    left = m
    while left > 0:
        s = int(min(left, 1 + rng.geometric(0.45)))
        sizes.append(min(s, 6))
        left -= sizes[-1]
    sizes = np.array(sizes, dtype=int)
    n_acc = len(sizes)
    acc_of = np.repeat(np.arange(n_acc), sizes)
    words = np.array(vocab.COMPANY_WORDS)
    w1 = words[rng.integers(0, len(words), n_acc)]
    kinds = np.array(vocab.COMPANY_KINDS)[rng.integers(0, len(vocab.COMPANY_KINDS), n_acc)]
    suffix = np.array(vocab.COMPANY_SUFFIXES)[rng.integers(0, len(vocab.COMPANY_SUFFIXES), n_acc)]
    company = np.strings.strip(cat(w1, " ", kinds, " ", suffix))
    gacc = chunk_index * chunk_size + np.arange(n_acc)
    slug = np.strings.lower(sreplace(sreplace(cat(w1, kinds), " ", ""), "'", ""))
    domain = cat(slug, zpad(gacc % 1000, 3), np.where(rng.random(n_acc) < 0.6, ".co.uk", ".com"))
    account_id = cat("ACC-", zpad(gacc, 6))
    shared_box = (sizes <= 4) & (sizes >= 2) & (rng.random(n_acc) < 0.35)
    box = np.array(vocab.SHARED_MAILBOXES)[rng.integers(0, len(vocab.SHARED_MAILBOXES), n_acc)]
    switchboard = (rng.random(n_acc) < 0.5)
    sb_num = cat("20", zpad(3_000_0000 + (gacc * 7_919 + world.seed) % 10_000_000, 8))

    f = np.strings.lower(p.first[person])
    la = np.strings.lower(sreplace(sreplace(p.last[person], "'", ""), " ", ""))
    pattern = rng.integers(0, 3, n_acc)[acc_of]
    local = np.where(pattern == 0, cat(f, ".", la), np.where(pattern == 1, cat(np.strings.slice(f, 0, 1), la), f))
    work = cat(local, "@", domain[acc_of])
    work = np.where(shared_box[acc_of], cat(box[acc_of], "@", domain[acc_of]), work)
    personal = (~shared_box[acc_of]) & (rng.random(m) < 0.1)
    work = np.where(personal, p.email[person], work)
    work = messy.email_variants(work, messy.random_email_codes(rng, m, 0.08, (0, 0.6, 0.2, 0, 0, 0.1, 0.1, 0, 0)), rng)
    mobile_ok = (p.mobile[person] != "")
    use_sb = switchboard[acc_of] | ~mobile_ok
    phone = np.where(use_sb, messy.format_phones(sb_num[acc_of], np.full(m, 2), messy.phone_styles(rng, m)),
                     messy.format_phones(p.mobile[person], np.full(m, 4), messy.phone_styles(rng, m)))
    created = p.active_start[person] + (rng.random(m) * (p.active_end[person] - p.active_start[person])).astype("int64")
    contact_id = cat("B2B-", zpad((p.offset + person) * 3 + 1, 8))
    columns = {
        "contact_id": contact_id, "account_id": account_id[acc_of], "company_name": company[acc_of],
        "company_domain": domain[acc_of], "work_email": work, "phone": phone,
        "first_name": messy.case_variants(p.first[person], rng, 0.02, 0.0),
        "last_name": messy.case_variants(p.last[person], rng, 0.02, 0.0),
        "job_title": np.array(vocab.JOB_TITLES)[rng.integers(0, len(vocab.JOB_TITLES), m)],
        "created_at": created,
    }
    srt = np.argsort(created, kind="stable")
    columns = {k: v[srt] for k, v in columns.items()}
    person_sorted = person[srt]
    acc_p = np.full(p.n, "", dtype=object)
    comp_p = np.full(p.n, "", dtype=object)
    dom_p = np.full(p.n, "", dtype=object)
    acc_p[person] = account_id[acc_of]
    comp_p[person] = company[acc_of]
    dom_p[person] = domain[acc_of]
    return B2B(Table(columns, person_sorted, {"shared_mailbox": shared_box[acc_of][srt],
                                              "switchboard": use_sb[srt]}),
               acc_p.astype(str), comp_p.astype(str), dom_p.astype(str))

