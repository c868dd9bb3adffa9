"""Jobs as a person meets them in Chromium, worked by REAL ``qcluster`` processes.

The bulk and interactive clusters run once for the module against the live server's
SQLite file database, the module's media folder and the session's fake OpenAI server (so
metadata comes from "AI"). They are stopped with one SIGTERM each, and no pid survives.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse
from playwright.sync_api import Page, expect

from mediaopt.library import ingest
from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import intake, jobs, progress, revisions
from metadata.models import JobKind, JobState, RegenerationJob
from metadata.strategies import FieldChange, Plan
from tests import factories
from tests.fakeopenai import FakeOpenAI
from tests.processes import Cluster, cluster_env, database_url

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(90),
]

# The fake's answer for any landscape picture (tests/fakeopenai.py, expected_metadata).
AI_ALT_TEXT = re.compile(r"^A \w+ scene with a \w+ band at the top$")
OLD_ALT_TEXT = "Words from an older model"
MODEL = "gpt-4o-mini"  # Settings.model's default
# A click must be answered within this, however big the job on the bulk cluster.
CLICK_BOUND_SECONDS = 10.0
BULK_IMAGES = 200


@pytest.fixture(scope="module")
def module_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(autouse=True)
def media_root(settings, module_media: Path) -> Path:
    """One media folder for the module (overriding tests/conftest.py's per-test one): the
    clusters, started once, must open the files the live server stored."""
    settings.MEDIA_ROOT = module_media
    return module_media


@contextlib.contextmanager
def bulk_and_interactive(
    *, openai_base_url: str, media: Path, logs: Path, **extra: str
) -> Iterator[dict[str, Cluster]]:
    """The two clusters against the live server's database, started and, on the way out,
    stopped with one SIGTERM each and proven gone. ``extra``: more of their environment."""
    database = database_url(connection.settings_dict)
    started: dict[str, Cluster] = {}
    for name in ("bulk", "interactive"):
        env = cluster_env(
            database=database,
            media_root=media,
            openai_base_url=openai_base_url,
            cluster_name=name if name != "bulk" else None,
            # INFO: wait_until_running reads django-q2's "running" line from the log.
            LOG_LEVEL="INFO",
            # Calls are slowed down on purpose in these tests; never time them out.
            OPENAI_TIMEOUT="20",
            MEDIAOPT_JOB_LEASE_SECONDS="30",
            MEDIAOPT_JOB_RUNNER_STALE_SECONDS="30",
            **extra,
        )
        started[name] = Cluster(env, logs / f"{name}.log")
    try:
        for name, cluster in started.items():
            try:
                cluster.wait_until_running(seconds=30)
            except RuntimeError as error:
                pytest.fail(f"the {name} cluster did not start: {error}", pytrace=False)
        yield started
    finally:
        survivors = {name: cluster.stop_cleanly() for name, cluster in started.items()}
    assert survivors == {"bulk": [], "interactive": []}, survivors


@pytest.fixture(scope="module")
def clusters(
    django_db_setup,
    live_server,
    fake_openai_server: FakeOpenAI,
    module_media: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Cluster]]:
    with bulk_and_interactive(
        openai_base_url=fake_openai_server.base_url,
        media=module_media,
        logs=tmp_path_factory.mktemp("clusters"),
    ) as started:
        yield started


def imported(name: str, *, width: int, color: str) -> MediaAsset:
    outcome = intake.import_file(source=factories.jpeg(width, 36, color=color), original_name=name)
    assert outcome.status == ingest.IMPORTED, outcome.reason
    return outcome.asset


def with_old_ai_text(asset: MediaAsset) -> MediaAsset:
    """Revision 2: alt text from "an older model", so a regeneration has something to
    replace."""
    revisions.apply_plan(
        asset=asset,
        plan=Plan(changes={"alt_text": FieldChange(value=OLD_ALT_TEXT, source=Source.AI)}),
        based_on_revision_id=asset.current_revision_id,
        provider="openai",
        model="older-model",
    )
    asset.refresh_from_db()
    return asset


def change_path(asset: MediaAsset) -> str:
    return reverse("admin:mediaopt_mediaasset_change", args=[asset.pk])


def mark_document(page: Page) -> None:
    """A flag that lives exactly as long as this document: a reload would drop it."""
    page.evaluate("window.__mediaoptSameDocument = true")


def assert_same_document(page: Page) -> None:
    assert page.evaluate("window.__mediaoptSameDocument === true"), "the page was reloaded"


def history_rows(page: Page):
    return page.locator("#mediaopt-history tbody tr.has_original")


def test_uploaded_images_get_ai_metadata_on_their_page_without_a_reload(
    clusters, admin_page: Page, fake_openai: FakeOpenAI, tmp_path: Path
):
    page = admin_page
    # Slow answers, so the image's page opens while its metadata is still being written.
    fake_openai.latency = 2.0
    files = []
    for name, color in (("harbour.jpg", "navy"), ("bakery.jpg", "orange")):
        path = tmp_path / name
        path.write_bytes(factories.jpeg(120, 80, color=color))
        files.append(path)

    page.goto(reverse("admin:mediaopt_mediaasset_upload"))
    page.get_by_label("Images").set_input_files(files)
    page.get_by_role("button", name="Upload").click()

    job = RegenerationJob.objects.get(kind=JobKind.UPLOAD)
    expect(page.locator("ul.messagelist")).to_contain_text(
        f"2 images uploaded; their metadata is being written — job #{job.pk}"
    )
    # The job works its items in order: the second image is the one still waiting.
    asset = MediaAsset.objects.get(original_name="bakery.jpg")
    page.goto(change_path(asset))
    mark_document(page)
    panel = page.locator("#mediaopt-panel")
    expect(panel).to_contain_text("Metadata is being written")

    expect(page.locator("#id_alt_text")).to_have_value(AI_ALT_TEXT, timeout=20_000)
    expect(page.locator(".field-alt_text_source .readonly")).to_have_text("AI")
    expect(panel.locator(".mediaopt-model")).to_have_text(MODEL)
    expect(panel).to_contain_text("New metadata written by AI")
    expect(history_rows(page)).to_have_count(2)
    assert_same_document(page)

    asset.refresh_from_db()
    assert page.locator("#id_alt_text").input_value() == asset.alt_text
    assert asset.alt_text_source == Source.AI
    assert asset.current_revision.model == MODEL and asset.current_revision.job_id == job.pk


def test_regenerate_replaces_the_values_in_place_and_grows_the_history(
    clusters, admin_page: Page, fake_openai: FakeOpenAI
):
    page = admin_page
    asset = with_old_ai_text(imported("market.jpg", width=64, color="green"))
    page.goto(change_path(asset))
    expect(page.locator("#id_alt_text")).to_have_value(OLD_ALT_TEXT)
    expect(history_rows(page)).to_have_count(2)
    mark_document(page)

    page.get_by_role("button", name="Regenerate").click()

    expect(page.locator("#id_alt_text")).to_have_value(AI_ALT_TEXT)
    expect(history_rows(page)).to_have_count(3)
    expect(history_rows(page).first).to_contain_text("Generated")
    expect(page.locator("#mediaopt-panel .mediaopt-model")).to_have_text(MODEL)
    assert_same_document(page)
    job = RegenerationJob.objects.get(kind=JobKind.SINGLE)
    assert (job.queue, job.state) == ("interactive", JobState.COMPLETED)

    # The form now stands on the new revision: a person's edit saves without a
    # "changed since you opened it" refusal.
    page.get_by_label(re.compile(r"^Title:?$")).fill("Market stalls")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    asset.refresh_from_db()
    assert asset.title == "Market stalls" and re.match(AI_ALT_TEXT, asset.alt_text)
    assert asset.revisions.count() == 4


def test_a_click_is_answered_while_a_200_image_job_runs_on_the_bulk_cluster(
    clusters, admin_page: Page, fake_openai: FakeOpenAI
):
    page = admin_page
    fake_openai.latency = 0.4  # 200 images: well over a minute of work for the bulk job
    library = [imported(f"IMG_{i:04}.jpg", width=40 + i, color="blue") for i in range(BULK_IMAGES)]
    bulk = jobs.create_job(kind=JobKind.BULK, asset_ids=[asset.pk for asset in library]).job
    jobs.enqueue(bulk)
    asset = with_old_ai_text(imported("click.jpg", width=300, color="red"))
    page.goto(change_path(asset))
    try:
        expect(page.locator("#id_alt_text")).to_have_value(OLD_ALT_TEXT)
        # The click must land while the bulk job is really at work, not while its cluster
        # is still picking it up.
        deadline = time.monotonic() + 30
        while progress.progress(bulk).done == 0:
            assert time.monotonic() < deadline, "the bulk job never started working"
            time.sleep(0.1)

        started = time.monotonic()
        page.get_by_role("button", name="Regenerate").click()
        expect(page.locator("#id_alt_text")).to_have_value(
            AI_ALT_TEXT, timeout=CLICK_BOUND_SECONDS * 1000
        )
        answered = time.monotonic() - started

        counts = progress.progress(bulk)
        bulk.refresh_from_db()
        assert bulk.state == JobState.RUNNING and counts.remaining > 0, (bulk.state, counts)
        print(
            f"click answered in {answered:.2f}s while the bulk job had done "
            f"{counts.done}/{counts.total}"
        )
        assert answered < CLICK_BOUND_SECONDS
    finally:
        # The bulk runner sees the cancel before its next item and lets go.
        jobs.cancel(RegenerationJob.objects.get(pk=bulk.pk))
