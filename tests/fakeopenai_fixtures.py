"""pytest fixtures for the fake OpenAI server (load with ``pytest_plugins``).

One server for the whole session (starting threads per test is slow); each test gets it
reset: no requests, no faults, the default key, no latency.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakeopenai import FAKE_API_KEY, FakeOpenAI

__all__ = ["FAKE_API_KEY", "fake_openai", "fake_openai_server", "fake_openai_settings"]


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=FAKE_API_KEY) as server:
        yield server


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The session's fake server, clean for this test."""
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


@pytest.fixture
def fake_openai_settings(fake_openai: FakeOpenAI, settings) -> FakeOpenAI:
    """Point Django's OPENAI_* settings at the fake (the server key is the fake's key)."""
    settings.OPENAI_API_KEY = FAKE_API_KEY
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.OPENAI_TIMEOUT = 10.0
    return fake_openai
