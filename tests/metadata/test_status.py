"""The AI status: each state's sentence and its one next step, for an operator and an editor."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from billing import crypto, ledger
from billing.models import Account, AccountMode
from metadata.models import Settings
from metadata.status import SERVER_KEY_COMMAND, ai_status, upload_status

pytestmark = [pytest.mark.django_db, pytest.mark.unfunded]

KEY = "sk-test-status-1234"


@pytest.fixture
def editor(django_user_model):
    return django_user_model.objects.create_user("editor", is_staff=True)


@pytest.fixture
def operator(django_user_model):
    """Not a superuser: the billing permissions alone make someone who can fix it."""
    user = django_user_model.objects.create_user("operator", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="billing",
            codename__in=["grant_credits", "change_account_plan", "change_account"],
        )
    )
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", password="x")


@pytest.fixture
def account():
    return Account.objects.current()


def test_a_fresh_installation_gets_a_plan_with_ai_bulk_jobs(settings):
    settings.OPENAI_API_KEY = KEY
    account = Account.objects.current()
    ledger.grant(account=account, amount=5, reason="test")
    assert account.plan == "agency"
    assert ai_status(account=account).uses_ai


def test_no_server_key_shows_the_command_to_the_superuser(settings, account, superuser, editor):
    settings.OPENAI_API_KEY = ""
    status = ai_status(account=account, user=superuser)
    assert not status.uses_ai
    assert status.sentence == "Heuristic only: no OpenAI key is configured."
    assert status.step.command == SERVER_KEY_COMMAND and status.step.url == ""
    plain = ai_status(account=account, user=editor)
    assert plain.sentence == status.sentence
    assert plain.step.text == (
        "Ask an administrator to set OPENAI_API_KEY on the server and restart it."
    )
    assert plain.step.command == "" and plain.step.url == ""


def test_server_key_with_credits_says_how_many_are_left(settings, account, editor):
    settings.OPENAI_API_KEY = KEY
    ledger.grant(account=account, amount=9_950, reason="test")
    status = ai_status(account=account, user=editor)
    assert status.uses_ai
    assert status.sentence == "AI with the server's key: 9,950 credits left."
    assert status.step is None


def test_out_of_credits_links_the_operator_to_add_credits(settings, account, operator, editor):
    settings.OPENAI_API_KEY = KEY
    status = ai_status(account=account, user=operator)
    assert status.sentence == "Out of credits."
    assert status.step.text == "Add credits"
    assert status.step.url == reverse("admin:billing_account_grant", args=[account.pk])
    plain = ai_status(account=account, user=editor)
    assert plain.step.text == "Ask an administrator to add credits." and plain.step.url == ""


def test_free_plan_links_the_operator_to_choose_a_plan(settings, account, operator, editor):
    settings.OPENAI_API_KEY = KEY
    Account.objects.filter(pk=account.pk).update(plan="free")
    account.refresh_from_db()
    status = ai_status(account=account, user=operator)
    assert status.sentence == "Heuristic only: the Free plan has no AI bulk jobs."
    assert status.step.text == "Choose a plan"
    assert status.step.url == reverse("admin:billing_account_change", args=[account.pk])
    plain = ai_status(account=account, user=editor)
    assert plain.step.text == "Ask an administrator to choose a plan with AI."
    assert plain.step.url == ""


def test_byok_without_a_key_links_to_the_account(account, operator, editor):
    Account.objects.filter(pk=account.pk).update(mode=AccountMode.BYOK)
    account.refresh_from_db()
    status = ai_status(account=account, user=operator)
    assert status.sentence == "Heuristic only: no OpenAI key is set for this account."
    assert status.step.text == "Set your own key"
    assert status.step.url == reverse("admin:billing_account_change", args=[account.pk])
    plain = ai_status(account=account, user=editor)
    assert plain.step.text == "Ask an administrator to set the account's OpenAI key."


def test_byok_with_a_key_counts_this_months_requests(account, operator):
    Account.objects.filter(pk=account.pk).update(
        mode=AccountMode.BYOK, byok_monthly_cap_requests=1_000
    )
    account.refresh_from_db()
    crypto.set_api_key(account=account, key=KEY, actor=operator)
    account.refresh_from_db()
    status = ai_status(account=account, user=operator)
    assert status.uses_ai
    assert status.sentence == "BYOK: your own key, 0 of 1,000 requests this month."
    assert status.step is None


def test_byok_cap_reached_links_the_operator_to_raise_it(account, operator, editor):
    Account.objects.filter(pk=account.pk).update(mode=AccountMode.BYOK, byok_monthly_cap_requests=0)
    account.refresh_from_db()
    crypto.set_api_key(account=account, key=KEY, actor=operator)
    account.refresh_from_db()
    status = ai_status(account=account, user=operator)
    assert status.sentence == "No AI: this month's cap of AI requests is reached."
    assert status.step.url == reverse("admin:billing_account_change", args=[account.pk])
    assert ai_status(account=account, user=editor).step.url == ""


@pytest.fixture
def uploader(django_user_model):
    """May upload and start jobs, and fix nothing."""
    user = django_user_model.objects.create_user("uploader", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["add_mediaasset", "run_regeneration"])
    )
    return django_user_model.objects.get(pk=user.pk)


def test_an_upload_with_credits_says_each_new_image_uses_one(settings, account, uploader):
    settings.OPENAI_API_KEY = KEY
    ledger.grant(account=account, amount=1_200, reason="test")
    status = upload_status(account=account, user=uploader)
    assert status.uses_ai and status.step is None
    assert status.sentence == (
        "AI on upload: each new image uses one credit (1,200 left); duplicates cost nothing."
    )


def test_an_upload_out_of_credits_says_it_falls_back_and_links_the_fix(
    settings, account, uploader, superuser
):
    settings.OPENAI_API_KEY = KEY
    status = upload_status(account=account, user=superuser)
    assert not status.uses_ai
    assert status.sentence == (
        "Out of credits. New images get metadata from embedded text and file names only."
    )
    assert status.step.url == reverse("admin:billing_account_grant", args=[account.pk])
    assert upload_status(account=account, user=uploader).step.text == (
        "Ask an administrator to add credits."
    )


def test_an_upload_without_a_key_says_why_and_how(settings, account, superuser):
    settings.OPENAI_API_KEY = ""
    status = upload_status(account=account, user=superuser)
    assert status.sentence.startswith("Heuristic only: no OpenAI key is configured. New images")
    assert status.step.command == SERVER_KEY_COMMAND


def test_an_upload_on_the_free_plan_says_it_spends_its_credits(settings, account, uploader):
    """The plan has no AI bulk jobs but AI on upload: the status card says "heuristic
    only" for the library, and the upload page that its credits go, one an image."""
    settings.OPENAI_API_KEY = KEY
    Account.objects.filter(pk=account.pk).update(plan="free")
    account.refresh_from_db()
    ledger.grant(account=account, amount=100, reason="test")
    assert not ai_status(account=account, user=uploader).uses_ai
    status = upload_status(account=account, user=uploader)
    assert status.uses_ai
    assert status.sentence.startswith("AI on upload: each new image uses one credit (100 left)")


def test_an_uploader_who_may_not_run_jobs_is_told_no_ai(settings, account, editor):
    settings.OPENAI_API_KEY = KEY
    ledger.grant(account=account, amount=10, reason="test")
    status = upload_status(account=account, user=editor)
    assert not status.uses_ai and status.step is None
    assert status.sentence.startswith("No AI on your uploads: your account may not start")


def test_upload_generation_turned_off_is_said_with_the_settings_link(settings, superuser, editor):
    settings.OPENAI_API_KEY = KEY
    row = Settings.objects.current()
    Settings.objects.filter(pk=row.pk).update(generate_on_upload=False)
    status = upload_status(user=superuser)
    assert status.sentence == "No metadata is written on upload: the settings turn it off."
    assert status.step.url == reverse("admin:metadata_settings_change", args=[row.pk])
    assert upload_status(user=editor).step is None
