"""The runner of undo jobs: claim large batches, undo them in chunks of one transaction
each, complete. Local work: never a provider call, never a credit.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable

from metadata import items, jobs
from metadata.jobs import IllegalTransition
from metadata.models import JobState, RegenerationJob

# Undo items are local work (a few queries per batch, one UPDATE per image, no provider):
# large claims, written in chunks of one transaction each, the job's state re-read before
# each chunk so pause and cancel still stop it within a fraction of a second.
UNDO_BATCH = 100
UNDO_CHUNK = 25


def work_undo(
    job: RegenerationJob,
    *,
    token: uuid.UUID,
    deadline: float | None,
    on_item: Callable[[], None] | None = None,
) -> tuple[int, bool]:
    """The undo runner's loop: claim, undo in chunks, complete. Never calls a provider,
    never touches credits. Returns how many items it worked and whether it handed over."""
    job_id, worked, hand_over = job.pk, 0, False
    if job.undo_of_id is None:
        with contextlib.suppress(IllegalTransition):
            jobs.fail(job, reason="The job this undo was for no longer exists.")
        return 0, False
    try:
        while True:
            if jobs.heartbeat(job_id=job_id, runner_token=token) != JobState.RUNNING:
                return worked, False
            if deadline is not None and time.monotonic() >= deadline:
                hand_over = True
                break
            # No image is opened: the attempt is counted as the items are claimed.
            batch = items.claim(
                job_id=job_id,
                batch_size=UNDO_BATCH,
                lease_seconds=jobs.lease_seconds(),
                count_attempt=True,
            )
            if not batch:
                jobs.complete_if_done(job)
                return worked, False
            for start_at in range(0, len(batch), UNDO_CHUNK):
                if start_at and (
                    jobs.heartbeat(job_id=job_id, runner_token=token, touch=False)
                    != JobState.RUNNING
                ):
                    for rest in batch[start_at:]:
                        items.release_item(
                            item_id=rest.id, lease_token=rest.lease_token, opened=True
                        )
                    return worked, False
                chunk = batch[start_at : start_at + UNDO_CHUNK]
                items.finish_undo_items(items=chunk, job=job)
                worked += len(chunk)
                if on_item is not None:
                    on_item()  # once per chunk: a progress bar reads the counts
    finally:
        if hand_over and jobs.heartbeat(job_id=job_id, runner_token=token) == JobState.RUNNING:
            jobs.dispatch(job)
        else:
            hand_over = False
    return worked, hand_over
