"""The library list's per-row Regenerate: one small button per row for whoever may run
jobs, posting to the image's regenerate URL and coming back to the list."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from metadata.models import RegenerationJob
from tests.metadata.admin.test_media import (  # noqa: F401 (sent_tasks: a fixture used by name)
    CHANGELIST,
    add_asset,
    change_url,
    sent_tasks,
)

pytestmark = pytest.mark.django_db


def regenerate_url(asset) -> str:
    return reverse("admin:mediaopt_mediaasset_regenerate", args=[asset.pk])


def staff_client(*codenames: str) -> Client:
    user = User.objects.create_user("editor", password="pw-for-tests", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_each_row_has_a_regenerate_button_of_the_lists_one_form(admin_client):
    first, second = add_asset("boats.jpg"), add_asset("harbour.jpg", color="blue")
    page = admin_client.get(CHANGELIST + "?q=jpg").content.decode()

    for asset in (first, second):
        assert f'form="mediaopt-row-regenerate" formaction="{regenerate_url(asset)}"' in page
    assert '<form id="mediaopt-row-regenerate" method="post" hidden>' in page
    assert 'name="next" value="/admin/mediaopt/mediaasset/?q=jpg"' in page


def test_no_button_for_staff_who_may_not_run_jobs(admin_client):
    asset = add_asset()
    editor = staff_client("view_mediaasset", "change_mediaasset")
    page = editor.get(CHANGELIST).content.decode()

    assert regenerate_url(asset) not in page
    assert "mediaopt-row-tool" not in page


@pytest.mark.usefixtures("sent_tasks")
def test_the_button_starts_a_job_and_comes_back_to_the_filtered_list(
    admin_client, django_capture_on_commit_callbacks
):
    asset = add_asset()
    back = CHANGELIST + "?q=harbour"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(regenerate_url(asset), {"next": back}, follow=True)

    job = RegenerationJob.objects.get()
    assert list(job.items.values_list("asset_id", flat=True)) == [asset.pk]
    assert response.redirect_chain[-1][0] == back
    assert f"Regenerating this image's metadata — job #{job.pk}." in [
        str(m) for m in response.context["messages"]
    ]


@pytest.mark.usefixtures("sent_tasks")
def test_a_next_on_another_site_is_ignored(admin_client):
    asset = add_asset()
    response = admin_client.post(regenerate_url(asset), {"next": "https://evil.example/"})

    assert response["Location"] == change_url(asset)


def test_the_buttons_cost_the_list_no_query_per_row(admin_client):
    for index in range(3):
        add_asset(f"first-{index}.jpg", width=20 + index)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(CHANGELIST)
    for index in range(30):
        add_asset(f"more-{index}.jpg", width=40 + index)
    with CaptureQueriesContext(connection) as many:
        page = admin_client.get(CHANGELIST).content.decode()

    assert page.count('form="mediaopt-row-regenerate"') == 33
    assert len(many) <= len(few)
