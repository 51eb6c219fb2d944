"""Faults: `panorama ingest`, `unify` and `segments refresh` killed with SIGKILL at a random
point, a disk that fills up (RLIMIT_FSIZE in the child process), and a partial input file.
Each recovers by running the same command again: the result equals an uninterrupted run,
with nothing lost or duplicated.

Covered elsewhere: SIGKILL of the server under HTTP load (tests/server/test_crash.py), during
deliveries with pending timers (tests/activate/test_restart.py), a hanging or down destination
(tests/activate/test_isolation.py)."""

from __future__ import annotations

import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from panorama.config import load_project
from panorama.demo.project import add_segments
from panorama.store import open_store

pytestmark = [pytest.mark.xdist_group("faults"), pytest.mark.slow]

PANORAMA = str(Path(sys.executable).parent / "panorama")
SEGMENTS = {
    "buyers": "orders >= 1",
    "big": "revenue > 100",
    "lapsed": "days_since(last_seen_at) > 180",
}


def _run(
    project: Path, *args: str, limit_bytes: int | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([PANORAMA, *args, "--project", str(project)], capture_output=True, text=True, timeout=300,
                          preexec_fn=_fsize(limit_bytes) if limit_bytes else None)  # fmt: skip
    return done, time.monotonic() - started


def _fsize(limit: int):
    def apply() -> None:  # in the child: writes past `limit` bytes fail with EFBIG (not a signal)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _kill_during(project: Path, seconds: float, *args: str) -> float:
    """Start the command, SIGKILL it at a random point of its usual run time; returns when."""
    rng = random.Random()
    at = rng.uniform(0.35, 0.9) * seconds
    process = subprocess.Popen([PANORAMA, *args, "--project", str(project)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(at)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    return at


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _snapshot(project: Path) -> dict:
    with open_store(load_project(project).store_path, read_only=True) as store:
        snap = {
            "events": store.scalar("SELECT count(*) FROM events"),
            "distinct_events": store.scalar("SELECT count(DISTINCT message_id) FROM events"),
            "records": store.execute(
                "SELECT source, count(*) FROM records GROUP BY 1 ORDER BY 1"
            ).fetchall(),
            "dead_letters": store.execute(
                "SELECT source, file, line FROM dead_letters ORDER BY ALL"
            ).fetchall(),
        }
        if store.table_exists("identity_nodes") and store.scalar(
            "SELECT count(*) FROM identity_nodes"
        ):
            from panorama.identity.export import membership_sql

            snap["membership"] = store.execute(
                f"SELECT source, record_id, profile_id FROM ({membership_sql(store)}) ORDER BY ALL").fetchall()  # fmt: skip
            snap["profiles"] = store.execute("SELECT profile_id, status, merged_into FROM identity_profiles "
                                             "ORDER BY ALL").fetchall()  # fmt: skip
        if store.table_exists("segment_membership"):
            snap["members"] = store.execute("SELECT segment, profile_id FROM segment_membership "
                                            "WHERE exited_at IS NULL ORDER BY ALL").fetchall()  # fmt: skip
            snap["open_twice"] = store.scalar("SELECT count(*) FROM (SELECT segment, profile_id FROM segment_membership "
                                              "WHERE exited_at IS NULL GROUP BY ALL HAVING count(*) > 1)")  # fmt: skip
    return snap


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """The demo at each stage, with the uninterrupted run time of the next command."""
    root = tmp_path_factory.mktemp("faults")
    generated = root / "generated"
    done, _ = _run_plain(["demo", "generate", str(generated), "--customers", "300", "--seed", "11"])
    assert done.returncode == 0, done.stderr
    add_segments(generated / "panorama.yaml", SEGMENTS)
    ingested = _copy(generated, root / "ingested")
    done, t_ingest = _run(ingested, "ingest")
    assert done.returncode == 0, done.stderr
    unified = _copy(ingested, root / "unified")
    done, t_unify = _run(unified, "unify")
    assert done.returncode == 0, done.stderr
    done, _ = _run(unified, "traits", "compute")
    assert done.returncode == 0, done.stderr
    segmented = _copy(unified, root / "segmented")
    done, t_segments = _run(segmented, "segments", "refresh")
    assert done.returncode == 0, done.stderr
    return {"root": root, "generated": generated, "ingested": ingested, "unified": unified, "segmented": segmented,
            "t": {"ingest": t_ingest, "unify": t_unify, "segments": t_segments}}  # fmt: skip


def _run_plain(args: list[str]):
    started = time.monotonic()
    done = subprocess.run([PANORAMA, *args], capture_output=True, text=True, timeout=300)
    return done, time.monotonic() - started


def test_sigkill_during_file_ingestion(stages, tmp_path):
    reference = _snapshot(stages["ingested"])
    for attempt in range(1):
        victim = _copy(stages["generated"], tmp_path / f"victim{attempt}")
        at = _kill_during(victim, stages["t"]["ingest"], "ingest")
        done, _ = _run(victim, "ingest")
        assert done.returncode == 0, done.stderr
        snap = _snapshot(victim)
        assert snap == reference, f"killed at {at:.2f} s: {_diff(snap, reference)}"


def test_sigkill_during_unify(stages, tmp_path):
    reference = _snapshot(stages["unified"])
    assert reference["membership"]
    victim = _copy(stages["ingested"], tmp_path / "victim")
    at = _kill_during(victim, stages["t"]["unify"], "unify")
    done, _ = _run(victim, "unify")
    assert done.returncode == 0, done.stderr
    snap = _snapshot(victim)
    assert snap == reference, f"killed at {at:.2f} s: {_diff(snap, reference)}"


def test_sigkill_during_segment_refresh(stages, tmp_path):
    reference = _snapshot(stages["segmented"])
    assert reference["members"] and reference["open_twice"] == 0
    victim = _copy(stages["unified"], tmp_path / "victim")
    at = _kill_during(victim, stages["t"]["segments"], "segments", "refresh")
    done, _ = _run(victim, "segments", "refresh")
    assert done.returncode == 0, done.stderr
    snap = _snapshot(victim)
    assert snap["open_twice"] == 0 and snap["members"] == reference["members"], (
        f"killed at {at:.2f} s"
    )


def test_disk_full_during_ingestion_then_recovery(stages, tmp_path):
    reference = _snapshot(stages["ingested"])
    victim = _copy(stages["generated"], tmp_path / "victim")
    size = sum(f.stat().st_size for f in (victim / "data").iterdir())
    done, _ = _run(
        victim, "ingest", limit_bytes=max(2_000_000, size // 4)
    )  # the store cannot grow past this
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "the disk is full" in done.stderr, done.stderr[-2000:]
    # the space comes back: the same command completes the load, nothing twice
    done, _ = _run(victim, "ingest")
    assert done.returncode == 0, done.stderr
    assert _snapshot(victim) == reference


def test_partial_input_file_then_the_complete_one(stages, tmp_path):
    reference = _snapshot(stages["ingested"])
    victim = _copy(stages["generated"], tmp_path / "victim")
    full = {
        name: (victim / "data" / name).read_bytes()
        for name in ("shop_orders.csv", "web_events.jsonl")
    }
    for (
        name,
        data,
    ) in full.items():  # cut each file in the middle of a line, as a copy still running would
        cut = data.rfind(b"\n", 0, len(data) // 2) + 17
        (victim / "data" / name).write_bytes(data[:cut])
    done, _ = _run(victim, "ingest")
    assert done.returncode == 0, done.stderr
    partial = _snapshot(victim)
    assert 0 < partial["events"] < reference["events"]
    # the torn last line of each file is a dead letter naming its line, not a corrupted row
    with open_store(load_project(victim).store_path, read_only=True) as store:
        torn = store.execute("SELECT file, line, reason FROM dead_letters WHERE file LIKE '%shop_orders%' "
                             "OR file LIKE '%web_events%'").fetchall()  # fmt: skip
    assert {Path(f).name for f, _, _ in torn} >= {"shop_orders.csv", "web_events.jsonl"}
    for name, data in full.items():
        (victim / "data" / name).write_bytes(data)
    done, _ = _run(victim, "ingest")
    assert done.returncode == 0, done.stderr
    snap = _snapshot(victim)
    assert snap["events"] == snap["distinct_events"] == reference["events"]
    assert snap["records"] == reference["records"]


def _diff(a: dict, b: dict) -> str:
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            va, vb = a.get(key), b.get(key)
            if isinstance(va, list) and isinstance(vb, list):
                out.append(
                    f"{key}: {len(va)} vs {len(vb)} rows; e.g. {sorted(set(va) ^ set(vb))[:3]}"
                )
            else:
                out.append(f"{key}: {va} vs {vb}")
    return "; ".join(out)
