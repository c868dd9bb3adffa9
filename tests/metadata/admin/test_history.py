"""An image's metadata history in the admin: the history page, compare, restore, and the
library's "has revisions" and "changed by job" filters, through Django's test client."""

from __future__ import annotations

import re

import pytest
from django.contrib import messages
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import history, revisions
from metadata.models import (
    JobKind,
    MetadataRevision,
    RegenerationJob,
    RevisionKind,
)
from tests.revision_builders import finished_job, generated, hand_edit
from tests.revision_builders import imported as imported_many


def imported(*, start: int = 0, **embedded: str) -> MediaAsset:
    (asset,) = imported_many(1, start=start, **embedded)
    return asset


pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:mediaopt_mediaasset_changelist")


# --- building a history -----------------------------------------------------------------


def every_kind(actor: User) -> tuple[MediaAsset, dict[str, MetadataRevision], RegenerationJob]:
    """Six revisions, one of each kind the page names: Embedded, AI, Heuristic, Manual,
    Restore, Undo. The bulk job's change (alt text) is what the undo takes back."""
    asset = imported(title="Harbour")
    bulk = finished_job()
    made = {"import": asset.current_revision}
    made["ai"] = generated(asset, job=bulk, alt_text="Red boats at dawn")
    made["heuristic"] = generated(
        asset, source=Source.HEURISTIC, provider="heuristic", model="", caption="harbour"
    )
    made["manual"] = hand_edit(asset, actor=actor, alt_text="Red fishing boats at dawn")
    asset.refresh_from_db()
    made["restore"] = revisions.restore(
        revision=made["ai"],
        fields=["alt_text"],
        actor=actor,
        based_on_revision_id=asset.current_revision_id,
    )
    undo_job = finished_job(JobKind.UNDO, undo_of=bulk)
    made["undo"] = revisions.undo_asset(
        asset_id=asset.pk, job=bulk, override=False, undo_job=undo_job
    ).revision
    asset.refresh_from_db()
    return asset, made, bulk


# --- reading the pages ------------------------------------------------------------------


def history_url(asset: MediaAsset, page: int | None = None) -> str:
    url = reverse("admin:mediaopt_mediaasset_metadata_history", args=[asset.pk])
    return f"{url}?page={page}" if page else url


def compare_url(asset: MediaAsset, old: object, new: object = "current") -> str:
    url = reverse("admin:mediaopt_mediaasset_metadata_compare", args=[asset.pk])
    return f"{url}?from={getattr(old, 'pk', old)}&to={getattr(new, 'pk', new)}"


def restore_url(asset: MediaAsset, revision: MetadataRevision) -> str:
    return reverse("admin:mediaopt_mediaasset_metadata_restore", args=[asset.pk, revision.pk])


def text(response) -> str:
    return response.content.decode()


def row_classes(html: str) -> dict[str, set[str]]:
    """Each field row's classes beyond its own name, e.g. {"alt_text": {"differs"}}."""
    rows = re.findall(r'<tr class="mediaopt-field-(\w+)((?: mediaopt-\w+)*)">', html)
    return {name: {c.removeprefix("mediaopt-") for c in extra.split()} for name, extra in rows}


def revision_sections(html: str) -> dict[int, str]:
    """The history page's HTML per revision number."""
    parts = re.split(r'<div class="module mediaopt-revision[^"]*" id="revision-(\d+)"', html)
    return {int(number): section for number, section in zip(parts[1::2], parts[2::2], strict=True)}


def checkboxes(html: str) -> dict[str, str]:
    """Restore's checkbox per field: "checked", "disabled" or "" (offered, unticked)."""
    found = re.findall(
        r'<input type="checkbox" name="fields" value="(\w+)" id="restore-\w+"\s*(\w*)\s*>', html
    )
    return dict(found)


def sent_messages(response) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in response.context["messages"]]


def viewer(client: Client) -> User:
    user = User.objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_mediaasset", content_type__app_label="mediaopt")
    )
    client.force_login(user)
    return user


# --- display logic (metadata/history.py) -------------------------------------------------


def test_word_diff_marks_removed_and_added_words_and_escapes_them():
    assert history.word_diff("Red boats at dawn", "Blue boats at dusk") == (
        "<del>Red</del> boats at <del>dawn</del>",
        "<ins>Blue</ins> boats at <ins>dusk</ins>",
    )
    assert history.word_diff('<img src=x onerror="a()"> boats', "boats") == (
        "<del>&lt;img src=x onerror=&quot;a()&quot;&gt; </del>boats",
        "boats",
    )


# --- the history page -------------------------------------------------------------------


def test_history_names_each_revision_kind_who_made_it_and_its_job(admin_client):
    editor = User.objects.create_user("ed")
    asset, made, bulk = every_kind(editor)
    plain = imported(start=50)

    response = admin_client.get(history_url(asset))

    assert response.status_code == 200
    assert [(e.revision.number, e.kind) for e in response.context["entries"]] == [
        (6, f"Undo of job #{bulk.pk}"),
        (5, "Restore of revision 2"),
        (4, "Manual edit"),
        (3, "Heuristic"),
        (2, "AI (gpt-4o-mini)"),
        (1, "Embedded"),
    ]
    sections = revision_sections(text(response))
    job_page = reverse("admin:metadata_regenerationjob_change", args=[bulk.pk])
    assert f'<a class="mediaopt-job" href="{job_page}">job #{bulk.pk}</a>' in sections[2]
    assert '<span class="mediaopt-actor">ed</span>' in sections[4]
    assert '<span class="mediaopt-actor">ed</span>' in sections[5]
    # Neither a person nor a job: the system wrote it.
    assert '<span class="mediaopt-actor">system</span>' in sections[3]
    assert "mediaopt-job" not in sections[3]
    assert 'mediaopt-current-badge">current<' in sections[6]
    assert [e.kind for e in admin_client.get(history_url(plain)).context["entries"]] == ["Import"]


def test_history_highlights_fields_that_differ_from_now_and_marks_what_each_changed(
    admin_client,
):
    asset, made, _ = every_kind(User.objects.create_user("ed"))
    # Now: alt text "" (the undo), title "Harbour" (embedded), caption "harbour" (heuristic).
    sections = revision_sections(text(admin_client.get(history_url(asset))))

    assert row_classes(sections[4]) == {
        "alt_text": {"differs", "changed"},
        "title": set(),
        "caption": set(),
        "description": set(),
        "keywords": set(),
        "is_decorative": set(),
    }
    assert row_classes(sections[1]) == {
        "alt_text": set(),
        "title": {"changed"},
        "caption": {"differs"},
        "description": set(),
        "keywords": set(),
        "is_decorative": set(),
    }
    assert row_classes(sections[6])["alt_text"] == {"changed"}
    # Revision 4's alt text beside the current (empty) one, with its source.
    assert (
        '<span class="mediaopt-value"><del>Red fishing boats at dawn</del></span>\n'
        '<span class="mediaopt-source">Manual</span>'
    ) in sections[4]
    assert '<span class="mediaopt-empty">(empty)</span>' in sections[4]


def test_history_links_compare_with_current_and_restore_per_older_revision(admin_client):
    asset, made, _ = every_kind(User.objects.create_user("ed"))
    sections = revision_sections(text(admin_client.get(history_url(asset))))

    for number in (1, 2, 3, 4, 5):
        revision = MetadataRevision.objects.get(asset=asset, number=number)
        assert compare_url(asset, revision).replace("&", "&amp;") in sections[number]
        assert f'href="{restore_url(asset, revision)}">Restore…</a>' in sections[number]
    # The current revision is what the image has: nothing to compare or restore.
    assert "Restore…" not in sections[6] and "to=current" not in sections[6]


def test_model_output_is_escaped_on_every_history_page(admin_client):
    asset = imported()
    first = asset.current_revision
    generated(asset, alt_text='<script>alert("x")</script> boats')
    pages = [history_url(asset), compare_url(asset, first), restore_url(asset, first)]
    for url in pages:
        html = text(admin_client.get(url))
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def _history_queries(client: Client, asset: MediaAsset) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(history_url(asset))
    assert response.status_code == 200
    return len(captured)


def test_the_history_page_costs_the_same_queries_at_3_and_60_revisions(admin_client):
    short = imported(start=1, title="Harbour")
    generated(short, job=finished_job(), alt_text="Boats")
    hand_edit(short, actor=User.objects.create_user("first"), alt_text="Fishing boats")
    long = imported(start=2, title="Harbour")
    bulk = finished_job()
    generated(long, job=bulk, alt_text="Boats")
    # Each revision by another person or job, restores and undos among them: one query
    # per row for any of these would show.
    for i in range(57):
        if i % 3 == 0:
            hand_edit(long, actor=User.objects.create_user(f"editor-{i}"), alt_text=f"Edit {i}")
        elif i % 3 == 1:
            generated(long, job=finished_job(), alt_text=f"AI {i}")
        else:
            long.refresh_from_db()
            revisions.restore(
                revision=MetadataRevision.objects.get(asset=long, number=i),
                fields=["alt_text"],
                actor=User.objects.create_user(f"restorer-{i}"),
                based_on_revision_id=long.current_revision_id,
            )
    undo_job = finished_job(JobKind.UNDO, undo_of=bulk)
    revisions.undo_asset(asset_id=long.pk, job=bulk, override=True, undo_job=undo_job)
    assert MetadataRevision.objects.filter(asset=short).count() == 3
    assert MetadataRevision.objects.filter(asset=long).count() == 60

    few, many = _history_queries(admin_client, short), _history_queries(admin_client, long)

    # Session, user, the notices waiting for the user (messages of long jobs), the image,
    # the paginator's count, one page of revisions.
    assert few == many == 6


def test_the_history_is_paginated_twenty_a_page_newest_first(admin_client):
    asset = imported()
    for i in range(44):
        hand_edit(asset, alt_text=f"Edit {i}")

    def numbers(page: int | None) -> list[int]:
        response = admin_client.get(history_url(asset, page))
        return [entry.revision.number for entry in response.context["entries"]]

    assert numbers(None) == list(range(45, 25, -1))
    assert numbers(2) == list(range(25, 5, -1))
    assert numbers(3) == [5, 4, 3, 2, 1]
    html = text(admin_client.get(history_url(asset, 2)))
    assert "Page 2 of 3" in html
    assert '<a href="?page=1">Newer</a>' in html and '<a href="?page=3">Older</a>' in html


def test_the_change_page_and_its_history_inline_link_to_the_history(admin_client):
    asset = imported()
    html = text(admin_client.get(reverse("admin:mediaopt_mediaasset_change", args=[asset.pk])))
    assert f'<li><a href="{history_url(asset)}">Metadata history</a></li>' in html
    assert f'<a href="{history_url(asset)}">Full metadata history' in html


# --- compare ----------------------------------------------------------------------------


def test_compare_shows_two_revisions_side_by_side_with_the_word_diff(admin_client):
    asset, made, _ = every_kind(User.objects.create_user("ed"))

    response = admin_client.get(compare_url(asset, made["ai"], made["manual"]))

    assert response.status_code == 200
    rows = {row.name: row for row in response.context["rows"]}
    assert [name for name, row in rows.items() if row.differs] == ["alt_text", "caption"]
    alt = rows["alt_text"]
    assert (alt.old_value, alt.old_source, alt.new_value, alt.new_source) == (
        "Red boats at dawn",
        "AI",
        "Red fishing boats at dawn",
        "Manual",
    )
    assert (alt.old_html, alt.new_html) == (
        "Red boats at dawn",
        "Red<ins> fishing</ins> boats at dawn",
    )
    caption = rows["caption"]
    assert (caption.old_source, caption.new_html, caption.new_source) == (
        "",
        "<ins>harbour</ins>",
        "Heuristic",
    )
    html = text(response)
    assert row_classes(html) == {
        "alt_text": {"differs"},
        "title": set(),
        "caption": {"differs"},
        "description": set(),
        "keywords": set(),
        "is_decorative": set(),
    }
    assert "Red<ins> fishing</ins> boats at dawn" in html
    assert "2 fields differ." in html
    assert "Revision 2 · AI (gpt-4o-mini)" in html and "Revision 4 · Manual edit" in html


def test_compare_with_current_and_the_decorative_flag(admin_client):
    asset = imported()
    first = asset.current_revision
    generated(asset, decorative=True, title="Divider")

    response = admin_client.get(compare_url(asset, first))

    rows = {row.name: row for row in response.context["rows"]}
    assert response.context["new"] is None and "Current values" in text(response)
    assert [name for name, row in rows.items() if row.differs] == ["title", "is_decorative"]
    assert (rows["is_decorative"].old_value, rows["is_decorative"].new_value) == ("No", "Yes")
    assert rows["title"].new_html == "<ins>Divider</ins>"


def test_compare_refuses_revisions_of_another_image(admin_client):
    asset, other = imported(start=1), imported(start=2)
    mine, theirs = asset.current_revision, other.current_revision
    assert admin_client.get(compare_url(asset, mine)).status_code == 200
    assert admin_client.get(compare_url(asset, theirs)).status_code == 404
    assert admin_client.get(compare_url(asset, mine, theirs)).status_code == 404
    assert admin_client.get(compare_url(asset, "abc")).status_code == 404
    assert admin_client.get(compare_url(asset, mine, "9" * 30)).status_code == 404
    assert admin_client.get(restore_url(asset, theirs)).status_code == 404


# --- restore ----------------------------------------------------------------------------


def test_restore_confirmation_offers_each_field_that_would_change(admin_client):
    asset, made, _ = every_kind(User.objects.create_user("ed"))

    response = admin_client.get(restore_url(asset, made["manual"]))

    assert response.status_code == 200
    html = text(response)
    # Revision 4 differs from now in alt text only (the heuristic caption came before it).
    assert checkboxes(html) == {
        "alt_text": "checked",
        "title": "disabled",
        "caption": "disabled",
        "description": "disabled",
        "keywords": "disabled",
        "is_decorative": "disabled",
    }
    assert f'name="based_on_revision" value="{made["undo"].pk}"' in html
    assert "Restore revision 4?" in html
    # The current value (none) becomes revision 4's, with its source.
    assert (
        '<td> <span class="mediaopt-empty">(empty)</span> </td> <td aria-hidden="true">→</td> '
        '<td> <span class="mediaopt-value"><ins>Red fishing boats at dawn</ins></span> '
        '<span class="mediaopt-source">Manual</span> </td>'
    ) in " ".join(html.split())
    history_link = f'&rsaquo; <a href="{history_url(asset)}">Metadata history</a>'
    assert f"{history_link} &rsaquo; Restore revision 4" in html


def test_restoring_chosen_fields_writes_one_revision_with_their_old_sources(admin_client):
    admin = User.objects.get(username="admin")
    asset = imported(title="Harbour")
    ai = generated(asset, alt_text="Boats", caption="Evening", decorative=True)
    edited = hand_edit(asset, alt_text="Fishing boats", caption="Late", is_decorative=False)

    page = text(admin_client.get(restore_url(asset, ai)))
    assert checkboxes(page) == {
        "alt_text": "checked",
        "title": "disabled",
        "caption": "checked",
        "description": "disabled",
        "keywords": "disabled",
        "is_decorative": "checked",
    }
    response = admin_client.post(
        restore_url(asset, ai),
        {"fields": ["caption", "is_decorative"], "based_on_revision": edited.pk},
        follow=True,
    )

    assert response.redirect_chain == [(history_url(asset), 302)]
    assert sent_messages(response) == [
        (messages.SUCCESS, "Restored 2 fields from revision 2 as revision 4.")
    ]
    asset.refresh_from_db()
    restored = asset.current_revision
    assert (restored.number, restored.kind, restored.changed_fields) == (
        4,
        RevisionKind.RESTORE,
        ["caption", "is_decorative"],
    )
    assert (restored.parent_id, restored.restored_from_id, restored.actor_id) == (
        edited.pk,
        ai.pk,
        admin.pk,
    )
    assert (asset.caption, asset.caption_source, asset.is_decorative) == (
        "Evening",
        Source.AI,
        True,
    )
    assert (asset.alt_text, asset.alt_text_source) == ("Fishing boats", Source.MANUAL)
    assert (asset.title, asset.title_source) == ("Harbour", Source.EMBEDDED)
    assert response.context["entries"][0].kind == "Restore of revision 2"


def test_restoring_a_single_field_says_so(admin_client):
    asset = imported(title="Harbour")
    first = asset.current_revision
    edited = hand_edit(asset, title="Port")
    response = admin_client.post(
        restore_url(asset, first),
        {"fields": ["title"], "based_on_revision": edited.pk},
        follow=True,
    )
    assert sent_messages(response) == [
        (messages.SUCCESS, "Restored 1 field from revision 1 as revision 3.")
    ]
    asset.refresh_from_db()
    assert (asset.title, asset.title_source) == ("Harbour", Source.EMBEDDED)


def test_restore_with_nothing_chosen_or_nothing_to_change_warns_and_writes_nothing(
    admin_client,
):
    asset = imported()
    first = asset.current_revision
    current = generated(asset, alt_text="Boats")
    url = restore_url(asset, first)

    none_chosen = admin_client.post(url, {"based_on_revision": current.pk}, follow=True)
    assert none_chosen.redirect_chain == [(url, 302)]
    assert sent_messages(none_chosen) == [
        (messages.WARNING, "Choose at least one field to restore.")
    ]

    same = admin_client.post(
        restore_url(asset, current),
        {"fields": ["alt_text"], "based_on_revision": current.pk},
        follow=True,
    )
    assert same.redirect_chain == [(restore_url(asset, current), 302)]
    assert sent_messages(same) == [
        (messages.WARNING, "Nothing restored: the image already has those values.")
    ]
    assert MetadataRevision.objects.filter(asset=asset).count() == 2


def test_a_restore_opened_before_another_change_is_refused_and_shown_afresh(admin_client):
    asset = imported()
    first = asset.current_revision
    opened_on = generated(asset, alt_text="Boats", title="Dusk")
    meanwhile = hand_edit(asset, alt_text="Typed meanwhile")

    response = admin_client.post(
        restore_url(asset, first),
        {"fields": ["alt_text"], "based_on_revision": opened_on.pk},
    )

    assert response.status_code == 200
    (level, message) = sent_messages(response)[0]
    assert level == messages.ERROR
    assert message == (
        "This image's metadata changed since you opened it (now revision 3). "
        "Nothing was restored; check the values below and restore again."
    )
    html = text(response)
    assert f'name="based_on_revision" value="{meanwhile.pk}"' in html
    assert "<del>Typed meanwhile</del>" in html
    # The person's choice is kept: title was offered but not ticked.
    assert checkboxes(html)["alt_text"] == "checked"
    assert checkboxes(html)["title"] == ""
    asset.refresh_from_db()
    assert asset.current_revision_id == meanwhile.pk and asset.alt_text == "Typed meanwhile"


# --- permissions ------------------------------------------------------------------------


def test_a_viewer_reads_the_history_but_may_not_restore(client):
    asset = imported()
    first = asset.current_revision
    current = generated(asset, alt_text="Boats")
    viewer(client)

    response = client.get(history_url(asset))
    assert response.status_code == 200
    html = text(response)
    assert "You can view this history; restoring needs permission to change images." in html
    assert "Restore…" not in html and "/restore/" not in html
    assert client.get(compare_url(asset, first)).status_code == 200
    assert client.get(restore_url(asset, first)).status_code == 403
    refused = client.post(
        restore_url(asset, first), {"fields": ["alt_text"], "based_on_revision": current.pk}
    )
    assert refused.status_code == 403
    asset.refresh_from_db()
    assert asset.alt_text == "Boats" and asset.current_revision_id == current.pk


def test_an_editor_sees_no_note_and_staff_without_view_permission_see_nothing(admin_client, client):
    asset = imported()
    assert "restoring needs permission" not in text(admin_client.get(history_url(asset)))
    staff = User.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    client.force_login(staff)
    assert client.get(history_url(asset)).status_code == 403
    assert client.get(compare_url(asset, asset.current_revision)).status_code == 403


def test_history_of_a_missing_image_is_404(admin_client):
    missing = MediaAsset(pk=999_999)
    assert admin_client.get(history_url(missing)).status_code == 404


# --- library filters --------------------------------------------------------------------


def listed(client: Client, query: str) -> set[int]:
    response = client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    return {asset.pk for asset in response.context["cl"].result_list}


def job_choices(client: Client, query: str = "") -> list[str]:
    response = client.get(f"{CHANGELIST}?{query}")
    (spec,) = [
        s for s in response.context["cl"].filter_specs if getattr(s, "parameter_name", "") == "job"
    ]
    return [title for _, title in spec.lookup_choices]


def test_changed_by_job_lists_the_ten_newest_jobs_that_wrote_and_filters_by_any(admin_client):
    assets = [imported(start=i) for i in range(12)]
    jobs = []
    for i, asset in enumerate(assets):
        job = finished_job(JobKind.SINGLE if i % 2 else JobKind.BULK)
        generated(asset, job=job, alt_text=f"AI {i}")
        jobs.append(job)
    finished_job()  # wrote nothing: not offered
    generated(assets[3], job=jobs[11], title="Also by the newest job")

    assert (
        job_choices(admin_client)
        == [
            f"#{job.pk} {'single image' if i % 2 else 'bulk'}"
            for i, job in reversed(list(enumerate(jobs)))
        ][:10]
    )
    assert listed(admin_client, f"job={jobs[11].pk}") == {assets[11].pk, assets[3].pk}
    # Older than the ten offered: still works from the URL, and shows as chosen.
    assert listed(admin_client, f"job={jobs[0].pk}") == {assets[0].pk}
    assert job_choices(admin_client, f"job={jobs[0].pk}")[-1] == f"#{jobs[0].pk}"
    everything = {asset.pk for asset in assets}
    assert listed(admin_client, "job=abc") == everything
    assert listed(admin_client, "job=999999") == set()
    assert listed(admin_client, f"job={'9' * 30}") == set()
    # With the admin's "Show counts": images per job.
    counted = text(admin_client.get(f"{CHANGELIST}?_facets=1"))
    assert f"#{jobs[11].pk} single image (2)" in counted
    assert f"#{jobs[10].pk} bulk (1)" in counted


def test_has_revisions_tells_changed_images_from_imported_ones(admin_client):
    untouched, generated_once, edited = (imported(start=i) for i in range(3))
    generated(generated_once, alt_text="Boats")
    hand_edit(edited, title="Port")

    assert listed(admin_client, "revised=yes") == {generated_once.pk, edited.pk}
    assert listed(admin_client, "revised=no") == {untouched.pk}
    html = text(admin_client.get(CHANGELIST))
    assert "Changed since import" in html and "Only the import" in html


def test_the_job_filter_costs_the_same_queries_at_any_number_of_jobs(admin_client):
    def queries(query: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(f"{CHANGELIST}?{query}").status_code == 200
        return len(captured)

    first = imported(start=0)
    job = finished_job()
    generated(first, job=job, alt_text="AI")
    few = queries(f"job={job.pk}&revised=yes")
    for i in range(1, 25):
        generated(imported(start=i), job=finished_job(), alt_text=f"AI {i}")
    assert queries(f"job={job.pk}&revised=yes") == few


def test_the_image_page_lists_only_the_latest_revisions(admin_client):
    from metadata.admin.change_form import INLINE_REVISIONS
    from tests.revision_builders import generated, imported

    (asset,) = imported(1, start=900)
    for index in range(INLINE_REVISIONS + 5):
        generated(asset, None, alt_text=f"Version {index}")
    response = admin_client.get(reverse("admin:mediaopt_mediaasset_change", args=[asset.pk]))
    inline = response.context["inline_admin_formsets"][0].formset
    numbers = sorted(form.instance.number for form in inline.forms)
    assert len(numbers) == INLINE_REVISIONS and numbers[-1] == INLINE_REVISIONS + 6
