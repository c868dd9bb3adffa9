"""The shared rate limiter across processes: its Redis backend, and its database backend on
PostgreSQL, each hammered by four processes at once, never admit more than the limit in
any stretch of the window's length.

The limiter runs with a 5-second span instead of a minute (the arithmetic is the same), so
the window slides several times within the test. Run with::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mediaopt \\
        .venv/bin/pytest -q tests/services/test_ratelimit_shared.py
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid

import pytest
from django.db import connection

from tests.conftest import skip_or_fail

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

PROCESSES = 4
LIMIT = 12  # calls per SPAN seconds
SPAN = 5
SECONDS = 12.0
REDIS_URL = os.environ.get("MEDIAOPT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def hammer(backend: str, database_url: str, key: str, start_at: float) -> list[float]:
    """One process: ask as fast as it can from ``start_at`` for SECONDS; admission times."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "mediaopt.settings"
    import django

    django.setup()
    from metadata.ratelimit import Limiter
    from metadata.ratelimit_backends import DatabaseBackend, Limits, RedisBackend

    chosen = RedisBackend(REDIS_URL) if backend == "redis" else DatabaseBackend()
    limiter = Limiter(key=key, backend=chosen, limits=lambda: Limits(LIMIT, 0), span=SPAN)
    admitted: list[float] = []
    time.sleep(max(start_at - time.time(), 0))
    while time.time() < start_at + SECONDS:
        wait = limiter.try_acquire(tokens=10)
        if wait == 0:
            admitted.append(time.time())
        else:
            time.sleep(min(wait, 0.02))
    return admitted


def most_in_any_stretch(times: list[float], span: float) -> int:
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= span:
            first += 1
        most = max(most, last - first + 1)
    return most


def run_processes(backend: str) -> list[float]:
    from tests.processes import database_url

    key = f"test-{uuid.uuid4().hex[:12]}"
    url = database_url(connection.settings_dict)
    start_at = time.time() + 3.0  # after every spawned process has set Django up
    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        results = pool.starmap(hammer, [(backend, url, key, start_at)] * PROCESSES)
    admitted = [at for result in results for at in result]
    assert sum(1 for result in results if result) > 1, "only one process ever got in"
    return admitted


def check(admitted: list[float]) -> None:
    assert most_in_any_stretch(admitted, SPAN) <= LIMIT
    # And it is not stingy: about LIMIT per SPAN + 1 s over the run.
    assert len(admitted) >= LIMIT * (SECONDS // (SPAN + 1))


@pytest.mark.timeout(90)
def test_the_redis_backend_shared_by_processes_never_exceeds_the_limit(services_db):
    try:
        import redis

        redis.Redis.from_url(REDIS_URL).ping()
    except Exception as error:  # any failure to reach it means: no Redis here
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {error}")
    check(run_processes("redis"))


def redis_backend():
    try:
        import redis

        redis.Redis.from_url(REDIS_URL).ping()
    except Exception as error:  # any failure to reach it means: no Redis here
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {error}")
    from metadata.ratelimit_backends import RedisBackend

    return RedisBackend(REDIS_URL)


@pytest.mark.parametrize("backend", ["redis", "db"])
def test_a_block_on_the_stores_clock_holds_admissions_then_lets_them_go(services_db, backend):
    """A provider's "limit reached" blocks the key for some seconds on the store's own
    clock (``now`` None, as the runner does). In Redis the block was stored as an empty
    string, and every admission after it failed in the Lua script until it expired: the
    job's runner died each time (a job at the limit reached half of it)."""
    from metadata.ratelimit_backends import DatabaseBackend, Limits

    store = redis_backend() if backend == "redis" else DatabaseBackend()
    key = f"block-{uuid.uuid4().hex}"
    shape = {"limits": Limits(600, 0), "tokens": 1, "span": 60, "bucket": 1}

    assert store.admit(key=key, now=None, **shape) == 0.0
    store.block_for(key=key, seconds=1.0, now=None)
    wait = store.admit(key=key, now=None, **shape)
    assert 0.0 < wait <= 1.0
    time.sleep(wait + 0.05)
    assert store.admit(key=key, now=None, **shape) == 0.0


@pytest.mark.timeout(90)
def test_the_database_backend_on_postgresql_shared_by_processes_never_exceeds_the_limit(
    services_db,
):
    check(run_processes("db"))


# -- the database backend's stripes ---------------------------------------------------------


def test_stripe_shares_add_up_to_the_limit():
    from metadata.ratelimit_backends import stripe_shares

    for total in (0, 1, 5, 12, 600, 200_000):
        for stripes in (1, 3, 4):
            shares = stripe_shares(total, stripes)
            assert len(shares) == stripes
            assert sum(shares) == total
            assert max(shares) - min(shares) <= 1


@pytest.mark.timeout(60)
def test_a_stripe_holds_many_calls_worth_of_tokens(services_db):
    """A tokens share under MIN_STRIPE_TOKENS would let a call larger than its stripe's
    share through alone in every stripe, past the whole budget (1,200 of 1,000 in four)."""
    from metadata.ratelimit_backends import MIN_STRIPE_TOKENS, Limits, stripe_count

    assert stripe_count(Limits(600, 200_000)) == 4
    assert stripe_count(Limits(600, 0)) == 4
    assert stripe_count(Limits(600, 2 * MIN_STRIPE_TOKENS)) == 2
    assert stripe_count(Limits(100, 1_000)) == 1
    assert stripe_count(Limits(3, 0)) == 3


def test_admissions_on_postgresql_go_past_a_stripe_another_transaction_holds(services_db):
    """A caller holding one stripe's row (a slow transaction, a paused process) does not
    make every other admission wait: the others' shares are admitted at once, and only
    then does an admission wait for the held row."""
    import threading

    import psycopg

    from metadata.models import RateWindow
    from metadata.ratelimit import Limiter
    from metadata.ratelimit_backends import DatabaseBackend, Limits, stripe_key
    from tests.processes import database_url

    if connection.vendor != "postgresql":
        skip_or_fail("needs PostgreSQL (set DATABASE_URL)")
    key = f"held-{uuid.uuid4().hex[:12]}"
    limiter = Limiter(key=key, backend=DatabaseBackend(), limits=lambda: Limits(LIMIT, 0))
    for stripe in range(4):
        RateWindow.objects.get_or_create(key=stripe_key(key, stripe), window_start=0)

    held = threading.Event()
    release = threading.Event()
    released_at: list[float] = []

    def hold_stripe_zero() -> None:
        with (
            psycopg.connect(database_url(connection.settings_dict)) as other,
            other.transaction(),
        ):
            other.execute(
                "UPDATE metadata_ratewindow SET requests = requests"
                " WHERE key = %s AND window_start = 0",
                [key],
            )
            held.set()
            release.wait(20)
            released_at.append(time.monotonic())

    holder = threading.Thread(target=hold_stripe_zero)
    holder.start()
    assert held.wait(10)
    admitted_at = []
    try:
        # Each of the four stripes has a share of 3: the three nobody holds give 9.
        for _ in range(9):
            assert limiter.try_acquire(tokens=1) == 0.0
            admitted_at.append(time.monotonic())
    finally:
        release.set()
        holder.join()
    assert len(admitted_at) == 9 and max(admitted_at) < released_at[0]
    # Once the holder lets go, stripe 0's share is admitted too; then the limit holds.
    assert [limiter.try_acquire(tokens=1) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_acquire(tokens=1) > 0
