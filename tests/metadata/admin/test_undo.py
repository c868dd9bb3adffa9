"""Undoing a job from its admin page (undo.py behind it): the button and who sees it, the
confirmation with its counts and per-field conflicts, one undo job per confirmation, the
undo job's page; and the History settings with their daily prune schedule."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.management.sql import emit_post_migrate_signal
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import jobs, runner, undo
from metadata.apps import PRUNE_SCHEDULE
from metadata.models import (
    ItemState,
    JobItem,
    JobKind,
    JobState,
    MetadataRevision,
    RegenerationJob,
    Settings,
)
from tests.factories import bare_assets, recount_jobs
from tests.revision_builders import generated as ai_write
from tests.revision_builders import hand_edit, imported

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

PASSWORD = "a-long-test-password"
EDITOR_PERMISSIONS = ("view_regenerationjob", "change_mediaasset", "view_mediaasset")


# -- helpers -----------------------------------------------------------------------------


def staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def job_url(view: str, job: RegenerationJob | int) -> str:
    pk = job if isinstance(job, int) else job.pk
    return reverse(f"admin:metadata_regenerationjob_{view}", args=[pk])


def asset_url(asset: MediaAsset) -> str:
    return reverse("admin:mediaopt_mediaasset_change", args=[asset.pk])


def finished(job: RegenerationJob) -> RegenerationJob:
    JobItem.objects.filter(job=job).update(state=ItemState.SUCCEEDED)
    RegenerationJob.objects.filter(pk=job.pk).update(
        state=JobState.COMPLETED, finished_at=timezone.now()
    )
    recount_jobs(job)
    return job


def generation_job(assets: list[MediaAsset], decorative=None, **values) -> RegenerationJob:
    """A completed bulk job that wrote ``values`` (as AI) on each of ``assets``."""
    job = jobs.create_job(kind=JobKind.BULK, asset_ids=[a.pk for a in assets]).job
    for asset in assets:
        ai_write(asset, job, decorative=decorative, **values)
    return finished(job)


def run(job: RegenerationJob) -> RegenerationJob:
    """Work a queued undo job to the end here, as its cluster would."""
    runner._run(job_id=job.pk, to_the_end=True)
    job.refresh_from_db()
    return job


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def editor_client(client):
    """Staff who may see jobs and change images' metadata, but not run regenerations."""
    client.force_login(staff("editor", *EDITOR_PERMISSIONS))
    return client


@pytest.fixture
def sync_mode(monkeypatch):
    """django-q2 runs tasks inline (override_settings cannot reach Conf, read once at import)."""
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def story():
    """Job #J wrote alt text and title on three images; afterwards a person edited the
    second image's alt text by hand. The third is the one to keep busy where needed."""
    assets = imported(3, title="Harbour")
    job = generation_job(assets, alt_text="Boats at dusk", title="Boats")
    hand_edit(assets[1], alt_text="Fishing boats, by hand")
    return job, assets


# -- the button --------------------------------------------------------------------------


def test_a_finished_job_shows_undo_and_the_link_to_its_images(editor_client, story):
    job, _ = story
    html = editor_client.get(job_url("change", job)).content.decode()
    assert (
        f'<a href="{job_url("undo", job)}" class="button mediaopt-job-undo">Undo this job…</a>'
        in html
    )
    changelist = reverse("admin:mediaopt_mediaasset_changelist")
    assert f'<a href="{changelist}?job={job.pk}">See the 3 images this job changed</a>' in html
    assert "mediaopt-job-undo-refusal" not in html


def test_without_permission_to_change_images_there_is_no_undo_and_the_url_is_403(client, story):
    job, assets = story
    # May see and run jobs, may even see the library: still not edit metadata.
    client.force_login(
        staff("runner", "view_regenerationjob", "run_regeneration", "view_mediaasset")
    )
    html = client.get(job_url("change", job)).content.decode()
    assert "Undo this job" not in html and job_url("undo", job) not in html
    assert "mediaopt-job-undo-refusal" not in html
    assert "See the 3 images this job changed" in html

    assert client.get(job_url("undo", job)).status_code == 403
    assert client.post(job_url("undo", job), {"seen_undo": ""}).status_code == 403
    assert not RegenerationJob.objects.filter(kind=JobKind.UNDO).exists()
    assets[0].refresh_from_db()
    assert assets[0].alt_text == "Boats at dusk"


def test_staff_without_the_jobs_view_permission_gets_403_on_the_undo_url(client, story):
    job, _ = story
    client.force_login(staff("editor-only", "change_mediaasset"))
    assert client.get(job_url("undo", job)).status_code == 403
    assert client.post(job_url("undo", job)).status_code == 403


def test_a_view_only_user_without_the_library_sees_no_link_to_the_images(client, story):
    job, _ = story
    client.force_login(staff("viewer", "view_regenerationjob"))
    html = client.get(job_url("change", job)).content.decode()
    assert "this job changed" not in html and "Undo this job" not in html


def test_a_running_job_says_when_it_can_be_undone_instead_of_a_button(editor_client, story):
    job, _ = story
    RegenerationJob.objects.filter(pk=job.pk).update(state=JobState.RUNNING, finished_at=None)
    html = editor_client.get(job_url("change", job)).content.decode()
    assert ">Undo this job…</a>" not in html
    assert (
        '<p class="quiet mediaopt-job-undo-refusal">'
        f"Job #{job.pk} is running; it can be undone once it has finished or been cancelled.</p>"
    ) in html


def test_a_job_being_undone_names_the_undo_job(editor_client, story):
    job, _ = story
    undoing = undo.start(job=job, actor=None).job  # queued: no cluster runs it here
    assert undoing.state == JobState.QUEUED
    html = editor_client.get(job_url("change", job)).content.decode()
    assert f"Job #{job.pk} is already being undone by job #{undoing.pk}." in html
    assert ">Undo this job…</a>" not in html
    # The queued undo itself cannot be undone yet either, and says so.
    html = editor_client.get(job_url("change", undoing)).content.decode()
    assert f"Job #{undoing.pk} is queued; it can be undone once it has finished" in html
    assert f'Undo of <a href="{job_url("change", job)}">job #{job.pk}</a>.' in html


def test_a_draft_shows_neither_button_nor_reason(editor_client):
    draft = jobs.create_job(kind=JobKind.BULK, asset_ids=[a.pk for a in bare_assets(2)]).job
    html = editor_client.get(job_url("change", draft)).content.decode()
    assert 'class="button mediaopt-job-undo"' not in html
    assert "mediaopt-job-undo-refusal" not in html


def test_a_job_that_changed_nothing_says_so(editor_client):
    job = finished(jobs.create_job(kind=JobKind.BULK, asset_ids=[bare_assets(1)[0].pk]).job)
    html = editor_client.get(job_url("change", job)).content.decode()
    assert f"Job #{job.pk} changed no image; there is nothing to undo." in html
    assert "this job changed</a>" not in html


# -- the confirmation --------------------------------------------------------------------


def test_the_confirmation_counts_images_and_details_conflicts_per_field(editor_client):
    assets = imported(4, title="Harbour")
    job = generation_job(assets[:3], alt_text="Boats at dusk", title="Boats", decorative=True)
    hand_edit(assets[1], alt_text="Fishing boats, by hand")
    # Image 3 is held by another job: left out of the undo.
    busy = jobs.create_job(kind=JobKind.BULK, asset_ids=[assets[2].pk]).job
    assert busy.items.count() == 1

    response = editor_client.get(job_url("undo", job))

    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == (
        "admin/metadata/regenerationjob/undo_confirmation.html"
    )
    html = response.content.decode()
    assert f"<title>Undo job #{job.pk}?" in html
    assert f"Job #{job.pk} changed <strong>3 images</strong>." in html
    assert '<li id="undo-unchanged"><strong>2</strong> are still as the job left them' in html
    assert '<li id="undo-changed-since"><strong>1</strong> was changed again since' in html
    assert (
        '<li id="undo-busy"><strong>1</strong> is being worked on by another job now and '
        "will be left out"
    ) in html
    # One row, for the image edited since: title and the decorative flag go back, the
    # alt text typed by hand is kept.
    row = (
        f'<tr><td><a href="{asset_url(assets[1])}">photo-1.jpg</a></td>'
        '<td class="undo-restore">Title, Decorative</td><td class="undo-kept">Alt text</td></tr>'
    )
    assert row in html
    assert html.count('<td class="undo-kept">') == 1
    assert "It runs as a small job right away" in html
    assert '<strong id="undo-cost">It costs no credits</strong>' in html
    assert (
        '<label for="id_override" class="vCheckboxLabel">'
        "Also replace values changed after this job (override)</label>"
    ) in html
    assert '<input type="submit" value="Confirm">' in html
    assert f'<a href="{job_url("change", job)}" class="button cancel-link">Cancel</a>' in html
    assert '<input type="hidden" name="seen_undo" value="">' in html
    # Breadcrumbs lead back to the jobs and to this one.
    assert f'&rsaquo; <a href="{job_url("change", job)}">{job}</a>\n&rsaquo; Undo' in html
    # Only a preview: nothing was created or changed.
    assert not RegenerationJob.objects.filter(kind=JobKind.UNDO).exists()
    assets[0].refresh_from_db()
    assert assets[0].alt_text == "Boats at dusk"


def test_a_large_job_runs_in_the_background(editor_client):
    assets = imported(undo.INTERACTIVE_LIMIT + 1)
    job = generation_job(assets, alt_text="Boats")
    html = editor_client.get(job_url("undo", job)).content.decode()
    assert f"changed <strong>{undo.INTERACTIVE_LIMIT + 1} images</strong>" in html
    assert "It runs in the background as a job" in html
    assert 'id="undo-conflicts"' not in html  # nothing changed since: no table


def test_get_on_a_job_that_cannot_be_undone_goes_back_with_the_reason(editor_client, story):
    job, _ = story
    RegenerationJob.objects.filter(pk=job.pk).update(state=JobState.PAUSED, finished_at=None)
    response = editor_client.get(job_url("undo", job))
    assert response.status_code == 302 and response["Location"] == job_url("change", job)
    assert messages_of(response) == [
        (
            "warning",
            f"Job #{job.pk} is paused; it can be undone once it has finished or been cancelled.",
        )
    ]


# -- confirming --------------------------------------------------------------------------


def test_confirming_makes_one_undo_job_that_restores_values_and_keeps_later_edits(
    editor_client, story, sync_mode, django_capture_on_commit_callbacks
):
    job, assets = story
    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(job_url("undo", job), {"seen_undo": ""})

    undo_job = RegenerationJob.objects.get(kind=JobKind.UNDO)
    assert response.status_code == 302 and response["Location"] == job_url("change", undo_job)
    assert messages_of(response) == [
        (
            "success",
            f'Undoing job #{job.pk} on 3 images — <a href="{job_url("change", undo_job)}">'
            f"job #{undo_job.pk}</a>. It costs no credits.",
        )
    ]
    assert (undo_job.undo_of_id, undo_job.options, undo_job.created_by.username) == (
        job.pk,
        {"override": False},
        "editor",
    )
    assert undo_job.state == JobState.COMPLETED  # sync mode: it ran on enqueue
    values = {
        a.pk: (a.alt_text, a.alt_text_source, a.title, a.title_source)
        for a in MediaAsset.objects.filter(pk__in=[a.pk for a in assets])
    }
    assert values == {
        assets[0].pk: ("", Source.NONE, "Harbour", Source.EMBEDDED),
        assets[1].pk: ("Fishing boats, by hand", Source.MANUAL, "Harbour", Source.EMBEDDED),
        assets[2].pk: ("", Source.NONE, "Harbour", Source.EMBEDDED),
    }

    # The same confirmation sent again (back button, double click): still one undo.
    with django_capture_on_commit_callbacks(execute=True):
        again = editor_client.post(job_url("undo", job), {"seen_undo": ""})
    assert again["Location"] == job_url("change", undo_job)
    assert messages_of(again)[-1:] == [
        (
            "info",
            f'This undo was already confirmed: <a href="{job_url("change", undo_job)}">'
            f"job #{undo_job.pk}</a>.",
        )
    ]
    assert RegenerationJob.objects.filter(kind=JobKind.UNDO).count() == 1


def test_confirming_twice_before_the_undo_runs_makes_one_undo_job(editor_client, story):
    job, _ = story
    first = editor_client.post(job_url("undo", job), {"seen_undo": ""})
    undo_job = RegenerationJob.objects.get(kind=JobKind.UNDO)
    assert undo_job.state == JobState.QUEUED and first["Location"] == job_url("change", undo_job)
    # A second page shown before the first confirmation, posted after it.
    second = editor_client.post(job_url("undo", job), {"seen_undo": ""})
    assert second["Location"] == job_url("change", undo_job)
    # A form that did see the queued undo: undo.start refuses, the job's page says why.
    third = editor_client.post(job_url("undo", job), {"seen_undo": str(undo_job.pk)})
    assert third["Location"] == job_url("change", job)
    assert messages_of(third)[-1:] == [
        ("warning", f"Job #{job.pk} is already being undone by job #{undo_job.pk}.")
    ]
    assert RegenerationJob.objects.filter(kind=JobKind.UNDO).count() == 1
    assert JobItem.objects.filter(job=undo_job).count() == 3


def test_busy_images_are_left_out_and_the_message_says_so(editor_client, story):
    job, assets = story
    jobs.create_job(kind=JobKind.BULK, asset_ids=[assets[2].pk])
    response = editor_client.post(job_url("undo", job), {"seen_undo": ""})
    undo_job = RegenerationJob.objects.get(kind=JobKind.UNDO)
    [(level, text)] = messages_of(response)
    assert level == "success"
    assert text.startswith(f"Undoing job #{job.pk} on 2 images — ")
    assert text.endswith(
        f"1 already being worked on by another job was left out: undo job #{job.pk} again "
        "once that job has finished to reach them."
    )
    assert set(undo_job.items.values_list("asset_id", flat=True)) == {
        assets[0].pk,
        assets[1].pk,
    }


def test_override_replaces_the_values_changed_since_and_the_page_says_so(editor_client, story):
    job, assets = story
    editor_client.post(job_url("undo", job), {"seen_undo": "", "override": "on"})
    undo_job = run(RegenerationJob.objects.get(kind=JobKind.UNDO))
    assert undo_job.options == {"override": True}
    assets[1].refresh_from_db()
    assert (assets[1].alt_text, assets[1].alt_text_source) == ("", Source.NONE)

    html = editor_client.get(job_url("change", undo_job)).content.decode()
    assert (
        f'Undo of <a href="{job_url("change", job)}">job #{job.pk}</a>, '
        "replacing values changed after it."
    ) in html
    assert f"On 1 image, values changed after job #{job.pk} were replaced (override):" in html
    assert f'<td><a href="{asset_url(assets[1])}">photo-1.jpg</a></td><td>Alt text</td>' in html


# -- the undo job's page -----------------------------------------------------------------


def test_the_undo_jobs_page_names_the_job_and_lists_what_was_kept(editor_client, story):
    job, assets = story
    editor_client.post(job_url("undo", job), {"seen_undo": ""})
    undo_job = run(RegenerationJob.objects.get(kind=JobKind.UNDO))

    html = editor_client.get(job_url("change", undo_job)).content.decode()
    assert f'Undo of <a href="{job_url("change", job)}">job #{job.pk}</a>.' in html
    assert (
        f"<strong>3 images restored</strong> to their values from before job #{job.pk}."
    ) in html
    assert f"On 1 image, values changed after job #{job.pk} were kept:" in html
    assert f'<td><a href="{asset_url(assets[1])}">photo-1.jpg</a></td><td>Alt text</td>' in html
    # An undo can be undone in turn; its own revisions are "the images it changed".
    assert (
        f'<a href="{job_url("undo", undo_job)}" class="button mediaopt-job-undo">'
        "Undo this undo…</a>"
    ) in html
    assert f'?job={undo_job.pk}">See the 3 images this job changed</a>' in html
    # The original can be undone again (images already back are skipped).
    assert ">Undo this job…</a>" in editor_client.get(job_url("change", job)).content.decode()


def test_the_final_poll_of_an_undo_brings_its_result(editor_client, story):
    job, _ = story
    editor_client.post(job_url("undo", job), {"seen_undo": ""})
    undo_job = RegenerationJob.objects.get(kind=JobKind.UNDO)
    queued = editor_client.get(job_url("progress", undo_job), {"shown": "queued"})
    assert queued.status_code == 200 and "restored" not in queued.content.decode()

    run(undo_job)
    ended = editor_client.get(job_url("progress", undo_job), {"shown": "queued"})
    assert ended.status_code == 286
    html = ended.content.decode()
    assert "<strong>3 images restored</strong>" in html
    # The state changed: the controls come out of band, now with "Undo this undo…".
    assert "Undo this undo…</a>" in html


def test_undoing_the_undo_puts_the_jobs_values_back(editor_client, story):
    job, assets = story
    editor_client.post(job_url("undo", job), {"seen_undo": ""})
    first = run(RegenerationJob.objects.get(kind=JobKind.UNDO))

    page = editor_client.get(job_url("undo", first)).content.decode()
    assert f"Job #{first.pk} changed <strong>3 images</strong>." in page
    response = editor_client.post(job_url("undo", first), {"seen_undo": ""})
    second = run(RegenerationJob.objects.get(undo_of=first))
    assert response["Location"] == job_url("change", second)
    assets[0].refresh_from_db()
    assets[1].refresh_from_db()
    assert (assets[0].alt_text, assets[0].title) == ("Boats at dusk", "Boats")
    # The hand edit was kept by the first undo, so the second had nothing to take back
    # there but the title.
    assert (assets[1].alt_text, assets[1].title) == ("Fishing boats, by hand", "Boats")


def test_an_undo_job_never_offers_retry_failed(client, story):
    job, _ = story
    client.force_login(staff("runner", "view_regenerationjob", "run_regeneration"))
    undo_job = run(undo.start(job=job, actor=None).job)
    JobItem.objects.filter(job=undo_job, asset__original_name="photo-0.jpg").update(
        state=ItemState.FAILED, error="disk full"
    )
    recount_jobs(undo_job)
    html = client.get(job_url("change", undo_job)).content.decode()
    assert "disk full" in html  # the failure is listed ...
    assert ">Retry failed</button>" not in html  # ... but undoing again is the way


def test_the_job_list_links_an_undo_to_its_job(admin_client, story):
    job, _ = story
    undo_job = undo.start(job=job, actor=None).job
    html = admin_client.get(reverse("admin:metadata_regenerationjob_changelist")).content.decode()
    assert f'<td class="field-of_job_display"><a href="{job_url("change", job)}">#{job.pk}</a>' in (
        html
    )
    assert html.count('<td class="field-of_job_display">-</td>') == 1  # the job itself
    assert undo_job.pk != job.pk


# -- history settings and the prune schedule ---------------------------------------------


def settings_url() -> str:
    return reverse("admin:metadata_settings_change", args=[Settings.objects.current().pk])


def test_the_settings_page_saves_the_history_retention(admin_client):
    page = admin_client.get(settings_url())
    html = page.content.decode()
    assert '<h2 id="fieldset-0-3-heading" class="fieldset-heading">History</h2>' in html
    assert "Each image keeps at least its latest revisions, however old." in html
    form = page.context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if name in form.fields and value not in (None, False)
    }
    data.update(revisions_keep="12", revisions_keep_days="30")

    response = admin_client.post(settings_url(), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    row = Settings.objects.current()
    assert (row.revisions_keep, row.revisions_keep_days) == (12, 30)

    data.update(revisions_keep="0")
    refused = admin_client.post(settings_url(), data)
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["revisions_keep"] == [
        "Ensure this value is greater than or equal to 1."
    ]
    assert Settings.objects.current().revisions_keep == 12


def test_the_daily_prune_schedule_is_created_after_migrate():
    Schedule.objects.filter(name=PRUNE_SCHEDULE).delete()
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    [schedule] = Schedule.objects.filter(name=PRUNE_SCHEDULE)
    assert (schedule.func, schedule.schedule_type, schedule.repeats, schedule.cluster) == (
        "metadata.tasks.prune_revisions",
        Schedule.DAILY,
        -1,
        "bulk",
    )


def test_the_prune_task_applies_the_settings_and_logs_the_count(caplog):
    from metadata import tasks

    row = Settings.objects.current()
    row.revisions_keep, row.revisions_keep_days = 2, 30
    row.save()
    (asset,) = imported(1)
    for n in range(5):
        hand_edit(asset, title=f"Title {n}")  # revisions 2..6
    MetadataRevision.objects.filter(asset=asset).update(
        created_at=timezone.now() - timedelta(days=31)
    )

    with caplog.at_level(logging.INFO, logger="metadata.tasks"):
        assert tasks.prune_revisions() == 4

    assert sorted(asset.revisions.values_list("number", flat=True)) == [5, 6]
    assert "prune_revisions: 4 revision(s) removed" in caplog.messages
