"""A job's items made in chunks: part of the one writer of item rows (with jobs.py, whose
transitions it uses, items.py and recovery.py).

A "Regenerate all" over a million images is fifty INSERT ... SELECT statements of 20,000
asset ids each, every one its own short transaction, so SQLite's write lock (and a
PostgreSQL lock on the job row) is held for one chunk at a time and web writes and runners
get in between. The job is "preparing" meanwhile (no runner takes it); a cancel stops the
chunks; recover() fails a preparation whose process died (jobs.fail_stale_preparing).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Min, QuerySet
from django.utils import timezone

from metadata import counts
from metadata.models import ItemState, JobItem, JobState, RegenerationJob


def create_chunk() -> int:
    """Asset ids (a range of them) whose items one transaction of add_items inserts."""
    return max(int(settings.MEDIAOPT_JOB_CREATE_CHUNK), 1)


def prepare_in_task_above() -> int:
    """A bulk job needing more images than this gets its items from a task."""
    return int(settings.MEDIAOPT_JOB_PREPARE_IN_TASK_ABOVE)


def add_items(
    *,
    job: RegenerationJob,
    assets: QuerySet,
    bounds: tuple[int | None, int | None] | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> int:
    """One pending item per asset of ``assets`` not busy in another job; how many were added.

    In chunks of create_chunk() asset ids, each one INSERT ... SELECT in its own short
    transaction (outside a caller's transaction, SQLite's write lock is held for one chunk
    at a time, whatever the job's size), from the highest ids down and in the queryset's
    order within a chunk: claims take items by id, so the newest uploads come first.
    ``bounds`` (the lowest and highest asset id of ``assets``, when the caller counted
    them already) saves one query. Each chunk first checks the job is still a draft or
    preparing (and, on PostgreSQL, locks its row, so a cancel waits for the chunk): a job
    cancelled meanwhile gets no more items. ``on_chunk(added_so_far)`` is called after
    each chunk. As in create_job, the database constraint decides who is busy.
    """
    if bounds is None:
        found = assets.order_by().aggregate(lo=Min("pk"), hi=Max("pk"))
        bounds = (found["lo"], found["hi"])
    lo, hi = bounds
    if lo is None or hi is None:
        return 0
    step = create_chunk()
    added = 0
    top = hi
    while top >= lo:
        bottom = max(top - step + 1, lo)
        with transaction.atomic():
            if not _still_preparing(job.pk):
                break
            n = _insert_items(job_id=job.pk, assets=assets.filter(pk__gte=bottom, pk__lte=top))
            counts.added(job_id=job.pk, n=n)
        added += n
        if on_chunk is not None:
            on_chunk(added)
        top = bottom - 1
    return added


def _still_preparing(job_id: int) -> bool:
    """True when the job may still get items; the UPDATE locks its row until the chunk
    commits and touches updated_at (cancel_stale_preparing reads it)."""
    return bool(
        RegenerationJob.objects.filter(
            pk=job_id, state__in=[JobState.DRAFT, JobState.PREPARING]
        ).update(updated_at=timezone.now())
    )


def _insert_items(*, job_id: int, assets: QuerySet) -> int:
    # An alias of our own: a bare "id" column of a subquery is not named alike everywhere.
    chosen = assets.annotate(item_asset_id=F("pk")).values_list("item_asset_id", flat=True)
    inner_sql, inner_params = chosen.query.sql_with_params()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    qn = connection.ops.quote_name
    # "WHERE true": SQLite needs a WHERE before ON CONFLICT in an INSERT ... SELECT.
    sql = (
        f"INSERT INTO {qn(JobItem._meta.db_table)} "
        f"({qn('job_id')}, {qn('asset_id')}, {qn('state')}, {qn('attempts')}, "
        f"{qn('not_before')}, {qn('error')}, {qn('conflicts')}, {qn('updated_at')}) "
        f"SELECT %s, chosen.{qn('item_asset_id')}, %s, 0, %s, '', %s, %s "
        f"FROM ({inner_sql}) chosen "
        "WHERE true ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        empty = JobItem._meta.get_field("conflicts").get_db_prep_save([], connection)
        cursor.execute(sql, [job_id, ItemState.PENDING.value, now, empty, now, *inner_params])
        return cursor.rowcount
