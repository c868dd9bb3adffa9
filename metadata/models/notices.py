"""Notices: the line a person sees on their next admin page about a long job of theirs
that completed, paused or failed (the e-mail's twin; written by metadata/notifications.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from metadata.models.jobs import RegenerationJob


class NoticeLevel(models.TextChoices):
    SUCCESS = "success", "Success"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class NoticeQuerySet(models.QuerySet):
    def unseen(self) -> NoticeQuerySet:
        return self.filter(seen_at__isnull=True)


class Notice(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mediaopt_notices"
    )
    job = models.ForeignKey(RegenerationJob, on_delete=models.CASCADE, related_name="notices")
    level = models.CharField(max_length=8, choices=NoticeLevel.choices)
    text = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when the notice was shown; seen notices are deleted by the daily prune.
    seen_at = models.DateTimeField(null=True, blank=True)

    objects = NoticeQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # The one query of every admin page: this user's unseen notices.
            models.Index(
                fields=["user"],
                condition=models.Q(seen_at__isnull=True),
                name="notice_unseen_by_user",
            ),
        ]

    def __str__(self) -> str:
        return self.text
