"""Training, scoring and backtesting of churn and CLV: what `panorama predict`, `panorama evaluate
predictions` and `panorama models` call (and the REST API / UI later).

Time windows, for an as-of date T and a horizon h:

- scoring: features from events before T; the prediction is about [T, T + h).
- training: stacked past windows k = 0..K-1 with cutoffs c_k = T - h - k * step; features
  from events before c_k, labels from [c_k, c_k + h) -- every label ends by T, so nothing
  after T is read. Window 0 (the most recent) validates a model trained on the older ones
  (early stopping, metrics, acceptance); the final model is refitted on all windows.
- backtest (`evaluate`): train as of T exactly as above, score as of T, and compare with
  what happened in [T, T + h), beside the baselines.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson
import pandas as pd

from panorama.config import PredictionsConfig
from panorama.predict import models as M
from panorama.predict import registry
from panorama.predict.btyd import BTYD
from panorama.predict.features import FEATURE_NAMES, FEATURE_SET, FeatureBuilder, Sources
from panorama.predict.metrics import churn_metrics, clv_metrics
from panorama.predict.schema import PROFILE_SCORES_SQL
from panorama.store import Store

KINDS = ("churn", "clv", "subscription")
# binary kinds: target column, the column of the recency baseline, the population column (> 0)
BINARY = {
    "churn": ("churned", "recency_days", "frequency"),
    "subscription": ("cancelled", "days_since_activity", "subscription_active"),
}
POPULATION = {"churn": "customers (profiles with a purchase before the cutoff)",
              "subscription": "active subscribers", "clv": "profiles"}
Log = Callable[[str], None]


class InsufficientData(Exception):
    """Not enough data to train or evaluate a model; the message says precisely what is missing."""


def _date(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d") if (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0) else str(t)


def _next_day(t: dt.datetime) -> dt.datetime:
    """`t` if it is midnight, else the next midnight."""
    day = dt.datetime.combine(t.date(), dt.time())
    return day if day == t else day + dt.timedelta(days=1)


def parse_as_of(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--as-of {text!r}: not a date; use YYYY-MM-DD (or an ISO timestamp)") from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def default_as_of(store: Store) -> dt.datetime:
    """The start of the day after the latest event (so that day's events count)."""
    last = store.scalar('SELECT max("timestamp") FROM events')
    if last is None:
        raise InsufficientData("the store has no events yet; run `panorama ingest` first")
    return dt.datetime.combine(last.date(), dt.time()) + dt.timedelta(days=1)


def horizon(config: PredictionsConfig, kind: str) -> int:
    return getattr(config, kind).horizon_days


def config_hash(config: PredictionsConfig, kind: str) -> str:
    relevant = {
        "kind": kind, "horizon": horizon(config, kind), "purchase": config.purchase_events,
        "items": config.item_events, "windows": config.training_windows, "step": config.window_step_days,
        "min_history": config.min_history_days, "max_rows": config.max_training_rows,
        "params": M.BASE_PARAMS,
    }
    return hashlib.sha256(orjson.dumps(relevant, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def step_days(config: PredictionsConfig, h: int) -> int:
    return config.window_step_days or min(h, 90)


def training_cutoffs(config: PredictionsConfig, kind: str, as_of: dt.datetime, span: dict) -> list[dt.datetime]:
    """The training windows' cutoffs that have enough history before them, latest first."""
    h = horizon(config, kind)
    step = step_days(config, h)
    first = span.get("first_subscription" if kind == "subscription" else "first_purchase")
    if first is None and kind == "subscription":
        events = ", ".join(repr(e) for e in config.subscription.start_events + config.subscription.cancel_events)
        raise InsufficientData(f"subscription: no subscription events before {_date(as_of)} (events named "
                               f"{events}; `predictions.subscription.start_events` / `cancel_events`)")
    if first is None:
        events = ", ".join(repr(e) for e in config.purchase_events)
        raise InsufficientData(
            f"{kind}: no purchase events before {_date(as_of)} (events named {events}); "
            "set `predictions.purchase_events` in panorama.yaml to the name of your order event"
        )
    need = dt.timedelta(days=config.min_history_days)
    cutoffs = [as_of - dt.timedelta(days=h + k * step) for k in range(config.training_windows)]
    usable = [c for c in cutoffs if c - first >= need]
    if not usable:
        latest = cutoffs[0]
        have = (latest - first).days
        raise InsufficientData(
            f"{kind} (horizon {h} days): training needs a past window whose labels end by the as-of date "
            f"{_date(as_of)}, i.e. features before {_date(latest)} and labels from {_date(latest)} to "
            f"{_date(as_of)}, with at least {config.min_history_days} days of purchase history before "
            f"{_date(latest)}; the first {'subscription event' if kind == 'subscription' else 'purchase'} "
            f"is on {first:%Y-%m-%d}, "
            f"{'only ' + str(max(have, 0)) + ' days' if have > 0 else 'after that cutoff'}. "
            f"Use a later --as-of (at least {_next_day(first + need + dt.timedelta(days=h)):%Y-%m-%d}), a shorter "
            f"`predictions.{kind}.horizon_days`, or a smaller `predictions.min_history_days`"
        )
    return usable


@dataclass
class Candidate:
    kind: str
    as_of: dt.datetime
    horizon_days: int
    cutoffs: list[dt.datetime]
    boosters: dict
    recency: M.RecencyBaseline | None
    metrics: dict
    importance: list
    n_train: int
    status: str
    reason: str | None
    fingerprint: str
    train_seconds: float
    params: dict = field(default_factory=dict)

    def artifact(self) -> dict:
        art = {name: b.model_to_string() for name, b in self.boosters.items()}
        if self.recency:
            art["recency_baseline"] = {"coef": self.recency.coef, "intercept": self.recency.intercept}
        return art


def _subsample(df: pd.DataFrame, limit: int, seed: int = 7) -> pd.DataFrame:
    if len(df) <= limit:
        return df
    return df.sample(n=limit, random_state=seed).sort_index()


def _load_boosters(record: registry.ModelRecord) -> dict:
    return {name: M.booster_from(text) for name, text in record.artifact.items()
            if name in ("churn", "subscription", "buy", "spend")}


def _recency_from(record: registry.ModelRecord) -> M.RecencyBaseline | None:
    r = record.artifact.get("recency_baseline")
    return M.RecencyBaseline(r["coef"], r["intercept"]) if r else None


class Predictor:
    """Train, score and evaluate over one store (one thread: it uses temporary tables)."""

    def __init__(self, store: Store, config: PredictionsConfig, sources: Sources | None = None,
                 log: Log | None = None):
        self.store = store
        self.config = config
        self.fb = FeatureBuilder(store, config, sources)
        self.log = log or (lambda _msg: None)
        self._features: dict[dt.datetime, pd.DataFrame] = {}
        self._labels: dict[tuple, pd.DataFrame] = {}
        self._span: dict | None = None

    # --- data --------------------------------------------------------------------------

    def prepare(self, until: dt.datetime) -> dict:
        self.fb.prepare(until)
        self._features.clear()
        self._labels.clear()
        self._span = self.fb.span()
        return self._span

    def release(self, keep: dt.datetime | None = None) -> None:
        """Drop cached feature and label frames (all but the features at `keep`): memory at scale."""
        self._labels.clear()
        self._features = {k: v for k, v in self._features.items() if k == keep}

    def features(self, cutoff: dt.datetime) -> pd.DataFrame:
        if cutoff not in self._features:
            self._features[cutoff] = self.fb.features(cutoff)
        return self._features[cutoff]

    def labelled(self, cutoff: dt.datetime, h: int, cache: bool = True) -> pd.DataFrame:
        """Features at `cutoff` with the outcome in [cutoff, cutoff + h) and the previous period's spend."""
        key = (cutoff, h)
        if key not in self._labels:
            f = self.features(cutoff) if cache else self._features.get(cutoff, None)
            if f is None:
                f = self.fb.features(cutoff)
            lab = self.fb.labels(cutoff, h)
            prev = self.fb.labels(cutoff - dt.timedelta(days=h), h)[["profile_id", "future_revenue"]]
            prev = prev.rename(columns={"future_revenue": "last_period_spend"})
            df = f.merge(lab, on="profile_id", how="left").merge(prev, on="profile_id", how="left")
            df[["future_orders", "future_revenue", "last_period_spend"]] = df[
                ["future_orders", "future_revenue", "last_period_spend"]].fillna(0.0).astype(float)
            df["churned"] = (df["future_orders"] == 0).astype(float)
            if self._span and self._span.get("subscription_events"):
                df = df.merge(self.fb.cancellations(cutoff, h), on="profile_id", how="left")
                df["cancelled"] = df["cancelled"].fillna(0.0)
            else:
                df["cancelled"] = 0.0
            if not cache:
                return df
            self._labels[key] = df
        return self._labels[key]

    def btyd(self, cutoff: dt.datetime) -> tuple[BTYD | None, pd.DataFrame]:
        summary = self.fb.rfm_summary(cutoff)
        if (summary["x"] > 0).sum() < 10:
            return None, summary
        return BTYD.fit(summary), summary

    # --- training ----------------------------------------------------------------------

    def _stack(self, kind: str, cutoffs: list[dt.datetime]) -> pd.DataFrame:
        h = horizon(self.config, kind)
        per_window = max(self.config.max_training_rows // len(cutoffs), 1)
        frames = []
        for k, c in enumerate(cutoffs):
            df = self.labelled(c, h, cache=False)  # not kept: memory at a million profiles
            if kind in BINARY:
                df = df[df[BINARY[kind][2]] > 0]
            df = _subsample(df, per_window, seed=7 + k).copy()
            df["window"] = k
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    def _check_sufficient(self, kind: str, data: pd.DataFrame, cutoffs: list[dt.datetime]) -> None:
        h = horizon(self.config, kind)
        cfg = self.config
        windows = ", ".join(f"{_date(c)}..{_date(c + dt.timedelta(days=h))}" for c in cutoffs)
        who = POPULATION[kind]
        problems = []
        if len(data) < cfg.min_training_profiles:
            problems.append(f"{len(data)} training rows of {who}, need at least {cfg.min_training_profiles}")
        if kind in BINARY:
            target = BINARY[kind][0]
            pos, neg = int(data[target].sum()), int((1 - data[target]).sum())
            gone, stayed = (("without a purchase in the label window (churned)", "who bought again in the label window")
                            if kind == "churn" else ("who cancelled in the label window", "who did not cancel"))
            if pos < cfg.min_class_count:
                problems.append(f"{pos} {who} {gone}, need at least {cfg.min_class_count}")
            if neg < cfg.min_class_count:
                problems.append(f"{neg} {who} {stayed}, need at least {cfg.min_class_count}")
        else:
            buyers = int((data["future_revenue"] > 0).sum())
            if buyers < cfg.min_class_count:
                problems.append(f"{buyers} profiles with revenue in the label window, "
                                f"need at least {cfg.min_class_count}")
            if len(data) - buyers < cfg.min_class_count:
                problems.append(f"{len(data) - buyers} profiles without revenue in the label window, "
                                f"need at least {cfg.min_class_count}")
        if problems:
            raise InsufficientData(
                f"{kind} (horizon {h} days): not enough data in the training window(s) {windows}: "
                + "; ".join(problems)
                + " (settings: `predictions.min_training_profiles`, `predictions.min_class_count`)"
            )

    def train(self, kind: str, as_of: dt.datetime) -> Candidate:
        started = time.perf_counter()
        h = horizon(self.config, kind)
        threads = self.config.threads
        cutoffs = training_cutoffs(self.config, kind, as_of, self._span or {})
        data = self._stack(kind, cutoffs)
        self._check_sufficient(kind, data, cutoffs)
        fingerprint = self.fb.fingerprint(as_of)
        if len(cutoffs) >= 2:
            is_val = (data["window"] == 0).to_numpy()
            validation = f"the most recent window ({_date(cutoffs[0])}), trained on the {len(cutoffs) - 1} older"
        else:
            rng = np.random.default_rng(11)
            ids = data["profile_id"].unique()
            held = set(ids[rng.random(len(ids)) < 0.25])
            is_val = data["profile_id"].isin(held).to_numpy()
            validation = "a random 25% of profiles of the only window"
        tr, va = data[~is_val], data[is_val]
        X, Xv = tr[list(FEATURE_NAMES)], va[list(FEATURE_NAMES)]
        val_cut = cutoffs[0]
        metrics: dict = {"validation": validation, "validation_cutoff": _date(val_cut)}
        boosters: dict = {}
        recency = None
        grow = len(data) / max(len(tr), 1)
        if kind in BINARY:
            target, rec_col, _ = BINARY[kind]
            base_name = "recency" if kind == "churn" else "activity_recency"
            b = M.fit_booster("binary", X, tr[target].to_numpy(), threads, Xv, va[target].to_numpy())
            rounds = max(int(round(b.best_iteration * grow)), 10) if b.best_iteration else b.num_trees()
            pv = M.predict(b, Xv, threads, num_iteration=b.best_iteration or None)
            recency = M.RecencyBaseline.fit(tr[rec_col].to_numpy(), tr[target].to_numpy())
            base = {base_name: recency.predict(va[rec_col].to_numpy())}
            if kind == "churn":
                btyd, summary = self.btyd(val_cut)
                if btyd is not None:
                    s = va[["profile_id"]].merge(summary, on="profile_id", how="left")
                    base["bgnbd"] = btyd.churn(s, h)
            metrics["model"] = churn_metrics(va[target], pv)
            metrics["baselines"] = {n: churn_metrics(va[target], p) for n, p in base.items()}
            recency = M.RecencyBaseline.fit(data[rec_col].to_numpy(), data[target].to_numpy())
            boosters[kind] = M.fit_booster("binary", data[list(FEATURE_NAMES)],
                                           data[target].to_numpy(), threads, rounds=rounds)
            imp = M.importance(boosters[kind])
            auc, best = metrics["model"]["roc_auc"], metrics["baselines"][base_name]["roc_auc"]
            ok = auc is not None and auc > 0.5 and (best is None or auc >= best - 0.01)
            reason = None if ok else (
                f"validation ROC AUC {auc if auc is None else round(auc, 3)} does not beat {base_name} alone "
                f"({best if best is None else round(best, 3)})")
        else:
            buy_tr, buy_va = (tr["future_revenue"] > 0).to_numpy(float), (va["future_revenue"] > 0).to_numpy(float)
            clf = M.fit_booster("binary", X, buy_tr, threads, Xv, buy_va)
            spenders, spenders_v = tr[tr["future_revenue"] > 0], va[va["future_revenue"] > 0]
            reg = M.fit_booster("gamma", spenders[list(FEATURE_NAMES)], spenders["future_revenue"].to_numpy(),
                                threads, spenders_v[list(FEATURE_NAMES)], spenders_v["future_revenue"].to_numpy())
            pred = M.predict(clf, Xv, threads, num_iteration=clf.best_iteration or None) * M.predict(
                reg, Xv, threads, num_iteration=reg.best_iteration or None)
            customers = (va["frequency"] > 0).to_numpy()
            btyd, summary = self.btyd(val_cut)
            actual = va["future_revenue"].to_numpy()
            metrics["model"] = clv_metrics(actual[customers], pred[customers])
            metrics["model_all_profiles"] = clv_metrics(actual, pred)
            metrics["baselines"] = {
                "last_period_spend": clv_metrics(actual[customers], va["last_period_spend"].to_numpy()[customers])
            }
            if btyd is not None:
                s = va.loc[customers, ["profile_id"]].merge(summary, on="profile_id", how="left")
                metrics["baselines"]["bgnbd_gg"] = clv_metrics(actual[customers], btyd.clv(s, h))
            spenders_all = data[data["future_revenue"] > 0]
            rounds_c = max(int(round((clf.best_iteration or clf.num_trees()) * grow)), 10)
            rounds_r = max(int(round((reg.best_iteration or reg.num_trees()) * grow)), 10)
            boosters["buy"] = M.fit_booster("binary", data[list(FEATURE_NAMES)],
                                            (data["future_revenue"] > 0).to_numpy(float), threads, rounds=rounds_c)
            boosters["spend"] = M.fit_booster("gamma", spenders_all[list(FEATURE_NAMES)],
                                              spenders_all["future_revenue"].to_numpy(), threads, rounds=rounds_r)
            imp = {"buy": M.importance(boosters["buy"]), "spend": M.importance(boosters["spend"])}
            g, gb = metrics["model"]["normalized_gini"], metrics["baselines"]["last_period_spend"]["normalized_gini"]
            rho = metrics["model"]["spearman"]
            ok = g is not None and rho is not None and rho > 0 and (gb is None or g >= gb - 0.01)
            reason = None if ok else (
                f"validation normalized Gini {g if g is None else round(g, 3)} does not beat last period's "
                f"spend ({gb if gb is None else round(gb, 3)})")
        return Candidate(
            kind=kind, as_of=as_of, horizon_days=h, cutoffs=cutoffs, boosters=boosters, recency=recency,
            metrics=metrics, importance=imp, n_train=len(data), status="accepted" if ok else "rejected",
            reason=reason, fingerprint=fingerprint, train_seconds=time.perf_counter() - started,
            params={**M.params("binary", threads), "rounds": {n: b.num_trees() for n, b in boosters.items()}},
        )

    def save(self, cand: Candidate) -> registry.ModelRecord:
        h = cand.horizon_days
        return registry.register(
            self.store, kind=cand.kind, as_of=cand.as_of, horizon_days=h,
            windows=[{"features_before": _date(c), "labels_from": _date(c),
                      "labels_to": _date(c + dt.timedelta(days=h))} for c in cand.cutoffs],
            features=list(FEATURE_NAMES), feature_set=FEATURE_SET, params=cand.params, metrics=cand.metrics,
            importance=cand.importance, data_fingerprint=cand.fingerprint,
            config_hash=config_hash(self.config, cand.kind), n_train=cand.n_train, status=cand.status,
            reason=cand.reason, train_seconds=cand.train_seconds, artifact=cand.artifact(),
        )

    def model_for(self, kind: str, as_of: dt.datetime, retrain: bool = False) -> tuple[registry.ModelRecord, str]:
        """Reuse the model trained for exactly this as-of date and data, or train one.

        Returns the model to score with (the latest accepted one) and a note on what happened.
        """
        h = horizon(self.config, kind)
        fingerprint = self.fb.fingerprint(as_of)
        record = None if retrain else registry.reusable(
            self.store, kind, as_of, h, fingerprint, config_hash(self.config, kind), FEATURE_SET)
        if record is not None:
            note = f"reused {record.model_id} (same as-of date, data and settings)"
        else:
            self.log(f"training {kind} (horizon {h} days) as of {_date(as_of)}")
            record = self.save(self.train(kind, as_of))
            self.release(keep=as_of)
            note = f"trained {record.model_id} in {record.train_seconds:.1f} s"
        if record.accepted:
            return record, note
        fallback = registry.latest_accepted(self.store, kind, h, FEATURE_SET, not_after=as_of)
        if fallback is None:
            raise InsufficientData(f"{kind}: {record.model_id} was rejected ({record.reason}) and no earlier "
                                   "model was accepted; no scores written")
        return fallback, f"{note}, but it was rejected ({record.reason}); scoring with {fallback.model_id}"

    # --- scoring -----------------------------------------------------------------------

    def score(self, kind: str, record: registry.ModelRecord, feats: pd.DataFrame,
              drivers: bool = True) -> pd.DataFrame:
        boosters = _load_boosters(record)
        threads = self.config.threads
        X = feats[list(record.features)]
        h = record.horizon_days
        if kind in BINARY:
            members = feats[BINARY[kind][2]].to_numpy() > 0
            X = X[members]
            p = M.predict(boosters[kind], X, threads)
            out = pd.DataFrame({"profile_id": feats.loc[members, "profile_id"].to_numpy(), "value": p})
            out["label"] = np.where(p >= 0.5, "at risk", "likely to buy" if kind == "churn" else "likely to stay")
            out["details"] = orjson.dumps({"horizon_days": h}).decode()
            if drivers:
                out["drivers"] = [d.decode() for d in M.churn_drivers(boosters[kind], X, threads=threads)]
            return out
        clv, p_buy, spend = M.clv_predict(boosters["buy"], boosters["spend"], X, threads)
        out = pd.DataFrame({"profile_id": feats["profile_id"].to_numpy(), "value": clv})
        out["label"] = None
        out["details"] = [f'{{"horizon_days":{h},"p_buy":{a:.4f},"spend_if_buy":{b:.2f}}}'
                          for a, b in zip(p_buy, spend, strict=True)]
        if drivers:
            out["drivers"] = [d.decode() for d in M.clv_drivers(boosters["buy"], boosters["spend"], X, p_buy,
                                                                 threads=threads)]
        return out

    def write_scores(self, kind: str, as_of: dt.datetime, run_id: int, model_id: str, scores: pd.DataFrame) -> None:
        frame = scores.assign(prediction=kind, as_of=as_of, run_id=run_id, model_id=model_id)
        if "drivers" not in frame:
            frame["drivers"] = None
        cur = self.store.cursor()
        cur.register("_predict_scores_df", frame)
        try:
            with self.store.transaction() as tx:
                tx.execute("DELETE FROM predict_scores WHERE prediction = ?", [kind])
                tx.execute("""INSERT INTO predict_scores
                              SELECT prediction, profile_id, as_of, run_id, model_id, value, label,
                                     CAST(details AS JSON), CAST(drivers AS JSON)
                              FROM _predict_scores_df""")
        finally:
            cur.unregister("_predict_scores_df")

    def predict(self, as_of: dt.datetime | None = None, retrain: bool = False,
                kinds: tuple[str, ...] = KINDS, extras: bool = False) -> PredictResult:
        started = time.perf_counter()
        as_of = as_of or default_as_of(self.store)
        self.prepare(as_of)
        result = PredictResult(as_of=as_of)
        chosen: dict[str, registry.ModelRecord] = {}
        for kind in kinds:
            if kind == "subscription" and not self._span.get("subscription_events"):
                continue  # no subscription events: nothing to predict, nothing to report
            try:
                record, note = self.model_for(kind, as_of, retrain)
            except InsufficientData as exc:
                result.problems[kind] = str(exc)
                continue
            chosen[kind] = record
            result.notes[kind] = note
        if not chosen and not extras:
            return result
        self.log(f"scoring as of {_date(as_of)}")
        feats = self.features(as_of)
        self.log(f"features of {len(feats):,} profiles as of {_date(as_of)}")
        run_id = self.store.scalar("SELECT nextval('predict_run_ids')")
        for kind, record in chosen.items():
            scores = self.score(kind, record, feats)
            self.log(f"scored {kind} with drivers: {len(scores):,} profiles")
            self.write_scores(kind, as_of, run_id, record.model_id, scores)
            self.log(f"wrote {kind} scores")
            result.models[kind] = record
            result.scored[kind] = len(scores)
            result.summary[kind] = {"mean": float(scores["value"].mean()) if len(scores) else None,
                                    "total": float(scores["value"].sum())}
        if extras:  # predictions II: cross-sell, next purchase, offers, channel, discount, NPS
            from panorama.predict.extras import Extras

            Extras(self).score(as_of, run_id, result)
            chosen.update(result.models)
        result.seconds = time.perf_counter() - started
        self.store.execute(
            "INSERT INTO predict_runs (run_id, as_of, created_at, models, profiles, seconds) VALUES (?, ?, ?, ?, ?, ?)",
            [run_id, as_of, dt.datetime.now(dt.UTC).replace(tzinfo=None),
             orjson.dumps({k: r.model_id for k, r in chosen.items()}).decode(), len(feats), result.seconds],
        )
        result.run_id = run_id
        return result

    # --- backtest ----------------------------------------------------------------------

    def evaluate(self, as_of: dt.datetime, kinds: tuple[str, ...] = KINDS, save: bool = True) -> dict:
        """Train as of `as_of`, score as of `as_of`, compare with [as_of, as_of + h)."""
        longest = max(horizon(self.config, k) for k in kinds)
        span = self.prepare(as_of + dt.timedelta(days=longest))
        report: dict = {"as_of": _date(as_of), "results": {}, "problems": {}}
        for kind in kinds:
            if kind == "subscription" and not span.get("subscription_events"):
                continue
            h = horizon(self.config, kind)
            end = as_of + dt.timedelta(days=h)
            last = span.get("last_event")
            if last is None or last < end - dt.timedelta(days=1):
                latest_ok = (dt.datetime.combine(last.date(), dt.time()) + dt.timedelta(days=1)
                             - dt.timedelta(days=h)) if last else None
                report["problems"][kind] = (
                    f"{kind} (horizon {h} days): evaluating as of {_date(as_of)} needs data until {_date(end)}; "
                    + (f"the latest event is {last:%Y-%m-%d %H:%M}. Use --as-of {_date(latest_ok)} or earlier"
                       if last else "there are no events"))
                continue
            try:
                cand = self.train(kind, as_of)
            except InsufficientData as exc:
                report["problems"][kind] = str(exc)
                continue
            test = self.labelled(as_of, h)
            btyd, summary = self.btyd(as_of)
            boosters = cand.boosters
            threads = self.config.threads
            if kind in BINARY:
                target, rec_col, pop = BINARY[kind]
                test = test[test[pop] > 0]
                X = test[list(FEATURE_NAMES)]
                y = test[target].to_numpy()
                preds = {"model": M.predict(boosters[kind], X, threads),
                         ("recency" if kind == "churn" else "activity_recency"): cand.recency.predict(test[rec_col])}
                if btyd is not None and kind == "churn":
                    preds["bgnbd"] = btyd.churn(test[["profile_id"]].merge(summary, on="profile_id", how="left"), h)
                res = {name: churn_metrics(y, p) for name, p in preds.items()}
            else:
                X = test[list(FEATURE_NAMES)]
                pred, _, _ = M.clv_predict(boosters["buy"], boosters["spend"], X, threads)
                customers = (test["frequency"] > 0).to_numpy()
                actual = test["future_revenue"].to_numpy()
                res = {"model": clv_metrics(actual[customers], pred[customers]),
                       "last_period_spend": clv_metrics(actual[customers],
                                                        test["last_period_spend"].to_numpy()[customers])}
                if btyd is not None:
                    s = test.loc[customers, ["profile_id"]].merge(summary, on="profile_id", how="left")
                    res["bgnbd_gg"] = clv_metrics(actual[customers], btyd.clv(s, h))
                if not customers.all():  # prospects too (profiles without a purchase before the cutoff)
                    res["model (all profiles)"] = clv_metrics(actual, pred)
                    res["last_period_spend (all profiles)"] = clv_metrics(actual,
                                                                          test["last_period_spend"].to_numpy())
            cand.metrics["backtest"] = {"as_of": _date(as_of), "window_end": _date(end), **res}
            entry = {"horizon_days": h, "window": f"{_date(as_of)}..{_date(end)}",
                     "training_windows": [_date(c) for c in cand.cutoffs], "n_train": cand.n_train,
                     "train_seconds": round(cand.train_seconds, 2), "status": cand.status,
                     "reason": cand.reason, "metrics": res,
                     "importance": cand.importance if kind in BINARY else cand.importance["buy"]}
            if btyd is not None:
                entry["btyd_params"] = btyd.to_dict()
            if save:
                entry["model_id"] = self.save(cand).model_id
            report["results"][kind] = entry
        return report


@dataclass
class PredictResult:
    as_of: dt.datetime
    models: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    problems: dict = field(default_factory=dict)
    scored: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0
    run_id: int | None = None


def profile_scores_sql(store: Store) -> str | None:
    """One row per scored profile (PROFILE_SCORES_SQL: churn_probability, predicted_clv, ...,
    drivers as JSON text, predictions_as_of). None when the store has no predictions table."""
    if not store.table_exists("predict_scores"):
        return None
    return PROFILE_SCORES_SQL
