"""One OpenAI client per process, endpoint, key and timeout, with a bounded pool.

Sockets are counted from /proc: the inodes of this process's open socket descriptors,
matched against /proc/net/tcp rows whose remote port is the fake server's. The fake runs
in this process too, so its own (server-side) sockets have the port as local port and do
not count.
"""

from __future__ import annotations

import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from billing.gate import Decision, Mode
from mediaopt.library.fields import FIELDS
from metadata import generation
from metadata.models import Settings
from metadata.providers import openai as provider
from metadata.providers.base import DescribeRequest
from tests import fakeopenai
from tests.fakeopenai import FAKE_API_KEY, FakeOpenAI

CALLS = 200
CONCURRENCY = 4

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc"),
]


def connections_to(port: int) -> int:
    """Open TCP sockets of this process whose remote end is 127.0.0.1:``port``."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as rows:
            next(rows)
            for row in rows:
                cells = row.split()
                remote_port = int(cells[2].rsplit(":", 1)[1], 16)
                if remote_port == port and cells[9] in inodes:
                    count += 1
    return count


def small_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (30, 160, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


def bundled() -> Decision:
    return Decision(mode=Mode.AI_BUNDLED, reason="test", api_key=FAKE_API_KEY)


@pytest.fixture(autouse=True)
def fresh_clients():
    provider.forget_clients()
    yield
    provider.forget_clients()


@pytest.fixture
def keep_alive_fake(monkeypatch):
    """A fake that keeps connections open between requests, as OpenAI does. (The shared
    fake answers HTTP/1.0, closing each connection, which would hide a leak.)"""
    monkeypatch.setattr(fakeopenai._Handler, "protocol_version", "HTTP/1.1")
    with FakeOpenAI(api_key=FAKE_API_KEY) as fake:
        yield fake


def call_many(*, fake: FakeOpenAI, settings, calls: int) -> tuple[int, int]:
    """``calls`` provider calls on CONCURRENCY threads; returns (peak, final) sockets."""
    settings.OPENAI_BASE_URL = fake.base_url
    settings.OPENAI_TIMEOUT = 10.0
    settings.MEDIAOPT_JOB_CONCURRENCY = CONCURRENCY
    request = DescribeRequest(preview_jpeg=small_jpeg(), original_name="a.jpg", fields=FIELDS)
    row = Settings()
    peak = 0
    done = threading.Event()

    def sample() -> None:
        # A reading counts only when the next one agrees: httpcore closes a connection
        # the server dropped after releasing its pool lock, so a fifth socket can exist
        # for the instant between another thread's connect and that close. A pool over
        # its bound keeps the extra socket open, and two readings in a row see it.
        nonlocal peak
        previous = 0
        while not done.wait(0.005):
            current = connections_to(fake.port)
            peak = max(peak, min(previous, current))
            previous = current

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(
            pool.map(
                lambda _: generation.send_ai_call(request=request, row=row, decision=bundled()),
                range(calls),
            )
        )
    done.set()
    sampler.join()
    assert [r.error for r in results if r.error is not None] == []
    assert fake.request_count == calls
    final = connections_to(fake.port)
    return max(peak, final), final


def test_sockets_stay_at_the_concurrency_over_200_calls(keep_alive_fake, settings):
    peak, final = call_many(fake=keep_alive_fake, settings=settings, calls=CALLS)

    assert 1 <= final <= CONCURRENCY
    assert peak <= CONCURRENCY
    assert keep_alive_fake.max_in_flight <= CONCURRENCY


def test_sockets_stay_bounded_against_a_closing_server(fake_openai, settings):
    peak, final = call_many(fake=fake_openai, settings=settings, calls=CALLS // 2)

    assert peak <= CONCURRENCY and final <= CONCURRENCY


def test_one_client_per_endpoint_key_and_timeout_shared_across_threads(settings):
    settings.MEDIAOPT_JOB_CONCURRENCY = CONCURRENCY
    config = provider.OpenAIConfig(api_key="sk-a", base_url="http://127.0.0.1:9/v1")
    with ThreadPoolExecutor(8) as pool:
        clients = set(map(id, pool.map(lambda _: provider.shared_client(config=config), range(64))))

    assert len(clients) == 1
    same = provider.shared_client(config=config)
    assert provider.OpenAIProvider(config).client is same
    other_key = provider.OpenAIConfig(api_key="sk-b", base_url=config.base_url)
    other_url = provider.OpenAIConfig(api_key="sk-a", base_url="http://127.0.0.1:10/v1")
    other_timeout = provider.OpenAIConfig(api_key="sk-a", base_url=config.base_url, timeout=5)
    others = {provider.shared_client(config=c) for c in (other_key, other_url, other_timeout)}
    assert same not in others and len(others) == 3


def test_the_pool_is_sized_to_the_job_concurrency(settings):
    settings.MEDIAOPT_JOB_CONCURRENCY = 3
    client = provider.shared_client(config=provider.OpenAIConfig(api_key="sk-a"))

    # The SDK keeps the httpx2 client it was given; its pool is the bound that matters.
    pool = client._client._transport._pool
    assert pool._max_connections == 3
    assert pool._max_keepalive_connections == 3
    assert client.max_retries == 0


def test_a_forked_child_starts_without_the_parents_clients(settings):
    client = provider.shared_client(config=provider.OpenAIConfig(api_key="sk-a"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it got a new client, then leave at once
        fresh = provider.shared_client(config=provider.OpenAIConfig(api_key="sk-a"))
        os.write(write, b"new" if fresh is not client else b"old")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 3)
    os.waitpid(pid, 0)
    assert answer == b"new"
