"""Computed traits, RFM, lifecycle stages and customer metrics (docs/traits.md, docs/metrics.md).

* `batch.compute(store, config, as_of=None)` rebuilds `profile_traits` (one row per profile,
  typed columns) from the log; `panorama traits compute` runs it.
* `realtime.on_events(store, batch)` updates the profiles touched by events that arrive
  through the HTTP API (a hook at stage 300, see `realtime.install`).
* `metrics.compute(store, config, start, end, segment=None)` returns NPS, CSAT, churn,
  retention, CLV, AOV, purchase frequency and the cohort retention matrix with their formulas.
* `spark.run(...)` runs the same pipeline on PySpark.
"""
