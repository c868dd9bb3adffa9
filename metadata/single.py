"""The Regenerate button: a ``single`` job for one image on the interactive queue.

A person asked for new values, so the strategy is "overwrite"; fields edited by hand are
replaced only when the person said so (``replace_manual``), after being asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from billing import gate
from mediaopt.library.fields import FIELDS, Source
from mediaopt.library.models import MediaAsset
from metadata import jobs
from metadata.models import JobItem, JobKind, JobQueue, RegenerationJob, Strategy


@dataclass(frozen=True)
class Regeneration:
    """What a click started: a job, or why none was started."""

    job: RegenerationJob | None = None
    # The job that already holds the image (an asset is in at most one active job).
    busy_job_id: int | None = None
    # The gate refused AI for this work (e.g. out of credits), in words for a person.
    refused: str = ""

    @property
    def started(self) -> bool:
        return self.job is not None


def manual_fields(asset: MediaAsset) -> list[str]:
    """Fields holding a value typed by hand: the ones a regeneration keeps unless forced.

    Same rule as strategies.may_write: an empty manual field protects nothing.
    """
    return [
        name
        for name in FIELDS
        if getattr(asset, f"{name}_source") == Source.MANUAL and getattr(asset, name)
    ]


def busy_job_id(asset_id: int) -> int | None:
    return JobItem.objects.active_for_asset(asset_id).values_list("job_id", flat=True).first()


def request_regeneration(
    *, asset: MediaAsset, actor, replace_manual: bool, review: bool = False
) -> Regeneration:
    """Start a ``single`` job for ``asset``, unless it is busy or AI is refused.

    ``review``: the result waits as a proposal for a person instead of being written.

    The gate is asked here as well as by the runner: a refusal then reaches the person at
    once, instead of as a job paused with the image held.
    """
    busy = busy_job_id(asset.pk)
    if busy is not None:
        return Regeneration(busy_job_id=busy)
    decision = gate.decide(work=gate.WorkKind.SINGLE)
    if decision.mode == gate.Mode.REFUSED:
        return Regeneration(refused=decision.reason)
    with transaction.atomic():
        creation = jobs.create_job(
            kind=JobKind.SINGLE,
            asset_ids=[asset.pk],
            options={
                "strategy": Strategy.OVERWRITE,
                "force": replace_manual,
                **({"review": True} if review else {}),
            },
            created_by=actor,
            queue=JobQueue.INTERACTIVE,
        )
        if creation.busy_count:
            # Another click or job took the image between the check and the insert: the
            # database constraint decided. The empty draft is closed, never queued.
            jobs.cancel(creation.job)
            return Regeneration(busy_job_id=busy_job_id(asset.pk))
        jobs.enqueue(creation.job)
    return Regeneration(job=creation.job)
