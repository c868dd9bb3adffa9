"""The provider interface: one image preview in, raw metadata out, or a classified error."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class DescribeRequest:
    """Everything a provider may use to describe one image.

    ``preview_jpeg`` is a fresh, upright, downscaled JPEG with no metadata (images.preview).
    The heuristic provider reads ``original_name`` and ``embedded`` instead.
    """

    preview_jpeg: bytes | None
    original_name: str
    fields: tuple[str, ...]
    language: str = "en"  # a BCP 47 tag
    site_context: str = ""
    # What the file already says (title, headline, description, keywords, camera) and, when
    # it tells something, its name ("file_name"): context for the model, the heuristic's
    # only source.
    embedded: dict[str, str] = field(default_factory=dict)
    focus_keywords: str = ""  # a job's keywords to focus on
    # A second try's corrections: what was wrong with the first answer (the lint's words).
    feedback: str = ""


@dataclass(frozen=True)
class DescribeResult:
    """Raw, uncleaned output (schema.clean makes it safe) and what it cost."""

    output: dict
    provider: str
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"  # 429 back-pressure, 5xx, timeout, connection: retry later
    BAD_OUTPUT = "bad_output"  # broken JSON, off-schema, refusal: retried like transient
    AUTH = "auth"  # key rejected (401/403): stop, a person must act
    QUOTA = "quota"  # insufficient_quota: stop, a person must act
    INVALID = "invalid"  # the request itself is wrong (400): retrying will not help


class ProviderError(Exception):
    """A failed describe call, classified so the caller can retry, fail or pause."""

    def __init__(
        self,
        reason: str,
        *,
        kind: ErrorKind,
        retry_after: float | None = None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.retry_after = retry_after
        # A 429 that is back-pressure (not insufficient_quota): the shared rate limiter
        # blocks every worker for retry_after, not just this item.
        self.rate_limited = rate_limited

    @property
    def retryable(self) -> bool:
        return self.kind in {ErrorKind.TRANSIENT, ErrorKind.BAD_OUTPUT}


class Provider(Protocol):
    name: str

    def describe(self, request: DescribeRequest) -> DescribeResult:
        """Describe one image once (no retries: the caller owns the retry policy)."""
        ...
