"""Fixtures shared by every test.

Tests marked ``browser`` or ``services`` skip when Chromium, PostgreSQL or Redis is absent,
except under ``MEDIAOPT_REQUIRE_SERVICES=1`` (CI), where any skip fails the run.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.fakeopenai_fixtures"]

REQUIRE_SERVICES = os.environ.get("MEDIAOPT_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip a test whose service is missing; under REQUIRE_SERVICES, fail it instead."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Each test writes media into its own folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def no_server_key(settings, monkeypatch):
    """No test reaches a real provider: the server key is empty unless a test sets one."""
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    settings.MEDIAOPT_RETRY_BASE_SECONDS = 0.0


@pytest.fixture(autouse=True)
def fresh_token_usage():
    """The tokens answers reported (the limiter's correction of its estimate) are learnt
    per process: no test inherits another's."""
    from metadata import ratelimit

    ratelimit.token_usage.forget()
    yield
    ratelimit.token_usage.forget()


@pytest.fixture(autouse=True)
def one_call_at_a_time(settings):
    """Job runners make one provider call at a time unless a test raises it: most tests
    count requests exactly (a pause lets exactly one call through)."""
    settings.MEDIAOPT_JOB_CONCURRENCY = 1


@pytest.fixture(autouse=True)
def funded_installation(request):
    """Tests of generation, jobs and pages get an installation account that may use AI
    (agency plan, 10,000 credits); billing's own tests, and tests marked ``unfunded``,
    build the accounts they need themselves."""
    if request.node.get_closest_marker("django_db") is None:
        return None
    if request.node.get_closest_marker("unfunded") or "tests/billing/" in str(request.path):
        return None
    request.getfixturevalue("_django_db_helper")
    from tests.billing.helpers import funded_account

    return funded_account(credits=10_000, plan="agency")


# Test modules about jobs: the engine's invariants are checked after each of their tests.
JOB_TEST_MODULES = (
    "test_jobs",
    "test_job_",
    "test_runner",
    "test_engine_faults",
    "test_bulk",
    "test_progress",
    "test_regenerate_command",
    "test_creation",
    "test_undo",
    "test_counts",
    "test_pruning",
)


@pytest.fixture(autouse=True)
def job_invariants(request, monkeypatch):
    """After every job test: no live item under a finished job, attempts within claims,
    each job's counts equal to its items', every unfinished job with a runner or
    recoverable (tests/job_invariants.py)."""
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    if (
        request.node.get_closest_marker("django_db") is None
        or not module.startswith(JOB_TEST_MODULES)
        or "services" in str(request.path)
    ):
        yield
        return
    request.getfixturevalue("_django_db_helper")
    from tests.job_invariants import ClaimLog, violations

    log = ClaimLog.install(monkeypatch)
    yield
    found = violations(log)
    assert not found, "job invariants broken: " + "; ".join(found)


def pytest_collection_modifyitems(config, items):
    """Browser tests last: Playwright's sync API leaves an event loop running in this thread,
    which Django's async-safety check would hold against every test after it."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def pytest_sessionfinish(session, exitstatus):
    if not REQUIRE_SERVICES:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and session.exitstatus == 0:
        reporter.write_line(
            f"MEDIAOPT_REQUIRE_SERVICES=1: {len(skipped)} skipped test(s) fail the run.",
            red=True,
        )
        session.exitstatus = 1
