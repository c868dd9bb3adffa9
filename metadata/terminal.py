"""Following a job in a terminal: a tqdm bar while it is worked here or on a cluster.

Shared by the commands that start jobs (import_media, regenerate_metadata), so ``--inline``
and ``--wait`` behave the same in each.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from tqdm import tqdm

from metadata import progress, runner
from metadata.models import JobState, RegenerationJob

# Following stops in any of these: the job will not move without a person.
FOLLOW_UNTIL = frozenset({JobState.COMPLETED, JobState.PAUSED, JobState.CANCELLED, JobState.FAILED})
POLL_SECONDS = 0.5

# Exit statuses of the commands that run jobs: where the job stands.
EXIT_OK = 0  # every image succeeded or was skipped (or the job is queued or running)
EXIT_FAILURES = 2  # some images failed, or the job could not run
EXIT_STOPPED = 3  # paused or cancelled: it needs a person


def exit_status(summary: progress.Summary) -> int:
    state = summary.job.state
    if state in {JobState.PAUSED, JobState.CANCELLED}:
        return EXIT_STOPPED
    if state == JobState.FAILED or summary.progress.failed:
        return EXIT_FAILURES
    return EXIT_OK


def summary_dict(summary: progress.Summary) -> dict[str, Any]:
    """A job's outcome for ``--json``."""
    return {
        "job": summary.job.pk,
        "state": summary.job.state,
        "pause_reason": summary.job.pause_reason,
        **summary.progress.counts(),
        "failures": [
            {"id": failure.asset_id, "name": failure.name, "reason": failure.reason}
            for failure in summary.failures
        ],
    }


def work_inline(job: RegenerationJob, *, stream: TextIO, show_bar: bool) -> None:
    """Work a draft job to its end in this process, with no cluster, drawing a bar."""
    total = progress.progress(job).total
    with tqdm(total=total, unit="image", disable=not show_bar, file=stream) as bar:

        def advance() -> None:
            bar.n = progress.progress(job).done
            bar.refresh()

        runner.run_inline(job, on_item=advance)
        advance()


def follow(
    job: RegenerationJob, *, stream: TextIO, show_bar: bool, poll_seconds: float = POLL_SECONDS
) -> None:
    """Poll the job's progress (one query) until it needs nobody's attention."""
    with tqdm(
        total=progress.progress(job).total, unit="image", disable=not show_bar, file=stream
    ) as bar:
        while True:
            job.refresh_from_db(fields=["state"])
            bar.n = progress.progress(job).done
            bar.refresh()
            if job.state in FOLLOW_UNTIL:
                return
            time.sleep(poll_seconds)
