"""Run the whole test suite: what `python3 run.py test` and `.ci/run` execute.

Installs what the browser tests need (Debian's chromium, when missing and root may
install it), then runs pytest on two workers. Extra arguments go to pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> None:
    """Debian's chromium for the browser tests (tests/ui/test_browser.py): installed with apt
    when missing and we are root; otherwise those tests are skipped with a message."""
    if Path(CHROMIUM).exists() or os.name != "posix" or not shutil.which("apt-get"):
        return
    if os.geteuid() != 0:
        print(f"{CHROMIUM} is missing and this is not root: browser tests will be skipped "
              "(install it with `apt-get install chromium`)", flush=True)
        return
    print("installing chromium for the browser tests (apt-get) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "CI": "true"}
    quiet = {"stdout": subprocess.DEVNULL, "env": env}
    subprocess.call(["apt-get", "update", "-qq"], **quiet)
    code = subprocess.call(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], **quiet)
    if code != 0 or not Path(CHROMIUM).exists():
        print("installing chromium failed: browser tests will be skipped", flush=True)


def main(argv: list[str]) -> int:
    ensure_chromium()
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    args = [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", *argv]
    code = subprocess.call(args, cwd=ROOT, env=env)
    return 0 if code == 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
