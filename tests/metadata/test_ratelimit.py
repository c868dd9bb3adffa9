"""The shared rate limiter on its database backend (SQLite here; PostgreSQL and Redis in
tests/services/test_ratelimit_shared.py), with an injected clock instead of sleeping."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import pytest
from django.db import connection

from billing import gate
from mediaopt.library import images
from metadata import generation, ratelimit, ratelimit_backends
from metadata.models import RateWindow, Settings
from metadata.providers.base import DescribeRequest, ProviderError
from metadata.ratelimit import Limiter
from metadata.ratelimit_backends import DatabaseBackend, Limits
from tests import factories
from tests.fakeopenai import Fault

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

T0 = 1_800_000_000.25  # an arbitrary epoch second, a quarter past its bucket's start


class Clock:
    """Epoch seconds that move only when told (or when the limiter "sleeps")."""

    def __init__(self, start: float = T0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limiter(clock: Clock, *, rpm: int = 10, tpm: int = 0, key: str = "test") -> Limiter:
    return Limiter(
        key=key,
        backend=DatabaseBackend(),
        limits=lambda: Limits(rpm, tpm),
        clock=clock,
        sleep=clock.sleep,
    )


def admitted_in_window(times: list[float], span: float = 60.0) -> int:
    """The most admissions in any stretch of ``span`` seconds."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= span:
            first += 1
        most = max(most, last - first + 1)
    return most


# -- the arithmetic ----------------------------------------------------------------------


def test_room_is_free_until_the_limit_then_the_wait_is_until_the_oldest_bucket_leaves():
    assert ratelimit_backends.wait_for_room(
        buckets=[(100, 9, 0)], now=130.5, requests_per_minute=10, tokens_per_minute=0, tokens=0
    ) == pytest.approx(0.0)
    # Full: bucket 100 stops counting when the current bucket starts after 160.
    wait = ratelimit_backends.wait_for_room(
        buckets=[(110, 4, 0), (100, 6, 0)],
        now=130.5,
        requests_per_minute=10,
        tokens_per_minute=0,
        tokens=0,
    )
    assert wait == pytest.approx(161 - 130.5)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1s", 1), ("120ms", 0.12), ("6m0s", 360), ("20.5s", 20.5), ("1h2m3s", 3723), ("2", 2)],
)
def test_reset_headers_are_read_in_every_format_openai_sends(value, seconds):
    assert ratelimit.parse_reset(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [None, "", "soon", "5 s", "-"])
def test_an_unreadable_reset_header_is_ignored(value):
    assert ratelimit.parse_reset(value) is None


# -- the database backend ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_threads_hammering_it_never_get_more_than_the_limit_in_a_window(clock):
    """Eight threads, eight connections, one frozen minute: exactly the limit gets in;
    then the clock passes the window and exactly the limit again, no more."""
    rpm = 25
    admitted: list[float] = []
    lock = threading.Lock()

    def hammer(attempts: int) -> None:
        mine = limiter(clock, rpm=rpm)
        try:
            for _ in range(attempts):
                if mine.try_acquire(tokens=0) == 0:
                    with lock:
                        admitted.append(clock())
        finally:
            connection.close()

    for _ in range(2):
        threads = [threading.Thread(target=hammer, args=(15,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        clock.advance(61)

    assert len(admitted) == 2 * rpm
    assert admitted_in_window(admitted) == rpm


def test_a_sliding_minute_never_holds_more_than_the_limit_at_a_steady_push(clock):
    """Asking every 0.3 s for five minutes: in no 60-second stretch (not only in aligned
    minutes) were more than the limit admitted, and the limit was nearly reached."""
    mine = limiter(clock, rpm=30)
    admitted = []
    for _ in range(1000):
        if mine.try_acquire(tokens=0) == 0:
            admitted.append(clock())
        clock.advance(0.3)
    assert admitted_in_window(admitted) == 30
    assert len(admitted) >= 0.9 * 30 * 5


def test_old_windows_are_pruned(clock):
    mine = limiter(clock, rpm=1000)
    for _ in range(200):
        assert mine.try_acquire(tokens=0) == 0
        clock.advance(1)
    # The control row and at most the 61 buckets that still count, plus the new one.
    assert RateWindow.objects.filter(key="test").count() <= 63


def test_the_tokens_limit_admits_what_fits_and_a_lone_oversized_call(clock):
    mine = limiter(clock, rpm=100, tpm=1000)
    assert [mine.try_acquire(tokens=300) == 0 for _ in range(4)] == [True, True, True, False]
    assert mine.try_acquire(tokens=100) == 0  # 900 + 100 still fits
    clock.advance(61)
    # A call larger than the whole budget goes through alone rather than never...
    assert mine.try_acquire(tokens=5000) == 0
    # ...and then nothing else until it has left the window.
    assert mine.try_acquire(tokens=1) > 0


def test_a_retry_after_blocks_every_caller_of_the_key(clock):
    first, second = limiter(clock), limiter(clock)
    other_key = limiter(clock, key="another account")
    assert first.learn(headers={}, retry_after=5.0, rate_limited=True) == 5.0
    assert second.try_acquire(tokens=0) == pytest.approx(5.0)
    assert other_key.try_acquire(tokens=0) == 0
    clock.advance(5.01)
    assert second.try_acquire(tokens=0) == 0


def test_a_429_without_retry_after_blocks_briefly(clock):
    mine = limiter(clock)
    assert mine.learn(headers={}, retry_after=None, rate_limited=True) == (
        ratelimit.DEFAULT_BLOCK_SECONDS
    )
    assert mine.try_acquire(tokens=0) > 0


def test_a_block_is_never_shortened(clock):
    mine = limiter(clock)
    mine.learn(headers={}, retry_after=30.0, rate_limited=True)
    mine.learn(headers={}, retry_after=2.0, rate_limited=True)
    assert mine.try_acquire(tokens=0) == pytest.approx(30.0)


def test_remaining_zero_blocks_until_the_reset_the_headers_give(clock):
    mine = limiter(clock)
    blocked = mine.learn(
        headers={
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "2s",
            "x-ratelimit-remaining-tokens": "150000",
            "x-ratelimit-reset-tokens": "30ms",
        }
    )
    assert blocked == 2.0
    assert mine.try_acquire(tokens=0) == pytest.approx(2.0)
    clock.advance(2.01)
    assert mine.try_acquire(tokens=0) == 0


def test_remaining_tokens_zero_blocks_too_and_room_left_blocks_nothing(clock):
    mine = limiter(clock)
    assert mine.learn(headers={"x-ratelimit-remaining-requests": "3"}) is None
    assert mine.try_acquire(tokens=0) == 0
    mine.learn(headers={"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m30s"})
    assert mine.try_acquire(tokens=0) == pytest.approx(90.0)


def test_acquire_waits_for_room_by_sleeping_outside_any_transaction(clock):
    mine = limiter(clock, rpm=2)
    assert mine.acquire(tokens=0, timeout=0)
    assert mine.acquire(tokens=0, timeout=0)
    assert mine.acquire(tokens=0, timeout=120)
    assert clock.slept and sum(clock.slept) >= 60  # the first bucket had to leave


def test_acquire_returns_false_when_the_timeout_passes_first(clock):
    mine = limiter(clock, rpm=1)
    assert mine.acquire(tokens=0, timeout=1)
    assert mine.acquire(tokens=0, timeout=5) is False
    assert clock.slept == []  # it knew the wait was too long: no pointless sleep
    mine.block(seconds=10)
    assert mine.acquire(tokens=0, timeout=3) is False


def test_acquire_gives_up_when_told_to_stop(clock):
    mine = limiter(clock, rpm=1)
    mine.acquire(tokens=0, timeout=0)
    stop = threading.Event()
    stop.set()
    assert mine.acquire(tokens=0, timeout=600, stop=stop) is False


def test_no_limit_set_admits_everything(clock):
    mine = limiter(clock, rpm=0, tpm=0)
    assert all(mine.try_acquire(tokens=10**6) == 0 for _ in range(100))


# -- wired into the provider call ---------------------------------------------------------


@pytest.fixture
def tight_limit() -> Iterator[Settings]:
    row = Settings.objects.current()
    row.requests_per_minute = 2
    row.save()
    ratelimit.forget_limits()
    yield row
    ratelimit.forget_limits()


def ai_call_parts():
    preview = images.preview(io.BytesIO(factories.jpeg(60, 40, color="red")))
    request = DescribeRequest(preview_jpeg=preview, original_name="a.jpg", fields=("alt_text",))
    decision = gate.decide(work=gate.WorkKind.SINGLE)
    return request, Settings.objects.current(), decision


def test_every_paid_call_asks_the_limiter_first(fake_openai_settings, tight_limit):
    request, row, decision = ai_call_parts()
    generation.call_ai_once(request=request, row=row, decision=decision, wait=0)
    generation.call_ai_once(request=request, row=row, decision=decision, wait=0)
    with pytest.raises(ProviderError) as raised:
        generation.call_ai_once(request=request, row=row, decision=decision, wait=0)
    assert raised.value.retryable and "rate limit" in raised.value.reason
    assert fake_openai_settings.request_count == 2  # the third never reached the provider


def test_a_429_from_the_provider_blocks_the_next_call_of_every_worker(fake_openai_settings):
    request, row, decision = ai_call_parts()
    fake_openai_settings.script([Fault.rate_limited(retry_after=20)])
    with pytest.raises(ProviderError) as raised:
        generation.call_ai_once(request=request, row=row, decision=decision, wait=0)
    assert raised.value.rate_limited and raised.value.retry_after == 20
    other_worker = generation.rate_limiter(row=row, decision=decision)
    assert 15 < other_worker.try_acquire(tokens=0) <= 20
    with pytest.raises(ProviderError):
        generation.call_ai_once(request=request, row=row, decision=decision, wait=1)
    assert fake_openai_settings.request_count == 1


@pytest.mark.timeout(30)
def test_a_redis_that_fails_makes_the_call_transient_not_the_runner_die():
    """Nothing listens on port 1: the admission raises the limiter's own transient error
    (its item retries later), not redis-py's exception, which ended the job's runner."""
    backend = ratelimit_backends.RedisBackend("redis://127.0.0.1:1/0")
    limits = ratelimit_backends.Limits(600, 0)
    with pytest.raises(ratelimit_backends.LimiterUnavailable) as raised:
        backend.admit(key="down", now=None, limits=limits, tokens=1, span=60, bucket=1)
    assert raised.value.kind == "transient"
