"""The first hour in Chromium, on a fresh database: log in, read the AI status, follow it to
AI in at most two steps (the key, then credits), upload, "Regenerate all missing" from the
dashboard, see it complete and its message on the next page. Screenshots at 1366x768 and
axe-core on the pages it adds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.core import mail
from django.urls import reverse
from django_q.conf import Conf
from playwright.sync_api import Page, expect

from billing.models import Account
from mediaopt.library import ingest
from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import intake
from metadata.models import JobKind, JobState, RegenerationJob
from tests import factories
from tests.fakeopenai import FAKE_API_KEY, FakeOpenAI

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
    # A fresh installation: no account, no credits, the plan it gets by default.
    pytest.mark.unfunded,
]

VIEWPORT = {"width": 1366, "height": 768}


def serious(page: Page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']}: {v['help']} {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v.get("impact") in {"serious", "critical"}
    ]


def look(page: Page, name: str) -> None:
    """A screenshot to look at, and axe-core's verdict on the page."""
    path = f"/tmp/firsthour-{name}.png"
    page.screenshot(path=path, full_page=False)
    print(f"screenshot: {path}")
    assert serious(page) == [], name


def test_a_newcomer_reaches_ai_on_the_whole_library_from_the_dashboard(
    admin_page: Page, fake_openai: FakeOpenAI, settings, monkeypatch, tmp_path: Path
):
    page = admin_page
    page.set_viewport_size(VIEWPORT)
    # The runner runs inline in the live server's thread: no cluster to start.
    monkeypatch.setattr(Conf, "SYNC", True)
    # The library that exists before AI is available: what "missing" is for.
    for index, color in enumerate(("teal", "olive", "maroon")):
        outcome = intake.import_file(
            source=factories.jpeg(160, 120, color=color), original_name=f"IMG_000{index}.jpg"
        )
        assert outcome.status == ingest.IMPORTED, outcome.reason

    page.goto(reverse("admin:index"))
    card = page.locator("#mediaopt-ai-status")
    expect(card).to_contain_text("Heuristic only: no OpenAI key is configured.")
    expect(card.locator("code")).to_contain_text("OPENAI_API_KEY=")
    look(page, "dashboard-no-key")

    # Step 1, outside the browser: the key in the environment, and a restart.
    settings.OPENAI_API_KEY = FAKE_API_KEY
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.OPENAI_TIMEOUT = 10.0
    page.reload()
    expect(card).to_contain_text("Out of credits.")
    # Step 2: the card's one link, to the form that fixes it.
    card.get_by_role("link", name="Add credits").click()
    expect(page).to_have_url(re.compile(r"/billing/account/\d+/grant/$"))
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
    page.get_by_label("Images").set_input_files(files)
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("ul.messagelist")).to_contain_text("2 images uploaded")
    look(page, "library")
    expect(page.locator("#mediaopt-ai-status")).to_contain_text("AI with the server's key")

    page.goto(reverse("admin:index"))
    expect(page.locator(".mediaopt-figure-missing")).to_contain_text("3 missing alt text")
    page.locator("#mediaopt-regenerate-missing").click()
    expect(page.locator("h1")).to_have_text("Regenerate metadata with AI")
    expect(page.locator("#mediaopt-ai-status")).to_contain_text("AI with the server's key")
    look(page, "confirmation")
    # A job this short sends nothing at the shipped minute; every job counts as long here.
    settings.MEDIAOPT_NOTIFY_AFTER_SECONDS = 0
    page.get_by_role("button", name="Yes, regenerate").click()

    job = RegenerationJob.objects.filter(kind=JobKind.BULK).latest("pk")
    # The runner ran inline: the page after the click tells its starter, once.
    notice = page.locator("ul.messagelist li", has_text=f"Job #{job.pk} completed")
    expect(notice).to_contain_text(f"Job #{job.pk} completed: 3 succeeded.")
    job_page = reverse("admin:metadata_regenerationjob_change", args=[job.pk])
    expect(notice.get_by_role("link", name=f"Open job #{job.pk}")).to_have_attribute(
        "href", job_page
    )
    assert [m.subject for m in mail.outbox] == [f"Job #{job.pk} completed: 3 succeeded"]
    look(page, "notice")
    page.goto(reverse("admin:index"))
    expect(page.locator("ul.messagelist li", has_text=f"Job #{job.pk} completed")).to_have_count(0)
    row = page.locator(f'.mediaopt-settings-job[data-job="{job.pk}"]')
    expect(row.locator(".mediaopt-job-state")).to_have_text("Completed", timeout=30_000)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert job.items.filter(state="succeeded").count() == 3
    assert set(MediaAsset.objects.values_list("alt_text_source", flat=True)) == {Source.AI}
    look(page, "dashboard")

    page.goto(reverse("admin:metadata_settings_changelist"))
    expect(page.locator(".mediaopt-settings-after #jobs")).to_be_visible()
    look(page, "settings")
