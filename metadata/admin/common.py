"""What the admin's metadata screens share: the permissions they check, htmx's stop
signal, the link to a job's page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from metadata.models import (
    RegenerationJob,
)

# Creating and controlling jobs (and anything that can make a paid call); seeing them
# needs only the model's view permission.
RUN_PERMISSION = "metadata.run_regeneration"
# Undoing a job changes images' metadata: whoever may edit metadata may undo, no one else.
UNDO_PERMISSION = "mediaopt.change_mediaasset"
# htmx stops a poll when the answer is 286 (and still swaps its content).
STOP_POLLING = 286
# How many jobs the settings page lists, and the library's "changed by job" filter offers.
RECENT_JOBS = 10


def may_run(request: HttpRequest) -> bool:
    """Whether the user may start and control jobs: anything that can make a paid call."""
    return request.user.has_perm(RUN_PERMISSION)


def job_link(job: RegenerationJob) -> str:
    """A link to the job's admin page."""
    url = reverse("admin:metadata_regenerationjob_change", args=[job.pk])
    return format_html('<a href="{}">job #{}</a>', url, job.pk)


def int_or_none(raw: Any) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None
