"""The limiter's database backend on PostgreSQL (no Redis): admissions a second and the
latency of one attempt, with the budget in one stripe (every admission locks the same
row, the layout before) and in the shipped number of stripes, side by side in one run.

Processes each with their own connection hammer one key whose limit is never reached, so
the figure is the backend's own cost under contention. Not part of the test suite::

    .venv/bin/python bench/limiter.py --processes 2 8 --seconds 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pgdb import throwaway_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--stripes", type=int, default=4, help="the shipped setting")
    args = parser.parse_args()
    with throwaway_database():
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        print(f"{'procs':>7} {'stripes':>7} {'admitted/s':>11} {'p50 ms':>7} {'p99 ms':>7}")
        for threads in args.processes:
            for stripes in (1, args.stripes):
                rate, p50, p99 = run(threads=threads, stripes=stripes, seconds=args.seconds)
                print(f"{threads:>7} {stripes:>7} {rate:>11.0f} {p50:>7.2f} {p99:>7.2f}")


def run(*, threads: int, stripes: int, seconds: float) -> tuple[float, float, float]:
    """``threads`` processes (not threads: the GIL would be the limit, not the rows)."""
    import multiprocessing

    from django.db import connection

    from tests.processes import database_url

    key = f"bench-{uuid.uuid4().hex[:8]}"
    url = database_url(connection.settings_dict)
    start_at = time.time() + 4.0  # after every process has set Django up
    context = multiprocessing.get_context("spawn")
    with context.Pool(threads) as pool:
        results = pool.starmap(hammer, [(url, key, stripes, start_at, seconds)] * threads)
    latencies = sorted(at for result in results for at in result)
    return (
        len(latencies) / seconds,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


def hammer(url: str, key: str, stripes: int, start_at: float, seconds: float) -> list[float]:
    os.environ["DATABASE_URL"] = url
    os.environ["MEDIAOPT_RATE_LIMIT_STRIPES"] = str(stripes)
    import django

    django.setup()
    from metadata.ratelimit import Limiter
    from metadata.ratelimit_backends import DatabaseBackend, Limits

    limiter = Limiter(key=key, backend=DatabaseBackend(), limits=lambda: Limits(10**9, 10**12))
    limiter.try_acquire(tokens=1)  # connects, makes its rows
    latencies = []
    time.sleep(max(start_at - time.time(), 0))
    end = time.perf_counter() + seconds
    while (now := time.perf_counter()) < end:
        assert limiter.try_acquire(tokens=1) == 0.0
        latencies.append(time.perf_counter() - now)
    return latencies


if __name__ == "__main__":
    main()
