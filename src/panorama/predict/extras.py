"""Predictions II: cross-sell / upsell, next purchase, next best offer, preferred channel and
discount, NPS -- scored by `panorama predict` after churn and CLV, backtested by `panorama
evaluate predictions`, written to `predict_scores` (one `prediction` kind each).

Uses the Predictor's point-in-time copy of the log (`_predict_events`, prepared until the
as-of date, or until the end of the backtest window) and its features, registry and drivers.
"""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import orjson
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from panorama.predict import basket, campaigns, nps, registry
from panorama.predict import models as M
from panorama.predict.features import FEATURE_NAMES, FEATURE_SET

EXTRA_KINDS = (
    "cross_sell",
    "upsell",
    "next_purchase",
    "preferred_channel",
    "next_best_offer",
    "preferred_discount",
    "nps",
)
XS_COLUMNS = (*FEATURE_NAMES, *basket.CATEGORY_FEATURE_NAMES)
OFFER_WINDOW_DAYS = 90
OFFER_WINDOWS = 3
# Training rows kept (uniform samples; `predictions.max_training_rows` caps them too). The fits
# cost time in proportion to the rows while the backtests gain nothing measurable beyond a few
# hundred thousand rows; below these sizes (the 20,000-person demo has 11k customers and 94k
# campaign rows) nothing is sampled.
XS_TRAINING_ROWS = 400_000  # cross-sell / upsell, over the two windows
OFFER_TREATED_ROWS = 300_000  # sent campaign rows (held-out rows are all kept, up to as many)


def _d(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d")


def _auc(y, p) -> float | None:
    y = np.asarray(y)
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def _json(obj) -> str:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()


class Extras:
    def __init__(self, predictor):
        self.pr = predictor
        self.cfg = predictor.config
        self.store = predictor.store
        self.log = predictor.log
        self.threads = self.cfg.threads
        self._campaigns_until: dt.datetime | None = None

    @property
    def cur(self):
        return self.store.cursor()

    # --- shared pieces ---------------------------------------------------------------------

    def _campaigns(self) -> int:
        until = self.pr.fb.until
        if self._campaigns_until != until:
            self._campaign_rows = campaigns.prepare(
                self.cur, self.pr.fb.sources.events_sql, until, self.cfg.response_days
            )
            self._campaigns_until = until
        return self._campaign_rows

    def _next_purchase(
        self, cutoff: dt.datetime, level: str, profiles: np.ndarray, alpha: float, half_life: float
    ) -> basket.NextPurchase:
        hist = basket.history(self.cur, cutoff, level, half_life)
        return basket.NextPurchase(hist, profiles, alpha)

    def _tune(self, as_of: dt.datetime) -> tuple[float, float, dict]:
        """Blend weight and half-life with the best recall@10 on the window ending at `as_of`."""
        h = self.cfg.next_purchase.horizon_days
        c = as_of - dt.timedelta(days=h)
        fut = basket.future(self.cur, c, h, "product_id")
        profiles = np.sort(fut["profile_id"].unique())
        grid = {}
        for half_life in (self.cfg.next_purchase.half_life_days, 60.0, 365.0):
            hist = basket.history(self.cur, c, "product_id", half_life)
            for alpha in (0.0, self.cfg.next_purchase.neighbour_weight, 0.6):
                m = basket.NextPurchase(hist, profiles, alpha)
                top, _ = m.top_k(10)
                grid[(alpha, half_life)] = basket.ranking_metrics(
                    top, basket.truth_matrix(fut, profiles, m.vocab)
                )
        best = max(grid, key=lambda k: grid[k]["recall@10"] or 0)
        return best[0], best[1], {f"alpha={a} half_life={h_}": v for (a, h_), v in grid.items()}

    def _register(
        self,
        kind: str,
        as_of: dt.datetime,
        horizon: int,
        metrics: dict,
        n_train: int,
        seconds: float,
        artifact: dict,
        features: list[str],
        importance: list | None = None,
    ) -> registry.ModelRecord:
        return registry.register(
            self.store,
            kind=kind,
            as_of=as_of,
            horizon_days=horizon,
            windows=[],
            features=features,
            feature_set=FEATURE_SET,
            params={},
            metrics=metrics,
            importance=importance or [],
            data_fingerprint=self.pr.fb.fingerprint(as_of),
            config_hash="",
            n_train=n_train,
            status="accepted",
            reason=None,
            train_seconds=seconds,
            artifact=artifact,
        )

    # --- cross-sell / upsell -----------------------------------------------------------------

    def _xs_frame(self, cutoff: dt.datetime, h: int, labels: bool) -> pd.DataFrame:
        feats = self.pr.features(cutoff)
        customers = feats.loc[feats["frequency"] > 0, "profile_id"].to_numpy()
        model = self._next_purchase(
            cutoff,
            "category",
            customers,
            self.cfg.next_purchase.neighbour_weight,
            self.cfg.next_purchase.half_life_days,
        )
        fut = basket.future(self.cur, cutoff, h, "category") if labels else None
        cf = basket.category_frame(model, fut)
        return feats.merge(cf, on="profile_id", how="inner")

    def train_cross_sell(self, as_of: dt.datetime) -> dict:
        h = self.cfg.cross_sell.horizon_days
        t0 = time.perf_counter()
        frames = []
        for k in range(2):
            c = as_of - dt.timedelta(days=h * (k + 1))
            if self.pr._span.get("first_purchase") is None or c - self.pr._span[
                "first_purchase"
            ] < dt.timedelta(days=self.cfg.min_history_days):
                break
            frames.append(self._xs_frame(c, h, labels=True).assign(window=k))
        if not frames:
            raise ValueError(
                f"cross-sell (horizon {h} days): no training window with "
                f"{self.cfg.min_history_days} days of purchase history before {_d(as_of - dt.timedelta(days=h))}"
            )
        data = pd.concat(frames, ignore_index=True)
        data = data[data["has_categories"]]
        cap = min(XS_TRAINING_ROWS, self.cfg.max_training_rows)
        if len(data) > cap:  # the same share of each window
            data = data.sample(n=cap, random_state=7).sort_index()
        self.log(
            f"cross-sell: {len(frames)} training windows, {len(data):,} rows in {time.perf_counter() - t0:.1f} s"
        )
        out = {}
        for target, kind in (("bought_new", "cross_sell"), ("bought_owned", "upsell")):
            y = data[target].to_numpy()
            if min(y.sum(), len(y) - y.sum()) < self.cfg.min_class_count:
                raise ValueError(
                    f"{kind}: {int(y.sum())} of {len(y)} training customers bought "
                    f"{'a new' if kind == 'cross_sell' else 'an owned'} category; need at least "
                    f"{self.cfg.min_class_count} of each outcome"
                )
            va = (
                (data["window"] == 0).to_numpy()
                if len(frames) > 1
                else np.random.default_rng(1).random(len(data)) < 0.25
            )
            X = data[list(XS_COLUMNS)]
            b = M.fit_booster("binary", X[~va], y[~va], self.threads, X[va], y[va])
            rounds = max(int((b.best_iteration or b.num_trees()) * 1.25), 5)
            out[kind] = M.fit_booster("binary", X, y, self.threads, rounds=rounds)
            self.log(f"{kind}: trained ({rounds} rounds) at {time.perf_counter() - t0:.1f} s")
        return out

    def score_cross_sell(
        self, as_of: dt.datetime, boosters: dict, drivers: bool = True
    ) -> dict[str, pd.DataFrame]:
        t0 = time.perf_counter()
        df = self._xs_frame(as_of, 0, labels=False)
        df = df[df["has_categories"]].reset_index(drop=True)
        self.log(
            f"cross-sell: {len(df):,} profiles to score, frame in {time.perf_counter() - t0:.1f} s"
        )
        X = df[list(XS_COLUMNS)]
        out = {}
        h = self.cfg.cross_sell.horizon_days
        for kind, b in boosters.items():
            p = M.predict(b, X, self.threads)
            s = pd.DataFrame({"profile_id": df["profile_id"], "value": p})
            if kind == "cross_sell":
                s["label"] = [c[0] if c else None for c in df["likely_new_categories"]]
                s["details"] = [
                    _json({"horizon_days": h, "likely_new_categories": c})
                    for c in df["likely_new_categories"]
                ]
            else:
                s["label"] = None
                s["details"] = _json({"horizon_days": h})
            if drivers:
                contrib = M.contributions(b, X, self.threads)[:, :-1]
                word = "new categories" if kind == "cross_sell" else "their categories"
                s["drivers"] = [
                    d.decode()
                    for d in M._top_drivers(
                        contrib,
                        X,
                        3,
                        f"raises the chance of buying in {word}",
                        f"lowers the chance of buying in {word}",
                    )
                ]
            out[kind] = s
            self.log(
                f"{kind}: scored{' with drivers' if drivers else ''} at {time.perf_counter() - t0:.1f} s"
            )
        return out

    # --- next purchase ---------------------------------------------------------------------

    def score_next_purchase(
        self, as_of: dt.datetime, alpha: float, half_life: float
    ) -> pd.DataFrame:
        feats = self.pr.features(as_of)
        profiles = feats["profile_id"].to_numpy()
        k = self.cfg.next_purchase.top_k
        res = {}
        for level in ("product_id", "category"):
            m = self._next_purchase(as_of, level, profiles, alpha, half_life)
            top, val = m.top_k(k)
            res[level] = (m, top, val)
        mp, tp, vp = res["product_id"]
        if not len(mp.vocab.names):
            raise ValueError(
                f"next purchase: no purchased items with a product_id before {_d(as_of)} (events named in "
                "`predictions.item_events`)"
            )
        mc, tc, vc = res["category"]
        pn, cn = mp.vocab.names, mc.vocab.names
        hist_c = mp.has_history
        n = len(profiles)
        top3 = tc[:, :3]
        rows_i = np.repeat(np.arange(n), top3.shape[1])
        w_top = np.asarray(mc.P[rows_i, top3.ravel()]).reshape(top3.shape) if top3.size else top3
        h = self.cfg.next_purchase.horizon_days
        pn_l, cn_l = [str(x) for x in pn], [str(x) for x in cn]
        tp_l, tc_l, top3_l, w_l = tp.tolist(), tc.tolist(), top3.tolist(), w_top.tolist()
        hist_l = hist_c.tolist()
        no_history = (
            '[{"feature":"popularity","text":"no purchase history: the most popular items"}]'
        )
        details, drivers = [], []
        for i in range(n):
            details.append(
                _json(
                    {
                        "products": [pn_l[j] for j in tp_l[i]],
                        "categories": [cn_l[j] for j in tc_l[i]],
                        "horizon_days": h,
                    }
                )
            )
            if not hist_l[i]:
                drivers.append(no_history)
                continue
            ds = []
            for j, w in zip(top3_l[i], w_l[i], strict=True):
                name = cn_l[j]
                text = (
                    f"bought {name} before (time-decayed weight {w:.2f})"
                    if w
                    else f"{name} is often bought with what they buy"
                )
                ds.append({"feature": "category", "value": name, "text": text})
            drivers.append(_json(ds))
        return pd.DataFrame(
            {
                "profile_id": profiles,
                "value": vp[:, 0].astype(float) if vp.shape[1] else np.nan,
                "label": [str(cn[t[0]]) if len(t) else None for t in tc],
                "details": details,
                "drivers": drivers,
            }
        )

    # --- channel, offers, discount -----------------------------------------------------------

    def _offer_training(self, as_of: dt.datetime) -> tuple[pd.DataFrame, int]:
        self._campaigns()
        frames = []
        resp = dt.timedelta(days=self.cfg.response_days)
        for k in range(OFFER_WINDOWS):
            c = as_of - dt.timedelta(days=OFFER_WINDOW_DAYS * (k + 1))
            end = min(c + dt.timedelta(days=OFFER_WINDOW_DAYS), as_of - resp)
            rows = campaigns.campaigns(self.cur, c, end)
            if rows.empty:
                continue
            summary = campaigns.sent_summary(self.cur, c)
            ch, _ = campaigns.channel_scores(None, self.cfg.channels, c, summary=summary)
            frames.append(campaigns.offer_frame(self.pr.features(c), rows, ch))
        if not frames:
            raise ValueError(
                f"offers: no campaign sends or holdouts in the {OFFER_WINDOWS * OFFER_WINDOW_DAYS} days "
                f"before {_d(as_of)} (events with a campaign_id named like 'Email Sent' or "
                "'Campaign Holdout')"
            )
        data = pd.concat(frames, ignore_index=True)
        cap = min(2 * OFFER_TREATED_ROWS, self.cfg.max_training_rows)
        hold = data[data["holdout"]]
        rest = data[~data["holdout"]]
        if len(data) > cap or len(rest) > OFFER_TREATED_ROWS:
            # uniform samples of the treated and (up to half the cap) the held-out rows
            hold = hold.sample(n=min(len(hold), cap // 2), random_state=7)
            n_rest = min(len(rest), cap - len(hold), OFFER_TREATED_ROWS)
            rest = rest.sample(n=n_rest, random_state=7)
            data = pd.concat([rest, hold], ignore_index=True)
        self.log(
            f"offers: {len(frames)} training windows, {int(data['treated'].sum()):,} sent and "
            f"{int(data['holdout'].sum()):,} held-out rows"
        )
        return data, len(frames)

    def offers(self, hist: pd.DataFrame) -> list[dict]:
        """The configured offers, or one per (channel, discount) seen in the campaign history."""
        m = self.cfg.margin
        if self.cfg.offers:
            return [
                {
                    "name": o.name,
                    "channel": o.channel,
                    "discount": o.discount,
                    "margin": o.margin if o.margin is not None else m,
                    "cost": o.cost,
                    "eligibility": o.eligibility,
                }
                for o in self.cfg.offers
            ]
        seen = hist[hist["treated"]].groupby(["channel", "discount"]).size().reset_index()
        return [
            {
                "name": f"{d:g}% off by {ch}" if d else f"no-discount {ch} message",
                "channel": ch,
                "discount": float(d),
                "margin": m,
                "cost": 0.0,
                "eligibility": None,
            }
            for ch, d in zip(seen["channel"], seen["discount"], strict=True)
        ]

    def _eligible(
        self, offers: list[dict], as_of: dt.datetime, profiles: np.ndarray
    ) -> dict[str, np.ndarray]:
        need = {o["name"]: o["eligibility"] for o in offers if o["eligibility"]}
        if not need:
            return {}
        from panorama.segments.catalog import build_catalog
        from panorama.segments.engine import check_expression, evaluation_sql

        catalog = build_catalog(self.store)
        compiled = {}
        index = {o["name"]: i for i, o in enumerate(offers)}
        for i, (name, expression) in enumerate(need.items()):
            try:
                compiled[f"o{i}"] = check_expression(self.store, expression, catalog)
            except ValueError as exc:
                raise ValueError(
                    f"predictions.offers[{index[name]}] ({name!r}) eligibility {expression!r}: {exc}"
                ) from None
        res = (
            self.cur.execute(evaluation_sql(catalog, compiled, None, as_of))
            .df()
            .set_index("profile_id")
        )
        return {
            name: res[f"o{i}"].reindex(profiles).fillna(False).to_numpy(bool)
            for i, name in enumerate(need)
        }

    def score_offers(
        self,
        as_of: dt.datetime,
        model: campaigns.OfferModel,
        drivers: bool = True,
        eligibility: bool = True,
    ) -> dict[str, pd.DataFrame]:
        self._campaigns()
        summary = campaigns.sent_summary(self.cur, as_of)
        ch, priors = campaigns.channel_scores(None, self.cfg.channels, as_of, summary=summary)
        del summary
        hist = campaigns.sent_offers(self.cur, as_of)  # the (channel, discount) pairs sent
        pref = campaigns.preferred(ch)
        feats = self.pr.features(as_of)
        feats = feats[feats["profile_id"].isin(ch["profile_id"].unique())].reset_index(drop=True)
        profiles = feats["profile_id"].to_numpy()
        out = {}
        # preferred channel
        per = {}
        for r in ch.itertuples(index=False):
            per.setdefault(r.profile_id, {})[r.channel] = {
                "rate": round(float(r.rate), 4),
                "lift": round(float(r.lift), 3),
                "sends": int(r.sends),
                "engaged": int(r.engaged),
                "reachable": bool(r.reachable),
            }
        pc = pref.set_index("profile_id")
        rows = []
        for pid, best, lift in zip(pc.index, pc["channel"], pc["lift"], strict=True):
            s = per[pid][best]
            prior = priors[best]["mean"]
            text = (
                f"opened or clicked {s['engaged']} of {s['sends']} {best} messages "
                f"(average {100 * prior:.0f}%; smoothed {100 * s['rate']:.0f}%)"
            )
            driver = [{"feature": f"{best}_engagement", "value": s["engaged"], "text": text}]
            rows.append((pid, float(lift), best, _json({"channels": per[pid]}), _json(driver)))
        out["preferred_channel"] = pd.DataFrame(
            rows, columns=["profile_id", "value", "label", "details", "drivers"]
        )
        self.channel_priors = priors
        channel = pc["channel"].reindex(profiles).fillna("email").to_numpy(dtype=object)
        aov = (
            feats["avg_order_value"].fillna(float(feats["avg_order_value"].mean())).to_numpy(float)
        )
        m = self.cfg.margin
        # every (channel, discount) an offer or a discount level needs is scored once, for every
        # profile, from one feature matrix (`OfferFeatures`); the preferred-channel variants are
        # put together from the fixed-channel ones when those are all there
        of = campaigns.OfferFeatures(feats, ch)
        rows_i = np.arange(len(profiles))
        grid: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}

        def scored(chan, discount: float) -> tuple[np.ndarray, np.ndarray]:
            """(P_t, P_redeem) of every profile sent `discount` on `chan` (a channel or an array)."""
            if isinstance(chan, str):
                key = (chan, float(discount))
                if key not in grid:
                    Xo = of.frame(chan, discount)
                    p_t = model.p_treated(Xo, self.threads)
                    grid[key] = (p_t, model.p_redeem(Xo, p_t, self.threads))
                return grid[key]
            names = list(pd.unique(chan))
            if all((c, float(discount)) in grid for c in names):
                p_t, p_r = np.empty(len(chan)), np.empty(len(chan))
                for c in names:
                    hit = chan == c
                    p_t[hit], p_r[hit] = (a[hit] for a in grid[(c, float(discount))])
                return p_t, p_r
            Xo = of.frame(chan, discount)
            p_t = model.p_treated(Xo, self.threads)
            return p_t, model.p_redeem(Xo, p_t, self.threads)

        offers = self.offers(hist)
        for o in offers:  # fixed-channel offers first: the grid the others are taken from
            if o["channel"] is not None:
                scored(o["channel"], o["discount"])
        # preferred discount: the level maximising expected profit on the preferred channel
        levels = sorted({float(x) for x in hist.loc[hist["treated"], "discount"].unique()})
        p_c = model.p_control(of.frame(channel, 0.0), self.threads)
        prof = {}
        p_at = {}
        for lv in levels:
            p_t, p_r = scored(channel, lv)
            p_at[lv] = p_t
            prof[lv] = campaigns.profit(p_t, p_c, p_r, aov, m, lv, 0.0)
        P = np.stack([prof[lv] for lv in levels], axis=1)
        best = P.argmax(axis=1)
        lo, hi = levels[0], levels[-1]
        level_names = [f"{lv:g}" for lv in levels]
        P_l = P.tolist()
        ratio = (p_at[hi] / np.maximum(p_at[lo], 1e-9)).tolist()
        lo_l, hi_l, pc_l = (
            (100 * p_at[lo]).tolist(),
            (100 * p_at[hi]).tolist(),
            (100 * p_c).tolist(),
        )
        out["preferred_discount"] = pd.DataFrame(
            {
                "profile_id": profiles,
                "value": np.array(levels)[best],
                "label": [f"{levels[b]:g}%" for b in best],
                "details": [
                    _json(
                        {
                            "channel": c,
                            "expected_profit": {
                                name: round(v, 3) for name, v in zip(level_names, row, strict=True)
                            },
                        }
                    )
                    for c, row in zip(channel, P_l, strict=True)
                ],
                "drivers": [
                    _json(
                        [
                            {
                                "feature": "discount_response",
                                "value": round(r, 3),
                                "text": f"response {a:.1f}% at {lo:g}% off, {b:.1f}% at "
                                f"{hi:g}% off (without a message {c:.1f}%)",
                            }
                        ]
                    )
                    for r, a, b, c in zip(ratio, lo_l, hi_l, pc_l, strict=True)
                ],
            }
        )
        # next best offer
        elig = self._eligible(offers, as_of, profiles) if eligibility else {}
        ev = np.full((len(profiles), len(offers)), -np.inf)
        pt_all = np.zeros_like(ev)
        for j, o in enumerate(offers):
            chan = channel if o["channel"] is None else o["channel"]
            p_t, p_r = scored(chan, o["discount"])
            v = campaigns.profit(p_t, p_c, p_r, aov, o["margin"], o["discount"], o["cost"])
            if o["name"] in elig:
                v = np.where(elig[o["name"]], v, -np.inf)
            ev[:, j], pt_all[:, j] = v, p_t
        grid.clear()  # memory: 2 arrays per (channel, discount)
        any_ok = np.isfinite(ev).any(axis=1)
        j = np.where(any_ok, np.nan_to_num(ev, neginf=-1e18).argmax(axis=1), 0)
        best_ev = np.where(any_ok, ev[rows_i, j], np.nan)
        names = np.array([o["name"] for o in offers], dtype=object)
        label = np.where(~any_ok, None, np.where(best_ev > 0, names[j], "no offer"))
        nbo = pd.DataFrame({"profile_id": profiles, "value": best_ev, "label": label})
        names_l = names.tolist()
        ev_r = np.where(np.isfinite(ev), ev, np.nan)
        pt_best = pt_all[rows_i, j]
        nbo["details"] = [
            _json(
                {
                    "offer": names_l[jj],
                    "expected_value": round(bev, 4) if ok else None,
                    "probability": round(pb, 4),
                    "probability_without": round(pc, 4),
                    "uplift": round(pb - pc, 4),
                    "offers": {
                        name: (None if v != v else round(v, 3))
                        for name, v in zip(names_l, row, strict=True)
                    },
                }
            )
            for jj, ok, bev, pb, pc, row in zip(
                j.tolist(),
                any_ok.tolist(),
                best_ev.tolist(),
                pt_best.tolist(),
                p_c.tolist(),
                ev_r.tolist(),
                strict=True,
            )
        ]
        if drivers:  # the chosen offer's features; the response model's contributions
            disc = np.array([float(o["discount"]) for o in offers])[j]
            fixed = np.array([o["channel"] for o in offers], dtype=object)[j]
            X = of.frame(np.where(pd.isna(fixed), channel, fixed), disc)
            contrib = M.contributions(model.treated, X, self.threads)[:, :-1]
            nbo["drivers"] = [
                d.decode()
                for d in M._top_drivers(contrib, X, 3, "raises the response", "lowers the response")
            ]
        out["next_best_offer"] = nbo
        return out

    # --- NPS ---------------------------------------------------------------------------------

    def score_nps(self, as_of: dt.datetime, drivers: bool = True) -> pd.DataFrame:
        ans = nps.answers(self.cur, self.pr.fb.sources.events_sql, as_of)
        feats = self.pr.features(as_of)
        b = nps.fit_score(feats, ans, self.threads)
        X = feats[list(nps.NPS_FEATURES)]
        pred = np.clip(M.predict(b, X, self.threads), 0, 10)
        last = (
            ans.sort_values("ts").drop_duplicates("profile_id", keep="last").set_index("profile_id")
        )
        answered = feats["profile_id"].isin(last.index).to_numpy()
        actual = last["score"].reindex(feats["profile_id"]).to_numpy(float)
        value = np.where(answered, actual, pred)
        text = {}
        comments = ans[ans["comment"].notna()]
        if len(comments) >= 50:
            try:
                tm = nps.TextModel(comments["comment"].tolist(), comments["score"].to_numpy(float))
                comments = comments.assign(
                    sentiment=tm.sentiment(comments["comment"].tolist()),
                    topic=tm.topics(comments["comment"].tolist()),
                )
                lc = (
                    comments.sort_values("ts")
                    .drop_duplicates("profile_id", keep="last")
                    .set_index("profile_id")
                )
                text = {pid: (float(r.sentiment), r.topic) for pid, r in lc.iterrows()}
            except ValueError:
                text = {}
        df = pd.DataFrame(
            {"profile_id": feats["profile_id"], "value": value, "label": nps.nps_class(value)}
        )
        df["details"] = [
            _json(
                {
                    "source": "answered" if a else "predicted",
                    "predicted": round(float(p), 2),
                    **(
                        {"comment_sentiment": round(text[pid][0], 3), "comment_topic": text[pid][1]}
                        if pid in text
                        else {}
                    ),
                }
            )
            for pid, a, p in zip(df["profile_id"], answered, pred, strict=True)
        ]
        if drivers:
            contrib = M.contributions(b, X, self.threads)[:, :-1]
            df["drivers"] = [
                d.decode()
                for d in M._top_drivers(contrib, X, 3, "raises the score", "lowers the score")
            ]
        return df

    # --- scoring run -------------------------------------------------------------------------

    def score(
        self, as_of: dt.datetime, run_id: int, result, only: tuple[str, ...] | None = None
    ) -> None:
        """Train and score every extra prediction as of `as_of` (after `Predictor.prepare(as_of)`);
        `only`: the steps to run (cross_sell, next_purchase, offers, nps; default all)."""

        def write(kind, frame, record, note, seconds):
            self.pr.write_scores(kind, as_of, run_id, record.model_id if record else None, frame)
            result.scored[kind] = len(frame)
            vals = pd.to_numeric(frame["value"], errors="coerce")
            result.summary[kind] = {
                "mean": float(vals.mean()) if len(frame) else None,
                "total": float(vals.sum()),
            }
            result.notes[kind] = f"{note} in {seconds:.1f} s"
            if record is not None:
                result.models[kind] = record
            self.log(f"wrote {kind} scores ({len(frame):,} profiles, {seconds:.1f} s)")

        steps = (
            ("cross_sell", self._run_cross_sell),
            ("next_purchase", self._run_next_purchase),
            ("offers", self._run_offers),
            ("nps", self._run_nps),
        )
        steps = tuple(st for st in steps if only is None or st[0] in only)
        # the offers' training windows start where the cross-sell ones do (90 and 180 days before):
        # their features are kept until the offers step instead of being built twice
        offer_cutoffs = {
            as_of - dt.timedelta(days=OFFER_WINDOW_DAYS * (k + 1)) for k in range(OFFER_WINDOWS)
        }
        for i, (name, fn) in enumerate(steps):
            started = time.perf_counter()
            try:
                for kind, frame, record, note in fn(as_of):
                    write(kind, frame, record, note, time.perf_counter() - started)
            except (ValueError, KeyError) as exc:
                result.problems[name] = str(exc)
            later = {n for n, _ in steps[i + 1 :]}
            kept = self.pr._features if "offers" in later else {}
            kept = {c: f for c, f in kept.items() if c in offer_cutoffs}
            self.pr.release(keep=as_of)  # memory at scale: labels and other cutoffs' features
            self.pr._features.update(kept)

    def _run_cross_sell(self, as_of):
        t0 = time.perf_counter()
        boosters = self.train_cross_sell(as_of)
        secs = time.perf_counter() - t0
        scores = self.score_cross_sell(as_of, boosters)
        for kind, b in boosters.items():
            rec = self._register(
                kind,
                as_of,
                self.cfg.cross_sell.horizon_days,
                {},
                0,
                secs,
                {kind: b.model_to_string()},
                list(XS_COLUMNS),
                M.importance(b),
            )
            yield kind, scores[kind], rec, f"trained {rec.model_id}"

    def _run_next_purchase(self, as_of):
        np_cfg = self.cfg.next_purchase
        alpha, half_life = np_cfg.neighbour_weight, np_cfg.half_life_days
        note = "configured blend"
        try:
            alpha, half_life, grid = self._tune(as_of)
            note = f"tuned blend {alpha:g}, half-life {half_life:g} d"
        except (
            Exception
        ) as exc:  # too little history for a tuning window: keep the configured values
            grid = {"error": str(exc)}
        rec = self._register(
            "next_purchase",
            as_of,
            np_cfg.horizon_days,
            {"tuning": grid},
            0,
            0.0,
            {"alpha": alpha, "half_life_days": half_life},
            ["product_id", "category"],
        )
        yield "next_purchase", self.score_next_purchase(as_of, alpha, half_life), rec, note

    def _run_offers(self, as_of):
        self._campaigns()
        t0 = time.perf_counter()
        data, windows = self._offer_training(as_of)
        model = campaigns.OfferModel.fit(data, self.threads)
        rec = self._register(
            "offer_response",
            as_of,
            self.cfg.response_days,
            {
                "treated_rows": model.n_treated,
                "control_rows": model.n_control,
                "windows": windows,
                "redemption_model": model.redeem is not None,
            },
            len(data),
            time.perf_counter() - t0,
            {
                "treated": model.treated.model_to_string(),
                "control": model.control.model_to_string(),
                **({"redeem": model.redeem.model_to_string()} if model.redeem else {}),
            },
            list(campaigns.X_COLUMNS),
            M.importance(model.treated),
        )
        scores = self.score_offers(as_of, model)
        for kind in ("preferred_channel", "preferred_discount", "next_best_offer"):
            yield kind, scores[kind], rec, f"T-learner {rec.model_id}"

    def _run_nps(self, as_of):
        yield "nps", self.score_nps(as_of), None, "LightGBM on respondents"

    # --- backtests ---------------------------------------------------------------------------

    def evaluate(self, as_of: dt.datetime) -> dict:
        """Backtests as of `as_of` against [as_of, as_of + horizon); needs `Predictor.prepare` until
        the end of the longest window."""
        report = {}
        for name, fn in (
            ("next_purchase", self.eval_next_purchase),
            ("cross_sell", self.eval_cross_sell),
            ("offers", self.eval_offers),
            ("nps", self.eval_nps),
        ):
            started = time.perf_counter()
            try:
                report[name] = fn(as_of)
                report[name]["seconds"] = round(time.perf_counter() - started, 1)
            except (ValueError, KeyError) as exc:
                report[name] = {"problem": str(exc)}
            self.pr.release()
        return report

    def eval_next_purchase(self, as_of: dt.datetime) -> dict:
        h = self.cfg.next_purchase.horizon_days
        alpha, half_life, grid = self._tune(as_of)
        out = {
            "horizon_days": h,
            "window": f"{_d(as_of)}..{_d(as_of + dt.timedelta(days=h))}",
            "chosen": {"alpha": alpha, "half_life_days": half_life},
        }
        for level in ("product_id", "category"):
            fut = basket.future(self.cur, as_of, h, level)
            feats = self.pr.features(as_of)
            buyers = set(fut["profile_id"])
            profiles = np.sort(
                feats.loc[
                    (feats["frequency"] > 0) & feats["profile_id"].isin(buyers), "profile_id"
                ].to_numpy()
            )
            hist = basket.history(self.cur, as_of, level, half_life)
            m = basket.NextPurchase(hist, profiles, alpha)
            truth = basket.truth_matrix(fut, profiles, m.vocab)
            k = (
                10 if level == "product_id" else 3
            )  # 3 of a dozen categories; 10 of hundreds of products
            top, _ = m.top_k(k)
            res = {
                "model (TIFU-style)": basket.ranking_metrics(top, truth, k),
                "personal frequency only": basket.ranking_metrics(
                    basket.NextPurchase(hist, profiles, 0.0, m.vocab).top_k(k)[0], truth, k
                ),
                "most popular": basket.ranking_metrics(m.popular_top_k(k), truth, k),
                "repeat last basket": basket.ranking_metrics(m.last_basket_top_k(k), truth, k),
            }
            out["products" if level == "product_id" else "categories"] = res
        out["tuning (window before)"] = grid
        return out

    def eval_cross_sell(self, as_of: dt.datetime) -> dict:
        h = self.cfg.cross_sell.horizon_days
        boosters = self.train_cross_sell(as_of)
        test = self._xs_frame(as_of, h, labels=True)
        test = test[test["has_categories"]]
        X = test[list(XS_COLUMNS)]
        out = {"horizon_days": h, "customers": len(test)}
        for kind, target, base in (
            ("cross_sell", "bought_new", "new_category_popularity"),
            ("upsell", "bought_owned", "owned_category_popularity"),
        ):
            y = test[target].to_numpy()
            out[kind] = {
                "rate": float(y.mean()),
                "model_auc": _auc(y, M.predict(boosters[kind], X, self.threads)),
                "category_popularity_auc": _auc(y, test[base].to_numpy()),
            }
        # most likely new categories: hit@3 among customers who bought a new category
        pop_order = None
        hits_m, hits_b, n = 0, 0, 0
        feats_owned = test["likely_new_categories"]
        for i, (new_truth, top_new) in enumerate(
            zip(test["_new_truth"], test["_top_new"], strict=True)
        ):
            if not len(new_truth):
                continue
            n += 1
            hits_m += bool(set(top_new) & set(new_truth))
            del i
        # baseline: the most popular categories they do not own
        cats_model = self._next_purchase(
            as_of,
            "category",
            test["profile_id"].to_numpy(),
            0.0,
            self.cfg.next_purchase.half_life_days,
        )
        owned = (cats_model.P > 0).toarray()
        pop_order = np.argsort(-cats_model.vocab.popularity, kind="stable")
        for row_owned, new_truth in zip(owned, test["_new_truth"], strict=True):
            if not len(new_truth):
                continue
            base_top = [j for j in pop_order if not row_owned[j]][:3]
            hits_b += bool(set(base_top) & set(new_truth))
        del feats_owned
        out["likely_new_categories_hit@3"] = {
            "model": hits_m / max(n, 1),
            "category_popularity": hits_b / max(n, 1),
            "customers": n,
        }
        return out

    def eval_offers(self, as_of: dt.datetime) -> dict:
        h = self.cfg.cross_sell.horizon_days
        self._campaigns()
        data, windows = self._offer_training(as_of)
        model = campaigns.OfferModel.fit(data, self.threads)
        end = as_of + dt.timedelta(days=h)
        test = campaigns.campaigns(self.cur, as_of, end - dt.timedelta(days=self.cfg.response_days))
        summary = campaigns.sent_summary(self.cur, as_of)
        ch, priors = campaigns.channel_scores(None, self.cfg.channels, as_of, summary=summary)
        tf = campaigns.offer_frame(self.pr.features(as_of), test, ch)
        p_t, p_c = model.p_treated(tf, self.threads), model.p_control(tf, self.threads)
        y = tf["responded"].to_numpy(float)
        tr, ho = tf["treated"].to_numpy(), tf["holdout"].to_numpy()
        aov = tf["avg_order_value"].fillna(float(tf["avg_order_value"].mean())).to_numpy(float)
        x_uplift = campaigns.XLearner.fit(data, model, self.threads).uplift(tf, self.threads)
        # uplift by predicted-uplift tercile: observed treated - holdout response rate
        terciles = {}
        for name, score in (
            ("T-learner", p_t - p_c),
            ("X-learner", x_uplift),
            ("response model P_t", p_t),
        ):
            q = pd.qcut(
                pd.Series(score).rank(method="first"), 3, labels=["low", "mid", "high"]
            ).to_numpy()
            by = {}
            for g in ("low", "mid", "high"):
                s = q == g
                by[g] = {
                    "predicted": float(score[s].mean()),
                    "observed_uplift": float(y[s & tr].mean() - y[s & ho].mean())
                    if (s & ho).any()
                    else None,
                    "treated": int((s & tr).sum()),
                    "holdout": int((s & ho).sum()),
                }
            terciles[name] = by
        by = terciles
        out = {
            "window": f"{_d(as_of)}..{_d(end)}",
            "training_rows": len(data),
            "training_windows": windows,
            "test_rows": len(tf),
            "test_campaigns": int(tf["campaign_id"].nunique()),
            "response_auc_treated": {
                "model": _auc(y[tr], p_t[tr]),
                "recency baseline": _auc(y[tr], -tf.loc[tr, "recency_days"].fillna(1e4)),
            },
            "response_auc_holdout": {"model": _auc(y[ho], p_c[ho])},
            "observed_uplift_overall": float(y[tr].mean() - y[ho].mean()) if ho.any() else None,
            "uplift_by_predicted_tercile": by,
            "off_policy": campaigns.off_policy(
                tf, p_t, p_c, model.p_redeem(tf, p_t, self.threads), aov, self.cfg.margin
            ),
        }
        # preferred channel: realised engagement lift of the chosen channel on the window's messages
        fut = test[test["treated"]]
        if not fut.empty:
            fg = fut.groupby(["profile_id", "channel"])["engaged"].mean().unstack()
            means = fut.groupby("channel")["engaged"].mean()
            lift = fg / means
            multi = lift.dropna(thresh=2)
            res = {"customers": len(multi)}
            for name, col in (("empirical Bayes", "lift"), ("raw rate (no smoothing)", "raw_lift")):
                pref = campaigns.preferred(ch.assign(reachable=True), col).set_index("profile_id")[
                    "channel"
                ]
                chosen = pref.reindex(multi.index)
                vals = [
                    multi.at[pid, c]
                    for pid, c in chosen.items()
                    if isinstance(c, str) and c in multi.columns
                ]
                res[name] = float(np.nanmean(vals)) if vals else None
            for c in multi.columns:
                res[f"always {c}"] = float(np.nanmean(multi[c]))
            res["best possible"] = float(multi.max(axis=1).mean())
            out["preferred_channel"] = {
                "metric": "mean realised engagement lift of the chosen channel "
                "(customers messaged on 2+ channels in the window)",
                **res,
                "priors": priors,
            }
        return out

    def eval_nps(self, as_of: dt.datetime) -> dict:
        ans = nps.answers(self.cur, self.pr.fb.sources.events_sql, as_of)
        feats = self.pr.features(as_of)
        last = ans.sort_values("ts").drop_duplicates("profile_id", keep="last")
        ids = last["profile_id"].to_numpy()
        rng = np.random.default_rng(17)
        test_ids = set(ids[rng.random(len(ids)) < 0.25])
        train_ans = ans[~ans["profile_id"].isin(test_ids)]
        b = nps.fit_score(feats, train_ans, self.threads)
        test = feats.merge(
            last[last["profile_id"].isin(test_ids)][["profile_id", "score"]], on="profile_id"
        )
        pred = np.clip(M.predict(b, test[list(nps.NPS_FEATURES)], self.threads), 0, 10)
        y = test["score"].to_numpy(float)
        mean = float(train_ans.drop_duplicates("profile_id", keep="last")["score"].mean())
        cls_true = nps.nps_class(y)
        out = {
            "respondents_held_out": len(test),
            "model": {
                "mae": float(np.abs(pred - y).mean()),
                "spearman": float(spearmanr(pred, y)[0]),
                "class_accuracy": float((nps.nps_class(np.round(pred)) == cls_true).mean()),
                "predicted_nps": float(100 * ((pred >= 8.5).mean() - (pred < 6.5).mean())),
                "actual_nps": float(100 * ((y >= 9).mean() - (y <= 6).mean())),
            },
            "respondents' mean score": {
                "mae": float(np.abs(mean - y).mean()),
                "spearman": None,
                "class_accuracy": float(
                    (nps.nps_class(np.full(len(y), round(mean))) == cls_true).mean()
                ),
            },
        }
        # text: train on comments before the as-of date, test on the comments of the next 180 days
        later = nps.answers(self.cur, self.pr.fb.sources.events_sql, as_of + dt.timedelta(days=180))
        later = later[(later["ts"] >= as_of) & later["comment"].notna()]
        comments = ans[ans["comment"].notna()]
        if len(comments) >= 50 and len(later):
            tm = nps.TextModel(comments["comment"].tolist(), comments["score"].to_numpy(float))
            s = tm.sentiment(later["comment"].tolist())
            lab = later["score"].to_numpy(float)
            pol = (lab >= 9) | (lab <= 6)
            out["comment_sentiment"] = {
                "comments": int(pol.sum()),
                "auc_promoter_vs_detractor": _auc((lab[pol] >= 9).astype(int), s[pol]),
                "topics": tm.topic_names,
            }
        return out
