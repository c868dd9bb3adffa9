"""How many provider calls a runner keeps in flight: pure arithmetic, no clock, no I/O.

Little's law: to send ``rate`` calls a second when each call is in flight ``latency``
seconds, a runner needs ``rate x latency`` calls in flight. The rate is what the
configured limits allow (requests a minute, and tokens a minute divided by the tokens a
call really uses); the latency is an exponentially weighted average of what the runner
observes, from sending a call to concluding it. A headroom factor covers the spread of
latencies around that average. The shared limiter (metadata/ratelimit.py) still gates
every admission, so a width a little too large only waits there; a width too small is
what loses throughput.

On top of that, an AIMD window for providers whose real limit is lower than the
configured one (or unset): a 429 halves it (at most once per observed latency, since the
429s of one burst are one signal), an answer with ``x-ratelimit-remaining-*`` low holds
it where it is, and any other answer grows it by one. The width is the smaller of the two,
between 1 and the cap (``MEDIAOPT_JOB_CONCURRENCY``).

A ``Pace`` is a frozen value: ``observe`` returns the next one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

# Assumed before the first answer: a vision call of a small preview takes seconds.
PRIOR_LATENCY_SECONDS = 2.0
# Weight of the newest latency sample in the average.
LATENCY_WEIGHT = 0.2
# In-flight calls beyond rate x latency: answers slower than the average still leave a
# call ready to go when the limiter admits one.
HEADROOM = 1.25
# A 429 multiplies the AIMD window by this.
DECREASE = 0.5
# Below this share of the provider's limit left (x-ratelimit-remaining / -limit), the
# window stops growing: the next calls would only collect 429s.
LOW_REMAINING = 0.05


@dataclass(frozen=True)
class Allowed:
    """What the configured limits allow, per second; None: no limit of that kind."""

    requests_per_second: float | None
    tokens_per_second: float | None

    def calls_per_second(self, *, tokens_per_call: float | None) -> float | None:
        """Calls a second the tighter of the two limits allows (None: unlimited).

        ``tokens_per_call`` None: not known yet (no answer has reported its usage), so the
        token limit is left to the limiter: a pre-call estimate counts the completion
        allowance in full, several times what a call uses, and would keep the first
        answers' worth of calls far too few."""
        rates = []
        if self.requests_per_second:
            rates.append(self.requests_per_second)
        if self.tokens_per_second and tokens_per_call is not None:
            rates.append(self.tokens_per_second / max(tokens_per_call, 1.0))
        return min(rates) if rates else None


def little_width(*, calls_per_second: float, latency_seconds: float, headroom: float) -> float:
    """Calls in flight needed to send ``calls_per_second`` at this latency (Little's law)."""
    return max(calls_per_second, 0.0) * max(latency_seconds, 0.0) * headroom


def low_remaining(headers: Mapping[str, str]) -> bool:
    """Whether an answer says little is left of the provider's requests or tokens."""
    lowered = {key.lower(): value for key, value in headers.items()}
    for kind in ("requests", "tokens"):
        try:
            limit = float(lowered[f"x-ratelimit-limit-{kind}"])
            remaining = float(lowered[f"x-ratelimit-remaining-{kind}"])
        except (KeyError, ValueError):
            continue
        if limit > 0 and remaining / limit < LOW_REMAINING:
            return True
    return False


@dataclass(frozen=True)
class Pace:
    """The controller's state for one runner."""

    cap: int
    latency: float | None = None  # the observed average, seconds; None before any answer
    window: float | None = None  # the AIMD bound; None: no 429 seen, it never bound
    last_cut: float = -math.inf  # when (caller's clock, seconds) the window was last cut
    headroom: float = HEADROOM

    @property
    def expected_latency(self) -> float:
        return PRIOR_LATENCY_SECONDS if self.latency is None else self.latency

    def width(self, *, allowed: Allowed, tokens_per_call: float | None, share: int = 1) -> int:
        """Calls to keep in flight now. ``share``: how many runners split the limit."""
        rate = allowed.calls_per_second(tokens_per_call=tokens_per_call)
        bound = float(self.cap)
        if rate is not None:
            needed = little_width(
                calls_per_second=rate / max(share, 1),
                latency_seconds=self.expected_latency,
                headroom=self.headroom,
            )
            bound = min(bound, math.ceil(needed))
        if self.window is not None:
            bound = min(bound, math.floor(self.window))
        return int(min(max(bound, 1), self.cap))

    def observe(
        self,
        *,
        seconds: float,
        now: float,
        width: int,
        rate_limited: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Pace:
        """After one answer that took ``seconds`` in flight, while the width was ``width``.

        A 429 came back at once (it says nothing of the call's latency), so it only
        cuts the window."""
        if rate_limited:
            if now - self.last_cut < self.expected_latency:
                return self  # the same burst of 429s: one cut
            current = width if self.window is None else min(self.window, width)
            return dataclasses.replace(self, window=max(current * DECREASE, 1.0), last_cut=now)
        sample = max(seconds, 0.0)
        latency = (
            sample
            if self.latency is None
            else self.latency + LATENCY_WEIGHT * (sample - self.latency)
        )
        window = self.window
        if window is not None:
            if headers and low_remaining(headers):
                window = min(window, float(max(width, 1)))
            else:
                window = min(window + 1.0, float(self.cap))
        return dataclasses.replace(self, latency=latency, window=window)
