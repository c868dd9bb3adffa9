"""The AI status as one line on pages whose views are not the dashboard's (the bulk
confirmation page; what an upload will do, on the upload page), worded for the user who
is looking."""

from __future__ import annotations

from django import template

from metadata.status import ai_status, upload_status

register = template.Library()


@register.inclusion_tag("admin/metadata/ai_status.html", takes_context=True)
def ai_status_line(context: template.Context) -> dict:
    request = context.get("request")
    return {"ai_status": ai_status(user=getattr(request, "user", None)), "compact": True}


@register.inclusion_tag("admin/metadata/ai_status.html", takes_context=True)
def upload_status_line(context: template.Context) -> dict:
    request = context.get("request")
    return {"ai_status": upload_status(user=getattr(request, "user", None)), "compact": True}
