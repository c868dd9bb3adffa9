from __future__ import annotations

import pytest

from billing.models import Account


@pytest.fixture
def account(db) -> Account:
    return Account.objects.create(name="Test account", plan="pro")


@pytest.fixture
def server_key(settings) -> str:
    settings.OPENAI_API_KEY = "sk-server-test-key"
    return settings.OPENAI_API_KEY
