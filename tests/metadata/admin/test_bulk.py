"""The bulk action, its confirmation page and "Regenerate all", through the test client."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import bulk
from metadata.models import JobItem, JobState, RegenerationJob, Settings
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

CHANGELIST = reverse("admin:mediaopt_mediaasset_changelist")
REGENERATE_ALL = reverse("admin:mediaopt_mediaasset_regenerate_all")
ACTION = "regenerate_with_ai"


def confirm_url(job: RegenerationJob) -> str:
    return reverse("admin:mediaopt_mediaasset_regenerate_bulk", args=[job.pk])


def options_data(**extra) -> dict:
    """What the confirmation form posts: the options only, never an image id."""
    row = Settings.objects.current()
    return {
        "metadata_fields": list(row.default_fields),
        "strategy": row.default_strategy,
        "language": row.language,
        "on_shortfall": bulk.PARTIAL,
        **extra,
    }


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def view_only_client(client: Client) -> Client:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_mediaasset"),
        Permission.objects.get(codename="view_settings"),
    )
    client.force_login(user)
    return client


def test_select_across_all_pages_stores_the_filter_and_posts_only_the_draft(admin_client):
    factories.bare_assets(5_000)
    described = factories.bare_assets(50, start=10_000, alt_text="A dog", alt_text_source=Source.AI)
    filtered = f"{CHANGELIST}?alt_text_missing=yes"

    page = admin_client.get(filtered)
    assert page.status_code == 200
    action_choices = dict(page.context["action_form"].fields["action"].choices)
    assert action_choices[ACTION] == "Regenerate metadata with AI"
    on_page = [asset.pk for asset in page.context["cl"].result_list]
    assert len(on_page) == page.context["cl"].list_per_page

    # What the changelist's form posts after "Select all 5000 images".
    response = admin_client.post(
        filtered,
        {"action": ACTION, "select_across": "1", "index": "0", "_selected_action": on_page},
    )
    job = RegenerationJob.objects.get()
    assert response.status_code == 302 and response["Location"] == confirm_url(job)
    assert job.state == JobState.DRAFT and job.scope == {"filter": "alt_text_missing=yes"}
    assert not JobItem.objects.exists()

    started = time.monotonic()
    confirmation = admin_client.get(confirm_url(job))
    assert time.monotonic() - started < 2.0
    assert confirmation.status_code == 200
    look = confirmation.context["preview"]
    assert (look.images, look.busy, look.needing_call) == (5_000, 0, 5_000)
    assert b'name="_try_first"' in confirmation.content

    data = options_data(_confirm="Yes, regenerate")
    response = admin_client.post(confirm_url(job), data, follow=True)
    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    assert JobItem.objects.filter(job=job).count() == 5_000
    assert not JobItem.objects.filter(asset__in=described).exists()
    assert any("Regenerating metadata for 5,000 images" in m for m in messages_of(response))
    assert response.redirect_chain[-1][0] == CHANGELIST


def test_a_page_selection_stores_the_ids(admin_client):
    assets = factories.bare_assets(3)
    chosen = [assets[0].pk, assets[2].pk]
    response = admin_client.post(
        CHANGELIST,
        {"action": ACTION, "select_across": "0", "index": "0", "_selected_action": chosen},
    )
    job = RegenerationJob.objects.get()
    assert response["Location"] == confirm_url(job)
    assert sorted(job.scope["ids"]) == sorted(chosen)


def test_confirm_double_clicked_gives_one_job(admin_client):
    job = bulk.draft_bulk(
        actor=User.objects.get(username="admin"),
        asset_ids=[asset.pk for asset in factories.bare_assets(3)],
    )
    data = options_data(_confirm="Yes, regenerate")
    first = admin_client.post(confirm_url(job), data)
    second = admin_client.post(confirm_url(job), data, follow=True)
    assert first.status_code == 302
    assert RegenerationJob.objects.filter(state=JobState.QUEUED).count() == 1
    assert JobItem.objects.count() == 3
    assert any("already confirmed" in m for m in messages_of(second))


def test_try_first_starts_a_trial_and_shows_its_review_screen(admin_client):
    job = bulk.draft_bulk(
        actor=User.objects.get(username="admin"),
        asset_ids=[a.pk for a in factories.bare_assets(30)],
    )
    response = admin_client.post(confirm_url(job), options_data(_try_first="Try on 20 first"))
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.options["trial"] == 20
    assert response["Location"].endswith(f"?job={job.pk}")


def test_after_a_trial_the_rest_is_a_draft_with_the_same_options(admin_client):
    admin = User.objects.get(username="admin")
    trial = bulk.draft_bulk(actor=admin, asset_ids=[a.pk for a in factories.bare_assets(30)])
    bulk.confirm(
        job=trial,
        options=bulk.BulkOptions(fields=("alt_text",), language="de"),
        actor=admin,
        try_first=20,
    )
    url = reverse("admin:mediaopt_mediaasset_after_trial", args=[trial.pk])
    response = admin_client.post(url, {"next": "rest"})
    rest = RegenerationJob.objects.exclude(pk=trial.pk).get(state=JobState.DRAFT)
    assert response["Location"] == confirm_url(rest)
    assert rest.scope["after_trial"] == trial.pk and rest.options["language"] == "de"
    page = admin_client.get(confirm_url(rest))
    assert page.context["preview"].images == 10
    assert page.context["form"]["language"].value() == "de"


def test_update_the_estimate_redraws_with_the_chosen_options(admin_client):
    factories.bare_assets(2)
    factories.bare_assets(3, start=10, alt_text="A dog", alt_text_source=Source.AI)
    job = bulk.draft_bulk(actor=User.objects.get(username="admin"))
    every_field = admin_client.get(confirm_url(job)).context["preview"]
    alt_text = admin_client.post(
        confirm_url(job), options_data(metadata_fields=["alt_text"], _preview="1")
    ).context["preview"]
    overwrite = admin_client.post(
        confirm_url(job),
        options_data(strategy="overwrite", metadata_fields=["alt_text"], _preview="1"),
    ).context["preview"]
    # The described images still have empty titles, captions...: every field wants them.
    assert (every_field.needing_call, alt_text.needing_call, overwrite.needing_call) == (5, 2, 5)
    job.refresh_from_db()
    assert job.state == JobState.DRAFT


def test_someone_elses_draft_is_not_found(admin_client):
    other = User.objects.create_user("other", is_staff=True)
    job = bulk.draft_bulk(actor=other, asset_ids=[])
    # A superuser may confirm any draft; a staff user with the permission only their own.
    assert admin_client.get(confirm_url(job)).status_code == 200
    colleague = User.objects.create_user("colleague", is_staff=True)
    colleague.user_permissions.add(
        Permission.objects.get(codename="run_regeneration"),
        Permission.objects.get(codename="view_mediaasset"),
    )
    client = Client()
    client.force_login(colleague)
    assert client.get(confirm_url(job)).status_code == 404


def test_a_view_only_user_gets_no_action_and_403s(view_only_client):
    factories.bare_assets(2)
    page = view_only_client.get(CHANGELIST)
    assert page.status_code == 200
    action_form = page.context["action_form"]
    assert action_form is None or ACTION not in dict(action_form.fields["action"].choices)
    assert ACTION.encode() not in page.content

    job = bulk.draft_bulk(actor=None, asset_ids=[a.pk for a in MediaAsset.objects.all()])
    assert view_only_client.get(confirm_url(job)).status_code == 403
    assert view_only_client.post(confirm_url(job), options_data(_confirm="1")).status_code == 403
    assert view_only_client.post(REGENERATE_ALL, {"scope": "all"}).status_code == 403
    job.refresh_from_db()
    assert job.state == JobState.DRAFT and not JobItem.objects.exists()

    settings_page = view_only_client.get(
        reverse("admin:metadata_settings_change", args=[Settings.objects.current().pk])
    )
    assert settings_page.status_code == 200
    assert b"Regenerate all" not in settings_page.content


def test_regenerate_all_missing_alt_text_from_the_settings_page(admin_client):
    factories.bare_assets(2)
    factories.bare_assets(1, start=10, alt_text="A dog", alt_text_source=Source.AI)
    settings_page = admin_client.get(
        reverse("admin:metadata_settings_change", args=[Settings.objects.current().pk])
    )
    assert b"Regenerate all missing alt text" in settings_page.content
    response = admin_client.post(REGENERATE_ALL, {"scope": "missing_alt_text"}, follow=True)
    job = RegenerationJob.objects.get()
    assert job.scope == {"named": "missing_alt_text"} and job.state == JobState.DRAFT
    assert response.redirect_chain[-1][0] == confirm_url(job)
    assert response.context["preview"].images == 2


def test_regenerate_all_is_a_post(admin_client):
    assert admin_client.get(REGENERATE_ALL).status_code == 405
    assert not RegenerationJob.objects.exists()


def test_a_filter_the_library_no_longer_has_is_refused_politely(admin_client):
    admin = User.objects.get(username="admin")
    job = bulk.draft_bulk(actor=admin, filter_params={"no_such_field__gt": "1"})
    response = admin_client.get(confirm_url(job), follow=True)
    assert response.redirect_chain[-1][0] == CHANGELIST
    assert any("no longer applies" in m for m in messages_of(response))
