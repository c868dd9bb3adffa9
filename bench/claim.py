"""The claim's query on PostgreSQL at N pending items, with the old index and the new, side
by side in one run: the plan's node types and the median time of the query.

Every item of a "Regenerate all" job is due at the same moment, so ``ORDER BY not_before,
id`` can only be served by an index that carries ``id`` after ``not_before``; without it
PostgreSQL reads and sorts every pending item of the job to return a batch of four. Not
part of the test suite::

    .venv/bin/python bench/claim.py --items 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pgdb import throwaway_database  # noqa: E402

OLD = "CREATE INDEX bench_claim_old ON metadata_jobitem (job_id, state, not_before)"
NEW = "jobitem_claim_order"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=21, help="timed runs of each query")
    args = parser.parse_args()
    with throwaway_database():
        run(args.items, args.runs)


def run(count: int, runs: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from mediaopt.library.models import MediaAsset
    from metadata.models import ItemState, JobItem, JobKind, JobState, RegenerationJob
    from tests.factories import bare_assets

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    bare_assets(count)
    job = RegenerationJob.objects.create(kind=JobKind.BULK, state=JobState.RUNNING)
    due = timezone.now()
    ids = MediaAsset.objects.values_list("id", flat=True)
    JobItem.objects.bulk_create(
        [JobItem(job=job, asset_id=a, not_before=due) for a in ids], batch_size=5000
    )
    print(f"{count:,} pending items built in {time.perf_counter() - started:.1f} s")

    with transaction.atomic():
        # The claim's own query (metadata.items.claim), row locks and all.
        query = (
            JobItem.objects.filter(
                job_id=job.pk, state=ItemState.PENDING, not_before__lte=timezone.now()
            )
            .order_by("not_before", "id")
            .select_for_update(skip_locked=True)
            .values_list("id", "asset_id", "attempts")[:4]
        )
        sql, params = query.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(OLD)
            cursor.execute(f"DROP INDEX {NEW}")
            old = _measure(cursor, sql, params, runs)
            cursor.execute(
                f"CREATE INDEX {NEW} ON metadata_jobitem (job_id, state, not_before, id)"
            )
            cursor.execute("DROP INDEX bench_claim_old")
            new = _measure(cursor, sql, params, runs)
    print(f"{'index':<34} {'median ms':>10}  plan")
    print(f"{'(job, state, not_before) [before]':<34} {old[0]:>10.2f}  {old[1]}")
    print(f"{'(job, state, not_before, id)':<34} {new[0]:>10.2f}  {new[1]}")
    print(f"ratio: {old[0] / new[0]:.0f}x")


def _measure(cursor, sql: str, params, runs: int) -> tuple[float, str]:
    cursor.execute("ANALYZE metadata_jobitem")
    cursor.execute("EXPLAIN " + sql, params)
    lines = [row[0].strip().lstrip("-> ").split("  (")[0] for row in cursor.fetchall()]
    nodes = [line for line in lines if ":" not in line]  # the node types, not their filters
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        cursor.execute(sql, params)
        cursor.fetchall()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return times[len(times) // 2], " > ".join(nodes)


if __name__ == "__main__":
    main()
