"""Benchmark the demo data generator: wall time, rows/s and peak RSS per size.

    .venv/bin/python bench/demo_generate.py              # 10k and 100k customers
    .venv/bin/python bench/demo_generate.py --sizes 10000 --keep /tmp/demo
    .venv/bin/python bench/demo_generate.py --million    # adds 1M (minutes, ~15 GB of files)

Each size runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys
from pathlib import Path
from panorama.demo.generate import generate
out, n, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
summary = generate(out, customers=n, seed=seed)
summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
summary["bytes"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
print(json.dumps(summary, default=str))
"""


def run(size: int, seed: int, directory: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(directory), str(size), str(seed)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--million", action="store_true", help="also run 1,000,000 customers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="write into this directory (last size) and keep it")
    args = parser.parse_args()
    sizes = list(args.sizes) + ([1_000_000] if args.million else [])
    print(f"{'customers':>10} {'seconds':>8} {'rows':>12} {'rows/s':>10} {'MB out':>8} {'peak RSS MB':>12}")
    for size in sizes:
        tmp = Path(tempfile.mkdtemp(prefix="panorama-demo-"))
        target = args.keep if args.keep else tmp / "demo"
        if target.exists():
            shutil.rmtree(target)
        try:
            s = run(size, args.seed, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{size:>10,} {s['seconds']:>8.1f} {s['rows']:>12,} {s['rows'] / s['seconds']:>10,.0f} "
              f"{s['bytes'] / 1e6:>8,.0f} {s['peak_rss_mb']:>12,.0f}", flush=True)
        for path, rows in s["files"].items():
            print(f"{'':>10} {path:<32} {rows:>12,}")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(bench driver peak RSS {own:.0f} MB)")


if __name__ == "__main__":
    main()
