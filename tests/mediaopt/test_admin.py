"""The media library and settings pages, through Django's test client."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from mediaopt import ingest
from mediaopt.models import MediaAsset
from metadata import revisions
from metadata.models import MetadataRevision, RevisionKind, Settings
from metadata.schema import Source
from metadata.strategies import FieldChange, Plan
from tests import factories

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:mediaopt_mediaasset_changelist")
UPLOAD = reverse("admin:mediaopt_mediaasset_upload")


def add_asset(name: str = "harbour.jpg", *, width: int = 40, color: str = "red") -> MediaAsset:
    outcome = ingest.import_file(source=factories.jpeg(width, 30, color=color), original_name=name)
    assert outcome.status == ingest.IMPORTED, outcome.reason
    return outcome.asset


def set_alt_text(asset: MediaAsset, value: str, source: str, *, decorative: bool = False):
    revisions.apply_plan(
        asset=asset,
        plan=Plan(
            changes={"alt_text": FieldChange(value=value, source=source)},
            is_decorative=decorative or None,
        ),
        based_on_revision_id=asset.current_revision_id,
        provider=source,
    )


def change_url(asset: MediaAsset) -> str:
    return reverse("admin:mediaopt_mediaasset_change", args=[asset.pk])


def change_form_data(client: Client, asset: MediaAsset, **changes: Any) -> dict[str, Any]:
    """What the browser would post from the change page as it was rendered, plus changes."""
    response = client.get(change_url(asset))
    assert response.status_code == 200
    form = response.context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"  # an unticked checkbox is not posted at all
            continue
        data[name] = "" if value is None else value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for name, field in formset.management_form.fields.items():
            data[f"{formset.prefix}-{name}"] = formset.management_form[name].value() or (
                field.initial if field.initial is not None else 0
            )
        for sub in formset.forms:
            for name in sub.fields:
                value = sub[name].value()
                if value is not None:
                    data[sub.add_prefix(name)] = value
    for name, value in changes.items():
        if name == "is_decorative":
            if value:
                data[name] = "on"
            else:
                data.pop(name, None)
        else:
            data[name] = value
    return data


def page_text(response) -> str:
    return response.content.decode()


# --- the list ---------------------------------------------------------------------------


def test_changelist_shows_thumbnails_filters_and_the_upload_button(admin_client):
    add_asset("boats.jpg")
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = page_text(response)
    assert "Missing alt text" in html
    assert "alt_text_source__exact" in html  # the source filter
    assert 'loading="lazy"' in html and 'class="mediaopt-thumb"' in html
    assert UPLOAD in html
    assert "boats.jpg" in html


def test_changelist_queries_do_not_grow_with_the_library(admin_client):
    for index in range(3):
        add_asset(f"first-{index}.jpg", width=20 + index)
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(CHANGELIST).status_code == 200
    for index in range(30):
        add_asset(f"more-{index}.jpg", width=40 + index)
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(CHANGELIST)
    assert len(response.context["cl"].result_list) == 33
    assert len(many) <= len(few)


def test_a_filtered_changelist_skips_the_full_count(admin_client, django_assert_max_num_queries):
    for index in range(20):
        add_asset(f"img-{index}.jpg", width=20 + index)
    # Session, user, the filtered count for the paginator, the page of rows. No second
    # COUNT(*) over the whole library (show_full_result_count), no query per row.
    with django_assert_max_num_queries(4):
        response = admin_client.get(f"{CHANGELIST}?alt_text_missing=yes")
    assert len(response.context["cl"].result_list) == 20


def test_missing_alt_text_filter_and_its_complement(admin_client):
    empty = add_asset("empty.jpg", width=21)
    guessed = add_asset("guessed.jpg", width=22)
    set_alt_text(guessed, "Harbour", Source.HEURISTIC)
    written = add_asset("written.jpg", width=23)
    set_alt_text(written, "Fishing boats at dawn", Source.AI)
    decorative = add_asset("decorative.jpg", width=24)
    set_alt_text(decorative, "", Source.AI, decorative=True)

    def listed(query: str) -> set[int]:
        response = admin_client.get(f"{CHANGELIST}?{query}")
        return {asset.pk for asset in response.context["cl"].result_list}

    assert listed("alt_text_missing=yes") == {empty.pk, guessed.pk}
    assert listed("alt_text_missing=no") == {written.pk, decorative.pk}
    assert listed("alt_text_source__exact=heuristic") == {guessed.pk}


def test_alt_text_from_a_model_is_escaped_in_the_list(admin_client):
    asset = add_asset()
    set_alt_text(asset, '"><script>alert(1)</script>', Source.AI)
    html = page_text(admin_client.get(CHANGELIST))
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;" in html


# --- the change form --------------------------------------------------------------------


def test_a_manual_edit_writes_a_revision_marking_only_that_field_manual(admin_client):
    asset = add_asset()
    set_alt_text(asset, "Boats", Source.AI)
    asset.refresh_from_db()
    before = asset.current_revision
    data = change_form_data(admin_client, asset, alt_text="Red fishing boats at dawn")
    assert data["based_on_revision"] == before.pk

    response = admin_client.post(change_url(asset), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    asset.refresh_from_db()
    revision = asset.current_revision
    assert revision.kind == RevisionKind.MANUAL and revision.parent_id == before.pk
    assert revision.changed_fields == ["alt_text"]
    assert (asset.alt_text, asset.alt_text_source) == ("Red fishing boats at dawn", "manual")
    assert asset.title_source == before.title_source
    assert revision.actor.username == "admin"


def test_saving_without_changes_writes_no_revision(admin_client):
    asset = add_asset()
    response = admin_client.post(change_url(asset), change_form_data(admin_client, asset))
    assert response.status_code == 302
    assert MetadataRevision.objects.filter(asset=asset).count() == 1


def test_a_form_opened_on_an_older_revision_refuses_to_save(admin_client):
    asset = add_asset()
    data = change_form_data(admin_client, asset, alt_text="Mine")
    set_alt_text(asset, "Theirs", Source.AI)  # a job writes while the form is open
    asset.refresh_from_db()

    response = admin_client.post(change_url(asset), data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert "changed since you opened it (revision 2)" in errors[0]
    asset.refresh_from_db()
    assert asset.alt_text == "Theirs" and asset.alt_text_source == Source.AI


def test_a_write_racing_the_save_is_reported_not_overwritten(admin_client, monkeypatch):
    asset = add_asset()
    data = change_form_data(admin_client, asset, alt_text="Mine")

    def racing(**kwargs):
        raise revisions.StaleRevision(asset_id=asset.pk, expected=1, current=2)

    monkeypatch.setattr(revisions, "apply_manual", racing)
    response = admin_client.post(change_url(asset), data, follow=True)

    texts = [str(message) for message in response.context["messages"]]
    assert any("changed since you opened it" in text for text in texts)
    assert not any("successfully" in text for text in texts)
    assert response.redirect_chain[-1][0] == change_url(asset)


def test_staff_without_change_permission_cannot_post_edits(client):
    asset = add_asset()
    viewer = User.objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_mediaasset", content_type__app_label="mediaopt")
    )
    client.force_login(viewer)
    assert client.get(change_url(asset)).status_code == 200

    response = client.post(
        change_url(asset),
        {"alt_text": "Vandal", "based_on_revision": asset.current_revision_id},
    )

    assert response.status_code == 403
    asset.refresh_from_db()
    assert asset.alt_text == ""
    assert MetadataRevision.objects.filter(asset=asset).count() == 1


# --- upload -----------------------------------------------------------------------------


def test_upload_imports_reports_duplicates_and_rejections(admin_client):
    existing = add_asset("existing.jpg", width=50, color="blue")
    files = [
        SimpleUploadedFile("one.jpg", factories.jpeg(31, 30), content_type="image/jpeg"),
        SimpleUploadedFile("two.jpg", factories.jpeg(32, 30), content_type="image/jpeg"),
        SimpleUploadedFile(
            "again.jpg", factories.jpeg(50, 30, color="blue"), content_type="image/jpeg"
        ),
        SimpleUploadedFile("broken.jpg", factories.corrupt_bytes(), content_type="image/jpeg"),
    ]

    response = admin_client.post(UPLOAD, {"files": files}, follow=True)

    assert response.redirect_chain[-1][0] == CHANGELIST
    names = set(MediaAsset.objects.values_list("original_name", flat=True))
    assert names == {"existing.jpg", "one.jpg", "two.jpg"}
    (summary,) = [str(m) for m in response.context["messages"] if "uploaded" in str(m)]
    assert summary.startswith("2 images uploaded; 1 duplicate skipped")
    assert f"as {existing.original_name}" in summary
    assert "1 rejected: broken.jpg — " in summary


def test_upload_page_needs_add_permission(client):
    viewer = User.objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_mediaasset", content_type__app_label="mediaopt")
    )
    client.force_login(viewer)
    assert client.get(UPLOAD).status_code == 403
    files = [SimpleUploadedFile("one.jpg", factories.jpeg(), content_type="image/jpeg")]
    assert client.post(UPLOAD, {"files": files}).status_code == 403
    assert not MediaAsset.objects.exists()


def test_the_admins_add_link_leads_to_the_upload_page(admin_client):
    response = admin_client.get(reverse("admin:mediaopt_mediaasset_add"))
    assert response.status_code == 302 and response["Location"] == UPLOAD
    assert 'type="file"' in page_text(admin_client.get(UPLOAD))
    assert "multiple" in page_text(admin_client.get(UPLOAD))


def test_upload_without_files_shows_the_form_again(admin_client):
    response = admin_client.post(UPLOAD, {})
    assert response.status_code == 200
    assert "Please choose at least one image." in page_text(response)


# --- media and settings -----------------------------------------------------------------


def test_media_refuses_anonymous_users(client):
    asset = add_asset()
    response = client.get(asset.file.url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_settings_changelist_redirects_to_the_one_row(admin_client):
    row = Settings.objects.current()
    response = admin_client.get(reverse("admin:metadata_settings_changelist"))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:metadata_settings_change", args=[row.pk])
    assert admin_client.get(reverse("admin:metadata_settings_add")).status_code == 403


def test_settings_page_saves_fields_as_checkboxes(admin_client):
    row = Settings.objects.current()
    url = reverse("admin:metadata_settings_change", args=[row.pk])
    html = page_text(admin_client.get(url))
    assert 'type="checkbox" name="default_fields" value="alt_text"' in html
    data = {
        "generate_on_upload": "on",
        "default_fields": ["title", "alt_text"],
        "default_strategy": row.default_strategy,
        "language": "de",
        "site_context": "A bakery in Lyon",
        "model": row.model,
        "detail": row.detail,
        "requests_per_minute": 100,
        "tokens_per_minute": 50_000,
    }

    response = admin_client.post(url, data, follow=True)

    assert response.redirect_chain[-1][0] == url
    assert "Settings saved." in [str(m) for m in response.context["messages"]]
    row.refresh_from_db()
    assert row.language == "de" and row.heuristic_fallback is False
    assert row.default_fields == ["alt_text", "title"]
    assert row.requests_per_minute == 100


def test_revisions_are_a_read_only_log(admin_client):
    asset = add_asset()
    revision = asset.current_revision
    assert (
        admin_client.get(reverse("admin:metadata_metadatarevision_changelist")).status_code == 200
    )
    url = reverse("admin:metadata_metadatarevision_change", args=[revision.pk])
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"alt_text": "Forged"}).status_code == 403
    delete = reverse("admin:metadata_metadatarevision_delete", args=[revision.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert MetadataRevision.objects.filter(pk=revision.pk).exists()
