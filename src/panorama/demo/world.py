"""The fixed world every chunk of people shares: time span, seasonality, catalogue,
campaign calendar and experiments. Derived only from the seed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from panorama.demo import vocab
from panorama.demo.util import DAY, zipf_weights

YEARS = 3
# hour-of-day weights (UTC) for online and in-store activity
HOURS_ONLINE = np.array([1, 0.6, 0.3, 0.2, 0.2, 0.3, 0.8, 1.6, 2.4, 2.8, 3, 3.1, 3.6, 3.4, 3,
                         2.9, 3, 3.2, 3.8, 4.6, 5, 4.6, 3.3, 1.8])
HOURS_STORE = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0.5, 2, 3, 3.5, 4, 4, 3.5, 3.5, 3.5, 3.5, 3,
                        2, 0.8, 0, 0, 0])


@dataclass
class Catalog:
    product_id: np.ndarray
    name: np.ndarray
    category: np.ndarray  # category index per product
    price_pence: np.ndarray
    popularity: np.ndarray  # within-category probability
    category_names: np.ndarray
    category_share: np.ndarray
    extra_qty: np.ndarray  # mean extra units per line, per category
    cat_start: np.ndarray
    cat_count: np.ndarray
    _keys: np.ndarray = field(repr=False, default=None)  # category + cumulative popularity

    def sample(self, rng: np.random.Generator, categories: np.ndarray, tier: np.ndarray | None = None) -> np.ndarray:
        """One product per row from the given categories, popular products more often.

        With a spend tier (0 budget, 1 mid, 2 premium) three candidates are drawn and the
        cheapest, the middle or the dearest kept.
        """
        n = len(categories)
        if tier is None:
            return np.searchsorted(self._keys, categories + rng.random(n) * 0.999999, side="right")
        cands = np.stack([
            np.searchsorted(self._keys, categories + rng.random(n) * 0.999999, side="right")
            for _ in range(3)
        ], axis=1)
        cands = np.minimum(cands, len(self.product_id) - 1)
        order = np.argsort(self.price_pence[cands], axis=1, kind="stable")
        chosen = order[np.arange(n), tier]
        return cands[np.arange(n), chosen]


@dataclass
class Campaign:
    index: int
    campaign_id: str
    name: str
    channel: str  # email | sms | push
    send_at: int
    offer_id: str
    discount_pct: int
    category: int  # -1: whole range
    coupon: str
    target_share: float
    holdout_share: float


@dataclass
class Experiment:
    experiment_id: str
    name: str
    start: int
    end: int
    variants: tuple[str, str]
    relative_lift: float  # true relative lift of the treatment on conversion
    exposure_share: float  # share of active web visitors who see it


@dataclass
class World:
    seed: int
    start: int
    end: int
    day_cdf: np.ndarray
    catalog: Catalog
    campaigns: list[Campaign]
    experiments: list[Experiment]
    email_mult: int
    email_add: int
    phone_add: int

    @property
    def end_date(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.end, dt.UTC).date()

    def sample_times(self, rng: np.random.Generator, a: np.ndarray, b: np.ndarray,
                     store: np.ndarray | None = None) -> np.ndarray:
        """Seasonal random times in [a, b) per row (epoch seconds), realistic hour of day."""
        a = np.asarray(a, dtype="int64")
        b = np.asarray(b, dtype="int64")
        n = len(a)
        grid = self.start + np.arange(len(self.day_cdf), dtype="int64") * DAY
        ca = np.interp(a, grid, self.day_cdf)
        cb = np.interp(b, grid, self.day_cdf)
        u = ca + rng.random(n) * (cb - ca)
        t = np.interp(u, self.day_cdf, grid).astype("int64")
        day0 = t - (t - self.start) % DAY
        hours_p = HOURS_ONLINE / HOURS_ONLINE.sum()
        hours = rng.choice(24, size=n, p=hours_p)
        if store is not None and store.any():
            sp = HOURS_STORE / HOURS_STORE.sum()
            hours = np.where(store, rng.choice(24, size=n, p=sp), hours)
        t2 = day0 + hours * 3600 + rng.integers(0, 3600, n)
        return np.clip(t2, a, np.maximum(a, b - 1))


def _day_intensity(start: int, days: int) -> np.ndarray:
    dates = (np.arange(days) + start // DAY).astype("datetime64[D]")
    doy = (dates - dates.astype("datetime64[Y]")).astype(int)
    weekday = (np.arange(days) + start // DAY + 3) % 7  # 0 = Monday
    w = np.ones(days)
    w *= np.where(weekday >= 5, 1.15, 1.0) * np.where(weekday == 0, 1.1, 1.0)
    w *= 1 + 0.25 * np.cos(2 * np.pi * (doy - 350) / 365.25)  # winter high, summer low
    w *= np.where((doy >= 327) & (doy <= 333), 2.6, 1.0)  # Black Friday week
    w *= np.where((doy >= 334) & (doy <= 356), 1.6, 1.0)  # Christmas shopping
    w *= np.where((doy >= 357) & (doy <= 360), 0.5, 1.0)  # Christmas days
    w *= np.where((doy >= 361) | (doy <= 5), 1.8, 1.0)  # Boxing Day / January sales
    return w


def _catalog(rng: np.random.Generator) -> Catalog:
    ids, names, cats, prices, pops = [], [], [], [], []
    for c, (_cat, code, lo, hi, adjs, nouns, _share, _qty) in enumerate(vocab.CATEGORIES):
        k = vocab.PRODUCTS_PER_CATEGORY
        combos = [(a, b) for a in adjs for b in nouns]
        chosen = rng.choice(len(combos), size=k, replace=False)
        raw = np.exp(rng.uniform(np.log(lo), np.log(hi), size=k))
        endings = rng.choice([0.99, 0.0, 0.5, 0.95], size=k, p=[0.55, 0.25, 0.1, 0.1])
        price = np.floor(raw) + endings
        price = np.where(price < 1, 0.99, price)
        for j in range(k):
            a, b = combos[chosen[j]]
            ids.append(f"SKU-{code}{1000 + 37 * j + c:04d}")
            names.append(f"{a} {b}")
            cats.append(c)
            prices.append(int(round(price[j] * 100)))
        pops.append(zipf_weights(k, 1.0)[rng.permutation(k)])
    cat_arr = np.array(cats)
    counts = np.bincount(cat_arr)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    pop = np.concatenate(pops)
    keys = np.concatenate([c + np.cumsum(p) * 0.999999 for c, p in enumerate(pops)])
    share = np.array([c[6] for c in vocab.CATEGORIES])
    return Catalog(
        product_id=np.array(ids), name=np.array(names), category=cat_arr,
        price_pence=np.array(prices, dtype="int64"), popularity=pop,
        category_names=np.array([c[0] for c in vocab.CATEGORIES]),
        category_share=share / share.sum(), extra_qty=np.array([c[7] for c in vocab.CATEGORIES]),
        cat_start=starts, cat_count=counts, _keys=np.r_[keys],
    )


_SEASON_NAMES = {1: "January Sale", 2: "Valentine's", 3: "Spring Edit", 4: "Easter", 5: "May Offers",
                 6: "Summer Preview", 7: "Summer Sale", 8: "Holiday Picks", 9: "Back to School",
                 10: "Autumn Edit", 11: "Black Friday", 12: "Christmas Gifts"}


def _campaigns(rng: np.random.Generator, start: int, end: int) -> list[Campaign]:
    plans = []  # (channel, every days, hour, target share)
    for channel, every, hour, share in (("email", 14, 9, 0.55), ("sms", 30, 12, 0.5), ("push", 21, 18, 0.6)):
        t = start + int(rng.integers(3, every)) * DAY
        while t < end - 10 * DAY:
            plans.append((t + hour * 3600 + int(rng.integers(0, 3600)), channel, share))
            t += (every + int(rng.integers(-3, 4))) * DAY
    plans.sort()
    campaigns = []
    n_cat = len(vocab.CATEGORIES)
    for i, (t, channel, share) in enumerate(plans):
        date = dt.datetime.fromtimestamp(t, dt.UTC)
        discount = int(rng.choice([0, 10, 15, 20, 25, 30], p=[0.2, 0.22, 0.18, 0.18, 0.1, 0.12]))
        category = int(rng.integers(0, n_cat)) if rng.random() < 0.45 else -1
        cat_name = vocab.CATEGORIES[category][0] if category >= 0 else "Everything"
        season = _SEASON_NAMES[date.month]
        offer = f"{discount}% off {cat_name}" if discount else f"New in: {cat_name}"
        code = vocab.CATEGORIES[category][1] if category >= 0 else "ALL"
        cid = f"CMP-{date:%Y%m%d}-{channel[0].upper()}{i % 100:02d}"
        offer_id = f"OFF-{code}-{discount:02d}" if discount else f"OFF-{code}-NEWIN"
        coupon = f"{season.split()[0].upper().replace(chr(39), '')}{discount}{code}" if discount else ""
        campaigns.append(Campaign(i, cid, f"{season}: {offer}", channel, t, offer_id, discount,
                                  category, coupon, share, 0.1))
    return campaigns


def build_world(seed: int) -> World:
    rng = np.random.default_rng([seed, 0xD3])
    end_day = dt.date(2025, 6, 30) - dt.timedelta(days=int(seed * 7919 % 365))
    end = int(dt.datetime(end_day.year, end_day.month, end_day.day, tzinfo=dt.UTC).timestamp())
    start = end - int(YEARS * 365 * DAY)
    days = (end - start) // DAY + 1
    intensity = _day_intensity(start, days)
    cdf = np.r_[0.0, np.cumsum(intensity[:-1])]
    cdf = cdf / cdf[-1]
    catalog = _catalog(rng)
    campaigns = _campaigns(rng, start, end)
    # sized so that the analysis can see the truth: on the default 10,000 customers the checkout
    # test has ~2,300 exposures per arm, 94% power for its +25% (docs/experiments.md), and the
    # hero banner (no effect) ~1,150 per arm
    experiments = [
        Experiment("EXP-CHECKOUT-1PAGE", "One-page checkout", end - 290 * DAY, end - 90 * DAY,
                   ("control", "one_page_checkout"), 0.25, 1.0),
        Experiment("EXP-HERO-BANNER", "Homepage hero banner", end - 85 * DAY, end - 5 * DAY,
                   ("control", "lifestyle_banner"), 0.0, 0.8),
    ]
    return World(seed=seed, start=start, end=end, day_cdf=cdf, catalog=catalog,
                 campaigns=campaigns, experiments=experiments,
                 email_mult=int(rng.integers(1, 1 << 20)) * 2 + 1,
                 email_add=int(rng.integers(0, 1 << 20)), phone_add=int(rng.integers(0, 600_000_000)))
