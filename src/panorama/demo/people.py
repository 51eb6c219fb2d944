"""People of one chunk: households, names, contact details and latent behaviour traits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from panorama.demo import vocab
from panorama.demo.util import DAY, YEAR, cat, pick, sreplace, zipf_weights, zpad
from panorama.demo.world import World

CHANNEL_NAMES = np.array(["email", "sms", "push"])
_MOBILE_MULT = 282_475_249  # 7**10, coprime to 500_000_000
_LAND_MULT = 7_919 * 7


@dataclass
class People:
    n: int
    offset: int  # global index of the first person
    person_id: np.ndarray
    household: np.ndarray  # local household index
    household_id: np.ndarray
    household_size: np.ndarray
    gender: np.ndarray  # 0 male, 1 female
    title: np.ndarray
    first: np.ndarray
    last: np.ndarray
    birth_day: np.ndarray  # days since epoch
    twin_of: np.ndarray  # local index or -1
    namesake_of: np.ndarray  # local index or -1
    email: np.ndarray  # canonical personal email (lower case)
    alt_email: np.ndarray  # a second personal address or ''
    mobile: np.ndarray  # national significant number ('7...') or ''
    landline: np.ndarray  # household landline NSN or ''
    landline_area_len: np.ndarray
    house: np.ndarray  # address line 1
    house_short: np.ndarray  # the same with abbreviated street type
    city: np.ndarray
    postcode: np.ndarray
    ip: np.ndarray
    # latent traits
    signup: np.ndarray  # epoch seconds (may precede the window)
    active_start: np.ndarray
    churn: np.ndarray  # epoch seconds or -1
    mean_life: np.ndarray  # mean time to churn (years); churn is memoryless
    active_end: np.ndarray  # min(churn, end)
    is_customer: np.ndarray
    purchase_rate: np.ndarray  # organic orders per year while active
    basket_size: np.ndarray  # mean items per order
    spend_tier: np.ndarray  # 0 budget, 1 mid, 2 premium
    cat_pref: np.ndarray  # (n, categories)
    channel_mix: np.ndarray  # (n, 3) web/app/store
    email_resp: np.ndarray
    sms_resp: np.ndarray
    push_resp: np.ndarray
    discount_sens: np.ndarray
    satisfaction: np.ndarray
    pain_topic: np.ndarray
    delight_topic: np.ndarray
    # presence
    has_account: np.ndarray
    newsletter: np.ndarray  # known to the email platform without an account
    has_web: np.ndarray
    has_app: np.ndarray
    is_loyalty: np.ndarray
    is_b2b: np.ndarray
    email_opt: np.ndarray
    sms_opt: np.ndarray
    push_opt: np.ndarray
    esp_known_at: np.ndarray  # when the email platform learnt the address


def _names(rng, gender: np.ndarray) -> np.ndarray:
    male = np.array(vocab.MALE_FIRST)
    female = np.array(vocab.FEMALE_FIRST)
    m = male[rng.choice(len(male), size=len(gender), p=zipf_weights(len(male), 0.7))]
    f = female[rng.choice(len(female), size=len(gender), p=zipf_weights(len(female), 0.7))]
    return np.where(gender == 1, f, m)


def _email_local(rng, first: np.ndarray, last: np.ndarray, birth_year: np.ndarray) -> np.ndarray:
    f = np.strings.lower(first)
    la = sreplace(sreplace(np.strings.lower(last), "'", ""), " ", "")
    yy = zpad(birth_year % 100, 2)
    num = rng.integers(1, 999, len(f)).astype(str)
    init = np.strings.slice(f, 0, 1)
    patterns = [
        cat(f, ".", la), cat(f, la), cat(init, ".", la), cat(init, la), cat(f, ".", la, yy),
        cat(f, np.strings.slice(la, 0, 1), num), cat(f, "_", la), cat(la, f), cat(f, yy), cat(f, num),
        cat(la, ".", f), cat(f, ".", la, num),
    ]
    p = np.array([0.24, 0.1, 0.07, 0.06, 0.1, 0.06, 0.05, 0.04, 0.08, 0.08, 0.04, 0.08])
    which = rng.choice(len(patterns), size=len(f), p=p / p.sum())
    return np.choose(which, patterns)


class EmailRegistry:
    """Keeps emails unique across chunks with a sorted array of 64-bit hashes (8 bytes each)."""

    def __init__(self) -> None:
        self.seen = np.zeros(0, dtype=np.uint64)

    def unique(self, rng, emails: np.ndarray, reserved: np.ndarray | None = None) -> np.ndarray:
        emails = np.asarray(emails).astype(object)
        for _ in range(20):
            h = pd.util.hash_array(emails)
            if len(self.seen):
                pos = np.minimum(np.searchsorted(self.seen, h), len(self.seen) - 1)
                clash = self.seen[pos] == h
            else:
                clash = np.zeros(len(h), dtype=bool)
            _, first_idx = np.unique(h, return_index=True)
            dup_in = np.ones(len(h), dtype=bool)
            dup_in[first_idx] = False
            bad = np.flatnonzero(clash | dup_in)
            if len(bad) == 0:
                break
            nums = rng.integers(1, 9999, len(bad))
            for k, i in enumerate(bad):
                local, _, domain = emails[i].partition("@")
                emails[i] = f"{local.rstrip('0123456789')}{nums[k]}@{domain}"
        h = np.unique(pd.util.hash_array(emails))
        self.seen = np.insert(self.seen, np.searchsorted(self.seen, h), h)  # stays sorted, O(n) per chunk
        return emails.astype(str)


def _per_city(rng, city_i: np.ndarray, field: int) -> np.ndarray:
    """One random element of each household's city's tuple/string `field` (vectorised)."""
    options = [list(c[field]) if isinstance(c[field], str) else list(c[field]) for c in vocab.CITIES]
    width = max(len(o) for o in options)
    table = np.array([o + [o[0]] * (width - len(o)) for o in options])
    counts = np.array([len(o) for o in options])
    pick_i = (rng.random(len(city_i)) * counts[city_i]).astype(int)
    return table[city_i, pick_i]


def _postcodes(rng, areas: np.ndarray) -> np.ndarray:
    n = len(areas)
    letters = np.array(list(vocab.POSTCODE_LETTERS))
    district = rng.integers(1, 28, n).astype(str)
    inward = cat(rng.integers(1, 10, n).astype(str), letters[rng.integers(0, 20, n)], letters[rng.integers(0, 20, n)])
    return cat(areas, district, " ", inward)


def make_people(world: World, rng: np.random.Generator, n: int, offset: int, chunk_index: int,
                chunk_size: int, emails: EmailRegistry) -> People:
    start, end = world.start, world.end
    gidx = offset + np.arange(n)
    person_id = cat("P", zpad(gidx, 7))

    # households: sizes 1..5, members share address, landline, IP and usually the surname
    sizes = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.36, 0.34, 0.14, 0.12, 0.04])
    household = np.repeat(np.arange(n), sizes)[:n]
    n_house = int(household[-1]) + 1
    hsize = np.bincount(household, minlength=n_house)
    member = np.arange(n) - np.searchsorted(household, household)
    ghh = chunk_index * chunk_size + np.arange(n_house)
    household_id = cat("H", zpad(ghh, 7))[household]

    gender = rng.integers(0, 2, n)
    first = _names(rng, gender)
    surnames = np.array(vocab.SURNAMES)
    own_last = surnames[rng.choice(len(surnames), size=n, p=zipf_weights(len(surnames), 0.75))]
    head = np.searchsorted(household, household)  # index of member 0 of the household
    shares_name = (member > 0) & (rng.random(n) < 0.75)
    last = np.where(shares_name, own_last[head], own_last)

    age_head = np.clip(rng.normal(47, 15, n), 19, 88)
    age = np.where(member == 0, age_head,
                   np.where(member == 1, age_head[head] + rng.normal(0, 4, n),
                            np.where(age_head[head] > 46, rng.uniform(18, 29, n), age_head[head] + rng.normal(0, 6, n))))
    age = np.clip(age, 18, 92)
    birth_day = ((end - age * YEAR) // DAY).astype("int64")

    # twins: same surname, birth date, address; different first names and emails
    twin_of = np.full(n, -1)
    pair_first = np.where(hsize >= 3, 1, 0)
    cand = np.flatnonzero((hsize >= 2) & (rng.random(n_house) < 0.05))
    hh_start = np.searchsorted(household, np.arange(n_house))
    a = hh_start[cand] + pair_first[cand]
    b = a + 1
    ok = b < n
    a, b = a[ok], b[ok]
    ok = household[b] == household[a]
    a, b = a[ok], b[ok]
    twin_of[b] = a
    twin_of[a] = b
    last[b] = last[a]
    birth_day[b] = birth_day[a]
    same_name = first[b] == first[a]
    for _ in range(5):
        if not same_name.any():
            break
        first[b[same_name]] = _names(rng, gender[b[same_name]])
        same_name = first[b] == first[a]
    first[b[same_name]] = np.where(gender[b[same_name]] == 1, "Alice", "Adam")

    # namesakes: a different person elsewhere with the same first and last name
    namesake_of = np.full(n, -1)
    ns = np.flatnonzero((rng.random(n) < 0.015) & (twin_of < 0))
    if len(ns) and n > 10:
        other = rng.integers(0, n, len(ns))
        ok = (household[other] != household[ns]) & (twin_of[other] < 0) & ~np.isin(other, ns)
        ns, other = ns[ok], other[ok]
        first[ns], last[ns], gender[ns] = first[other], last[other], gender[other]
        namesake_of[ns] = other

    titles = np.where(gender == 1, pick(rng, vocab.TITLES_FEMALE, n), pick(rng, vocab.TITLES_MALE, n))

    # addresses per household
    city_w = np.array([c[5] for c in vocab.CITIES])
    city_i = rng.choice(len(vocab.CITIES), size=n_house, p=city_w / city_w.sum())
    areas = _per_city(rng, city_i, 1)
    postcode_h = _postcodes(rng, areas)
    number = np.clip(rng.lognormal(2.8, 0.9, n_house), 1, 300).astype(int).astype(str)
    sname = pick(rng, vocab.STREET_NAMES, n_house)
    stype_i = rng.integers(0, len(vocab.STREET_TYPES), n_house)
    stype_full = np.array([t[0] for t in vocab.STREET_TYPES])[stype_i]
    stype_short = np.array([t[1] for t in vocab.STREET_TYPES])[stype_i]
    flat = rng.random(n_house) < 0.14
    flat_txt = np.where(flat, cat("Flat ", rng.integers(1, 30, n_house).astype(str), ", "), "")
    house_h = cat(flat_txt, number, " ", sname, " ", stype_full)
    house_short_h = cat(flat_txt, number, " ", sname, " ", stype_short)
    city_name_h = np.array([c[0] for c in vocab.CITIES])[city_i]

    # household landline (45%) in the city's numbering plan, unique per household index
    has_land = rng.random(n_house) < 0.45
    dial = np.array([c[2] for c in vocab.CITIES])[city_i]
    sub_len = np.array([c[3] for c in vocab.CITIES])[city_i]
    lead = _per_city(rng, city_i, 4)
    body = (ghh.astype("int64") * _LAND_MULT + world.phone_add * 3 + 4_321) % (10 ** (sub_len - 1))
    body_txt = np.strings.zfill(body.astype(str), sub_len - 1)
    landline_h = np.where(has_land, cat(dial, lead, body_txt), "")
    area_len_h = np.strings.str_len(dial)
    ip_h = cat(pick(rng, ("81.2", "86.15", "92.40", "109.150", "151.224", "2.96", "5.64", "212.56"), n_house),
               ".", rng.integers(0, 256, n_house).astype(str), ".", rng.integers(1, 255, n_house).astype(str))

    # personal contact details
    birth_year = (birth_day.astype("datetime64[D]").astype("datetime64[Y]").astype(int) + 1970)
    local = _email_local(rng, first, last, birth_year)
    dom_names = np.array([d for d, _ in vocab.EMAIL_DOMAINS])
    dom_w = np.array([w for _, w in vocab.EMAIL_DOMAINS])
    domain = dom_names[rng.choice(len(dom_names), size=n, p=dom_w / dom_w.sum())]
    email = emails.unique(rng, cat(local, "@", domain))
    has_alt = rng.random(n) < 0.22
    alt_local = _email_local(rng, first, last, birth_year)
    alt_domain = dom_names[rng.choice(len(dom_names), size=n, p=dom_w / dom_w.sum())]
    alt = emails.unique(rng, cat(alt_local, "@", alt_domain))
    alt_email = np.where(has_alt & (alt != email), alt, "")

    has_mobile = rng.random(n) < 0.93
    # 074xx-075xx and 077xx-079xx are mobile ranges (076 is pagers); unique per person
    v = (gidx.astype("int64") * _MOBILE_MULT + world.phone_add) % 500_000_000
    mob = np.where(v < 200_000_000, 400_000_000 + v, 500_000_000 + v)
    mobile = np.where(has_mobile, cat("7", mob.astype(str)), "")

    # --- latent behaviour ---------------------------------------------------------------
    satisfaction = rng.beta(4.0, 2.4, n)
    signup = np.where(rng.random(n) < 0.42,
                      start - rng.uniform(0, 2.5 * YEAR, n),
                      rng.uniform(start, end - 10 * DAY, n)).astype("int64")
    active_start = np.maximum(signup, start)
    mean_life = (0.9 + 6.0 * satisfaction**2) * YEAR
    churn_at = active_start + rng.exponential(mean_life)
    churn = np.where(churn_at < end, churn_at, -1).astype("int64")
    active_end = np.where(churn >= 0, churn, end).astype("int64")

    is_customer = rng.random(n) < 0.78
    purchase_rate = np.where(is_customer, np.clip(rng.lognormal(np.log(1.7), 0.8, n), 0.2, 30), 0.0)
    basket_size = 1.0 + rng.gamma(1.5, 0.9, n)
    spend_tier = rng.choice(3, size=n, p=[0.3, 0.45, 0.25])
    base = world.catalog.category_share
    gender_tilt = np.where(gender[:, None] == 1, [1.8, 0.4] + [1] * (len(base) - 2), [0.4, 1.8] + [1] * (len(base) - 2))
    cat_pref = rng.gamma(np.broadcast_to(base * 3.0, (n, len(base)))) * gender_tilt
    cat_pref = (cat_pref + 1e-9) / (cat_pref + 1e-9).sum(axis=1, keepdims=True)

    has_web = rng.random(n) < 0.88
    has_app = has_web & (rng.random(n) < 0.33)
    store_city = np.isin(city_name_h[household], ["London", "Manchester", "Birmingham", "Leeds", "Glasgow",
                                                  "Bristol", "Cardiff", "Edinburgh"])
    w_web = np.where(has_web, rng.gamma(3, 1, n), 0.05)
    w_app = np.where(has_app, rng.gamma(3, 1, n), 0.0)
    w_store = rng.gamma(1.2, 1, n) * np.where(store_city, 1.5, 0.35)
    channel_mix = np.stack([w_web, w_app, w_store], axis=1)
    channel_mix /= channel_mix.sum(axis=1, keepdims=True)

    email_resp = rng.beta(2.0, 5.0, n)
    sms_resp = rng.beta(1.3, 9.0, n)
    push_resp = rng.beta(1.8, 7.0, n)
    discount_sens = 2.0 * rng.beta(1.4, 2.2, n)
    n_topics = len(vocab.NPS_TOPICS)
    pain_topic = rng.integers(0, n_topics, n)
    delight_topic = (pain_topic + rng.integers(1, n_topics, n)) % n_topics

    has_account = np.where(is_customer, rng.random(n) < 0.84, rng.random(n) < 0.35)
    has_app = has_app & has_account  # the app needs an account
    newsletter = ~has_account & has_web & (rng.random(n) < 0.45)
    email_opt = (has_account | newsletter) & (rng.random(n) < np.where(newsletter, 0.95, 0.68))
    sms_opt = has_account & (mobile != "") & (rng.random(n) < 0.33)
    push_opt = has_app & (rng.random(n) < 0.62)
    esp_known_at = np.where(newsletter, active_start + rng.uniform(0, 0.3, n) * (active_end - active_start),
                            signup).astype("int64")
    is_loyalty = rng.random(n) < np.clip(0.12 + 0.5 * channel_mix[:, 2], 0, 0.9)
    is_b2b = rng.random(n) < 0.04

    return People(
        n=n, offset=offset, person_id=person_id, household=household, household_id=household_id,
        household_size=hsize[household], gender=gender, title=titles, first=first, last=last,
        birth_day=birth_day, twin_of=twin_of, namesake_of=namesake_of, email=email, alt_email=alt_email,
        mobile=mobile, landline=landline_h[household], landline_area_len=area_len_h[household],
        house=house_h[household], house_short=house_short_h[household], city=city_name_h[household],
        postcode=postcode_h[household], ip=ip_h[household],
        signup=signup, active_start=active_start, churn=churn, mean_life=mean_life / YEAR, active_end=active_end,
        is_customer=is_customer, purchase_rate=purchase_rate, basket_size=basket_size,
        spend_tier=spend_tier, cat_pref=cat_pref, channel_mix=channel_mix,
        email_resp=email_resp, sms_resp=sms_resp, push_resp=push_resp, discount_sens=discount_sens,
        satisfaction=satisfaction, pain_topic=pain_topic, delight_topic=delight_topic,
        has_account=has_account, newsletter=newsletter, has_web=has_web, has_app=has_app,
        is_loyalty=is_loyalty, is_b2b=is_b2b, email_opt=email_opt, sms_opt=sms_opt, push_opt=push_opt,
        esp_known_at=esp_known_at,
    )


def preferred_channel(p: People) -> np.ndarray:
    """The channel a person responds to best among those they can be reached on."""
    scores = np.stack([
        np.where(p.email_opt, p.email_resp / 0.29, -1),
        np.where(p.sms_opt, p.sms_resp / 0.13, -1),
        np.where(p.push_opt, p.push_resp / 0.2, -1),
    ], axis=1)
    best = CHANNEL_NAMES[scores.argmax(axis=1)]
    return np.where(scores.max(axis=1) < 0, "none", best)
