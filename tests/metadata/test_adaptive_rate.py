"""At the shipped settings a job reaches the configured limit, whatever the latency: the
runner sizes its calls in flight from the limit and the latency it observes, and the
limiter counts calls for the tokens answers report (so the default token budget does not
bind first).

The fake server enforces 600 requests a minute over a sliding window of WINDOW seconds
(WINDOW/60 of the limit in any window) with 429s, and the shared limiter counts over the
same window: minutes of a real limit in seconds. Both windows start full, as a job that
ran just before would leave them, so the job is limited from its first call (an empty
window would let the first WINDOW/60 of the limit through at any width) and the rate from
first to last call is the steady state's. That earlier job also taught this process the
tokens a call uses: counted at the pre-call estimate (1,322 here, ~190 used), its
200,000 tokens a minute would allow a sixth of the limit. (A cold process counts its
first latency's worth of calls at the estimate: 33,000 of a real minute's 200,000, but
half a 20-second window's budget, so it is left out here: tests/metadata/test_pacing.py
covers it.)
"""

from __future__ import annotations

import time

import pytest
from django_q.conf import Conf

from mediaopt import settings as shipped
from metadata import generation, language, ratelimit, runner
from metadata.models import JobState, Settings
from metadata.ratelimit_backends import Limits, default_backend
from tests.fakeopenai import FAKE_API_KEY
from tests.metadata.test_jobs import make_assets, new_job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

RPM = 600
WINDOW = 20  # seconds
PER_WINDOW = RPM * WINDOW // 60
# About what the fake reports for one of these images (prompt + completion).
USED_TOKENS = 190


def short_window_limits() -> Limits:
    per_minute = ratelimit.settings_limits()
    return Limits(
        per_minute.requests_per_minute * WINDOW // 60,
        per_minute.tokens_per_minute * WINDOW // 60,
    )


def short_window_limiter(*, row, decision) -> ratelimit.Limiter:
    """The job's real limiter (key, backend, the Settings row's limits), over WINDOW."""
    config = generation.openai_config(row=row, decision=decision)
    return ratelimit.Limiter(
        key=ratelimit.limiter_key(
            base_url=config.base_url, api_key=config.api_key, model=config.model
        ),
        backend=default_backend(),
        limits=short_window_limits,
        span=WINDOW,
    )


@pytest.fixture
def shipped_defaults(settings, monkeypatch, fake_openai_settings):
    """The shipped concurrency setting (tests run one call at a time otherwise), the
    limit a user copies from the provider's dashboard, the default token budget; the
    fake and the limiter windows full of an earlier job's requests."""
    monkeypatch.setattr(Conf, "SYNC", True)
    settings.MEDIAOPT_JOB_CONCURRENCY = shipped.MEDIAOPT_JOB_CONCURRENCY
    row = Settings.objects.current()
    row.requests_per_minute = RPM
    row.save()
    assert row.tokens_per_minute == 200_000  # the default budget, left as shipped
    ratelimit.forget_limits()
    monkeypatch.setattr(generation, "rate_limiter", short_window_limiter)
    # The first check of a process loads the language models (seconds): not this test's.
    language.detect("A red scene with a blue band at the top")
    fake = fake_openai_settings
    fake.enforce_limit = True
    fake.requests_per_minute = RPM
    fake.window_seconds = WINDOW
    key = ratelimit.limiter_key(base_url=fake.base_url, api_key=FAKE_API_KEY, model=row.model)

    def fill_windows() -> None:
        offset = time.time() - time.monotonic()
        for at in fake.fill_window(PER_WINDOW):
            earlier = ratelimit.Limiter(
                key=key,
                backend=default_backend(),
                limits=short_window_limits,
                span=WINDOW,
                clock=lambda at=at: at + offset,
            )
            assert earlier.try_acquire(tokens=USED_TOKENS) == 0.0
        ratelimit.token_usage.learn(key=key, tokens=USED_TOKENS)

    yield fake, fill_windows
    ratelimit.forget_limits()


@pytest.mark.parametrize("latency", [0.5, 3.0])
def test_a_job_at_the_shipped_settings_reaches_the_limit(shipped_defaults, latency):
    fake, fill_windows = shipped_defaults
    fake.latency = latency
    assets = make_assets(PER_WINDOW + 20)
    job = new_job(assets)
    fill_windows()

    runner.run_inline(job)

    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    requests = list(fake.requests)
    accepted = sorted(request.at for request in requests if request.status == 200)
    assert len(accepted) == len(assets)
    share = (len(accepted) - 1) / (accepted[-1] - accepted[0]) / (RPM / 60)
    print(f"{share:.1%} of the limit at {latency} s; most in flight {fake.max_in_flight}")
    assert share >= 0.90, f"{share:.0%} of the limit at {latency} s latency"
    rejected = sum(1 for request in requests if request.status == 429)
    assert rejected / len(requests) < 0.01
    # Enough calls in flight for the limit at this latency, and not the whole cap.
    assert RPM / 60 * latency <= fake.max_in_flight < shipped.MEDIAOPT_JOB_CONCURRENCY
