"""A customer's key at rest: encrypted, shown only as its last four characters, nowhere else.

The canary key must not appear on any registered admin page (django-q2's included), in
``dumpdata``, in logs at DEBUG (SQL included) or in a repr; the raw column is not the key.
"""

from __future__ import annotations

import contextlib
import io
import logging
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.contrib import admin
from django.core.management import call_command
from django.db import connection
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from billing import crypto, gate, ledger
from billing.models import Account

pytestmark = pytest.mark.django_db

CANARY = "sk-canary-7f3a9c1e5b2d4x8q6w0vZ9Yk"
SECRET_PART = CANARY[:-4]  # everything but the last four, which may be shown
LAST4 = CANARY[-4:]


@pytest.fixture
def byok_account(settings) -> Account:
    account = Account.objects.current()
    Account.objects.filter(pk=account.pk).update(mode="byok", plan="pro")
    account.refresh_from_db()
    crypto.set_api_key(account=account, key=CANARY)
    return account


def test_key_round_trips_and_stores_only_last4(byok_account):
    byok_account.refresh_from_db()
    assert crypto.decrypted_key(byok_account) == CANARY
    assert byok_account.api_key_last4 == LAST4
    assert byok_account.masked_api_key == f"…{LAST4}"
    assert SECRET_PART not in repr(byok_account) + str(byok_account)


def test_raw_column_is_not_the_key(byok_account):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT encrypted_api_key, api_key_last4 FROM billing_account WHERE id = %s",
            [byok_account.pk],
        )
        token, last4 = cursor.fetchone()
    assert token and SECRET_PART not in token
    assert last4 == LAST4
    assert crypto.decrypt(token) == CANARY


def test_dumpdata_never_contains_the_key(byok_account):
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    assert SECRET_PART not in out.getvalue()
    assert LAST4 in out.getvalue()


def test_logs_at_debug_never_contain_the_key(settings, caplog):
    # SQL logging on, as under DEBUG: the UPDATE of the key goes through the log too.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True
    try:
        account = Account.objects.current()
        Account.objects.filter(pk=account.pk).update(mode="byok", plan="pro")
        account.refresh_from_db()
        crypto.set_api_key(account=account, key=CANARY)
        account.refresh_from_db()
        decision = gate.decide(work=gate.WorkKind.BULK, images=3, account=account)
        assert decision.api_key == CANARY
        logging.getLogger("billing.test").debug("decision %r for %r", decision, account)
        crypto.decrypted_key(account)
        ledger.hold(
            account=account,
            amount=1,
            idempotency_key="hold:1:1",
            expires_at=timezone.now() + timedelta(minutes=5),
        )
        Account.objects.filter(pk=account.pk).update(encrypted_api_key="garbage")
        account.refresh_from_db()
        assert gate.decide(work=gate.WorkKind.SINGLE, account=account).mode == gate.Mode.REFUSED
    finally:
        connection.force_debug_cursor = False
    assert "UPDATE" in caplog.text  # the SQL really was logged
    assert SECRET_PART not in caplog.text


def test_undecryptable_key_raises_a_clean_error(byok_account, settings):
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]
    byok_account.refresh_from_db()
    with pytest.raises(crypto.KeyUnreadable) as caught:
        crypto.decrypted_key(byok_account)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    decision = gate.decide(work=gate.WorkKind.SINGLE, account=byok_account)
    assert decision.mode == gate.Mode.REFUSED and "set the key again" in decision.reason


@pytest.mark.parametrize("bad", ["", "   ", "sk-ab", "sk-with space-123456", "sk-\x00-123456789"])
def test_bad_key_is_refused_without_echoing_it(byok_account, bad):
    before = Account.objects.values_list("encrypted_api_key", flat=True).get(pk=byok_account.pk)
    with pytest.raises(crypto.ApiKeyError) as caught:
        crypto.set_api_key(account=byok_account, key=bad)
    if bad.strip():
        assert bad.strip() not in str(caught.value)
    after = Account.objects.values_list("encrypted_api_key", flat=True).get(pk=byok_account.pk)
    assert after == before


def test_rotate_keys_reencrypts_with_the_first_key(byok_account, settings):
    old = list(settings.FERNET_KEYS)
    new = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new, *old]
    result = crypto.rotate_keys()
    assert result.rotated == 1 and result.unreadable == []
    settings.FERNET_KEYS = [new]  # the old key can now be dropped
    byok_account.refresh_from_db()
    assert crypto.decrypted_key(byok_account) == CANARY


def test_rotate_keys_reports_unreadable_tokens(byok_account, settings):
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]
    result = crypto.rotate_keys()
    assert (result.rotated, result.unreadable) == (0, [byok_account.pk])


def _admin_urls(model_admin, obj) -> list[str]:
    prefix = f"admin:{model_admin.opts.app_label}_{model_admin.opts.model_name}"
    urls = [reverse(f"{prefix}_changelist")]
    with contextlib.suppress(NoReverseMatch):
        urls.append(reverse(f"{prefix}_add"))
    if obj is not None:
        urls.append(reverse(f"{prefix}_change", args=[obj.pk]))
        urls.append(reverse(f"{prefix}_history", args=[obj.pk]))
    return urls


def test_no_admin_page_shows_the_key(byok_account, admin_client, monkeypatch):
    from django_q.conf import Conf
    from django_q.tasks import async_task

    # Rows for every billing page and django-q2's task pages.
    ledger.grant(account=byok_account, amount=5, reason="canary test")
    ledger.hold(
        account=byok_account,
        amount=1,
        idempotency_key="hold:1:1",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    gate.decide(work=gate.WorkKind.SINGLE, account=byok_account)
    monkeypatch.setattr(Conf, "SYNC", True)
    async_task("math.floor", 1.5)

    # The change form, saved without touching the key, keeps it and shows only …last4.
    url = reverse("admin:billing_account_change", args=[byok_account.pk])
    response = admin_client.post(
        url, {"name": "Renamed", "plan": "pro", "mode": "byok", "api_key": ""}
    )
    assert response.status_code == 302
    byok_account.refresh_from_db()
    assert crypto.decrypted_key(byok_account) == CANARY

    checked = 0
    for model, model_admin in admin.site._registry.items():
        obj = model._default_manager.order_by("pk").first()
        for page in _admin_urls(model_admin, obj):
            response = admin_client.get(page)
            assert response.status_code in {200, 302, 403}, page
            assert SECRET_PART not in response.content.decode(), page
            checked += 1
    grant = reverse("admin:billing_account_grant", args=[byok_account.pk])
    assert SECRET_PART not in admin_client.get(grant).content.decode()
    page = admin_client.get(url).content.decode()
    assert f"…{LAST4}" in page
    assert any(m._meta.app_label == "django_q" for m in admin.site._registry)
    assert checked > 10
