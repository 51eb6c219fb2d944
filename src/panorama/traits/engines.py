"""Engines that run the traits pipeline's SQL steps, and the engine-independent driver.

An engine materialises a named relation from a `SELECT` written in DuckDB's dialect and
fetches small results. `DuckDBEngine` runs the SQL as written (temporary tables on the
store's cursor); `panorama.traits.spark.SparkEngine` transpiles it with sqlglot and caches
Spark views. `run_pipeline` is the whole batch computation, identical on both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import duckdb

from panorama.config import ProjectConfig
from panorama.traits import lifecycle, rfm
from panorama.traits.definitions import Plan
from panorama.traits.sqlgen import Pipeline


class Engine(Protocol):
    name: str

    def materialize(self, name: str, sql: str) -> None: ...

    def rows(self, sql: str) -> list[dict]: ...

    def drop(self, names: list[str]) -> None: ...


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, cur: duckdb.DuckDBPyConnection, temp: bool = True):
        self.cur = cur
        self.temp = temp
        self.created: list[str] = []

    def materialize(self, name: str, sql: str) -> None:
        kind = "TEMP TABLE" if self.temp else "TABLE"
        self.cur.execute(f"CREATE OR REPLACE {kind} {name} AS {sql}")
        self.created.append(name)

    def rows(self, sql: str) -> list[dict]:
        rel = self.cur.execute(sql)
        names = [d[0] for d in rel.description]
        return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]

    def drop(self, names: list[str]) -> None:
        for name in names:
            self.cur.execute(f"DROP TABLE IF EXISTS {name}")


@dataclass
class Parameters:
    """Population parameters of a run: kept, and reused by the real-time path."""

    as_of: dt.datetime
    rfm: dict | None = None
    lifecycle: dict | None = None
    point_in_time: bool = False

    def to_json(self) -> dict:
        return {"as_of": self.as_of.isoformat(), "rfm": self.rfm, "lifecycle": self.lifecycle,
                "point_in_time": self.point_in_time}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> Parameters:
        return cls(dt.datetime.fromisoformat(data["as_of"]), data.get("rfm"), data.get("lifecycle"),
                   bool(data.get("point_in_time")))  # fmt: skip


@dataclass
class Result:
    parameters: Parameters
    steps: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def has_rfm(plan: Plan) -> bool:
    return set(rfm.REQUIRED) <= set(plan.names)


def has_lifecycle(plan: Plan) -> bool:
    return set(lifecycle.REQUIRED) <= set(plan.names)


def purchases_relation(plan: Plan, pipeline: Pipeline) -> str | None:
    for c in plan.aggregations:
        if c.trait.name == "orders":
            return pipeline.rel(c.relation)
    return None


def scored_sql(pipeline: Pipeline, final: str, params: Parameters) -> str:
    """Final traits + RFM columns + lifecycle stage."""
    plan = pipeline.plan
    sql = f"SELECT * FROM {final}"
    if has_rfm(plan):
        sql = rfm.score_sql(f"({sql})", params.rfm)
    if has_lifecycle(plan) and params.lifecycle:
        sql = f"SELECT s.*, {lifecycle.stage_sql(params.lifecycle)} AS lifecycle_stage FROM ({sql}) s"
    return sql


def output_columns(plan: Plan) -> list[str]:
    cols = ["profile_id", *plan.names]
    if has_rfm(plan):
        cols += list(rfm.COLUMNS)
    if has_lifecycle(plan):
        cols.append("lifecycle_stage")
    return cols


def run_pipeline(
    engine: Engine,
    plan: Plan,
    config: ProjectConfig,
    as_of: dt.datetime,
    pe: str,
    pr: str | None,
    *,
    params: Parameters | None = None,
    point_in_time: bool = False,
    prefix: str = "_tr_",
    log: Callable[[str], None] | None = None,
) -> Result:
    """Materialise `<prefix>state`, `<prefix>final` and `<prefix>profile_traits`.

    `params` pins the population parameters (RFM breakpoints, lifecycle thresholds) instead of
    deriving them from this run's data.
    """
    import time

    pipeline = Pipeline(plan, as_of, prefix, until=as_of if point_in_time else None)
    result = Result(Parameters(as_of, point_in_time=point_in_time))
    timings = result.seconds

    def step(name: str, sql: str) -> None:
        started = time.perf_counter()
        engine.materialize(name, sql)
        timings[name] = time.perf_counter() - started
        result.steps.append(name)
        if log:
            log(f"{name}: {timings[name]:.2f} s")

    for s in pipeline.state_steps(pe, pr):
        step(s.name, s.sql)
    final = pipeline.rel("final")
    step(final, pipeline.final_sql(pipeline.rel("state")))
    if params is not None:
        result.parameters = Parameters(as_of, params.rfm, params.lifecycle, point_in_time)
    else:
        started = time.perf_counter()
        if has_rfm(plan):
            bp = engine.rows(rfm.breakpoints_sql(final))[0]
            result.parameters.rfm = {k: _plain(v) for k, v in bp.items()}
        purchases = purchases_relation(plan, pipeline)
        if has_lifecycle(plan) and purchases:
            gaps = engine.rows(lifecycle.gaps_sql(purchases, as_of, config.lifecycle))[0]
            result.parameters.lifecycle = lifecycle.thresholds(config.lifecycle, gaps)
        elif has_lifecycle(plan):
            result.parameters.lifecycle = lifecycle.thresholds(config.lifecycle, None)
        timings["parameters (RFM breakpoints, lifecycle gaps)"] = time.perf_counter() - started
        if log:
            log(f"parameters: {timings['parameters (RFM breakpoints, lifecycle gaps)']:.2f} s")
    cols = ", ".join(f'"{c}"' for c in output_columns(plan))
    step(pipeline.rel("profile_traits"),
         f"SELECT {cols} FROM ({scored_sql(pipeline, final, result.parameters)}) x")  # fmt: skip
    return result


def _plain(v):
    """Engine numbers as JSON-able Python numbers."""
    if v is None:
        return None
    if isinstance(v, int):
        return v
    f = float(v)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f
