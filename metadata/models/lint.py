"""Runs of the library-wide quality re-check."""

from __future__ import annotations

from django.db import models


class LintRun(models.Model):
    """One re-check of the whole library's current values (metadata/relint.py): how many
    images each rule found something in, so rules added later reach old values too."""

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    images = models.PositiveIntegerField(default=0)
    with_errors = models.PositiveIntegerField(default=0)
    with_warnings = models.PositiveIntegerField(default=0)
    fixed = models.PositiveIntegerField(default=0)
    # {rule code: images with that finding}
    counts = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        get_latest_by = "started_at"

    def __str__(self) -> str:
        return f"Quality check of {self.images} images ({self.started_at:%Y-%m-%d %H:%M})"
