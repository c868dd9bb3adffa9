"""The one retry policy for provider calls (the SDK's own retries are off).

Only errors the provider classified as retryable are retried. A server's Retry-After wins
over our backoff (capped, so a hostile or broken header cannot park a worker for hours);
otherwise exponential backoff with jitter, so many workers that failed together do not
come back together. The job runner (metadata/jobs.py) turns the delay into an item's
``not_before`` and counts attempts against ``MEDIAOPT_JOB_MAX_ATTEMPTS``; nothing sleeps
on an item.
"""

from __future__ import annotations

import random
from collections.abc import Callable

MAX_DELAY = 60.0


def backoff_delay(
    attempt: int,
    *,
    base_delay: float,
    retry_after: float | None = None,
    jitter: Callable[[], float] = random.random,
    max_delay: float = MAX_DELAY,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    The job runner turns it into an item's ``not_before`` instead of sleeping while
    holding the item.
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), max_delay)
    exponential = max(base_delay, 0.0) * (2 ** (attempt - 1))
    # "Equal jitter": between half and all of the exponential step, never zero growth.
    return min(exponential * (0.5 + jitter() / 2), max_delay)
