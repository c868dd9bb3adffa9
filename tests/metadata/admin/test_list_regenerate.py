"""The library list's per-row Regenerate: one small button per row for whoever may run
jobs, posting to the image's regenerate URL and coming back to the list."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from mediaopt.library.fields import Source
from metadata import jobs
from metadata.models import ItemState, JobItem, JobKind, RegenerationJob
from tests.metadata.admin.test_media import (  # noqa: F401 (sent_tasks: a fixture used by name)
    CHANGELIST,
    add_asset,
    change_url,
    sent_tasks,
    set_alt_text,
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


# --- rows that follow their job -----------------------------------------------------------


def row_url(asset) -> str:
    return reverse("admin:mediaopt_mediaasset_list_row", args=[asset.pk])


def held_by_a_job(*assets):
    job = jobs.create_job(kind=JobKind.BULK, asset_ids=[asset.pk for asset in assets]).job
    jobs.enqueue(job)
    return job


def test_a_row_a_job_holds_polls_for_itself_instead_of_offering_regenerate(admin_client):
    busy, idle = add_asset("busy.jpg"), add_asset("idle.jpg", color="blue")
    held_by_a_job(busy)
    page = admin_client.get(CHANGELIST).content.decode()

    assert f'hx-get="{row_url(busy)}" hx-trigger="every 2s"' in page
    assert f'formaction="{regenerate_url(busy)}"' not in page
    assert f'formaction="{regenerate_url(idle)}"' in page
    assert row_url(idle) not in page


def test_the_row_keeps_polling_while_busy_and_stops_with_the_new_values(admin_client):
    asset = add_asset("busy.jpg")
    job = held_by_a_job(asset)
    polling = admin_client.get(row_url(asset))

    assert polling.status_code == 200
    assert polling.content.decode().startswith("<tr>") and "busy.jpg" in polling.content.decode()
    assert row_url(asset) in polling.content.decode()

    set_alt_text(asset, "Red boats in a harbour", Source.AI)
    JobItem.objects.filter(job=job).update(state=ItemState.SUCCEEDED)
    done = admin_client.get(row_url(asset))
    row = done.content.decode()

    assert done.status_code == 286
    assert "Red boats in a harbour" in row
    assert f'formaction="{regenerate_url(asset)}"' in row and row_url(asset) not in row


def test_the_busy_rows_cost_the_list_no_query_more_whatever_their_number(admin_client):
    first = [add_asset(f"first-{index}.jpg", width=20 + index) for index in range(3)]
    held_by_a_job(*first)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(CHANGELIST)
    more = [add_asset(f"more-{index}.jpg", width=40 + index) for index in range(30)]
    held_by_a_job(*more)
    with CaptureQueriesContext(connection) as many:
        page = admin_client.get(CHANGELIST).content.decode()

    assert page.count('hx-trigger="every 2s"') == 33
    assert len(many) <= len(few)


def test_the_row_endpoint_is_for_staff_only(client):
    asset = add_asset()

    assert client.get(row_url(asset)).status_code == 302  # the admin's login first
