"""Following a job in a terminal: a tqdm bar while it is worked here or on a cluster.

Shared by the commands that start jobs (import_media, regenerate_metadata), so ``--inline``
and ``--wait`` behave the same in each.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, TextIO

from django.core.management.base import BaseCommand
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


# Loggers whose INFO lines are for whoever debugs a run ("job 20: this runner worked 4
# item(s)", "Enqueued [bulk] 22"), not for the person following the bar.
CHATTY_LOGGERS = ("metadata", "mediaopt", "django-q")
DEBUG_VERBOSITY = 2


class TerminalCommand(BaseCommand):
    """A command that fits a terminal: runner logs only with ``-v 2``, and a reader who
    closes the pipe early (``| head``) ends the command without a traceback."""

    def execute(self, *args: Any, **options: Any) -> Any:
        set_log_levels(verbosity=options.get("verbosity", 1))
        try:
            try:
                return super().execute(*args, **options)
            finally:
                # Flushed here, even on sys.exit(status), so a closed pipe is met inside
                # the try and not in the interpreter's last flush.
                sys.stdout.flush()
        except BrokenPipeError:
            leave_closed_pipe()

    def bar_stream(self) -> TextIO:
        """Where a bar is drawn: stderr itself. Django's wrapper would add a newline to
        each of tqdm's redraws and colour them as errors on a terminal."""
        return getattr(self.stderr, "_out", sys.stderr)


def set_log_levels(*, verbosity: int) -> None:
    level = logging.DEBUG if verbosity >= DEBUG_VERBOSITY else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def leave_closed_pipe() -> None:
    """Exit the way Python's signal documentation recommends after EPIPE: point stdout at
    devnull so the interpreter's last flush cannot raise again, and exit with status 1."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)


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
            _draw(bar, done=progress.progress(job).done)

        runner.run_inline(job, on_item=advance)
        bar.n = progress.progress(job).done


def follow(
    job: RegenerationJob, *, stream: TextIO, show_bar: bool, poll_seconds: float = POLL_SECONDS
) -> None:
    """Poll the job's progress (one query) until it needs nobody's attention."""
    with tqdm(
        total=progress.progress(job).total, unit="image", disable=not show_bar, file=stream
    ) as bar:
        while True:
            job.refresh_from_db(fields=["state"])
            _draw(bar, done=progress.progress(job).done)
            if job.state in FOLLOW_UNTIL:
                return
            time.sleep(poll_seconds)


def _draw(bar: tqdm, *, done: int) -> None:
    """Move the bar, leaving the full bar to ``close()``: on a pipe every draw is a line
    of its own, so drawing it here too would print the final bar twice."""
    bar.n = done
    if done < (bar.total or 0):
        bar.refresh()
