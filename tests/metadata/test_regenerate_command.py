"""``manage.py regenerate_metadata``: scopes, options, paging, the dry run, following a
job, the controls, JSON and the exit statuses."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.models import LedgerEntry
from mediaopt.library.models import MediaAsset
from metadata import progress, runner
from metadata.models import ItemState, JobItem, JobKind, JobState, RegenerationJob
from tests.fakeopenai import Fault
from tests.metadata.test_jobs import make_assets, new_job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


def run(*args: str) -> tuple[int, str]:
    """The command's exit status and what it printed on stdout."""
    out = io.StringIO()
    try:
        call_command("regenerate_metadata", *args, stdout=out, stderr=io.StringIO())
    except SystemExit as stop:
        return int(stop.code), out.getvalue()
    return 0, out.getvalue()


def run_json(*args: str) -> tuple[int, dict]:
    status, out = run(*args, "--json")
    return status, json.loads(out)


def the_job() -> RegenerationJob:
    return RegenerationJob.objects.get(kind=JobKind.BULK)


def test_inline_all_succeeds_exits_0_and_reports_json(fake_openai_settings):
    assets = make_assets(3)
    status, report = run_json("--all", "--inline")
    assert status == 0
    assert set(report) >= {
        "job",
        "state",
        "total",
        "succeeded",
        "skipped",
        "failed",
        "credits_spent",
        "failures",
    }
    assert report["job"] == the_job().pk and report["state"] == JobState.COMPLETED
    assert (report["total"], report["succeeded"], report["failed"]) == (3, 3, 0)
    assert report["credits_spent"] == 3 and report["failures"] == []
    assert all(asset.revisions.count() == 2 for asset in assets)


def test_some_failures_exit_2_and_list_each_with_its_reason(fake_openai_settings):
    make_assets(2)
    fake_openai_settings.always(Fault.error(400))  # not retryable: fails at once
    status, report = run_json("--all", "--inline")
    assert status == 2
    assert report["failed"] == 2 and report["credits_spent"] == 0
    assert {f["name"] for f in report["failures"]} == {"IMG_0000.jpg", "IMG_0001.jpg"}
    assert all("400" in f["reason"] for f in report["failures"])


def test_a_job_that_pauses_exits_3_with_its_reason(fake_openai_settings):
    make_assets(2)
    fake_openai_settings.always("insufficient_quota")
    status, report = run_json("--all", "--inline")
    assert status == 3
    assert report["state"] == JobState.PAUSED and report["pause_reason"]


def test_the_text_report_says_what_happened(fake_openai_settings):
    make_assets(1)
    status, out = run("--all", "--inline")
    assert status == 0
    assert f"Job #{the_job().pk} completed: 1 of 1 done — 1 succeeded" in out


def test_without_wait_or_inline_the_job_is_queued_on_the_bulk_cluster(
    django_capture_on_commit_callbacks,
):
    make_assets(2)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        status, report = run_json("--all")
    assert status == 0 and report["state"] == JobState.QUEUED
    assert len(sent) == 1  # one "run job J" task after commit
    job = the_job()
    assert job.queue == "bulk" and job.items.count() == 2


def test_wait_follows_the_job_until_it_ends(fake_openai_settings, monkeypatch):
    from metadata.management.commands import regenerate_metadata

    make_assets(2)
    real_progress = progress.progress

    def progress_then_work(job):
        # A stand-in cluster: the first poll works the job.
        if job.state == JobState.QUEUED:
            runner.run_job(job_id=job.pk)
        return real_progress(job)

    monkeypatch.setattr(progress, "progress", progress_then_work)
    monkeypatch.setattr(regenerate_metadata, "POLL_SECONDS", 0.01)
    status, report = run_json("--all", "--wait")
    assert status == 0 and report["state"] == JobState.COMPLETED and report["succeeded"] == 2


def test_ids_fields_strategy_and_force_shape_the_job(fake_openai_settings):
    assets = make_assets(3)
    ids = f"{assets[0].pk},{assets[2].pk}"
    status, report = run_json(
        "--ids", ids, "--fields", "title,alt_text", "--strategy", "overwrite", "--force"
    )
    assert status == 0
    job = the_job()
    assert set(job.items.values_list("asset_id", flat=True)) == {assets[0].pk, assets[2].pk}
    assert job.options["fields"] == ["alt_text", "title"]
    assert job.options["strategy"] == "overwrite" and job.options["force"] is True


def test_missing_alt_text_leaves_out_images_that_have_it(fake_openai_settings):
    assets = make_assets(3)
    MediaAsset.objects.filter(pk=assets[1].pk).update(alt_text="A red square", alt_text_source="ai")
    status, report = run_json("--missing", "alt_text", "--fields", "alt_text")
    assert set(the_job().items.values_list("asset_id", flat=True)) == {
        assets[0].pk,
        assets[2].pk,
    }


def test_after_id_pages_stably_while_the_set_shrinks(fake_openai_settings):
    assets = make_assets(5)
    ids = [asset.pk for asset in assets]
    status, first = run_json("--missing", "alt_text", "--limit", "2", "--inline")
    assert status == 0 and first["total"] == 2 and first["last_id"] == ids[1]
    # The first page's images now have alt text: they left the set; the next page
    # continues after them instead of skipping any.
    assert MediaAsset.objects.missing_alt_text().count() == 3
    status, second = run_json(
        "--missing", "alt_text", "--limit", "2", "--after-id", str(first["last_id"]), "--inline"
    )
    second_job = RegenerationJob.objects.get(pk=second["job"])
    assert sorted(second_job.items.values_list("asset_id", flat=True)) == ids[2:4]
    assert second["last_id"] == ids[3]


def test_dry_run_estimates_and_changes_nothing(fake_openai_settings):
    assets = make_assets(4)
    MediaAsset.objects.filter(pk=assets[0].pk).update(
        alt_text="Hand written", alt_text_source="manual"
    )
    before = [a.values() for a in MediaAsset.objects.order_by("pk")]
    status, report = run_json("--missing", "alt_text", "--fields", "alt_text", "--dry-run")
    assert status == 0
    assert report["dry_run"] is True
    assert report["in_scope"] == 3 and report["need_paid_call"] == 3
    assert report["estimate"]["credits_needed"] == 3 and report["estimate"]["enough"] is True
    assert RegenerationJob.objects.count() == 0 and JobItem.objects.count() == 0
    assert LedgerEntry.objects.filter(kind="capture").count() == 0
    assert fake_openai_settings.request_count == 0
    assert [a.values() for a in MediaAsset.objects.order_by("pk")] == before


def test_dry_run_counts_busy_images_apart(fake_openai_settings):
    assets = make_assets(3)
    new_job(assets[:1], state=JobState.RUNNING)
    status, report = run_json("--all", "--dry-run")
    assert (report["need_paid_call"], report["busy"]) == (2, 1)


def test_a_heuristic_dry_run_costs_nothing_and_says_so_like_the_confirmation_page():
    # No server key: the gate gives the heuristic, so neither the page nor the CLI prices it.
    make_assets(3)
    status, report = run_json("--all", "--dry-run")
    assert status == 0
    assert report["mode"] == "heuristic" and report["estimate"] is None
    assert report["need_paid_call"] == 0
    out = io.StringIO()
    call_command("regenerate_metadata", "--all", "--dry-run", stdout=out)
    assert "costs nothing" in out.getvalue()


def test_nothing_to_do_creates_no_job():
    assets = make_assets(1)
    MediaAsset.objects.filter(pk=assets[0].pk).update(alt_text="Done", alt_text_source="ai")
    status, report = run_json("--ids", str(assets[0].pk), "--fields", "alt_text")
    assert status == 0 and report["job"] is None
    assert RegenerationJob.objects.count() == 0


def test_pause_resume_and_cancel_a_job_by_id(django_capture_on_commit_callbacks):
    job = new_job(make_assets(2), state=JobState.RUNNING)
    status, report = run_json("--pause", str(job.pk))
    assert status == 3 and report["state"] == JobState.PAUSED
    assert report["pause_reason"] == "Paused from the command line."

    with django_capture_on_commit_callbacks(execute=False):
        status, report = run_json("--resume", str(job.pk))
    assert status == 0 and report["state"] == JobState.QUEUED

    status, report = run_json("--cancel", str(job.pk))
    assert status == 3 and report["state"] == JobState.CANCELLED and report["cancelled"] == 2
    assert set(job.items.values_list("state", flat=True)) == {ItemState.CANCELLED}


def test_a_control_the_state_refuses_is_an_error():
    job = new_job(make_assets(1), state=JobState.COMPLETED)
    with pytest.raises(CommandError, match="is completed: it cannot be paused"):
        run("--pause", str(job.pk))
    with pytest.raises(CommandError, match="No job #999"):
        run("--cancel", "999")


@pytest.mark.parametrize(
    "args",
    [
        (),  # no scope
        ("--all", "--inline", "--wait"),
        ("--all", "--ids", "1"),
        ("--all", "--fields", "colour"),
        ("--all", "--limit", "0"),
        ("--ids", "1,x"),
    ],
)
def test_bad_arguments_are_refused(args):
    with pytest.raises(CommandError):
        run(*args)


def test_review_language_and_focus_keywords_reach_the_job(fake_openai_settings):
    from metadata.models import Proposal

    assets = make_assets(2)
    status, report = run_json(
        "--all", "--inline", "--review", "--language", "pt_br", "--focus-keywords", "Lisboa"
    )
    assert status == 0
    job = the_job()
    assert job.options["review"] is True and job.options["language"] == "pt-BR"
    assert job.options["focus_keywords"] == "Lisboa"
    # Review mode: the results wait, the images keep their values.
    assert Proposal.objects.filter(job=job).count() == 2
    assert not MediaAsset.objects.filter(pk__in=[a.pk for a in assets]).exclude(alt_text="")
    text = fake_openai_settings.requests[0].messages[1]["content"][0]["text"]
    assert "Portuguese (Brazil)" in text and '"Lisboa"' in text


def test_a_bad_language_tag_is_refused_before_anything_starts():
    with pytest.raises(CommandError, match="not a language tag"):
        call_command("regenerate_metadata", "--all", "--language", "german!!")
    assert not RegenerationJob.objects.exists()
