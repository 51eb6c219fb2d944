"""The identity graph's connected components on Spark (`engine: spark`).

`panorama unify` builds the graph's nodes (normalised identifiers) and links (each identifier
signature's nodes to its anchor, plus Splink's probabilistic links) in the store, as on one
machine. The components step — the part that grows with the whole graph — runs on Spark:
iterative min-label propagation with pointer jumping, each component labelled by its smallest
node id (exactly what the scipy step gives, so both engines resolve the same profiles). Merge
protection (`identity.resolver`), which only touches the few components with a conflict, and the
stable profile ids stay on the driver. The probabilistic step (Splink) runs on Spark too,
with Splink's Spark backend (`scale.splink`).

    stats = unify_on_spark(store, project, spark, workdir)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from panorama.store import one

MAX_ROUNDS = 100  # min-label propagation with pointer jumping converges in O(log diameter)


def connected_components(spark, edges, nodes=None, *, log: Callable[[str], None] | None = None):
    """(node, comp) for every node of `edges` (columns a, b) and of `nodes` (column node):
    comp is the smallest node id of the node's connected component.

    Each round gives every node the smallest label among itself and its neighbours, then
    jumps pointers (label := label of its label); it stops when no label changes. A label is
    always a node of the same component and the smallest node keeps its own, so the fixed
    point labels each component by its minimum."""
    from pyspark.sql import functions as F

    pairs = edges.select(F.col("a").cast("long").alias("src"), F.col("b").cast("long").alias("dst"))
    pairs = pairs.filter("src <> dst")
    both = pairs.unionByName(pairs.select(F.col("dst").alias("src"), F.col("src").alias("dst")))
    both = both.distinct().localCheckpoint()
    ids = both.select(F.col("src").alias("node"))
    if nodes is not None:
        ids = ids.unionByName(nodes.select(F.col("node").cast("long").alias("node")))
    labels = ids.distinct().withColumn("comp", F.col("node")).localCheckpoint()
    for round_ in range(1, MAX_ROUNDS + 1):
        # smallest label among the node and its neighbours
        offered = both.join(labels.withColumnRenamed("node", "src"), "src").select(
            F.col("dst").alias("node"), "comp"
        )
        step = labels.unionByName(offered).groupBy("node").agg(F.min("comp").alias("comp"))
        # pointer jumping: the label of my label (chains shrink by half each round)
        jump = step.alias("s").join(step.alias("p"), F.col("s.comp") == F.col("p.node"), "left")
        best = F.least(F.col("s.comp"), F.coalesce(F.col("p.comp"), F.col("s.comp")))
        step = jump.select(F.col("s.node").alias("node"), best.alias("comp"))
        # one job per round: the lazy checkpoint is filled while the changes are counted, and
        # cuts the plan (each round's plan would otherwise hold the previous one four times)
        step = step.localCheckpoint(eager=False)
        old = labels.withColumnRenamed("comp", "old")
        changed = step.join(old, "node").filter("comp < old").count()
        labels = step
        if log:
            log(f"components round {round_}: {changed:,} labels changed")
        if changed == 0:
            return labels
    raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")


def spark_components(spark, workdir: Path, log: Callable[[str], None] | None = None):
    """A `components` step for `identity.service.unify`: the graph leaves the store as Parquet,
    its components are computed on Spark and come back as the resolution's `_comp` table."""

    def components(resolution) -> None:
        cur = resolution.cur
        work = Path(workdir)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        nodes, edges, comp = (str(work / n) for n in ("nodes.parquet", "edges.parquet", "comp"))
        cur.execute(f"COPY (SELECT node FROM _nodes) TO '{nodes}' (FORMAT parquet)")
        cur.execute(
            f"COPY (SELECT a, b FROM _links UNION ALL SELECT a, b FROM _plinks) TO '{edges}' (FORMAT parquet)"
        )
        labels = connected_components(
            spark, spark.read.parquet(edges), spark.read.parquet(nodes), log=log
        )
        labels.write.mode("overwrite").parquet(comp)
        cur.execute(
            f"CREATE OR REPLACE TEMP TABLE _comp AS SELECT node, comp FROM read_parquet('{comp}/*.parquet')"
        )
        resolution.stats.components = one(cur.execute(
            "SELECT count(DISTINCT comp) FROM _comp"
        ))[0]
        resolution.timer.lap("components (spark)")
        shutil.rmtree(work, ignore_errors=True)

    return components


def unify_on_spark(store, project, spark, workdir: Path, log: Callable[[str], None] | None = None):
    """`panorama unify` with its Spark steps: Splink's model estimated and its pairs scored by
    Splink's Spark backend, and the graph's connected components on Spark. Returns RunStats."""
    from panorama.identity.service import unify
    from panorama.scale.splink import spark_api

    work = Path(workdir)
    api = spark_api(spark, work / "splink") if project.config.identity.splink.enabled else None
    try:
        return unify(store, project, components=spark_components(spark, work / "graph", log),
                     splink_api=api)  # fmt: skip
    finally:
        if api is not None:
            api.close()
