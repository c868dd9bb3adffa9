"""pacing.py as pure functions: Little's law from the limits and the observed latency, the
AIMD window on 429s and headers, the cap; and the limiter's token count corrected from
the usage answers report (ratelimit.TokenUsage)."""

from __future__ import annotations

import math

import pytest

from metadata import pacing, ratelimit
from metadata.pacing import Allowed, Pace
from metadata.ratelimit_backends import Limits

RPM_600 = Allowed(requests_per_second=10.0, tokens_per_second=None)
UNLIMITED = Allowed(requests_per_second=None, tokens_per_second=None)


def settled(latency: float, *, cap: int = 64, answers: int = 60) -> Pace:
    pace = Pace(cap=cap)
    for i in range(answers):
        pace = pace.observe(
            seconds=latency, now=float(i), width=pace.width(allowed=RPM_600, tokens_per_call=1)
        )
    return pace


@pytest.mark.parametrize("latency", [0.5, 2.5, 3.0])
def test_the_width_is_the_limit_times_the_observed_latency_with_headroom(latency):
    pace = settled(latency)
    assert pace.latency == pytest.approx(latency)
    expected = math.ceil(10.0 * latency * pacing.HEADROOM)
    assert pace.width(allowed=RPM_600, tokens_per_call=1) == expected
    # Enough for the limit (Little's law), and not twice as many.
    assert 10.0 * latency <= expected <= 10.0 * latency * 1.5 + 1


def test_the_latency_is_an_average_that_follows_a_change():
    pace = settled(0.5)
    pace = pace.observe(seconds=3.0, now=100.0, width=7)
    assert 0.5 < pace.latency < 1.5  # one slow answer moves it, does not replace it
    for i in range(40):
        pace = pace.observe(seconds=3.0, now=101.0 + i, width=7)
    assert pace.latency == pytest.approx(3.0, rel=0.01)
    assert pace.width(allowed=RPM_600, tokens_per_call=1) == math.ceil(30 * pacing.HEADROOM)


def test_before_any_answer_the_prior_latency_sizes_the_width():
    assert Pace(cap=64).width(allowed=RPM_600, tokens_per_call=1) == math.ceil(
        10 * pacing.PRIOR_LATENCY_SECONDS * pacing.HEADROOM
    )


def test_the_cap_bounds_the_width_and_the_width_is_at_least_one():
    assert settled(3.0, cap=8).width(allowed=RPM_600, tokens_per_call=1) == 8
    slow_limit = Allowed(requests_per_second=0.01, tokens_per_second=None)
    assert settled(0.1).width(allowed=slow_limit, tokens_per_call=1) == 1


def test_the_token_budget_binds_when_it_allows_fewer_calls_than_the_requests():
    # 200,000 tokens a minute at 1,322 tokens a call: about 2.5 calls a second.
    allowed = Allowed(requests_per_second=10.0, tokens_per_second=200_000 / 60)
    assert allowed.calls_per_second(tokens_per_call=1322) == pytest.approx(2.52, abs=0.01)
    # At the 250 tokens answers really use, the requests bind again.
    assert allowed.calls_per_second(tokens_per_call=250) == 10.0
    # Before any answer reported its usage, the token budget is the limiter's alone.
    assert allowed.calls_per_second(tokens_per_call=None) == 10.0
    assert Pace(cap=64).width(allowed=allowed, tokens_per_call=None) == Pace(cap=64).width(
        allowed=RPM_600, tokens_per_call=None
    )
    pace = settled(2.5)
    assert pace.width(allowed=allowed, tokens_per_call=1322) == math.ceil(
        200_000 / 60 / 1322 * 2.5 * pacing.HEADROOM
    )


def test_runners_sharing_the_limit_each_keep_their_share():
    pace = settled(3.0)
    alone = pace.width(allowed=RPM_600, tokens_per_call=1)
    assert pace.width(allowed=RPM_600, tokens_per_call=1, share=2) == math.ceil(alone / 2)


def test_without_limits_the_width_is_the_cap_until_a_429():
    pace = settled(1.0)
    assert pace.width(allowed=UNLIMITED, tokens_per_call=1) == 64


def test_a_429_halves_the_window_once_per_burst_then_answers_grow_it_by_one():
    pace = settled(1.0)
    width = pace.width(allowed=UNLIMITED, tokens_per_call=1)
    cut = pace.observe(seconds=0.01, now=100.0, width=width, rate_limited=True)
    assert cut.window == width * pacing.DECREASE == 32
    assert cut.latency == pace.latency  # a 429 comes back at once: not a latency sample
    # More 429s of the same burst (within one latency): no further cut.
    again = cut.observe(seconds=0.01, now=100.5, width=32, rate_limited=True)
    assert again.window == 32
    later = again.observe(seconds=0.01, now=101.5, width=32, rate_limited=True)
    assert later.window == 16
    grown = later.observe(seconds=1.0, now=102.0, width=16)
    assert grown.window == 17
    assert grown.width(allowed=UNLIMITED, tokens_per_call=1) == 17
    for i in range(100):
        grown = grown.observe(seconds=1.0, now=103.0 + i, width=17)
    assert grown.window == 64  # never past the cap


def test_the_window_never_falls_below_one():
    pace = Pace(cap=4)
    for i in range(10):
        pace = pace.observe(seconds=0, now=10.0 * i, width=1, rate_limited=True)
    assert pace.window == 1.0
    assert pace.width(allowed=UNLIMITED, tokens_per_call=1) == 1


def test_little_left_in_the_headers_holds_the_window():
    low = {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "3"}
    plenty = {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "300"}
    low_tokens = {"x-ratelimit-limit-tokens": "200000", "x-ratelimit-remaining-tokens": "900"}
    assert pacing.low_remaining(low) and pacing.low_remaining(low_tokens)
    assert not pacing.low_remaining(plenty) and not pacing.low_remaining({})
    assert not pacing.low_remaining({"x-ratelimit-limit-requests": "x"})
    cut = Pace(cap=64).observe(seconds=0, now=0.0, width=20, rate_limited=True)
    held = cut.observe(seconds=1.0, now=5.0, width=10, headers=low)
    assert held.window == 10
    assert held.observe(seconds=1.0, now=6.0, width=10, headers=plenty).window == 11


# -- the limiter's token count, corrected from usage --------------------------------------


class CountingBackend:
    def __init__(self) -> None:
        self.tokens: list[int] = []

    def admit(self, *, key, now, limits, tokens, span, bucket) -> float:
        self.tokens.append(tokens)
        return 0.0


def test_calls_are_counted_for_the_estimate_until_an_answer_reports_its_usage():
    backend = CountingBackend()
    limiter = ratelimit.Limiter(
        key="k", backend=backend, limits=lambda: Limits(600, 200_000), usage=ratelimit.TokenUsage()
    )
    limiter.try_acquire(tokens=1322)
    assert backend.tokens == [1322]
    limiter.learn(headers={}, used_tokens=250)
    limiter.try_acquire(tokens=1322)
    assert backend.tokens[-1] == 250  # the first answer replaces the estimate
    limiter.learn(headers={}, used_tokens=350)
    limiter.try_acquire(tokens=1322)
    assert backend.tokens[-1] == math.ceil(250 + ratelimit.USAGE_WEIGHT * 100)  # an average
    limiter.learn(headers={}, used_tokens=0)  # an error answer reports nothing
    assert limiter.tokens_per_call() == pytest.approx(250 + ratelimit.USAGE_WEIGHT * 100)


def test_the_usage_is_learnt_per_key():
    usage = ratelimit.TokenUsage()
    usage.learn(key="a", tokens=200)
    assert usage.corrected(key="a", estimate=1322) == 200
    assert usage.corrected(key="b", estimate=1322) == 1322


def test_the_limiter_tells_its_rates_per_second_over_its_span():
    limiter = ratelimit.Limiter(key="k", backend=CountingBackend(), limits=lambda: Limits(600, 0))
    assert limiter.allowed_per_second() == (10.0, None)
    short = ratelimit.Limiter(
        key="k", backend=CountingBackend(), limits=lambda: Limits(150, 50_000), span=15
    )
    assert short.allowed_per_second() == (10.0, pytest.approx(50_000 / 15))
