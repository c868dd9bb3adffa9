"""Helpers other test modules may import, e.g. to give a job test an account with credits:
``funded_account(credits=100, plan="pro")`` from ``tests.billing.helpers``.
"""

from __future__ import annotations

from billing import ledger
from billing.models import Account


def funded_account(
    *, credits: int = 100, plan: str = "pro", mode: str = "bundled", account: Account | None = None
) -> Account:
    """The installation's account (or ``account``) on ``plan``/``mode`` with ``credits`` more."""
    account = account or Account.objects.current()
    Account.objects.filter(pk=account.pk).update(plan=plan, mode=mode)
    if credits:
        ledger.grant(account=account, amount=credits, reason="test credits")
    account.refresh_from_db()
    return account
