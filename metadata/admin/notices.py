"""The notices of long jobs on the next admin page: each shown once, as a message that
links to the job's page (notifications.py writes and claims them)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from metadata import notifications
from metadata.models import NoticeLevel

LEVELS = {
    NoticeLevel.SUCCESS: messages.SUCCESS,
    NoticeLevel.WARNING: messages.WARNING,
    NoticeLevel.ERROR: messages.ERROR,
}


def show_waiting(request: HttpRequest) -> None:
    """Add the user's unseen notices to this page's messages (one query when none wait).

    Called for every admin page the site renders; htmx fragments do not show messages,
    so they leave the notices for the next whole page. Once a request.
    """
    if getattr(request, "_mediaopt_notices_shown", False):
        return
    request._mediaopt_notices_shown = True
    if getattr(request, "htmx", False) or not request.user.is_authenticated:
        return
    for notice in notifications.take_unseen(user_id=request.user.pk):
        url = reverse("admin:metadata_regenerationjob_change", args=[notice.job_id])
        messages.add_message(
            request,
            LEVELS.get(notice.level, messages.INFO),
            format_html('{}. <a href="{}">Open job #{}</a>', notice.text, url, notice.job_id),
        )
