"""One provider rate limiter shared by every worker on every host.

Requests and tokens per minute come from the Settings row. Every paid call asks first
(generation.call_ai_once, or the job runner through generation.admit_ai_call) and reports
the answer's rate headers afterwards, so the limiter also learns what the provider says:
a 429's ``Retry-After`` and ``x-ratelimit-remaining-*: 0`` with ``x-ratelimit-reset-*``
put a "blocked until" into the shared state, and every caller on every host waits.

The policy here (what the settings allow, what the headers say, how long to wait); the
buckets and the stores that keep them are ``metadata.ratelimit_backends``.

The tokens a call is counted for start as the provider module's estimate (which counts
the completion allowance in full) and are then corrected from the ``usage`` each answer
reports: an average of the real totals, per key and process (``TokenUsage``). Without it
the default budget (200,000 a minute at 1,322 estimated tokens a call) would cap a job
at about 151 calls a minute whatever its requests-per-minute limit.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from collections.abc import Callable, Mapping

from django.conf import settings

from metadata.ratelimit_backends import (
    BUCKET_SECONDS,
    SPAN_SECONDS,
    Backend,
    Limits,
    default_backend,
)

# How long a Settings row read is trusted: the settings page's change reaches every
# process within this, while a busy runner reads the row a few times a minute, not per call.
LIMITS_TTL_SECONDS = 10.0
# A 429 that says nothing about when to come back blocks everyone this long.
DEFAULT_BLOCK_SECONDS = 1.0
# A hostile or broken header must not park every worker for hours.
MAX_BLOCK_SECONDS = 120.0
# Spread waiters that computed the same wait over a little time, so they do not all
# come back in the same millisecond.
MAX_JITTER_SECONDS = 0.05

_limits_lock = threading.Lock()
_limits_cache: tuple[float, Limits] | None = None


def settings_limits() -> Limits:
    """The Settings row's limits, read at most once per LIMITS_TTL_SECONDS per process."""
    global _limits_cache
    now = time.monotonic()
    with _limits_lock:
        if _limits_cache is not None and now - _limits_cache[0] < LIMITS_TTL_SECONDS:
            return _limits_cache[1]
    from metadata.models import Settings

    row = Settings.objects.current()
    limits = Limits(row.requests_per_minute, row.tokens_per_minute)
    with _limits_lock:
        _limits_cache = (now, limits)
    return limits


def forget_limits() -> None:
    """Read the Settings row again on the next call (after the settings page saved it)."""
    global _limits_cache
    with _limits_lock:
        _limits_cache = None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None) -> float | None:
    """Seconds in an ``x-ratelimit-reset-*`` value: "1s", "6m0s", "120ms", "20.5s", "2"."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)  # a bare number is seconds
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _remaining(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def block_seconds(
    *, headers: Mapping[str, str], retry_after: float | None, rate_limited: bool
) -> float | None:
    """How long everyone should wait after an answer with these headers; None: no need.

    A 429 blocks for its Retry-After (else the reset hints, else DEFAULT_BLOCK_SECONDS);
    any answer whose ``x-ratelimit-remaining-requests`` or ``-tokens`` is 0 blocks until
    the matching reset: the next call would only collect a 429.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    waits: list[float] = []
    for kind in ("requests", "tokens"):
        reset = parse_reset(lowered.get(f"x-ratelimit-reset-{kind}"))
        if reset and _remaining(lowered.get(f"x-ratelimit-remaining-{kind}")) == 0:
            waits.append(reset)
    if rate_limited:
        if retry_after is not None:
            waits.append(retry_after)
        elif not waits:
            waits.append(DEFAULT_BLOCK_SECONDS)
    if not waits:
        return None
    return min(max(waits), MAX_BLOCK_SECONDS)


# -- tokens a call really uses -----------------------------------------------------------

# Weight of the newest answer's usage in the average.
USAGE_WEIGHT = 0.2


class TokenUsage:
    """The average total tokens (prompt + completion) answers reported, per limiter key.

    Thread-safe; per process (each worker learns from its own answers within a few
    calls). Until a key's first answer, callers' estimates stand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._average: dict[str, float] = {}

    def corrected(self, *, key: str, estimate: int) -> int:
        """Tokens to count a call for: the observed average, else ``estimate``."""
        with self._lock:
            average = self._average.get(key)
        return estimate if average is None else max(int(average + 0.999), 1)

    def average(self, *, key: str) -> float | None:
        with self._lock:
            return self._average.get(key)

    def learn(self, *, key: str, tokens: int) -> None:
        """One answer's reported total; ignored when the answer reported none."""
        if tokens <= 0:
            return
        with self._lock:
            average = self._average.get(key)
            self._average[key] = (
                float(tokens) if average is None else average + USAGE_WEIGHT * (tokens - average)
            )

    def forget(self) -> None:
        with self._lock:
            self._average.clear()


token_usage = TokenUsage()


# -- the limiter -------------------------------------------------------------------------


class Limiter:
    """Admissions for one key (one provider account and model), shared through a backend.

    Time is the store's (``clock`` None). ``clock`` (epoch seconds) and ``sleep`` are
    injectable so tests need not sleep.
    """

    def __init__(
        self,
        *,
        key: str,
        backend: Backend,
        limits: Callable[[], Limits] = settings_limits,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        span: int = SPAN_SECONDS,
        bucket: int = BUCKET_SECONDS,
        usage: TokenUsage | None = None,
    ) -> None:
        self.key = key
        self.usage = token_usage if usage is None else usage
        self.backend = backend
        self.limits = limits
        self.clock = clock
        self.sleep = sleep
        self.span = span
        self.bucket = bucket

    def try_acquire(self, *, tokens: int) -> float:
        """One attempt that never waits: 0.0 if admitted (counted), else seconds to wait.

        For callers that have other work while they wait (the job runner writes finished
        results meanwhile). ``tokens`` is the caller's estimate; the call is counted for
        the tokens answers on this key really used, once one has said.
        """
        limits = self.limits()
        if not limits.requests_per_minute and not limits.tokens_per_minute:
            return 0.0
        return self.backend.admit(
            key=self.key,
            now=self.clock() if self.clock is not None else None,
            limits=limits,
            tokens=self.usage.corrected(key=self.key, estimate=max(int(tokens), 0)),
            span=self.span,
            bucket=self.bucket,
        )

    def acquire(self, *, tokens: int, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait until one call of ``tokens`` is admitted (True), or give up (False).

        Gives up at once when the wait it was told exceeds what is left of ``timeout``
        (sleeping would only end in False), or when ``stop`` is set (a pause). It sleeps
        between attempts, never inside a transaction.
        """
        # Only for this process's own deadline: its clock's rate, not its setting, matters.
        elapsed = self.clock or time.monotonic
        deadline = elapsed() + max(timeout, 0.0)
        while True:
            wait = self.try_acquire(tokens=tokens)
            if wait <= 0:
                return True
            if elapsed() + wait > deadline:
                return False
            pause = wait + random.uniform(0, min(MAX_JITTER_SECONDS, wait / 10))
            if stop is not None:
                if stop.wait(pause):
                    return False
            else:
                self.sleep(pause)

    def allowed_per_second(self) -> tuple[float | None, float | None]:
        """Requests and tokens a second the limits allow (None: no limit of that kind)."""
        limits = self.limits()
        return (
            limits.requests_per_minute / self.span if limits.requests_per_minute else None,
            limits.tokens_per_minute / self.span if limits.tokens_per_minute else None,
        )

    def tokens_per_call(self) -> float | None:
        """The tokens answers on this key reported, on average; None before the first."""
        return self.usage.average(key=self.key)

    def learn(
        self,
        *,
        headers: Mapping[str, str],
        retry_after: float | None = None,
        rate_limited: bool = False,
        used_tokens: int = 0,
    ) -> float | None:
        """Take in one answer's rate headers (and, for a 429, its Retry-After): block every
        caller as long as they say; and the tokens it reported using, which correct the
        count of the next calls. Returns the seconds blocked, or None."""
        self.usage.learn(key=self.key, tokens=used_tokens)
        seconds = block_seconds(headers=headers, retry_after=retry_after, rate_limited=rate_limited)
        if seconds is None or seconds <= 0:
            return None
        self.block(seconds=seconds)
        return seconds

    def block(self, *, seconds: float) -> None:
        """Nobody with this key is admitted for ``seconds`` (a block is never shortened)."""
        now = self.clock() if self.clock is not None else None
        self.backend.block_for(key=self.key, seconds=seconds, now=now)


def limiter_key(*, base_url: str, api_key: str, model: str) -> str:
    """Providers limit per account (key) and model. A digest, so no key reaches Redis or
    the database, and an account's own key (BYOK) gets its own budget."""
    digest = hashlib.sha256(f"{base_url}\n{api_key}\n{model}".encode()).hexdigest()
    return f"openai:{digest[:24]}"


def limiter_for(*, base_url: str, api_key: str, model: str) -> Limiter:
    return Limiter(
        key=limiter_key(base_url=base_url, api_key=api_key, model=model),
        backend=default_backend(),
    )


def max_wait_seconds() -> float:
    """How long one call waits for the limiter before it counts as a transient failure."""
    return float(getattr(settings, "MEDIAOPT_RATE_LIMIT_WAIT_SECONDS", 120.0))
