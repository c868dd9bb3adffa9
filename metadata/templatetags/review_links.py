"""Links to the review screen from other pages (a job's page, the settings page), with
how many proposals wait there: counted up to a cap, so a link never costs a scan."""

from __future__ import annotations

from urllib.parse import urlencode

from django import template
from django.urls import reverse

from metadata import review

register = template.Library()


@register.inclusion_tag("admin/metadata/proposal/review_link.html")
def review_link(job=None, tool=False):
    """ "Review N waiting" for the job (or for all jobs), nothing when none waits;
    ``tool``: as an item of the admin's object tools."""
    job_id = getattr(job, "pk", None)
    waiting = review.waiting_count(job_id=job_id)
    url = reverse("admin:metadata_proposal_changelist")
    if job_id is not None:
        url += "?" + urlencode({"job": job_id})
    return {
        "waiting": waiting,
        "capped": waiting > review.COUNT_CAP,
        "cap": review.COUNT_CAP,
        "url": url,
        "tool": tool,
    }
