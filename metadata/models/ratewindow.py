"""The database backend's rows of the shared provider rate limiter (used without Redis)."""

from __future__ import annotations

from django.db import models


class RateWindow(models.Model):
    """One time window of the shared provider rate limiter (metadata/ratelimit_backends.py)
    for one key, used when there is no Redis.

    ``window_start`` is the window's start in epoch seconds. The row with window_start 0
    is the key's control row: its ``blocked_until`` (epoch seconds) is when callers may
    call again after a 429 or an exhausted ``x-ratelimit-remaining-*``, and locking it
    first serialises admissions (PostgreSQL has no lock on rows that do not exist yet).
    """

    key = models.CharField(max_length=64)
    window_start = models.BigIntegerField()
    requests = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    blocked_until = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "window_start"], name="rate_window_per_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} @ {self.window_start}: {self.requests} requests, {self.tokens} tokens"
