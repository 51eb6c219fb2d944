"""Journeys and experiments in the web UI (`/journeys`, `/experiments`) and the REST API
(`/api/v1/journeys`, `/api/v1/experiments...`, `/api/v1/hypotheses`).

Both call exactly the functions `panorama journeys` and `panorama experiments` call
(`journeys.map.journey_map`, `experiments.analysis.list_experiments/analyze/plan/observed_power`,
`experiments.hypotheses.ranked`); this module only checks the inputs, gathers the results for a
page and turns them into Plotly figures. Who may see them: the roles allowed `dashboards.view`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import Response

from panorama.auth.policy import Principal
from panorama.auth.web import require
from panorama.server.ui import views
from panorama.server.ui.charts import BLUE, GREEN, GREY, RED, _fig
from panorama.store import one

log = logging.getLogger("panorama.ui")

PERMISSION = "dashboards.view"
# (module level: the routes' annotations are strings, resolved in this module's namespace)
UiPrincipal = Annotated[Principal, Depends(require(PERMISSION))]
ApiPrincipal = Annotated[Principal, Depends(require(PERMISSION, api=True))]


class InputError(ValueError):
    """A selector the user gave that cannot be used; the message says why."""


# -- a small cache: a journey map takes seconds on a large log -----------------------------------

CACHE_SIZE = 32
CACHE_SECONDS = 600.0  # also bounds staleness when profiles change without new events (unify)
_cache: OrderedDict[tuple, tuple[float, object]] = OrderedDict()
_cache_lock = threading.Lock()


def _log_state(store) -> tuple:
    return tuple(one(store.execute("SELECT count(*), max(received_at) FROM events")))


def cached(ctx: views.ViewContext, key: tuple, compute):
    """`compute()`, remembered for this store, state of the log and key (LRU, CACHE_SECONDS);
    with `compute=None` only a remembered value (or None)."""
    full = (id(ctx.store), _log_state(ctx.store), *key)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(full)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            _cache.move_to_end(full)
            return hit[1]
    if compute is None:
        return None
    value = compute()
    with _cache_lock:
        _cache[full] = (now, value)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return value


# -- inputs -----------------------------------------------------------------------------------


def parse_day(text: str | None, name: str) -> dt.datetime | None:
    """A date (YYYY-MM-DD) or ISO timestamp, naive UTC; empty means none."""
    if text is None or not text.strip():
        return None
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"{name}: {text!r} is not a date; use YYYY-MM-DD or an ISO timestamp"
        ) from None
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def parse_steps(text: str | None) -> list[str] | None:
    steps = [s.strip() for s in (text or "").split(",") if s.strip()]
    return steps or None


# -- journeys ---------------------------------------------------------------------------------


def journeys(
    ctx: views.ViewContext,
    segment: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    funnel: list[str] | None = None,
    only_cached: bool = False,
) -> dict | None:
    """The journey map (`journey_map`, as `panorama journeys`) for a segment name and [start, end);
    InputError for a selector that cannot be used; with `only_cached` None unless remembered."""
    from panorama.journeys.map import journey_map

    config = ctx.project.config
    if segment and segment not in config.segments:
        raise InputError(
            f"segment: unknown segment {segment!r}; configured: {', '.join(config.segments) or '(none)'}"
        )
    if start and end and end <= start:
        raise InputError("to: the end of the period must be after its start")
    known = set(config.journeys.stages) | {
        e for events in config.journeys.stages.values() for e in events
    }
    for step in funnel or []:
        if step not in known:
            raise InputError(
                f"funnel: {step!r} is neither a stage ({', '.join(config.journeys.stages)}) "
                "nor a mapped event"
            )
    def compute() -> dict:
        return journey_map(ctx.store, config.journeys, segment=segment or None, start=start, end=end,
                           funnel=funnel)  # fmt: skip

    key = ("journeys", segment or None, start, end, tuple(funnel or ()))
    return cached(ctx, key, None if only_cached else compute)


def _hours_text(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 60:.0f} min" if x < 1 else (f"{x:.1f} h" if x < 48 else f"{x / 24:.1f} d")


def journey_figures(m: dict) -> dict:
    figs: dict = {}
    sk = m["sankey"]
    if sk["links"]["value"]:
        figs["sankey"] = _fig(
            [{"type": "sankey", "arrangement": "snap", "valueformat": ",d", "valuesuffix": " profiles",
              "node": {"label": sk["nodes"], "pad": 14, "thickness": 14, "color": GREY},
              "link": {**sk["links"], "color": "rgba(31,95,191,0.25)"}}],
            f"Stage-to-stage flows of {m['profiles']:,} profiles (numbered by visit): "
            + "; ".join(f"{t['source']} to {t['target']} {t['count']:,}" for t in m["transitions"][:6]),
            height=420, margin={"l": 8, "r": 8, "t": 8, "b": 8},
        )  # fmt: skip
    funnel = m["funnel"]
    if funnel and funnel[0]["profiles"]:
        figs["funnel"] = _fig(
            [{"type": "funnel", "y": [f["step"] for f in funnel], "x": [f["profiles"] for f in funnel],
              "textinfo": "value+percent initial+percent previous", "marker": {"color": BLUE}}],
            "Funnel: " + ", ".join(f"{f['step']} {f['profiles']:,}" for f in funnel),
            height=60 + 48 * len(funnel), margin={"l": 140, "r": 12, "t": 8, "b": 20},
        )  # fmt: skip
        gaps = funnel[1:]
        if any(f["median_hours_from_previous"] is not None for f in gaps):
            labels = [f"{a['step']} → {b['step']}" for a, b in zip(funnel, gaps, strict=False)]
            figs["times"] = _fig(
                [{"type": "bar", "name": "median", "x": labels, "y": [f["median_hours_from_previous"] for f in gaps],
                  "marker": {"color": BLUE}},
                 {"type": "bar", "name": "90th percentile", "x": labels, "y": [f["p90_hours_from_previous"] for f in gaps],
                  "marker": {"color": GREY}}],
                "Time between funnel steps: " + "; ".join(
                    f"{lab} median {_hours_text(f['median_hours_from_previous'])}, p90 "
                    f"{_hours_text(f['p90_hours_from_previous'])}" for lab, f in zip(labels, gaps, strict=True)),
                barmode="group", yaxis={"title": {"text": "hours"}, "type": "log"},
                legend={"orientation": "h", "y": -0.45}, height=300, margin={"l": 48, "r": 12, "t": 8, "b": 90},
            )  # fmt: skip
    touch = m["touchpoints"]
    # the eight touchpoints with most events; the rest together (plotly's palette has ten colours)
    totals: dict[str, int] = {}
    for rows in touch.values():
        for r in rows:
            totals[r["touchpoint"] or "(none)"] = totals.get(r["touchpoint"] or "(none)", 0) + r["events"]
    top = sorted(totals, key=lambda k: (-totals[k], k))[:8]
    names = top + (["other"] if len(totals) > len(top) else [])
    if names:
        stages = [s for s in m["stage_order"] if touch.get(s)]
        traces = []
        for name in names:
            ys = [sum(r["events"] for r in touch[s]
                      if ((r["touchpoint"] or "(none)") == name or (name == "other" and (r["touchpoint"] or "(none)")
                                                                     not in top)))
                  for s in stages]  # fmt: skip
            traces.append({"type": "bar", "name": name, "x": stages, "y": ys})
        figs["touchpoints"] = _fig(
            traces, "Touchpoints per stage (events): " + "; ".join(
                f"{s}: " + ", ".join(f"{r['touchpoint']} {r['events']:,}" for r in touch[s][:3]) for s in stages),
            barmode="stack", height=300, legend={"orientation": "h", "y": -0.25},
            yaxis={"title": {"text": "events"}},
        )  # fmt: skip
    stalls = m["stalls"]["by_stage"]
    if stalls:
        figs["stalls"] = _fig(
            [{"type": "bar", "x": [r["stage"] for r in stalls], "y": [r["stalled"] for r in stalls],
              "marker": {"color": RED}, "text": [f"{r['pct_of_reached']:.0f}% of reached" for r in stalls],
              "textposition": "auto"}],
            f"Where customers stall (inactive {m['stalls']['inactive_for_days']:g} days at the period's end): "
            + ", ".join(f"{r['stage']} {r['stalled']:,}" for r in stalls),
            yaxis={"title": {"text": "profiles"}},
        )  # fmt: skip
    return figs


# -- experiments ------------------------------------------------------------------------------


def experiments(ctx: views.ViewContext) -> dict:
    """Every experiment (declared or seen in the log) with its analysis, and the hypothesis backlog."""
    from panorama.experiments.analysis import ExperimentError, analyze, list_experiments
    from panorama.experiments.hypotheses import ranked

    config = ctx.project.config
    items = []
    for row in list_experiments(ctx.store, config):
        item = {"info": row, "result": None, "error": None}
        if row["exposed_profiles"]:
            try:
                item["result"] = cached(ctx, ("experiment", row["name"]),
                                        lambda name=row["name"]: analyze(ctx.store, config, name))  # fmt: skip
            except ExperimentError as exc:
                item["error"] = str(exc)
        else:
            item["error"] = "no exposures in the log yet"
        items.append(item)
    return {"experiments": items, "hypotheses": ranked(ctx.store)}


def experiment(ctx: views.ViewContext, name: str) -> dict:
    """One experiment's analysis (`analyze`); InputError when there is none by that name."""
    from panorama.experiments.analysis import ExperimentError, analyze

    try:
        return analyze(ctx.store, ctx.project.config, name)
    except ExperimentError as exc:
        raise InputError(str(exc)) from None


def power(
    baseline: float,
    mde: float,
    alpha: float = 0.05,
    power_: float = 0.8,
    metric: str = "conversion",
    sd: float | None = None,
    daily: float | None = None,
) -> dict:
    """The sample-size calculator (`plan`, as `panorama experiments power --baseline`)."""
    from panorama.experiments.analysis import ExperimentError, plan

    if metric not in ("conversion", "retention", "revenue"):
        raise InputError("metric: use conversion, retention or revenue")
    if not 0 < alpha < 0.5 or not 0.5 < power_ < 1:
        raise InputError("alpha must be between 0 and 0.5 and power between 0.5 and 1")
    try:
        return plan(baseline, mde, alpha, power_, metric, sd, daily)
    except (ExperimentError, ValueError) as exc:
        raise InputError(str(exc)) from None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def _lift_range(cmps: list[dict]) -> list[float]:
    """An x range that always shows zero (no effect) beside the intervals."""
    lo = min([0.0] + [c["rel_ci"][0] for c in cmps if c["rel_ci"][0] is not None])
    hi = max([0.0] + [c["rel_ci"][1] for c in cmps if c["rel_ci"][1] is not None])
    pad = 0.08 * (hi - lo or 1.0)
    return [lo - pad, hi + pad]


def experiment_figures(data: dict) -> dict:
    figs = {}
    for i, item in enumerate(data["experiments"]):
        r = item["result"]
        if not r:
            continue
        conv = r["metric"] in ("conversion", "retention")
        variants = r["variants"]
        figs[f"rates-{i}"] = _fig(
            [{"type": "bar", "x": [v["variant"] for v in variants], "y": [v["mean"] for v in variants],
              "marker": {"color": [GREY if v["control"] else BLUE for v in variants]},
              "text": [f"{v['mean']:.1%}" if conv and v["mean"] is not None else
                       (f"{v['mean']:,.2f}" if v["mean"] is not None else "") for v in variants],
              "textposition": "auto"}],
            f"{r['experiment']}: " + ", ".join(
                f"{v['variant']} {v['mean']:.2%}" if conv and v["mean"] is not None else f"{v['variant']} {v['mean']}"
                for v in variants),
            height=220, yaxis={"title": {"text": "conversion rate" if conv else "per user"},
                               **({"tickformat": ".0%"} if conv else {})},
        )  # fmt: skip
        cmps = [c for c in r["comparisons"] if c.get("rel_lift") is not None]
        if cmps:
            figs[f"lift-{i}"] = _fig(
                [{"type": "scatter", "mode": "markers", "orientation": "h",
                  "y": [c["variant"] for c in cmps], "x": [c["rel_lift"] for c in cmps],
                  "error_x": {"type": "data", "symmetric": False,
                              "array": [c["rel_ci"][1] - c["rel_lift"] for c in cmps],
                              "arrayminus": [c["rel_lift"] - c["rel_ci"][0] for c in cmps], "thickness": 2},
                  "marker": {"size": 11, "color": [GREEN if c["significant"] and c["rel_lift"] > 0 else
                                                   RED if c["significant"] else GREY for c in cmps]},
                  "hovertemplate": "%{y}: %{x:+.1%}<extra></extra>"}],
                f"{r['experiment']}: relative lift against {r['control']} with 95% CI: " + "; ".join(
                    f"{c['variant']} {_pct(c['rel_lift'])} ({_pct(c['rel_ci'][0])} to {_pct(c['rel_ci'][1])})"
                    for c in cmps),
                height=90 + 40 * len(cmps), margin={"l": 130, "r": 20, "t": 8, "b": 40},
                xaxis={"tickformat": "+.0%", "zeroline": True, "zerolinewidth": 2, "zerolinecolor": "#1c2430",
                       "range": _lift_range(cmps), "title": {"text": f"relative lift vs {r['control']}"}},
            )  # fmt: skip
    return figs



class JourneyQuery:
    """The journey pages' selectors (segment, period, funnel steps) from the query string."""

    def __init__(
        self,
        segment: Annotated[str, Query(max_length=200)] = "",
        start: Annotated[str, Query(alias="from", max_length=40)] = "",
        end: Annotated[str, Query(alias="to", max_length=40)] = "",
        funnel: Annotated[str, Query(max_length=1000)] = "",
    ):
        self.segment, self.start, self.end, self.funnel = segment, start, end, funnel

    def args(self) -> tuple:
        """(segment, from, to, funnel steps) as `journeys` takes them; InputError if invalid."""
        return (self.segment or None, parse_day(self.start, "from"), parse_day(self.end, "to"),
                parse_steps(self.funnel))  # fmt: skip


# -- routes -----------------------------------------------------------------------------------


def add_ui_routes(app: FastAPI) -> None:
    from panorama.server.ui.routes import context, page

    @app.get("/journeys", include_in_schema=False)
    def journeys_page(
        request: Request,
        principal: UiPrincipal,
        q: Annotated[JourneyQuery, Depends()],
    ) -> Response:
        """The selectors at once; the map inline when remembered, else loaded by HTMX from
        /journeys/map (a map takes seconds on a large log)."""
        ctx = context(request, principal)
        config = ctx.project.config
        form = {"segment": q.segment, "from": q.start, "to": q.end,
                "funnel": q.funnel or ", ".join(config.journeys.funnel or config.journeys.stages)}  # fmt: skip
        values = {"form": form, "segments": list(config.segments), "hours": _hours_text,
                  "map_url": "/journeys/map" + (f"?{request.url.query}" if request.url.query else "")}  # fmt: skip
        try:
            m = journeys(ctx, *q.args(), only_cached=True)
        except InputError as exc:
            return page(request, "journeys.html", principal, "journeys", m=None, figs={}, error=str(exc),
                        status=400, **values)  # fmt: skip
        return page(request, "journeys.html", principal, "journeys", m=m, figs=journey_figures(m) if m else {},
                    **values)  # fmt: skip

    @app.get("/journeys/map", include_in_schema=False)
    def journeys_map_partial(
        request: Request,
        principal: UiPrincipal,
        q: Annotated[JourneyQuery, Depends()],
    ) -> Response:
        ctx = context(request, principal)
        try:
            m = journeys(ctx, *q.args())
        except InputError as exc:
            return page(request, "_journey_map.html", principal, m=None, figs={}, error=str(exc), status=400)
        return page(request, "_journey_map.html", principal, m=m, figs=journey_figures(m), hours=_hours_text)

    @app.get("/experiments", include_in_schema=False)
    def experiments_page(request: Request, principal: UiPrincipal) -> Response:
        ctx = context(request, principal)
        data = experiments(ctx)
        return page(request, "experiments.html", principal, "experiments", x=data, figs=experiment_figures(data),
                    calc=_calc_defaults(data), hours=_hours_text)  # fmt: skip

    @app.get("/experiments/power", include_in_schema=False)
    def power_partial(
        request: Request,
        principal: UiPrincipal,
        baseline: Annotated[str, Query(max_length=30)] = "0.1",
        mde: Annotated[str, Query(max_length=30)] = "0.1",
        alpha: Annotated[str, Query(max_length=30)] = "0.05",
        power_: Annotated[str, Query(alias="power", max_length=30)] = "0.8",
        metric: Annotated[str, Query(max_length=20)] = "conversion",
        sd: Annotated[str, Query(max_length=30)] = "",
        daily: Annotated[str, Query(max_length=30)] = "",
    ) -> Response:
        calc = {"baseline": baseline, "mde": mde, "alpha": alpha, "power": power_, "metric": metric, "sd": sd,
                "daily": daily}  # fmt: skip
        try:
            result, error = power(*(_number(calc[k], k) for k in ("baseline", "mde", "alpha", "power")), metric,
                                  _number(sd, "sd", True), _number(daily, "daily", True)), None  # fmt: skip
        except InputError as exc:
            result, error = None, str(exc)
        full = request.headers.get("hx-request") != "true"
        if full:  # without JavaScript: the whole page with the answer
            ctx = context(request, principal)
            data = experiments(ctx)
            return page(request, "experiments.html", principal, "experiments", x=data,
                        figs=experiment_figures(data), calc=calc, plan=result, plan_error=error,
                        hours=_hours_text, status=400 if error else 200)  # fmt: skip
        return page(request, "_power.html", principal, calc=calc, plan=result, plan_error=error,
                    status=400 if error else 200)  # fmt: skip


def _number(text: str, name: str, optional: bool = False) -> float | None:
    if optional and not text.strip():
        return None
    try:
        value = float(text.strip().rstrip("%")) / (100 if text.strip().endswith("%") else 1)
    except ValueError:
        raise InputError(f"{name}: {text!r} is not a number") from None
    if not value > 0:
        raise InputError(f"{name}: give a positive number")
    return value


def _calc_defaults(data: dict) -> dict:
    """The calculator starts from the first analysed conversion experiment's control rate."""
    baseline = 0.1
    for item in data["experiments"]:
        r = item["result"]
        if r and r["metric"] == "conversion":
            rate = r["variants"][0].get("rate")
            if rate and 0 < rate < 1:
                baseline = round(rate, 4)
                break
    return {"baseline": baseline, "mde": 0.1, "alpha": 0.05, "power": 0.8, "metric": "conversion", "sd": None,
            "daily": None}  # fmt: skip


def add_api_routes(api) -> None:
    """REST endpoints; `api` is `server.api._Routes` (routes under /api/v1, token roles)."""
    from panorama.server.api import _ctx, _json

    @api.get("/journeys", summary="The journey map: stage flows (Sankey), funnel with drop-off, time between "
                                  "stages, touchpoints, top paths, stalls, directly-follows graph",
             description="For the members of `segment` (a configured segment's name) and events in [from, to). "
                         "`funnel`: comma-separated stages or event names (default: the configured funnel or "
                         "every stage).")  # fmt: skip
    def journeys_api(
        request: Request,
        principal: ApiPrincipal,
        segment: Annotated[str | None, Query(max_length=200)] = None,
        start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
        funnel: Annotated[str | None, Query(max_length=1000)] = None,
    ):
        ctx = _ctx(request, principal)
        try:
            return _json(
                journeys(
                    ctx,
                    segment,
                    parse_day(start, "from"),
                    parse_day(end, "to"),
                    parse_steps(funnel),
                )
            )
        except InputError as exc:
            raise HTTPException(400, str(exc)) from None

    @api.get(
        "/experiments", summary="Experiments declared or seen in the log, with their exposures"
    )
    def experiments_api(request: Request, principal: ApiPrincipal):
        from panorama.experiments.analysis import list_experiments

        ctx = _ctx(request, principal)
        return _json({"data": list_experiments(ctx.store, ctx.project.config)})

    @api.get("/experiments/plan", summary="Sample size per variant for a fixed-horizon test (power calculator)",
             description="As `panorama experiments power --baseline B --mde M`: `baseline` is the control's "
                         "conversion rate (or mean revenue per user with `metric=revenue` and `sd`), `mde` the "
                         "minimum detectable relative lift; `daily` (exposures per day) adds the days needed.")  # fmt: skip
    def plan_api(
        principal: ApiPrincipal,
        baseline: Annotated[float, Query(gt=0)] = 0.1,
        mde: Annotated[float, Query(gt=0, le=10)] = 0.1,
        alpha: Annotated[float, Query(gt=0, lt=0.5)] = 0.05,
        power_: Annotated[float, Query(alias="power", gt=0.5, lt=1)] = 0.8,
        metric: Annotated[str, Query(max_length=20)] = "conversion",
        sd: Annotated[float | None, Query(gt=0)] = None,
        daily: Annotated[float | None, Query(gt=0)] = None,
    ):
        try:
            return _json(power(baseline, mde, alpha, power_, metric, sd, daily))
        except InputError as exc:
            raise HTTPException(400, str(exc)) from None

    @api.get("/experiments/{name}", summary="An experiment's analysis: per-variant counts and rates, lifts with "
                                            "CIs, p-value, P(beat control), SRM check, design and verdict")  # fmt: skip
    def experiment_api(request: Request, name: str, principal: ApiPrincipal):
        try:
            return _json(experiment(_ctx(request, principal), name))
        except InputError as exc:
            raise HTTPException(404, str(exc)) from None

    @api.get("/experiments/{name}/power", summary="The power the exposures so far give to detect a relative "
                                                  "lift `mde`, and the sample size it needs")  # fmt: skip
    def observed_power_api(request: Request, name: str, principal: ApiPrincipal,
                           mde: Annotated[float, Query(gt=0, le=10)] = 0.1):  # fmt: skip
        from panorama.experiments.analysis import ExperimentError, observed_power

        ctx = _ctx(request, principal)
        try:
            return _json(observed_power(ctx.store, ctx.project.config, name, mde))
        except ExperimentError as exc:
            raise HTTPException(404, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    @api.get(
        "/hypotheses",
        summary="The hypothesis backlog ranked by ICE, with linked experiments and outcomes",
    )
    def hypotheses_api(request: Request, principal: ApiPrincipal,
                       status: Annotated[str | None, Query(max_length=20)] = None):  # fmt: skip
        from panorama.experiments.hypotheses import STATUSES, ranked

        if status is not None and status not in STATUSES:
            raise HTTPException(400, f"status: use one of {', '.join(STATUSES)}")
        return _json({"data": ranked(_ctx(request, principal).store, status)})
