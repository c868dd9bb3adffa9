"""A job's counts per item state, kept on its row: part of the one writer of job and item
rows (jobs.py, items.py, creation.py and recovery.py call these in the transaction that
adds items or moves them to a final state).

Final states are final (items.ITEM_TRANSITIONS), so each item is counted once, by the
statement that moved it there: a constant state with the UPDATE's row count, or, when the
state is decided in the statement itself (a give-back that finds its job cancelled, a
recovery over every job), the rows the UPDATE returns. The increments are F()
expressions, one UPDATE of the job row per job, after the items' UPDATE: item rows are
locked before the job's row everywhere, so two writers never wait on each other in turn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from django.db import connection
from django.db.models import Case, Count, F, IntegerField, OuterRef, QuerySet, Subquery, When
from django.db.models.functions import Coalesce

from mediaopt.library import sql
from metadata.models import COUNT_COLUMNS, ItemState, JobItem, RegenerationJob


def added(*, job_id: int, n: int) -> None:
    """``n`` pending items were just added to the job."""
    if n:
        RegenerationJob.objects.filter(pk=job_id).update(items_total=F("items_total") + n)


def moved(*, job_id: int, state: str, n: int = 1) -> None:
    """``n`` items of the job were just moved to ``state`` (nothing if it is not final)."""
    column = COUNT_COLUMNS.get(state)
    if column and n:
        RegenerationJob.objects.filter(pk=job_id).update(**{column: F(column) + n})


def moved_rows(rows: Iterable[tuple[int, str]]) -> None:
    """Count ``(job_id, state)`` rows an UPDATE returned: one UPDATE per job, in job order."""
    for job_id, counted in _by_job(rows):
        final = {s: n for s, n in counted.items() if s in COUNT_COLUMNS}
        fields = {COUNT_COLUMNS[s]: F(COUNT_COLUMNS[s]) + n for s, n in final.items()}
        if fields:
            RegenerationJob.objects.filter(pk=job_id).update(**fields)


def deleted(*, asset_ids: Sequence[int]) -> None:
    """The assets' items are about to go with them (mediaopt.library.deletion, in the
    delete's transaction): their jobs count them no more. Their rows are locked first
    (PostgreSQL), so none reaches a final state between this count and the delete; then
    the jobs' rows, in job order, and one UPDATE adjusts them all. A few statements
    whatever the number of images (one read per 999 ids on SQLite, its parameter limit)."""
    if not asset_ids:
        return
    rows: list[tuple[int, str]] = []
    step = connection.ops.bulk_batch_size(["asset_id"], asset_ids)
    for start in range(0, len(asset_ids), step):
        held = JobItem.objects.filter(asset_id__in=asset_ids[start : start + step]).order_by()
        if connection.features.has_select_for_update:
            held = held.select_for_update()
        rows.extend(held.values_list("job_id", "state"))
    by_job = _by_job(rows)
    if not by_job:
        return
    jobs = RegenerationJob.objects.filter(pk__in=[job_id for job_id, _ in by_job])
    if connection.features.has_select_for_update:
        list(jobs.select_for_update().order_by("pk").values_list("pk", flat=True))
    # Items of a pruned job are gone already: nothing of theirs is left to delete.
    jobs.update(**_less(by_job))


def _less(by_job: list[tuple[int, Counter[str]]]) -> dict[str, F]:
    """Each count column less what each job loses of it: ``col - CASE id WHEN ... END``."""
    losses: dict[str, list[When]] = {}
    for job_id, counted in by_job:
        losses.setdefault("items_total", []).append(When(pk=job_id, then=sum(counted.values())))
        for state, n in counted.items():
            if state in COUNT_COLUMNS:
                losses.setdefault(COUNT_COLUMNS[state], []).append(When(pk=job_id, then=n))
    return {
        column: F(column) - Case(*whens, default=0, output_field=IntegerField())
        for column, whens in losses.items()
    }


def _by_job(rows: Iterable[tuple[int, str]]) -> list[tuple[int, Counter[str]]]:
    """``(job_id, state)`` rows as each job's count per state, in job order (the order
    every writer locks job rows in)."""
    by_job: dict[int, Counter[str]] = {}
    for job_id, state in rows:
        by_job.setdefault(job_id, Counter())[state] += 1
    return sorted(by_job.items())


def update_returning(items: QuerySet, **fields) -> list[tuple[int, str]]:
    """``items.update(**fields)`` that returns the ``(job_id, state)`` of each row it
    changed, as written."""
    return sql.update_returning(items, returning=("job_id", "state"), **fields)


def claimed_subquery() -> Coalesce:
    """The claimed items of the row's job (at most its runners' concurrency), counted over
    the claim index by a correlated subquery: a job row's read and this in one query."""
    held = (
        JobItem.objects.filter(job=OuterRef("pk"), state=ItemState.CLAIMED)
        .order_by()
        .values("job")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(held), 0)
