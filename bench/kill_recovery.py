"""Time from a kill -9 of a worker host to the job's next finished item, and the paid
requests wasted per kill, on PostgreSQL with the Redis broker and real clusters.

Runs the services chaos test (tests/services/test_chaos.py: 300 images, random 429s,
500s, timeouts and malformed answers, five SIGKILLs of a cluster's process group, a new
cluster each time) and prints its figures. Needs PostgreSQL on 127.0.0.1:5432 (user
postgres) and Redis on 127.0.0.1:6379 (database 7 is flushed). Not part of the suite::

    .venv/bin/python bench/kill_recovery.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    env = {
        **os.environ,
        "DATABASE_URL": os.environ.get(
            "DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/mediaopt_bench{os.getpid()}"
        ),
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/services/test_chaos.py",
        "-q",
        "-s",
        "-p",
        "no:randomly",
    ]
    sys.exit(subprocess.run(command, cwd=ROOT, env=env).returncode)


if __name__ == "__main__":
    main()
