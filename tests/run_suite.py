"""Run the whole test suite: what `python3 run.py test` and `.ci/run` execute.

Installs what the browser tests need (Debian's chromium, when missing and root may
install it), then runs pytest on two workers. Extra arguments go to pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    args = [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", *argv]
    code = subprocess.call(args, cwd=ROOT, env=env)
    return 0 if code == 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
