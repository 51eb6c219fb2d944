"""Data of the dashboards, sources and segments pages (shared by the UI and the REST API).

Aggregates over the whole population are read from each module's tables with one grouped
query each. The customer metrics (NPS, CSAT, churn and retention over time, cohorts) come from
`panorama.traits.metrics.compute`, which runs a pipeline over the log: they are computed in a
background thread, cached per state of the log, and the page polls until they are ready.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import orjson

from panorama.server.ui.views import ViewContext, _rows, optional
from panorama.store import one

log = logging.getLogger("panorama.ui.dashboards")


def _table(ctx: ViewContext, name: str) -> bool:
    return ctx.store.table_exists(name)


def overview(ctx: ViewContext) -> dict:
    out: dict = {"predictions": None, "rfm": None, "lifecycle": None, "models": []}
    store = ctx.store
    if _table(ctx, "profile_traits"):
        cols = {r[0] for r in store.execute("DESCRIBE profile_traits").fetchall()}
        if {"rfm_recency", "rfm_frequency"} <= cols:
            out["rfm"] = _rows(store, """
                SELECT rfm_recency AS r, rfm_frequency AS f, count(*) AS n,
                       any_value(rfm_segment) AS segment
                FROM profile_traits WHERE rfm_recency IS NOT NULL AND rfm_frequency IS NOT NULL
                GROUP BY ALL ORDER BY 1, 2""")
            if "rfm_segment" in cols:
                out["rfm_segments"] = _rows(store, """
                    SELECT rfm_segment AS segment, count(*) AS n FROM profile_traits
                    WHERE rfm_segment IS NOT NULL GROUP BY ALL ORDER BY n DESC""")
        if "lifecycle_stage" in cols:
            out["lifecycle"] = _rows(store, """
                SELECT coalesce(lifecycle_stage, 'unknown') AS stage, count(*) AS n FROM profile_traits
                GROUP BY ALL ORDER BY n DESC""")
    if ctx.can("predictions.view") and _table(ctx, "predict_scores"):
        preds = {}
        for kind in [r[0] for r in store.execute("SELECT DISTINCT prediction FROM predict_scores ORDER BY 1").fetchall()]:
            stats = _rows(store, """
                SELECT count(*) AS n, avg(value) AS mean, quantile_cont(value, 0.5) AS median,
                       quantile_cont(value, 0.99) AS p99, max(value) AS max, min(value) AS min
                FROM predict_scores WHERE prediction = ?""", [kind])[0]
            if not stats["n"]:
                continue
            if kind.endswith("churn") or (stats["max"] is not None and stats["max"] <= 1 and stats["min"] >= 0):
                width = 0.05
                top = 1.0
            else:
                top = max(float(stats["p99"] or 0), 1e-9)
                width = top / 30
            bins = _rows(store, f"""
                SELECT least(floor(value / {width}), {round(top / width) - 1}) * {width} AS x, count(*) AS n
                FROM predict_scores WHERE prediction = ? AND value IS NOT NULL GROUP BY ALL ORDER BY 1""", [kind])
            preds[kind] = {"stats": stats, "bins": bins, "width": width, "capped_at": top}
        out["predictions"] = preds
        out["models"] = model_cards(ctx)
    return out


def model_cards(ctx: ViewContext) -> list[dict]:
    list_models = optional("panorama.predict.registry", "list_models")
    if list_models is None or not _table(ctx, "predict_models"):
        return []
    latest: dict[str, object] = {}
    for record in list_models(ctx.store):
        if record.accepted:
            latest[record.kind] = record  # ordered by kind, version
    cards = []
    for kind, r in sorted(latest.items()):
        importance = r.importance if isinstance(r.importance, list) else (r.importance or {}).get("buy", [])
        cards.append({
            "model_id": r.model_id, "kind": kind, "version": r.version, "as_of": r.as_of,
            "horizon_days": r.horizon_days, "n_train": r.n_train, "status": r.status, "reason": r.reason,
            "train_seconds": r.train_seconds, "metrics": r.metrics or {}, "features": len(r.features or []),
            "importance": (importance or [])[:12],
        })  # fmt: skip
    return cards


# -- customer metrics: computed in the background, cached per state of the log -----------------

_metrics_lock = threading.Lock()


def _metrics_key(ctx: ViewContext) -> str:
    latest = ctx.store.scalar("SELECT max(id) FROM trait_runs") if _table(ctx, "trait_runs") else None
    events = ctx.store.scalar("SELECT count(*) FROM events")
    return f"{latest}|{events}"


def _compute_metrics(store, config) -> dict:
    compute = optional("panorama.traits.metrics", "compute")
    if compute is None:
        return {"error": "customer metrics are not available in this version"}
    started = time.perf_counter()
    overall = compute(store, config)
    end = dt.datetime.fromisoformat(overall["period"]["end"])
    series = []
    for i in range(8, 0, -1):  # eight quarters
        q_end = end - dt.timedelta(days=91 * (i - 1))
        q_start = q_end - dt.timedelta(days=91)
        try:
            m = compute(store, config, q_start, q_end)
        except Exception as exc:  # noqa: BLE001 - a period without data
            log.info("metrics for %s..%s: %s", q_start, q_end, exc)
            continue
        series.append({"start": q_start.date().isoformat(), "end": q_end.date().isoformat(),
                       **{k: v["value"] for k, v in m["metrics"].items()}})  # fmt: skip
    return {"overall": overall, "series": series, "seconds": time.perf_counter() - started}


def metrics(ctx: ViewContext, app) -> dict:
    """{'state': 'ready'|'computing'|'error', ...}; starts the computation when needed."""
    key = _metrics_key(ctx)
    with _metrics_lock:
        cache = getattr(app.state, "panorama_metrics", None)
        if cache is None:
            cache = app.state.panorama_metrics = {}
        entry = cache.get("entry")
        if entry and entry["key"] == key and entry["state"] in ("ready", "error"):
            return entry
        if cache.get("running"):
            return {"state": "computing", **({"previous": entry} if entry else {})}
        cache["running"] = True
    store, config = ctx.store, ctx.project.config

    def work() -> None:
        try:
            data = _compute_metrics(store, config)
            result = {"key": key, "state": "error" if "error" in data else "ready", **data}
        except Exception as exc:  # noqa: BLE001 - shown on the page
            log.exception("computing metrics failed")
            result = {"key": key, "state": "error", "error": str(exc)}
        with _metrics_lock:
            cache["entry"] = result
            cache["running"] = False

    threading.Thread(target=work, name="panorama-metrics", daemon=True).start()
    return {"state": "computing"}


# -- sources ----------------------------------------------------------------------------------


_sources_cache: dict[int, tuple[tuple, dict]] = {}
_sources_lock = threading.Lock()


def _log_state(store) -> tuple:
    """Changes whenever the log, the dead letters or the ingestion runs change. Row counts come
    from table metadata; the latest times read one column each (~10 ms at 5M events)."""
    return tuple(one(store.execute("""
        SELECT (SELECT count(*) FROM events), (SELECT max(received_at) FROM events),
               (SELECT count(*) FROM records), (SELECT max(ingested_at) FROM records),
               (SELECT count(*) FROM dead_letters), (SELECT max(id) FROM dead_letters),
               (SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL),
               (SELECT max(id) FROM ingest_runs), (SELECT max(finished_at) FROM ingest_runs)
    """)))  # fmt: skip


def _log_aggregates(ctx: ViewContext) -> dict:
    """Counts over the whole log per source (status, last 30 days): cached per state of the
    log, as each costs a scan of every event."""
    from panorama.ingest.status import source_status

    store = ctx.store
    key = (_log_state(store), id(ctx.project.config))
    cached = _sources_cache.get(id(store))
    if cached is not None and cached[0] == key:
        return cached[1]
    daily = _rows(store, """
        SELECT source, CAST(date_trunc('day', received_at) AS DATE) AS day, count(*) AS n FROM events
        WHERE received_at >= (SELECT max(received_at) FROM events) - INTERVAL 30 DAY
        GROUP BY ALL ORDER BY day""")  # fmt: skip
    value = {"status": source_status(store, ctx.project), "daily": daily}
    with _sources_lock:
        _sources_cache[id(store)] = (key, value)
    return value


def sources(ctx: ViewContext) -> dict:
    from panorama.ingest.keys import list_keys
    from panorama.ingest.status import dead_letters

    store = ctx.store
    m = ctx.masker
    letters = dead_letters(store, None, 25)
    show_raw = m.visible("contact") and m.visible("name") and m.visible("free_text")
    for d in letters:
        if not show_raw:
            d["raw"] = "[hidden for your role: rows may hold personal data]"
    runs = _rows(store, """
        SELECT id, source, file, started_at, finished_at, rows_read, rows_loaded, rows_duplicate, rows_rejected
        FROM ingest_runs ORDER BY id DESC LIMIT 20""")
    aggregates = _log_aggregates(ctx)
    index_info = None
    from panorama.server.ui.index import info

    if store.table_exists("ui_index_meta"):
        index_info = info(store)
    return {
        "status": aggregates["status"],
        "dead_letters": letters,
        "dead_letter_total": store.scalar("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL"),
        "runs": runs,
        "daily": aggregates["daily"],
        "write_keys": list_keys(store) if ctx.can("sources.view") or ctx.can("keys.manage") else [],
        "can_manage_keys": ctx.can("keys.manage"),
        "index": index_info,
    }


# -- segments ---------------------------------------------------------------------------------


def segments(ctx: ViewContext) -> dict:
    list_segments = optional("panorama.segments.engine", "list_segments")
    if list_segments is None or not _table(ctx, "segment_membership"):
        return {"available": False, "segments": []}
    rows = list_segments(ctx.store, ctx.project.config)
    trends = {}
    if rows:
        for name, day, entered, exited in ctx.store.execute("""
                WITH ch AS (
                    SELECT segment, CAST(entered_at AS DATE) AS day, 1 AS entered, 0 AS exited FROM segment_membership
                    UNION ALL
                    SELECT segment, CAST(exited_at AS DATE), 0, 1 FROM segment_membership WHERE exited_at IS NOT NULL)
                SELECT segment, day, sum(entered), sum(exited) FROM ch GROUP BY ALL ORDER BY segment, day""").fetchall():
            trends.setdefault(name, []).append({"day": day, "entered": int(entered), "exited": int(exited)})
    return {"available": True, "segments": [s.__dict__ for s in rows], "trends": trends}


def to_json(value) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()
