"""Web and app analytics as Segment-spec messages (identify, track, page, screen, group, alias).

Sessions are built per chunk as arrays (browsing, purchases, sign-ups, newsletter sign-ups,
reviews, referrals, B2B group calls), expanded into events with vectorised slot counts, then
serialised line by line with orjson.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd

from panorama.demo import vocab
from panorama.demo.commerce import Crm, Exposures, Items, Orders
from panorama.demo.people import People
from panorama.demo.util import DAY, YEAR, choice_rows, iso_z, rank_in_groups, starts_of, uuids
from panorama.demo.world import World

SITE = "https://www.hartleyfinch.co.uk"
RETAILER = "Hartley & Finch"

BROWSE, PURCHASE, SIGNUP, NEWSLETTER, REVIEW, REFERRAL, GROUP = range(7)
(S_PAGE, S_IDENT_LOGIN, S_EXP, S_VIEW, S_ADD, S_CHECKOUT, S_IDENT_GUEST, S_ORDER, S_IDENT_SIGNUP,
 S_SIGNED_UP, S_IDENT_NEWS, S_NEWS, S_REVIEW, S_REFERRAL, S_GROUP) = range(15)
N_SLOTS = 15

_WEB_LIB = {"name": "analytics.js", "version": "next-1.70.0"}
_APP_LIB = ({"name": "analytics-ios", "version": "4.1.8"}, {"name": "analytics-android", "version": "4.11.3"})
_APP_OS = ({"name": "iOS", "version": "17.4"}, {"name": "Android", "version": "14"})
_APP_DEVICE = (("Apple", "iPhone15,2", "ios"), ("Google", "Pixel 8", "android"))
_APP = {"name": RETAILER, "version": "5.4.0", "build": "540"}


WRITE_SLICE = 20_000


@dataclass
class WebResult:
    message_id: np.ndarray  # in file order
    person: np.ndarray
    anon_shared: np.ndarray  # per person: used a shared (household/kiosk) device


def device_ids(world: World, p: People) -> np.ndarray:
    """The app's device id per person (also used by push campaigns); '' without the app."""
    rng = np.random.default_rng([world.seed, 0xA99, p.offset])
    ids = np.strings.add("dev-", uuids(rng, p.n))
    return np.where(p.has_app, ids, "")


def kiosk_ids(world: World) -> np.ndarray:
    return uuids(np.random.default_rng([world.seed, 0x51]), len(vocab.STORES))


def make_web(world: World, rng: np.random.Generator, p: People, crm: Crm, orders: Orders, items: Items,
             ex: Exposures, esp_email: np.ndarray, b2b_account: np.ndarray, b2b_company: np.ndarray,
             b2b_domain: np.ndarray, sink: Callable[[list[bytes]], None]) -> WebResult:
    n = p.n
    cat_names = world.catalog.category_names

    # --- sessions ---------------------------------------------------------------------
    parts: list[dict] = []

    def add(kind, person, time, anchor_end, app, user, order=None, exposure=None, views=None,
            added=None, checkout=None, rec=None, utm=None, extra=None):
        k = len(person)
        parts.append({
            "kind": np.full(k, kind), "person": person, "time": time, "anchor_end": np.full(k, anchor_end),
            "app": app, "user": user,
            "order": np.full(k, -1) if order is None else order,
            "exposure": np.full(k, -1) if exposure is None else exposure,
            "views": np.zeros(k, int) if views is None else views,
            "added": np.zeros(k, int) if added is None else added,
            "checkout": np.zeros(k, bool) if checkout is None else checkout,
            "rec": np.full(k, -1) if rec is None else rec,
            "utm": np.full(k, -1) if utm is None else utm,
            "extra": np.zeros(k, int) if extra is None else extra,
        })

    primary_id = np.where(crm.primary >= 0, crm.customer_id[np.maximum(crm.primary, 0)], "") \
        if len(crm.customer_id) else np.full(n, "")
    dup_id = np.where(crm.dup >= 0, crm.customer_id[np.maximum(crm.dup, 0)], "") if len(crm.customer_id) else np.full(n, "")
    dup_created = np.where(crm.dup >= 0, crm.created[np.maximum(crm.dup, 0)], 2**62) if len(crm.created) \
        else np.full(n, 2**62)
    app_share = p.channel_mix[:, 1] / np.maximum(p.channel_mix[:, 0] + p.channel_mix[:, 1], 1e-9)

    def account_at(person, t):
        later = (t > dup_created[person]) & (rng.random(len(person)) < 0.6)
        return np.where(later, dup_id[person], primary_id[person])

    # browsing: awareness and consideration, some abandoned carts
    lo = np.maximum(world.start, np.minimum(p.signup - 60 * DAY, p.active_start))
    years = (p.active_end - lo) / YEAR
    rate = np.where(p.has_web, 1.0 + 0.8 * np.minimum(p.purchase_rate, 6), 0.0)
    k = rng.poisson(rate * years)
    bp = np.repeat(np.arange(n), k)
    bt = world.sample_times(rng, lo[bp], p.active_end[bp])
    m = len(bp)
    logged = (primary_id[bp] != "") & (bt > p.signup[bp]) & (rng.random(m) < 0.45)
    user = np.where(logged, account_at(bp, bt), "")
    app = p.has_app[bp] & (rng.random(m) < app_share[bp]) & logged
    added = np.where(rng.random(m) < 0.2, 1 + (rng.random(m) < 0.25), 0)
    checkout = (added > 0) & (rng.random(m) < 0.3)
    utm = np.where(rng.random(m) < 0.3, rng.integers(0, len(vocab.UTM_SOURCES), m), -1)
    add(BROWSE, bp, bt, False, app, user, views=1 + rng.poisson(1.3, m), added=added, checkout=checkout, utm=utm)

    # experiment exposures that did not convert: a browse session with the experiment and a cart
    nc = np.flatnonzero(~ex.converted)
    ep = ex.person[nc]
    e_logged = (primary_id[ep] != "") & (rng.random(len(ep)) < 0.5)
    add(BROWSE, ep, ex.time[nc], False, np.zeros(len(ep), bool), np.where(e_logged, account_at(ep, ex.time[nc]), ""),
        exposure=nc, views=1 + rng.poisson(1.0, len(ep)), added=np.ones(len(ep), int),
        checkout=rng.random(len(ep)) < 0.5)

    # purchases on the web and in the app end with Order Completed at the order time
    op = np.flatnonzero(orders.channel < 2)
    o_person = orders.person[op]
    exposure_of_order = orders.exposure[op]
    camp = orders.campaign[op]
    add(PURCHASE, o_person, orders.time[op], True, orders.channel[op] == 1, orders.customer_id[op], order=op,
        exposure=exposure_of_order, views=orders.item_count[op] + rng.poisson(0.8, len(op)),
        utm=np.where(camp >= 0, 100 + camp, np.where(rng.random(len(op)) < 0.15,
                                                     rng.integers(0, len(vocab.UTM_SOURCES), len(op)), -1)))

    # sign-ups (accounts created online inside the window), incl. duplicate accounts
    src = crm.table["signup_source"] if len(crm.person) else np.zeros(0, str)
    su = np.flatnonzero((crm.created >= world.start) & (src != "store") & p.has_web[crm.person]) \
        if len(crm.person) else np.zeros(0, int)
    add(SIGNUP, crm.person[su], crm.created[su], True, src[su] == "app", crm.customer_id[su], rec=su,
        extra=(rng.random(len(su)) < 0.05).astype(int))

    # newsletter sign-ups without an account: an identify with the email only
    nl = np.flatnonzero(p.newsletter & (p.esp_known_at >= world.start) & (esp_email != ""))
    add(NEWSLETTER, nl, p.esp_known_at[nl], True, np.zeros(len(nl), bool), np.full(len(nl), ""))

    # advocacy: reviews and referrals after some orders (logged-in customers)
    o_all = np.arange(len(orders.person))
    op_person = orders.person
    sat = p.satisfaction[op_person]
    has_acc = primary_id[op_person] != ""
    rv = o_all[has_acc & (rng.random(len(o_all)) < 0.04 + 0.14 * np.abs(sat - 0.5))]
    rt = orders.time[rv] + rng.integers(4 * DAY, 20 * DAY, len(rv))
    keep = rt < p.active_end[orders.person[rv]]
    rv, rt = rv[keep], rt[keep]
    add(REVIEW, orders.person[rv], rt, False, np.zeros(len(rv), bool), primary_id[orders.person[rv]], order=rv)
    rf = o_all[has_acc & (rng.random(len(o_all)) < 0.07 * sat**2)]
    ft = orders.time[rf] + rng.integers(DAY, 10 * DAY, len(rf))
    keep = ft < p.active_end[orders.person[rf]]
    rf, ft = rf[keep], ft[keep]
    add(REFERRAL, orders.person[rf], ft, False, np.zeros(len(rf), bool), primary_id[orders.person[rf]], order=rf)

    # B2B contacts browsing the trade site: a group call
    gp = np.flatnonzero((b2b_account != "") & p.has_web)
    gt = p.active_start[gp] + (rng.random(len(gp)) * (p.active_end[gp] - p.active_start[gp])).astype("int64")
    add(GROUP, gp, gt, False, np.zeros(len(gp), bool), primary_id[gp])

    S = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    S["user"] = S["user"].astype(str)
    s_n = len(S["person"])
    sp = S["person"]

    # --- devices: own browsers, the app, a household tablet, store kiosks -------------------
    n_browsers = 1 + (rng.random(n) < 0.45) + (rng.random(n) < 0.15)
    browser_start = starts_of(n_browsers)
    browsers = uuids(rng, int(n_browsers.sum()))
    app_anon = uuids(rng, n)
    n_house = int(p.household.max()) + 1 if n else 0
    tablet_h = (np.bincount(p.household, minlength=n_house) >= 2) & (rng.random(n_house) < 0.1)
    tablets = uuids(rng, n_house)
    kiosks = kiosk_ids(world)
    ua_browser = rng.integers(0, len(vocab.USER_AGENTS), len(browsers))
    app_os = rng.integers(0, 2, n)
    dev_ids = device_ids(world, p)

    is_app = S["app"].astype(bool)
    pick_b = browser_start[sp] + (rng.random(s_n) * n_browsers[sp]).astype(int)
    anon = browsers[pick_b]
    ua = ua_browser[pick_b]
    on_tablet = ~is_app & tablet_h[p.household[sp]] & (rng.random(s_n) < 0.3) & np.isin(S["kind"], (BROWSE, PURCHASE))
    anon = np.where(on_tablet, tablets[p.household[sp]], anon)
    ua = np.where(on_tablet, 4, ua)
    on_kiosk = (~is_app & (S["kind"] == BROWSE) & (p.channel_mix[sp, 2] > 0.45) & (rng.random(s_n) < 0.04))
    kiosk_i = rng.integers(0, len(kiosks), s_n)
    anon = np.where(on_kiosk, kiosks[kiosk_i], anon)
    ua = np.where(on_kiosk, 4, ua)
    anon = np.where(is_app, app_anon[sp], anon)
    shared_person = np.zeros(n, dtype=bool)
    shared_person[sp[on_tablet | on_kiosk]] = True

    # identify at login: the first time a user is seen on a device, and now and then after
    order_s = np.lexsort((S["time"], S["user"], anon))
    key = pd.MultiIndex.from_arrays([anon[order_s], S["user"][order_s]]).duplicated(keep="first")
    first_seen = np.empty(s_n, bool)
    first_seen[order_s] = ~np.asarray(key)
    ident_login = (S["user"] != "") & np.isin(S["kind"], (BROWSE, PURCHASE)) & (first_seen | (rng.random(s_n) < 0.1))
    ident_login |= on_kiosk & (S["user"] != "")

    # --- events ---------------------------------------------------------------------------
    kind = S["kind"]
    order_idx = S["order"]
    counts = np.zeros((s_n, N_SLOTS), dtype="int64")
    counts[:, S_PAGE] = np.isin(kind, (BROWSE, PURCHASE, SIGNUP, NEWSLETTER))
    counts[:, S_IDENT_LOGIN] = ident_login
    counts[:, S_EXP] = S["exposure"] >= 0
    counts[:, S_VIEW] = np.where(np.isin(kind, (BROWSE, PURCHASE)), S["views"], 0)
    purchase = kind == PURCHASE
    counts[:, S_ADD] = np.where(purchase, orders.item_count[np.maximum(order_idx, 0)] if len(orders.person) else 0,
                                S["added"])
    counts[:, S_CHECKOUT] = purchase | S["checkout"]
    guest_email = np.where(purchase, orders.email[np.maximum(order_idx, 0)] if len(orders.person) else "", "")
    counts[:, S_IDENT_GUEST] = purchase & (S["user"] == "") & (np.strings.strip(guest_email) != "") & \
        (rng.random(s_n) < 0.8)
    counts[:, S_ORDER] = purchase
    counts[:, S_IDENT_SIGNUP] = kind == SIGNUP
    counts[:, S_SIGNED_UP] = kind == SIGNUP
    counts[:, S_IDENT_NEWS] = kind == NEWSLETTER
    counts[:, S_NEWS] = kind == NEWSLETTER
    counts[:, S_REVIEW] = kind == REVIEW
    counts[:, S_REFERRAL] = kind == REFERRAL
    counts[:, S_GROUP] = kind == GROUP

    flat = counts.ravel()
    block_start = starts_of(flat).reshape(s_n, N_SLOTS)
    ev_session = np.repeat(np.repeat(np.arange(s_n), N_SLOTS), flat)
    ev_slot = np.repeat(np.tile(np.arange(N_SLOTS), s_n), flat)
    ev_rank = rank_in_groups(flat[flat > 0])
    n_ev = len(ev_session)
    per_session = counts.sum(axis=1)

    gaps = (rng.exponential(40, n_ev) + 4).astype("int64")
    gaps = np.where(np.isin(ev_slot, (S_IDENT_LOGIN, S_IDENT_GUEST, S_IDENT_SIGNUP, S_IDENT_NEWS, S_EXP)), 1, gaps)
    sess_first = starts_of(per_session)
    cs = np.cumsum(gaps)
    offset = cs - cs[sess_first[ev_session]]  # 0 for each session's first event
    duration = np.zeros(s_n, dtype="int64")
    nonempty = per_session > 0
    duration[nonempty] = offset[sess_first[nonempty] + per_session[nonempty] - 1]
    # sessions that start just before someone churns end before it too
    anchor = np.where(S["anchor_end"], S["time"], np.minimum(S["time"], p.active_end[sp] - duration - 1))
    ev_time = np.where(S["anchor_end"][ev_session], anchor[ev_session] - duration[ev_session] + offset,
                       anchor[ev_session] + offset)
    ev_time = np.minimum(ev_time, world.end - 1)
    millis = rng.integers(0, 1000, n_ev)
    # the order event carries exactly the order time; others may be a few seconds apart
    ts = iso_z(ev_time, np.where(ev_slot == S_ORDER, 0, millis))

    # products for views and cart adds
    ev_person = sp[ev_session]
    ev_order = order_idx[ev_session]
    item_of_order = np.where(ev_order >= 0, orders.item_start[np.maximum(ev_order, 0)], 0) if len(orders.person) \
        else np.zeros(n_ev, int)
    lines_of_order = np.where(ev_order >= 0, orders.item_count[np.maximum(ev_order, 0)], 0) if len(orders.person) \
        else np.zeros(n_ev, int)
    from_order = (kind[ev_session] == PURCHASE) & (ev_rank < lines_of_order) & np.isin(ev_slot, (S_VIEW, S_ADD))
    item_row = np.where(from_order, item_of_order + ev_rank, 0)
    category = choice_rows(rng, np.cumsum(p.cat_pref[ev_person], axis=1))
    sampled = world.catalog.sample(rng, category, p.spend_tier[ev_person])
    sampled = np.minimum(sampled, len(world.catalog.product_id) - 1)
    product = np.where(from_order, items.product[item_row] if len(items.product) else 0, sampled)
    # a browse session's cart adds are the first products viewed in it
    view_start = block_start[ev_session, S_VIEW]
    browse_add = (ev_slot == S_ADD) & ~from_order
    src_view = np.where(browse_add & (ev_rank < counts[ev_session, S_VIEW]), view_start + ev_rank, np.arange(n_ev))
    product = product[src_view]
    qty = np.where(from_order, items.qty[item_row] if len(items.qty) else 1, 1)
    # review and referral of an order refer to its first item
    first_item = np.where((ev_order >= 0) & np.isin(ev_slot, (S_REVIEW,)), items.product[item_of_order]
                          if len(items.product) else 0, product)
    product = np.where(ev_slot == S_REVIEW, first_item, product)

    message_id = uuids(rng, n_ev)
    rating = np.clip(np.round(1 + 4 * p.satisfaction[ev_person] + rng.normal(0, 0.7, n_ev)), 1, 5).astype(int)
    referral_code = np.strings.add("REF-", np.strings.slice(uuids(rng, n_ev), 0, 8))
    ref_channel = np.array(["whatsapp", "email", "link", "facebook"])[rng.integers(0, 4, n_ev)]

    # --- serialise --------------------------------------------------------------------
    cat_of = world.catalog.category
    prod_id = world.catalog.product_id.tolist()
    prod_name = world.catalog.name.tolist()
    prod_cat = cat_names[cat_of].tolist()
    prod_price = (world.catalog.price_pence / 100).tolist()
    order_ids = orders.order_id.tolist()
    order_total = (orders.total / 100).tolist()
    order_disc = (orders.discount / 100).tolist()
    order_coupon = orders.coupon.tolist()
    order_sub = (orders.subtotal / 100).tolist()
    items_prod = items.product.tolist()
    items_qty = items.qty.tolist()
    items_price = (items.price / 100).tolist()
    item_start = orders.item_start.tolist()
    item_count = orders.item_count.tolist()
    camp_ids = [c.campaign_id for c in world.campaigns]
    camp_channel = [c.channel for c in world.campaigns]
    exps = world.experiments
    ex_exp = ex.experiment.tolist()
    ex_var = ex.variant.tolist()
    rec_email = np.strings.strip(crm.email).tolist() if len(crm.email) else []
    rec_first = crm.table["first_name"].tolist() if len(crm.person) else []
    rec_last = crm.table["last_name"].tolist() if len(crm.person) else []
    rec_created = iso_z(crm.created, np.zeros(len(crm.created), int)).tolist() if len(crm.created) else []
    cid_to_rec = dict(zip(crm.customer_id.tolist(), range(len(crm.customer_id)), strict=True))
    esp = esp_email.tolist()
    ip = p.ip.tolist()
    b_acc, b_comp, b_dom = b2b_account.tolist(), b2b_company.tolist(), b2b_domain.tolist()
    devs = dev_ids.tolist()
    os_i = app_os.tolist()
    utm_src = vocab.UTM_SOURCES

    dumps = orjson.dumps
    S_kind = kind.tolist()
    S_user = S["user"].tolist()
    S_utm = S["utm"].tolist()
    S_exposure = S["exposure"].tolist()
    S_rec = S["rec"].tolist()
    S_extra = S["extra"].tolist()
    S_app = is_app.tolist()
    S_anon = anon.tolist()
    S_ua = ua.tolist()
    S_guest = guest_email.tolist()
    contexts: dict[int, dict] = {}
    category_landing = (rng.random(n_ev) < 0.33).tolist()

    def serialise(idx: np.ndarray) -> list[bytes]:
        lines: list[bytes] = []
        for i, s, slot, rank, t, mid, prod, q, per, o, r_, rc, rch in zip(
                idx.tolist(), ev_session[idx].tolist(), ev_slot[idx].tolist(), ev_rank[idx].tolist(),
                ts[idx].tolist(), message_id[idx].tolist(), product[idx].tolist(), qty[idx].tolist(),
                ev_person[idx].tolist(), ev_order[idx].tolist(), rating[idx].tolist(),
                referral_code[idx].tolist(), ref_channel[idx].tolist(), strict=True):
            lines.append(_message(i, s, slot, rank, t, mid, prod, q, per, o, r_, rc, rch))
        return lines

    # the most frequent messages (product views and cart adds) are assembled from pre-encoded
    # JSON fragments; ids and timestamps never need escaping
    view_props = [dumps({"product_id": prod_id[k], "name": prod_name[k], "category": prod_cat[k],
                         "price": prod_price[k], "currency": "GBP"}).decode() for k in range(len(prod_id))]
    ctx_text: dict[int, str] = {}

    def _context(s: int, per: int) -> dict:
        ctx = contexts.get(s)
        if ctx is None:
            if S_app[s]:
                osn = os_i[per]
                man, model, dtype = _APP_DEVICE[osn]
                ctx = {"ip": ip[per], "locale": "en-GB", "library": _APP_LIB[osn], "app": _APP,
                       "device": {"id": devs[per], "manufacturer": man, "model": model, "type": dtype},
                       "os": _APP_OS[osn]}
            else:
                ctx = {"ip": ip[per], "locale": "en-GB", "userAgent": vocab.USER_AGENTS[S_ua[s]],
                       "library": _WEB_LIB}
            contexts[s] = ctx
        return ctx

    def _message(i, s, slot, rank, t, mid, prod, q, per, o, r_, rc, rch) -> bytes:
        if slot == S_VIEW or (slot == S_ADD and q == 1):
            ct = ctx_text.get(s)
            if ct is None:
                ct = ctx_text[s] = dumps(_context(s, per)).decode()
            user = S_user[s]
            uid = f',"userId":"{user}"' if user else ""
            if slot == S_VIEW:
                return (f'{{"type":"track","messageId":"{mid}","anonymousId":"{S_anon[s]}"{uid},'
                        f'"event":"Product Viewed","properties":{view_props[prod]},"timestamp":"{t}",'
                        f'"context":{ct}}}').encode()
            return (f'{{"type":"track","messageId":"{mid}","anonymousId":"{S_anon[s]}"{uid},'
                    f'"event":"Product Added","properties":{view_props[prod][:-1]},"quantity":1}},'
                    f'"timestamp":"{t}","context":{ct}}}').encode()
        ctx = _context(s, per)
        user = S_user[s]
        msg: dict = {"type": "track", "messageId": mid, "anonymousId": S_anon[s]}
        if slot == S_PAGE:
            k_ = S_kind[s]
            path, name = ("/", "Home")
            if k_ == BROWSE and category_landing[i]:
                path, name = (f"/c/{prod_cat[prod].lower().replace(' & ', '-').replace(' ', '-')}", "Category")
            elif k_ == SIGNUP:
                path, name = ("/account/register", "Register")
            c = dict(ctx)
            c["page"] = {"path": path, "url": SITE + path, "title": f"{name} | {RETAILER}"}
            u = S_utm[s]
            if u >= 100:
                cid = u - 100
                c["campaign"] = {"source": camp_channel[cid], "medium": camp_channel[cid], "name": camp_ids[cid]}
            elif u >= 0:
                c["campaign"] = {"source": utm_src[u][0], "medium": utm_src[u][1], "name": "always-on"}
            msg["type"] = "screen" if S_app[s] else "page"
            msg["name"] = name
            msg["properties"] = {"path": path, "url": SITE + path} if not S_app[s] else {}
            if user and k_ != SIGNUP:
                msg["userId"] = user
            msg["timestamp"] = t
            msg["context"] = c
            return dumps(msg)
        if slot in (S_IDENT_LOGIN, S_IDENT_SIGNUP):
            rec = S_rec[s] if slot == S_IDENT_SIGNUP else cid_to_rec.get(user, -1)
            traits = {}
            if rec >= 0:
                if rec_email[rec]:
                    traits["email"] = rec_email[rec]
                traits["firstName"] = rec_first[rec]
                traits["lastName"] = rec_last[rec]
                if slot == S_IDENT_SIGNUP:
                    traits["createdAt"] = rec_created[rec]
            if slot == S_IDENT_SIGNUP and S_extra[s]:
                msg = {"type": "alias", "messageId": mid, "anonymousId": S_anon[s], "previousId": S_anon[s],
                       "userId": user, "timestamp": t, "context": ctx}
                return dumps(msg)
            msg["type"] = "identify"
            msg["userId"] = user
            msg["traits"] = traits
        elif slot == S_IDENT_GUEST:
            msg["type"] = "identify"
            msg["traits"] = {"email": S_guest[s].strip()}
        elif slot == S_IDENT_NEWS:
            msg["type"] = "identify"
            msg["traits"] = {"email": esp[per], "newsletter": True}
        elif slot == S_GROUP:
            msg["type"] = "group"
            msg["groupId"] = b_acc[per]
            msg["traits"] = {"name": b_comp[per], "website": "https://" + b_dom[per], "plan": "trade"}
            if user:
                msg["userId"] = user
        else:
            if user and slot not in (S_NEWS,):
                msg["userId"] = user
            if slot in (S_VIEW, S_ADD):
                msg["event"] = "Product Viewed" if slot == S_VIEW else "Product Added"
                props = {"product_id": prod_id[prod], "name": prod_name[prod], "category": prod_cat[prod],
                         "price": prod_price[prod], "currency": "GBP"}
                if slot == S_ADD:
                    props["quantity"] = q
                msg["properties"] = props
            elif slot == S_EXP:
                e_row = S_exposure[s]
                e = exps[ex_exp[e_row]]
                msg["event"] = "Experiment Viewed"
                msg["properties"] = {"experiment_id": e.experiment_id, "experiment_name": e.name,
                                     "variant": e.variants[ex_var[e_row]]}
            elif slot == S_CHECKOUT:
                msg["event"] = "Checkout Started"
                if o >= 0:
                    msg["properties"] = {"order_id": order_ids[o], "value": order_sub[o], "currency": "GBP"}
                else:
                    msg["properties"] = {"value": prod_price[prod], "currency": "GBP"}
            elif slot == S_ORDER:
                msg["event"] = "Order Completed"
                start_i = item_start[o]
                products = [{"product_id": prod_id[items_prod[j]], "quantity": items_qty[j], "price": items_price[j]}
                            for j in range(start_i, start_i + item_count[o])]
                props = {"order_id": order_ids[o], "revenue": order_total[o], "discount": order_disc[o],
                         "currency": "GBP", "products": products}
                if order_coupon[o]:
                    props["coupon"] = order_coupon[o]
                msg["properties"] = props
            elif slot == S_SIGNED_UP:
                msg["event"] = "Signed Up"
                msg["properties"] = {"method": "app" if S_app[s] else "web"}
            elif slot == S_NEWS:
                msg["event"] = "Newsletter Subscribed"
                msg["properties"] = {"list": "weekly", "source": "popup"}
            elif slot == S_REVIEW:
                msg["event"] = "Review Submitted"
                msg["properties"] = {"order_id": order_ids[o], "product_id": prod_id[prod], "rating": r_}
            elif slot == S_REFERRAL:
                msg["event"] = "Referral Sent"
                msg["properties"] = {"referral_code": rc, "channel": rch}
        msg["timestamp"] = t
        msg["context"] = ctx
        return dumps(msg)

    # written in time order, in slices, so the JSON text of a chunk is never all in memory
    by_time = np.argsort(ev_time, kind="stable")
    for start in range(0, n_ev, WRITE_SLICE):
        sink(serialise(by_time[start:start + WRITE_SLICE]))
    return WebResult(message_id[by_time], ev_person[by_time], shared_person)
