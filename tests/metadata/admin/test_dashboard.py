"""The admin's home as mediaopt's dashboard: status, coverage, jobs, actions; flat queries."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import Account
from mediaopt.library.fields import ALT_TEXT_MAX, Source
from metadata import jobs
from metadata.models import JobKind
from tests.factories import bare_assets

pytestmark = pytest.mark.django_db

INDEX = "/admin/"


def test_the_home_shows_the_status_coverage_and_the_app_list(admin_client):
    bare_assets(3)
    bare_assets(2, start=3, alt_text="A harbour at dawn", alt_text_source=Source.AI)
    response = admin_client.get(INDEX)
    assert response.status_code == 200
    page = response.content.decode()
    assert response.context["ai_status"].sentence == "Heuristic only: no OpenAI key is configured."
    assert "OPENAI_API_KEY" in page
    coverage = response.context["coverage"]
    assert coverage.images == 5 and coverage.missing.count == 3
    assert {f.label: f.count for f in coverage.by_source}["alt text by AI"] == 2
    assert 'href="/admin/mediaopt/mediaasset/?alt_text_missing=yes"' in page
    assert 'href="/admin/mediaopt/mediaasset/?alt_text_source=ai"' in page
    assert reverse("admin:mediaopt_mediaasset_regenerate_all") in page
    assert 'id="app-list"' in page or "app-mediaopt" in page


def test_heuristic_alt_text_counts_as_missing_as_the_library_filter_does(admin_client):
    bare_assets(2, alt_text="photo", alt_text_source=Source.HEURISTIC)
    bare_assets(1, start=2, is_decorative=True)
    coverage = admin_client.get(INDEX).context["coverage"]
    assert coverage.missing.count == 2
    listed = admin_client.get(coverage.missing.url).context["cl"].result_count
    assert listed == coverage.missing.count


def test_recent_jobs_are_listed_with_links(admin_client):
    (asset,) = bare_assets(1)
    job = jobs.create_job(kind=JobKind.BULK, asset_ids=[asset.pk]).job
    jobs.enqueue_inline(job)  # a draft is not listed
    page = admin_client.get(INDEX).content.decode()
    assert reverse("admin:metadata_regenerationjob_change", args=[job.pk]) in page


def test_an_editor_without_run_permission_gets_no_regenerate_button(client, django_user_model):
    bare_assets(2)
    editor = django_user_model.objects.create_user("editor", is_staff=True)
    editor.user_permissions.set(Permission.objects.filter(codename="view_mediaasset"))
    client.force_login(editor)
    response = client.get(INDEX)
    page = response.content.decode()
    assert response.context["coverage"].missing.count == 2
    assert reverse("admin:mediaopt_mediaasset_regenerate_all") not in page
    assert "Ask an administrator to set OPENAI_API_KEY" in page


def test_django_q_tables_are_listed_for_superusers_only(admin_client, client, django_user_model):
    assert "django_q" in admin_client.get(INDEX).content.decode()
    editor = django_user_model.objects.create_user("editor", is_staff=True)
    editor.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["django_q", "mediaopt"])
    )
    client.force_login(editor)
    page = client.get(INDEX).content.decode()
    assert "Django Q" not in page and "/admin/django_q/" not in page
    assert client.get("/admin/django_q/success/").status_code == 403


def test_the_ledgers_holds_and_meters_are_listed_for_superusers_only(
    admin_client, client, django_user_model
):
    tables = ("/admin/billing/credithold/", "/admin/billing/requestmeter/")
    page = admin_client.get(INDEX).content.decode()
    assert all(table in page for table in tables)
    operator = django_user_model.objects.create_user("operator", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(content_type__app_label="billing"))
    client.force_login(operator)
    page = client.get(INDEX).content.decode()
    # The operator keeps the accounts and the ledger, not its workings.
    assert "/admin/billing/account/" in page and "/admin/billing/ledgerentry/" in page
    assert not any(table in page for table in tables)
    assert [client.get(table).status_code for table in tables] == [403, 403]


def test_the_home_costs_the_same_queries_at_10_and_10000_images(admin_client):
    bare_assets(10, alt_text="Boats", alt_text_source=Source.AI)
    admin_client.get(INDEX)  # the settings row and the installation's account, created once
    with CaptureQueriesContext(connection) as ten:
        assert admin_client.get(INDEX).status_code == 200
    bare_assets(9_990, start=10)
    with CaptureQueriesContext(connection) as ten_thousand:
        response = admin_client.get(INDEX)
    assert response.context["coverage"].images == 10_000
    # Session, user, the notices waiting for the user (messages of long jobs), settings,
    # account, the coverage aggregate, other language, jobs, proposals waiting, the app
    # list's: none of them per image.
    assert len(ten_thousand) == len(ten) <= 10, [q["sql"][:90] for q in ten_thousand]


def test_the_library_list_loads_the_status_line_for_staff_only(admin_client, client):
    page = admin_client.get(reverse("admin:mediaopt_mediaasset_changelist")).content.decode()
    url = reverse("mediaopt_ai_status")
    assert f'hx-get="{url}"' in page
    line = admin_client.get(url).content.decode()
    assert "Heuristic only: no OpenAI key is configured." in line
    assert "mediaopt-status-line" in line
    assert client.get(url).status_code == 302  # the admin's login first


def test_the_library_list_shows_title_and_the_whole_alt_text_on_hover(admin_client):
    # The longest alt text the column holds (PostgreSQL refuses a longer one; SQLite
    # would have stored it, which no writer of metadata does).
    long_text = ("Fishing boats moored in a quiet harbour at dawn, " * 5)[: ALT_TEXT_MAX - 1] + "."
    assert len(long_text) == ALT_TEXT_MAX
    bare_assets(1, alt_text=long_text, alt_text_source=Source.AI, title="Harbour")
    page = admin_client.get(reverse("admin:mediaopt_mediaasset_changelist")).content.decode()
    assert f'title="{long_text}"' in page
    assert "field-title_display" in page and ">Harbour</span>" in page


def test_the_bulk_confirmation_page_says_where_metadata_comes_from(admin_client, settings):
    bare_assets(2)
    settings.OPENAI_API_KEY = ""
    response = admin_client.post(
        reverse("admin:mediaopt_mediaasset_regenerate_all"), {"scope": "missing_alt_text"}
    )
    page = admin_client.get(response["Location"]).content.decode()
    assert 'id="mediaopt-ai-status"' in page
    assert "Heuristic only: no OpenAI key is configured." in page
    # The heading promises no AI the run will not use.
    assert "<h1>Regenerate metadata without AI</h1>" in page
    assert "with AI" not in page.split("<h1>", 1)[1].split("</h1>", 1)[0]


@pytest.mark.unfunded
def test_out_of_credits_on_the_bulk_page_links_the_superuser_to_add_credits(admin_client, settings):
    settings.OPENAI_API_KEY = "sk-test-not-used"
    bare_assets(2)
    account = Account.objects.current()
    response = admin_client.post(
        reverse("admin:mediaopt_mediaasset_regenerate_all"), {"scope": "missing_alt_text"}
    )
    page = admin_client.get(response["Location"]).content.decode()
    grant = reverse("admin:billing_account_grant", args=[account.pk])
    assert "Out of credits." in page
    assert f'<a href="{grant}">Add credits</a>' in page
    home = admin_client.get(INDEX).content.decode()
    assert f'href="{grant}"' in home
