"""Plotly figures (data + layout as plain dicts) for the pages; `static/app.js` draws them with
the vendored plotly.js. Each figure also has a one-line text alternative (`alt`)."""

from __future__ import annotations

BLUE, RED, GREEN, GREY = "#1f5fbf", "#b42318", "#1a7f4b", "#8a94a6"


def _fig(data: list, alt: str, height: int = 240, **layout) -> dict:
    return {"data": data, "layout": {"height": height, **layout}, "alt": alt}


def profile_figures(p: dict) -> dict:
    figs = {}
    for pred in p.get("predictions") or []:
        drivers = [d for d in pred["drivers"] if isinstance(d.get("contribution"), int | float)]
        if not drivers:
            continue
        drivers = sorted(drivers, key=lambda d: abs(d["contribution"]))
        labels = [str(d.get("feature") or d["text"])[:40] for d in drivers]
        figs[f"drivers-{pred['prediction']}"] = _fig(
            [{"type": "bar", "orientation": "h", "y": labels, "x": [d["contribution"] for d in drivers],
              "marker": {"color": [RED if d["contribution"] > 0 else GREEN for d in drivers]},
              "hovertext": [d["text"] for d in drivers], "hoverinfo": "text"}],
            f"What drives {pred['title'].lower()}: " + "; ".join(d["text"] for d in reversed(drivers)),
            height=60 + 28 * len(drivers), margin={"l": 150, "r": 12, "t": 4, "b": 30},
            xaxis={"title": {"text": "contribution"}, "zeroline": True},
        )  # fmt: skip
    surveys = p.get("surveys") or {}
    traces = []
    if surveys.get("nps"):
        traces.append({"type": "scatter", "mode": "lines+markers", "name": "NPS answer (0-10)",
                       "x": [s["at"] for s in surveys["nps"]], "y": [s["score"] for s in surveys["nps"]],
                       "line": {"color": BLUE}})  # fmt: skip
    if surveys.get("csat"):
        traces.append({"type": "scatter", "mode": "lines+markers", "name": "CSAT answer (1-5)",
                       "x": [s["at"] for s in surveys["csat"]], "y": [s["score"] for s in surveys["csat"]],
                       "yaxis": "y2", "line": {"color": GREEN}})  # fmt: skip
    if traces:
        figs["surveys"] = _fig(
            traces, f"{len(surveys.get('nps', []))} NPS and {len(surveys.get('csat', []))} CSAT answers over time",
            height=200, yaxis={"range": [-0.5, 10.5], "title": {"text": "NPS"}},
            yaxis2={"range": [0.5, 5.5], "overlaying": "y", "side": "right", "title": {"text": "CSAT"}},
            legend={"orientation": "h", "y": -0.3}, margin={"l": 40, "r": 40, "t": 4, "b": 30},
        )
    return figs


def dashboard_figures(d: dict) -> dict:
    figs = {}
    for kind, pred in (d.get("predictions") or {}).items():
        bins = pred["bins"]
        figs[f"dist-{kind}"] = _fig(
            [{"type": "bar", "x": [b["x"] + pred["width"] / 2 for b in bins], "y": [b["n"] for b in bins],
              "width": pred["width"] * 0.95, "marker": {"color": RED if "churn" in kind else BLUE}}],
            f"Distribution of {kind} over {pred['stats']['n']:,} profiles; median {pred['stats']['median']:.3g}",
            xaxis={"title": {"text": kind + (" (capped at the 99th percentile)" if "churn" not in kind else "")}},
            yaxis={"title": {"text": "profiles"}},
        )  # fmt: skip
    rfm = d.get("rfm")
    if rfm:
        rs = sorted({c["r"] for c in rfm})
        fs = sorted({c["f"] for c in rfm})
        z = [[next((c["n"] for c in rfm if c["r"] == r and c["f"] == f), 0) for f in fs] for r in rs]
        text = [[next((c["segment"] or "" for c in rfm if c["r"] == r and c["f"] == f), "") for f in fs] for r in rs]
        figs["rfm"] = _fig(
            [{"type": "heatmap", "x": [f"F{f}" for f in fs], "y": [f"R{r}" for r in rs], "z": z, "text": text,
              "texttemplate": "%{text}<br>%{z}", "colorscale": "Blues", "hovertemplate": "%{y} %{x}: %{z} (%{text})<extra></extra>"}],
            "RFM grid: profiles per recency and frequency score", height=340,
            xaxis={"title": {"text": "frequency score"}}, yaxis={"title": {"text": "recency score"}},
        )  # fmt: skip
    if d.get("lifecycle"):
        figs["lifecycle"] = _fig(
            [{"type": "bar", "x": [r["stage"] for r in d["lifecycle"]], "y": [r["n"] for r in d["lifecycle"]],
              "marker": {"color": BLUE}}],
            "Profiles per lifecycle stage: " + ", ".join(f"{r['stage']} {r['n']}" for r in d["lifecycle"]),
        )  # fmt: skip
    for card in d.get("models") or []:
        imp = card["importance"]
        if not imp:
            continue
        imp = list(reversed(imp))
        key = "gain" if "gain" in imp[0] else next((k for k in imp[0] if k != "feature"), None)
        if key is None:
            continue
        figs[f"model-{card['kind']}"] = _fig(
            [{"type": "bar", "orientation": "h", "y": [i.get("feature") for i in imp],
              "x": [i.get(key) for i in imp], "marker": {"color": GREY}}],
            f"Feature importance of {card['model_id']}", height=60 + 22 * len(imp),
            margin={"l": 160, "r": 12, "t": 4, "b": 30}, xaxis={"title": {"text": f"importance ({key})"}},
        )  # fmt: skip
    return figs


def metrics_figures(m: dict) -> dict:
    figs = {}
    series = m.get("series") or []
    if series:
        x = [s["end"] for s in series]
        figs["nps-csat"] = _fig(
            [{"type": "scatter", "mode": "lines+markers", "name": "NPS", "x": x, "y": [s.get("nps") for s in series],
              "line": {"color": BLUE}},
             {"type": "scatter", "mode": "lines+markers", "name": "CSAT %", "x": x,
              "y": [s.get("csat") for s in series], "line": {"color": GREEN}}],
            "NPS and CSAT per quarter", legend={"orientation": "h", "y": -0.25},
        )  # fmt: skip
        figs["churn-retention"] = _fig(
            [{"type": "scatter", "mode": "lines+markers", "name": "churn rate %", "x": x,
              "y": [s.get("churn_rate") for s in series], "line": {"color": RED}},
             {"type": "scatter", "mode": "lines+markers", "name": "retention rate %", "x": x,
              "y": [s.get("retention_rate") for s in series], "line": {"color": GREEN}}],
            "Churn and retention rates per quarter", legend={"orientation": "h", "y": -0.25},
        )  # fmt: skip
    cohorts = ((m.get("overall") or {}).get("cohorts") or {})
    rows = cohorts.get("rows") or []
    if rows:
        width = len(cohorts.get("months") or [])
        z = [r["retention"] + [None] * (width - len(r["retention"])) for r in rows]
        figs["cohorts"] = _fig(
            [{"type": "heatmap", "x": [f"M{k}" for k in range(width)], "y": [r["cohort"] for r in rows], "z": z,
              "colorscale": "Blues", "hovertemplate": "cohort %{y}, month %{x}: %{z}%<extra></extra>",
              "zmin": 0, "zmax": 100}],
            "Cohort retention: % of each first-purchase month's customers ordering k months later",
            height=max(260, 22 * len(rows) + 80), yaxis={"autorange": "reversed", "type": "category"},
        )  # fmt: skip
    return figs


def segment_figures(seg: dict) -> dict:
    traces = []
    for name, days in (seg.get("trends") or {}).items():
        total, xs, ys = 0, [], []
        for d in days:
            total += d["entered"] - d["exited"]
            xs.append(d["day"])
            ys.append(total)
        traces.append({"type": "scatter", "mode": "lines", "name": name, "x": xs, "y": ys})
    return {"trend": _fig(traces, "Members of each segment over time", legend={"orientation": "h", "y": -0.25})} \
        if traces else {}  # fmt: skip


def sources_figures(s: dict) -> dict:
    by: dict[str, dict] = {}
    for r in s.get("daily") or []:
        by.setdefault(r["source"], {})[r["day"]] = r["n"]
    if not by:
        return {}
    return {"daily": _fig(
        [{"type": "bar", "name": src, "x": list(days), "y": list(days.values())} for src, days in by.items()],
        "Events received per day and source (last 30 days of data)", barmode="stack",
        legend={"orientation": "h", "y": -0.25},
    )}  # fmt: skip
