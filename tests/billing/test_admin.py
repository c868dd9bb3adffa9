"""Billing in the admin: accounts, keys (masked), "Add credits" with its own permission."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from billing import crypto, ledger
from billing.models import Account, LedgerEntry

pytestmark = pytest.mark.django_db

KEY = "sk-admin-test-key-WXYZ"


@pytest.fixture
def acct() -> Account:
    return Account.objects.current()


def grant_url(account: Account) -> str:
    return reverse("admin:billing_account_grant", args=[account.pk])


def change_url(account: Account) -> str:
    return reverse("admin:billing_account_change", args=[account.pk])


def staff(django_user_model, *perms: str) -> Client:
    user = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def test_grant_needs_its_own_permission(acct, django_user_model):
    client = staff(django_user_model, "billing.view_account", "billing.change_account")
    assert client.get(grant_url(acct)).status_code == 403
    assert client.post(grant_url(acct), {"amount": 5, "reason": "x"}).status_code == 403
    assert "Add credits" not in client.get(change_url(acct)).content.decode()
    assert LedgerEntry.objects.count() == 0


def test_grant_adds_credits_with_reason_and_says_who(acct, django_user_model):
    client = staff(django_user_model, "billing.view_account", "billing.grant_credits")
    assert "Add credits" in client.get(change_url(acct)).content.decode()
    response = client.post(grant_url(acct), {"amount": 120, "reason": "invoice 42"}, follow=True)
    assert "Added 120 credits to Default: balance 120." in response.content.decode()
    entry = LedgerEntry.objects.get()
    assert (entry.amount, entry.reason, entry.actor.username) == (120, "invoice 42", "clerk")
    ledger_page = client.get(reverse("admin:billing_ledgerentry_changelist"))
    assert ledger_page.status_code == 403  # viewing the ledger is its own permission


@pytest.mark.parametrize(
    "data, error",
    [
        ({"amount": 5, "reason": ""}, "A reason is required"),
        ({"amount": 5, "reason": "   "}, "A reason is required"),
        ({"amount": 0, "reason": "r"}, "greater than or equal to 1"),
        ({"amount": -3, "reason": "r"}, "greater than or equal to 1"),
        ({"amount": 10**9, "reason": "r"}, "less than or equal to"),
    ],
)
def test_bad_grant_in_admin_writes_nothing(acct, admin_client, data, error):
    response = admin_client.post(grant_url(acct), data)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert LedgerEntry.objects.count() == 0
    acct.refresh_from_db()
    assert acct.balance == 0


def test_ledger_admin_is_read_only_with_filters(acct, admin_client):
    ledger.grant(account=acct, amount=3, reason="first")
    # The account filter shows once there is a choice to make.
    ledger.grant(account=Account.objects.create(name="Other"), amount=1, reason="other")
    page = admin_client.get(reverse("admin:billing_ledgerentry_changelist"))
    html = page.content.decode()
    assert page.status_code == 200 and "first" in html and "+3 credits" in html
    assert "By kind" in html and "By account" in html and "By created at" in html
    entry = LedgerEntry.objects.get(reason="first")
    change = admin_client.get(reverse("admin:billing_ledgerentry_change", args=[entry.pk]))
    assert change.status_code == 200 and b'name="_save"' not in change.content
    assert admin_client.get(reverse("admin:billing_ledgerentry_add")).status_code == 403
    delete = reverse("admin:billing_ledgerentry_delete", args=[entry.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403


def test_set_key_in_the_form_shows_only_last4(acct, admin_client):
    response = admin_client.post(
        change_url(acct), {"name": "Default", "plan": "pro", "mode": "byok", "api_key": KEY}
    )
    assert response.status_code == 302
    acct.refresh_from_db()
    assert crypto.decrypted_key(acct) == KEY and acct.api_key_set_by.username == "admin"
    page = admin_client.get(change_url(acct)).content.decode()
    assert "…WXYZ" in page and KEY[:-4] not in page
    listing = admin_client.get(reverse("admin:billing_account_changelist")).content.decode()
    assert "…WXYZ" in listing
    # Clearing it.
    admin_client.post(
        change_url(acct),
        {"name": "Default", "plan": "pro", "mode": "byok", "api_key": "", "clear_api_key": "on"},
    )
    acct.refresh_from_db()
    assert not acct.has_api_key


def test_saving_the_account_form_never_overwrites_credits(acct, admin_client):
    """The form was read before a job spent or an operator granted: its save must not
    write the old balance back."""
    admin_client.get(change_url(acct))
    ledger.grant(account=acct, amount=50, reason="meanwhile")
    response = admin_client.post(
        change_url(acct), {"name": "Renamed", "plan": "agency", "mode": "bundled"}
    )
    assert response.status_code == 302
    acct.refresh_from_db()
    assert (acct.name, acct.plan, acct.balance) == ("Renamed", "agency", 50)


def test_bad_key_in_the_form_is_a_form_error(acct, admin_client):
    response = admin_client.post(
        change_url(acct), {"name": "Default", "plan": "pro", "mode": "byok", "api_key": "sk-a b"}
    )
    assert response.status_code == 200
    assert "spaces or control characters" in response.content.decode()
    acct.refresh_from_db()
    assert not acct.has_api_key


# -- plan, mode and cap: a permission of their own ---------------------------------------

FORGED = {"name": "Renamed", "plan": "agency", "mode": "byok", "byok_monthly_cap_requests": 9}


def test_without_the_plan_permission_plan_mode_and_cap_are_read_only(acct, django_user_model):
    acct.plan, acct.mode = "pro", "bundled"
    acct.save()
    client = staff(
        django_user_model, "billing.view_account", "billing.change_account", "billing.grant_credits"
    )
    page = client.get(change_url(acct)).content.decode()
    assert 'name="name"' in page
    assert 'name="plan"' not in page and 'name="mode"' not in page
    assert 'name="byok_monthly_cap_requests"' not in page

    response = client.post(change_url(acct), FORGED)

    assert response.status_code == 302  # the name is theirs to change; the rest is not
    acct.refresh_from_db()
    assert (acct.name, acct.plan, acct.mode, acct.byok_monthly_cap_requests) == (
        "Renamed",
        "pro",
        "bundled",
        None,
    )
    # Granting credits keeps its own permission, untouched by this one.
    assert client.post(grant_url(acct), {"amount": 5, "reason": "x"}).status_code == 302


def test_the_plan_permission_lets_plan_mode_and_cap_change(acct, django_user_model):
    client = staff(
        django_user_model,
        "billing.view_account",
        "billing.change_account",
        "billing.change_account_plan",
    )
    assert 'name="plan"' in client.get(change_url(acct)).content.decode()

    assert client.post(change_url(acct), FORGED).status_code == 302

    acct.refresh_from_db()
    assert (acct.plan, acct.mode, acct.byok_monthly_cap_requests) == ("agency", "byok", 9)
    # And it is not the credit permission.
    assert client.post(grant_url(acct), {"amount": 5, "reason": "x"}).status_code == 403
    assert LedgerEntry.objects.count() == 0


def test_the_plan_permission_exists_after_migrate():
    perm = Permission.objects.get(content_type__app_label="billing", codename="change_account_plan")
    assert perm.name == "Can change an account's plan, mode and cap"
