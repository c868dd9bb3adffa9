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


@pytest.fixture(autouse=True)
def operator_default_plan(settings) -> None:
    """Billing's tables are tested as an operator who sells mediaopt sets them up (Free by
    default); a self-hosted installation's default is tested in tests/metadata/test_status.py."""
    settings.MEDIAOPT_DEFAULT_PLAN = "free"
