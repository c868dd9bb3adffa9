"""A job's progress and the jobs list at 100,000 and 1,000,000 items, on SQLite and on
PostgreSQL: the counts read from the job row (metadata.counts) beside the aggregate over
every item they replaced (the baseline, rebuilt here), in the same run; and the longest
transaction of a cancel of every pending item, in chunks. Not part of the test suite::

    .venv/bin/python bench/progress.py --db sqlite --items 100000 1000000
    .venv/bin/python bench/progress.py --db postgres --items 100000 1000000

PostgreSQL at 127.0.0.1:5432 (user postgres), in the database named by --pg-database,
dropped and made again. Each job is a running "Regenerate all": 60 % succeeded, 10 %
skipped, 10 % failed, four claimed, the rest pending; nine small jobs beside it fill the
list. Assets and items are made by INSERT ... SELECT, not by the creation path.

Measured on the shared 2-core machine (others' tests running; medians, ms):

    backend     items      progress() old / new   jobs list old / new   job_summary()
    SQLite        100,000       34.0 / 1.7            30.3 / 1.4             4.9
    SQLite      1,000,000      325.6 / 1.4           557.9 / 2.0             5.2
    PostgreSQL    100,000       47.9 / 6.1           664.5 / 5.9            17.4
    PostgreSQL  1,000,000      429.0 / 4.0          2115.2 / 3.2            34.7

A cancel of the 1M job's 200,000 pending items, in 40 chunks of 5,000: SQLite 4.3 s, the
longest chunk 244 ms; PostgreSQL 8.8 s, the longest 306 ms (chunks of 20,000 took 2.4 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pgdb import admin  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each read")
    parser.add_argument("--pg-database", default="counters_db")
    args = parser.parse_args()
    os.environ.pop("REDIS_URL", None)
    os.environ.update({"DJANGO_SETTINGS_MODULE": "mediaopt.settings", "LOG_LEVEL": "WARNING"})
    if args.db == "postgres":
        name = args.pg_database
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
        try:
            run(args.db, args.items, args.runs)
        finally:
            from django.db import connections

            connections.close_all()
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        with tempfile.TemporaryDirectory() as folder:
            os.environ["DATABASE_URL"] = f"sqlite:///{folder}/bench.sqlite3"
            run(args.db, args.items, args.runs)


# -- the baseline: the aggregate over every item, as progress() and the list read it before


def old_progress(job):
    from django.db.models import Count, Q

    from metadata.models import ItemState, JobItem

    return JobItem.objects.filter(job_id=job.pk).aggregate(
        total=Count("id"),
        **{state.value: Count("id", filter=Q(state=state)) for state in ItemState},
    )


def old_list():
    from django.db.models import Count, OuterRef, Subquery
    from django.db.models.functions import Coalesce

    from metadata.models import DONE_ITEM_STATES, ItemState, JobItem, RegenerationJob

    def count(**filters):
        counted = (
            JobItem.objects.filter(job=OuterRef("pk"), **filters)
            .order_by()
            .values("job")
            .annotate(n=Count("id"))
            .values("n")
        )
        return Coalesce(Subquery(counted), 0)

    return list(
        RegenerationJob.objects.listed()
        .annotate(
            item_total=count(),
            item_done=count(state__in=DONE_ITEM_STATES),
            item_succeeded=count(state=ItemState.SUCCEEDED),
            item_failed=count(state=ItemState.FAILED),
        )
        .select_related("created_by")
        .order_by("-created_at", "-id")[:100]
    )


def new_list():
    from metadata.models import RegenerationJob

    return list(
        RegenerationJob.objects.listed()
        .with_progress()
        .select_related("created_by")
        .order_by("-created_at", "-id")[:100]
    )


# -- building ----------------------------------------------------------------------------


def _series(vendor: str, n: int) -> str:
    if vendor == "postgresql":
        return f"SELECT generate_series(1, {n}) AS i"
    return (
        f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) "
        "SELECT i FROM s"
    )


def build_assets(n: int, offset: int) -> int:
    """``n`` asset rows, copies of one bare row with their own file and sha256; the
    template's id (the copies' ids are above it)."""
    from django.db import connection

    from mediaopt.library.models import MediaAsset
    from tests.factories import bare_assets

    [template] = bare_assets(1, start=10_000_000 + offset)
    qn = connection.ops.quote_name
    table = qn(MediaAsset._meta.db_table)
    pg = connection.vendor == "postgresql"
    i = f"(s.i + {offset})"
    own = {
        "file": f"'bench/' || {i} || '.jpg'",
        "original_name": f"'photo-' || {i} || '.jpg'",
        # "b" and digits: never a bare asset's hex sha256.
        "sha256": f"'b' || lpad(CAST({i} AS text), 63, '0')" if pg else f"printf('b%063d', {i})",
    }
    columns = [f.column for f in MediaAsset._meta.concrete_fields if f.column != "id"]
    chosen = ", ".join(own.get(c, f"t.{qn(c)}") for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(qn(c) for c in columns)}) "
            f"SELECT {chosen} FROM {table} t, ({_series(connection.vendor, n)}) s "
            f"WHERE t.id = %s",
            [template.pk],
        )
    return template.pk


def build_job(n: int, offset: int):
    """A running job of ``n`` items over the assets built at ``offset``, counted."""
    from django.db import connection
    from django.utils import timezone

    from mediaopt.library.models import MediaAsset
    from metadata.models import JobItem, JobKind, JobState, RegenerationJob
    from tests.factories import recount_jobs

    above = build_assets(n, offset)
    # Started an hour ago, its items written then: the rate's window holds what the last
    # two minutes finished (none here), as on a long job's page.
    hour_ago = timezone.now() - timedelta(hours=1)
    job = RegenerationJob.objects.create(
        kind=JobKind.BULK, state=JobState.RUNNING, started_at=hour_ago
    )
    qn = connection.ops.quote_name
    now = connection.ops.adapt_datetimefield_value(hour_ago)
    empty = JobItem._meta.get_field("conflicts").get_db_prep_save([], connection)
    state = (
        "CASE WHEN a.id %% 10 < 6 THEN 'succeeded' WHEN a.id %% 10 = 6 THEN 'skipped' "
        "WHEN a.id %% 10 = 7 THEN 'failed' ELSE 'pending' END"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(JobItem._meta.db_table)} (job_id, asset_id, state, attempts, "
            f"not_before, error, conflicts, updated_at) "
            f"SELECT %s, a.id, {state}, 0, %s, '', %s, %s "
            f"FROM {qn(MediaAsset._meta.db_table)} a WHERE a.id > %s",
            [job.pk, now, empty, now, above],
        )
    pending = JobItem.objects.filter(job=job, state="pending").values_list("pk", flat=True)[:4]
    JobItem.objects.filter(pk__in=list(pending)).update(state="claimed")
    recount_jobs(job)
    return job


def timed(read, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run(db: str, sizes: list[int], runs: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from metadata import counts, jobs, progress
    from metadata.models import JobItem, JobKind, JobState, RegenerationJob

    call_command("migrate", verbosity=0)
    for _ in range(9):
        RegenerationJob.objects.create(kind=JobKind.SINGLE, state=JobState.COMPLETED)
    print(f"{db}: median of {runs} runs, ms")
    print(f"{'items':>10} {'read':<18} {'old aggregate':>14} {'job row':>10} {'ratio':>7}")
    offset = 0
    big = []
    for n in sizes:
        started = time.perf_counter()
        job = build_job(n, offset)
        offset += n
        big.append(job)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        built = time.perf_counter() - started
        new = progress.progress(job)
        old = old_progress(job)
        assert (new.total, new.succeeded, new.failed, new.pending, new.claimed) == (
            old["total"],
            old["succeeded"],
            old["failed"],
            old["pending"],
            old["claimed"],
        ), (new, old)
        for name, before, after in (
            ("progress()", lambda j=job: old_progress(j), lambda j=job: progress.progress(j)),
            ("jobs list (100)", old_list, new_list),
        ):
            a, b = timed(before, runs), timed(after, runs)
            print(f"{n:>10,} {name:<18} {a:>14.2f} {b:>10.3f} {a / b:>6.0f}x")
        summary = timed(lambda j=job: progress.job_summary(j), runs)
        print(
            f"{n:>10,} {'job_summary()':<18} {'':>14} {summary:>10.3f}   (built in {built:.0f} s)"
        )

    # Cancel the largest: how long each chunk's transaction held the write lock.
    job = big[-1]
    marks: list[float] = []
    real_moved = counts.moved

    def moved(**kwargs):
        real_moved(**kwargs)
        marks.append(time.perf_counter())

    counts.moved = moved
    started = time.perf_counter()
    try:
        jobs.cancel(job)
    finally:
        counts.moved = real_moved
    total = time.perf_counter() - started
    chunks = [b - a for a, b in zip([started, *marks], marks, strict=False)]
    pending = JobItem.objects.filter(job=job, state="cancelled").count()
    print(
        f"cancel of {pending:,} pending items: {total * 1000:.0f} ms in {len(chunks)} chunks, "
        f"the longest {max(chunks) * 1000:.0f} ms (chunk {jobs.cancel_chunk():,})"
    )


if __name__ == "__main__":
    main()
