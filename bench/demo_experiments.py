"""Can the demo's experiments be read? Over many seeds of the default-size demo, the share of
seeds where the one-page checkout test (true +25%) is significant and the hero banner (true 0)
is not, with the coverage of the relative-lift CIs. Uses the generator's own exposures and
in-session conversions (`demo.commerce.run_experiments`) and the analysis's z-test.

    .venv/bin/python bench/demo_experiments.py [--seeds 30] [--customers 10000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from panorama.demo import commerce
from panorama.demo.generate import CHUNK_SIZE
from panorama.demo.people import EmailRegistry, make_people
from panorama.demo.world import build_world
from panorama.experiments import stats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--customers", type=int, default=10_000)
    args = ap.parse_args()
    started = time.perf_counter()
    rows: dict[str, list] = {}
    lifts = {}
    for seed in range(1, args.seeds + 1):
        world = build_world(seed)
        registry = EmailRegistry()
        n_exp = len(world.experiments)
        tot = np.zeros((n_exp, 2, 2))  # experiment, variant, (exposed, converted)
        for ci in range((args.customers + CHUNK_SIZE - 1) // CHUNK_SIZE):
            n = min(CHUNK_SIZE, args.customers - ci * CHUNK_SIZE)
            p = make_people(world, np.random.default_rng([seed, ci, 0x5EED]), n, ci * CHUNK_SIZE, ci, CHUNK_SIZE,
                            registry)  # fmt: skip
            ex, _ = commerce.run_experiments(world, np.random.default_rng([seed, ci, 0xE4]), p)  # as generate()
            for e in range(n_exp):
                for v in (0, 1):
                    sel = (ex.experiment == e) & (ex.variant == v)
                    tot[e, v] += [sel.sum(), ex.converted[sel].sum()]
        for e, exp in enumerate(world.experiments):
            r = stats.proportions(tot[e, 0, 1], tot[e, 0, 0], tot[e, 1, 1], tot[e, 1, 0])
            lifts[exp.experiment_id] = exp.relative_lift
            rows.setdefault(exp.experiment_id, []).append(
                (float(r["p_value"]), float(r["rel_ci"][0]), float(r["rel_ci"][1]), tot[e, :, 0].min()))
    seconds = time.perf_counter() - started
    print(f"{args.seeds} seeds x {args.customers:,} customers in {seconds:.0f} s "
          f"(load average {os.getloadavg()[0]:.1f})")
    for exp_id, rs in rows.items():
        lift = lifts[exp_id]
        sig = sum(p < 0.05 for p, *_ in rs)
        cover = sum(lo <= lift <= hi for _, lo, hi, _ in rs)
        baseline = stats.power_proportions(0.15, lift, int(np.median([n for *_, n in rs]))) if lift else 0.05
        print(f"{exp_id}: true lift {lift:+.0%}; median {np.median([n for *_, n in rs]):,.0f} per arm; "
              f"p < 0.05 in {sig}/{len(rs)} (expected: {'power' if lift else 'alpha'} {baseline:.0%}); "
              f"95% CI covers the truth in {cover}/{len(rs)}")


if __name__ == "__main__":
    main()
