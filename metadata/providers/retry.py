"""The one retry policy for provider calls (the SDK's own retries are off).

Only errors the provider classified as retryable are retried. A server's Retry-After wins
over our backoff (capped, so a hostile or broken header cannot park a worker for hours);
otherwise exponential backoff with jitter, so many workers that failed together do not
come back together.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from metadata.providers.base import DescribeRequest, DescribeResult, Provider, ProviderError

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

    Public so that job runners can turn the same policy into an item's ``not_before``
    instead of sleeping while holding an item.
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), max_delay)
    exponential = max(base_delay, 0.0) * (2 ** (attempt - 1))
    # "Equal jitter": between half and all of the exponential step, never zero growth.
    return min(exponential * (0.5 + jitter() / 2), max_delay)


def call_with_retries(
    provider: Provider,
    request: DescribeRequest,
    *,
    attempts: int,
    base_delay: float,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
    max_delay: float = MAX_DELAY,
) -> DescribeResult:
    """Call ``provider.describe`` up to ``attempts`` times in all; raise the last error."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return provider.describe(request)
        except ProviderError as error:
            if not error.retryable or attempt == attempts:
                raise
            sleep(
                backoff_delay(
                    attempt,
                    base_delay=base_delay,
                    retry_after=error.retry_after,
                    jitter=jitter,
                    max_delay=max_delay,
                )
            )
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
