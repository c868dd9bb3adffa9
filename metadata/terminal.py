"""Following a job in a terminal: a tqdm bar while it is worked here or on a cluster.

Shared by the commands that start jobs (import_media, regenerate_metadata), so ``--inline``
and ``--wait`` behave the same in each.
"""

from __future__ import annotations

import time
from typing import TextIO

from tqdm import tqdm

from metadata import jobs
from metadata.models import JobState, RegenerationJob

# Following stops in any of these: the job will not move without a person.
FOLLOW_UNTIL = frozenset({JobState.COMPLETED, JobState.PAUSED, JobState.CANCELLED, JobState.FAILED})
POLL_SECONDS = 0.5


def work_inline(job: RegenerationJob, *, stream: TextIO, show_bar: bool) -> None:
    """Work a draft job to its end in this process, with no cluster, drawing a bar."""
    total = jobs.progress(job).total
    with tqdm(total=total, unit="image", disable=not show_bar, file=stream) as bar:

        def advance() -> None:
            bar.n = jobs.progress(job).done
            bar.refresh()

        jobs.run_inline(job, on_item=advance)
        advance()


def follow(
    job: RegenerationJob, *, stream: TextIO, show_bar: bool, poll_seconds: float = POLL_SECONDS
) -> None:
    """Poll the job's progress (one query) until it needs nobody's attention."""
    with tqdm(
        total=jobs.progress(job).total, unit="image", disable=not show_bar, file=stream
    ) as bar:
        while True:
            job.refresh_from_db(fields=["state"])
            bar.n = jobs.progress(job).done
            bar.refresh()
            if job.state in FOLLOW_UNTIL:
                return
            time.sleep(poll_seconds)
