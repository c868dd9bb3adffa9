import csv
import io
import json

import pytest
from django.core.management import call_command

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import progress, runner
from metadata.models import ItemState, JobKind, JobQueue, JobState, RegenerationJob, Settings
from tests import factories
from tests.fakeopenai import Fault

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "2024" / "summer").mkdir(parents=True)
    (root / "golden-retriever-on-a-beach.jpg").write_bytes(factories.jpeg(40, 30, "yellow"))
    (root / "2024" / "summer" / "IMG_1234.jpg").write_bytes(factories.jpeg(40, 30, "blue"))
    (root / "z-copy.jpg").write_bytes(factories.jpeg(40, 30, "yellow"))
    (root / "2024" / "summer" / "notes.svg").write_bytes(factories.svg())
    (root / "broken.png").write_bytes(factories.truncated_jpeg())
    return root


def test_import_media_walks_folders_and_reports_as_json(folder):
    report = json.loads(run("import_media", str(folder), "--json"))
    assert sorted(e["name"] for e in report["imported"]) == [
        "IMG_1234.jpg",
        "golden-retriever-on-a-beach.jpg",
    ]
    assert [e["name"] for e in report["duplicates"]] == ["z-copy.jpg"]
    assert sorted(e["name"] for e in report["rejected"]) == ["broken.png", "notes.svg"]
    assert all(e["reason"] for e in report["rejected"])
    assert MediaAsset.objects.count() == 2


def test_import_media_inline_writes_metadata_without_a_cluster(folder):
    run("import_media", str(folder / "golden-retriever-on-a-beach.jpg"), "--inline")
    asset = MediaAsset.objects.get()
    # No server key in tests: the heuristic reads the telling file name.
    assert asset.alt_text == "Golden retriever on a beach"
    assert asset.alt_text_source == Source.HEURISTIC
    job = RegenerationJob.objects.get()
    assert (job.kind, job.queue, job.state) == (JobKind.IMPORT, JobQueue.BULK, JobState.COMPLETED)
    assert asset.current_revision.job == job

    run("import_media", str(folder / "2024"), "--no-generate", "--inline")
    blue = MediaAsset.objects.get(original_name="IMG_1234.jpg")
    assert blue.alt_text == "" and blue.revisions.count() == 1
    assert RegenerationJob.objects.count() == 1


def test_import_media_enqueues_an_import_job_and_prints_its_id(
    folder, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: sent.append((a, k)))
    with django_capture_on_commit_callbacks(execute=True):
        out = run("import_media", str(folder))
    job = RegenerationJob.objects.get()
    assert (job.kind, job.state, job.items.count()) == (JobKind.IMPORT, JobState.QUEUED, 2)
    assert f"import job #{job.pk} is queued on the bulk cluster" in out
    assert [args for args, _ in sent] == [("metadata.tasks.run_job", job.pk)]
    assert MediaAsset.objects.filter(alt_text="").count() == 2  # nothing written here


def test_import_media_json_reports_each_images_result_after_inline(folder, fake_openai_settings):
    Settings.objects.filter(pk=Settings.objects.current().pk).update(heuristic_fallback=False)
    fake_openai_settings.always(Fault.error(400))  # not retryable: fails at once
    report = json.loads(run("import_media", str(folder / "2024"), "--inline", "--json"))
    assert report["job"]["state"] == JobState.COMPLETED
    assert report["job"]["progress"]["total"] == report["job"]["progress"]["failed"] == 1
    (item,) = report["items"]
    assert item["name"] == "IMG_1234.jpg" and item["id"] == report["imported"][0]["id"]
    assert item["state"] == ItemState.FAILED and "400" in item["reason"]


def test_import_media_wait_follows_the_job_until_it_ends(folder, monkeypatch):
    """--wait polls the job; here a stand-in cluster works it on the first poll."""
    from metadata.management.commands import import_media

    real_progress = progress.progress

    def progress_then_work(job):
        if job.state == JobState.QUEUED:
            runner.run_job(job_id=job.pk)
        return real_progress(job)

    monkeypatch.setattr(import_media.progress, "progress", progress_then_work)
    monkeypatch.setattr(import_media, "POLL_SECONDS", 0.01)
    report = json.loads(run("import_media", str(folder), "--wait", "--json"))
    assert report["job"]["state"] == JobState.COMPLETED
    assert sorted(item["state"] for item in report["items"]) == sorted(
        [ItemState.SUCCEEDED, ItemState.SKIPPED]
    )


def test_import_media_refuses_wait_with_inline(folder):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        run("import_media", str(folder), "--wait", "--inline")


def test_import_media_refuses_a_missing_path(tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no such file"):
        run("import_media", str(tmp_path / "nope"))


def test_export_metadata_writes_every_asset_with_fields_and_sources(folder):
    run("import_media", str(folder), "--inline")
    rows = list(csv.DictReader(io.StringIO(run("export_metadata", "--format", "csv"))))
    assert len(rows) == 2
    dog = next(r for r in rows if r["original_name"].startswith("golden"))
    assert dog["alt_text"] == "Golden retriever on a beach"
    assert dog["alt_text_source"] == "heuristic"
    assert dog["is_decorative"] == "False"
    assert set(rows[0]) >= {"id", "keywords", "keywords_source", "caption_source"}

    data = json.loads(run("export_metadata", "--format", "json"))
    assert [d["id"] for d in data] == sorted(int(r["id"]) for r in rows)
    assert data[0]["is_decorative"] is False
