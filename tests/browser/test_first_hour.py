"""The first hour in Chromium, on a fresh database: log in, read the AI status, follow it to
AI in at most two steps (the key, then credits), upload, "Regenerate all missing" from the
dashboard, watch it, pause and resume it, see it complete and its message on the next page.
Screenshots at 1366x768 and axe-core on the pages it adds.

The jobs are worked by REAL bulk and interactive ``qcluster`` processes (started once for
the module, stopped with one SIGTERM each) against the live server's database and the fake
OpenAI server, slowed down while the bulk job runs so that a pause lands mid-job."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.urls import reverse
from playwright.sync_api import Page, expect

from billing.models import Account
from mediaopt.library import ingest
from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import intake, progress
from metadata.models import JobKind, JobState, RegenerationJob
from tests import factories
from tests.browser.conftest import screenshot
from tests.browser.test_jobs import bulk_and_interactive, media_root, module_media  # noqa: F401
from tests.fakeopenai import FAKE_API_KEY, FakeOpenAI
from tests.processes import Cluster

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
    # A fresh installation: no account, no credits, the plan it gets by default.
    pytest.mark.unfunded,
]

VIEWPORT = {"width": 1366, "height": 768}
LIBRARY = 8  # images there before AI is: the bulk job's, slowed down to a second a call


@pytest.fixture(scope="module")
def clusters(
    django_db_setup,
    live_server,
    fake_openai_server: FakeOpenAI,
    module_media: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Cluster]]:
    with bulk_and_interactive(
        openai_base_url=fake_openai_server.base_url,
        media=module_media,
        logs=tmp_path_factory.mktemp("clusters"),
        # A job of seconds sends nothing at the shipped minute; here every job is long.
        MEDIAOPT_NOTIFY_AFTER_SECONDS="0",
    ) as started:
        yield started


def mailed_subjects(cluster: Cluster) -> list[str]:
    """The subjects of the mails a cluster sent (Django's console backend: its log)."""
    return re.findall(r"^Subject: (.+)$", cluster.output(), flags=re.MULTILINE)


def serious(page: Page) -> list[str]:
    # No preload: axe fetches the stylesheets' @imports relative to the page, and the
    # admin answers "widgets.css/" with a redirect to a whole page that would take the
    # user's notices (and leave a "doesn't exist" message behind).
    results = Axe().run(page, options={"resultTypes": ["violations"], "preload": False})
    return [
        f"{v['id']}: {v['help']} {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v.get("impact") in {"serious", "critical"}
    ]


def look(page: Page, name: str) -> None:
    """A screenshot to look at, and axe-core's verdict on the page."""
    screenshot(page, f"firsthour-{name}")
    assert serious(page) == [], name


def done_count(page: Page) -> int:
    text = page.locator("#mediaopt-job-progress .mediaopt-job-done").inner_text()
    return int(text.split(" of ")[0])


def test_a_newcomer_reaches_ai_on_the_whole_library_from_the_dashboard(
    clusters: dict[str, Cluster],
    admin_page: Page,
    fake_openai: FakeOpenAI,
    settings,
    tmp_path: Path,
):
    page = admin_page
    page.set_viewport_size(VIEWPORT)
    # No stylesheet is asked for outside /static/ (where one would be answered by a page).
    strays: list[str] = []
    page.on(
        "request",
        lambda request: (
            ".css" in request.url and "/static/" not in request.url and strays.append(request.url)
        ),
    )
    # The library that exists before AI is available: what "missing" is for.
    for index in range(LIBRARY):
        outcome = intake.import_file(
            source=factories.jpeg(160 + index, 120, color="teal"),
            original_name=f"IMG_{index:04}.jpg",
        )
        assert outcome.status == ingest.IMPORTED, outcome.reason

    page.goto(reverse("admin:index"))
    card = page.locator("#mediaopt-ai-status")
    expect(card).to_contain_text("Heuristic only: no OpenAI key is configured.")
    expect(card.locator("code")).to_contain_text("OPENAI_API_KEY=")
    look(page, "dashboard-no-key")

    # Step 1, outside the browser: the key in the environment, and a restart (the clusters
    # were started with it).
    settings.OPENAI_API_KEY = FAKE_API_KEY
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.OPENAI_TIMEOUT = 10.0
    page.reload()
    expect(card).to_contain_text("Out of credits.")
    # Step 2: the card's one link, to the form that fixes it.
    card.get_by_role("link", name="Add credits").click()
    expect(page).to_have_url(re.compile(r"/billing/account/\d+/grant/$"))
    look(page, "add-credits")
    page.get_by_label("Amount").fill("100")
    page.get_by_label("Reason").fill("First hour")
    page.get_by_role("button", name=re.compile("Add credits|Save|Grant")).click()
    expect(page.locator("ul.messagelist")).to_contain_text("Added 100 credits")

    page.goto(reverse("admin:index"))
    expect(card).to_contain_text("AI with the server's key: 100 credits left.")
    assert Account.objects.current().plan == "agency"

    files = []
    for name, color in (("harbour.jpg", "navy"), ("bakery.jpg", "orange")):
        path = tmp_path / name
        path.write_bytes(factories.jpeg(120, 80, color=color))
        files.append(path)
    page.goto(reverse("admin:mediaopt_mediaasset_upload"))
    # What the upload will spend, said before it.
    expect(page.locator("#mediaopt-ai-status")).to_have_text(
        "AI on upload: each new image uses one credit (100 left); duplicates cost nothing."
    )
    look(page, "upload")
    page.get_by_label("Images").set_input_files(files)
    page.get_by_role("button", name="Upload").click()
    uploaded = page.locator("ul.messagelist li", has_text="2 images uploaded")
    expect(uploaded).to_be_visible()
    expect(page.locator("#mediaopt-ai-status")).to_contain_text("AI with the server's key")
    look(page, "library")
    # The message's job number leads to the upload job's page, where it completes.
    upload = RegenerationJob.objects.get(kind=JobKind.UPLOAD)
    uploaded.get_by_role("link", name=f"job #{upload.pk}").click()
    expect(page.locator("#mediaopt-job")).to_contain_text(
        f"Job #{upload.pk} completed: 2 succeeded", timeout=30_000
    )
    look(page, "upload-job")

    page.goto(reverse("admin:index"))
    missing = f"{LIBRARY} missing alt text"
    expect(page.locator(".mediaopt-figure-missing")).to_contain_text(missing)
    look(page, "dashboard-funded")
    # Slow answers from here: the bulk job takes about a second an image.
    fake_openai.latency = 1.0
    page.locator("#mediaopt-regenerate-missing").click()
    expect(page.locator("h1")).to_have_text("Regenerate metadata with AI")
    expect(page.locator("#mediaopt-ai-status")).to_contain_text("AI with the server's key")
    look(page, "confirmation")
    page.get_by_role("button", name="Yes, regenerate").click()
    started = page.locator("ul.messagelist li", has_text="Regenerating metadata for")
    expect(started).to_contain_text(f"Regenerating metadata for {LIBRARY} images")
    job = RegenerationJob.objects.filter(kind=JobKind.BULK).latest("pk")

    # Watch it: the dashboard lists it, live, and links its page.
    page.goto(reverse("admin:index"))
    row = page.locator(f'.mediaopt-settings-job[data-job="{job.pk}"]')
    expect(row.locator(".mediaopt-job-state")).to_have_text(re.compile("Queued|Running"))
    row.get_by_role("link", name=f"#{job.pk}").click()
    panel = page.locator("#mediaopt-job")
    expect(panel.locator(".mediaopt-job-state")).to_have_text("Running", timeout=30_000)
    deadline = time.monotonic() + 30
    while done_count(page) == 0:
        assert time.monotonic() < deadline, "the job page never showed an image done"
        page.wait_for_timeout(200)
    assert done_count(page) < LIBRARY, "the job ended before it could be paused"
    look(page, "job-running")

    # Pause it: the call in flight finishes, then nothing moves until Resume.
    page.get_by_role("button", name="Pause").click()
    expect(panel).to_contain_text(f"Job #{job.pk} is paused: Paused by admin.")
    expect(panel.locator(".mediaopt-job-state")).to_have_text("Paused")
    expect(panel.get_by_role("button", name="Pause")).to_have_count(0)
    settled_by = time.monotonic() + 15
    while progress.progress(job).claimed and time.monotonic() < settled_by:
        page.wait_for_timeout(250)
    at_pause = progress.progress(job)
    assert at_pause.claimed == 0 and at_pause.done < LIBRARY, at_pause
    page.wait_for_timeout(2000)  # two answers' worth: none comes
    assert progress.progress(job).done == at_pause.done
    expect(page.locator("#mediaopt-job-progress .mediaopt-job-done")).to_have_text(
        f"{at_pause.done} of {LIBRARY}"
    )
    look(page, "job-paused")

    page.get_by_role("button", name="Resume").click()
    expect(panel.get_by_role("button", name="Pause")).to_be_visible()
    expect(panel).to_contain_text(f"Job #{job.pk} completed: {LIBRARY} succeeded", timeout=60_000)
    expect(panel.locator(".mediaopt-job-state")).to_have_text("Completed")
    # The Resume's notice went with the state it spoke of: the page says one thing.
    expect(panel).not_to_contain_text("resumed")
    look(page, "job-completed")
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert job.items.filter(state="succeeded").count() == LIBRARY
    assert set(MediaAsset.objects.values_list("alt_text_source", flat=True)) == {Source.AI}

    # The next page tells its starter, once, with a link to the job; so does a mail. The
    # pause they made themselves tells nobody.
    page.goto(reverse("admin:index"))
    notice = page.locator("ul.messagelist li", has_text=f"Job #{job.pk} completed")
    expect(notice).to_contain_text(f"Job #{job.pk} completed: {LIBRARY} succeeded.")
    job_page = reverse("admin:metadata_regenerationjob_change", args=[job.pk])
    expect(notice.get_by_role("link", name=f"Open job #{job.pk}")).to_have_attribute(
        "href", job_page
    )
    expect(page.locator("ul.messagelist li", has_text="paused")).to_have_count(0)
    expect(page.locator(".mediaopt-figure-missing")).to_contain_text("0 missing alt text")
    look(page, "notice")
    assert mailed_subjects(clusters["bulk"]) == [f"Job #{job.pk} completed: {LIBRARY} succeeded"]
    assert mailed_subjects(clusters["interactive"]) == [f"Job #{upload.pk} completed: 2 succeeded"]
    page.reload()
    expect(page.locator("ul.messagelist li", has_text=f"Job #{job.pk} completed")).to_have_count(0)
    expect(row.locator(".mediaopt-job-state")).to_have_text("Completed")
    look(page, "dashboard")

    page.goto(reverse("admin:metadata_settings_changelist"))
    expect(page.locator(".mediaopt-settings-after #jobs")).to_be_visible()
    look(page, "settings")
    assert strays == []
