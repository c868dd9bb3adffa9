"""Every page mediaopt adds, in Chromium: on a phone (390x844) none scrolls sideways, and at
1366x768 the job, image, history, restore, undo, failures, jobs and billing pages have no
serious or critical axe-core violation. Screenshots beside the first hour's, to look at."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import Page, expect

from billing import ledger
from billing.models import Account, RequestMeter
from mediaopt.library import ingest
from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import bulk, intake, proposals
from metadata.models import ItemState, JobItem, JobKind, JobState, Proposal, ProposalReason
from metadata.strategies import FieldChange, Plan
from tests import factories, revision_builders
from tests.browser.conftest import screenshot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 768}


@dataclass(frozen=True)
class Pages:
    urls: dict[str, str]


def imported(name: str, color: str) -> MediaAsset:
    outcome = intake.import_file(source=factories.jpeg(160, 120, color=color), original_name=name)
    assert outcome.status == ingest.IMPORTED, outcome.reason
    return outcome.asset


def every_page(user: User) -> dict[str, str]:
    """One of everything the pages are about, and the URL of each page."""
    asset = imported("harbour-at-dawn-with-a-rather-long-file-name.jpg", "navy")
    spare = imported("bakery.jpg", "orange")
    waiting = imported("market.jpg", "olive")
    first = asset.current_revision
    job = revision_builders.finished_job(created_by=user)
    revision_builders.generated(
        asset,
        job,
        alt_text="Red fishing boats moored at a stone quay at dawn, gulls above the masts",
        title="Harbour at dawn",
    )
    JobItem.objects.create(job=job, asset=asset, state=ItemState.SUCCEEDED)
    JobItem.objects.create(
        job=job, asset=spare, state=ItemState.FAILED, error="the model refused: unsupported"
    )
    waiting.refresh_from_db()
    proposals.propose(
        asset=waiting,
        plan=Plan(changes={"alt_text": FieldChange("A market stall with olives", Source.AI)}),
        based_on_revision_id=waiting.current_revision_id,
        reason=ProposalReason.REVIEW,
        job=job,
    )
    draft = bulk.draft_bulk(actor=user, asset_ids=[asset.pk, spare.pk, waiting.pk])
    account = Account.objects.current()
    ledger.grant(account=account, amount=100, reason="test", actor=user)
    RequestMeter.objects.get_or_create(account=account, month=ledger.month_start())
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED and job.kind == JobKind.BULK
    return {
        "index": reverse("admin:index"),
        "library": reverse("admin:mediaopt_mediaasset_changelist"),
        "upload": reverse("admin:mediaopt_mediaasset_upload"),
        "image": reverse("admin:mediaopt_mediaasset_change", args=[asset.pk]),
        "history": reverse("admin:mediaopt_mediaasset_metadata_history", args=[asset.pk]),
        "compare": reverse("admin:mediaopt_mediaasset_metadata_compare", args=[asset.pk])
        + f"?from={first.pk}",
        "restore": reverse("admin:mediaopt_mediaasset_metadata_restore", args=[asset.pk, first.pk]),
        "bulk-confirmation": reverse("admin:mediaopt_mediaasset_regenerate_bulk", args=[draft.pk]),
        "jobs": reverse("admin:metadata_regenerationjob_changelist"),
        "job": reverse("admin:metadata_regenerationjob_change", args=[job.pk]),
        "failures": reverse("admin:metadata_regenerationjob_failures", args=[job.pk]),
        "undo": reverse("admin:metadata_regenerationjob_undo", args=[job.pk]),
        "settings": reverse("admin:metadata_settings_changelist"),
        "revisions": reverse("admin:metadata_metadatarevision_changelist"),
        "review": reverse("admin:metadata_proposal_changelist"),
        "accounts": reverse("admin:billing_account_changelist"),
        "account": reverse("admin:billing_account_change", args=[account.pk]),
        "grant": reverse("admin:billing_account_grant", args=[account.pk]),
        "ledger": reverse("admin:billing_ledgerentry_changelist"),
        "holds": reverse("admin:billing_credithold_changelist"),
        "meters": reverse("admin:billing_requestmeter_changelist"),
    }


def open_page(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    page.wait_for_load_state("load")
    # What htmx loads after the page (the status line, a job's panel) is part of its width.
    page.wait_for_timeout(300)


def sideways(page: Page) -> int:
    """How many pixels the document is wider than the window (0 when it fits)."""
    return page.evaluate(
        "Math.max(0, document.documentElement.scrollWidth - window.innerWidth - 1)"
    )


WIDEST = """() => {
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.right > window.innerWidth + 1 && box.width > 0) {
      const parent = el.parentElement.getBoundingClientRect();
      if (parent.right <= window.innerWidth + 1) {
        const id = el.id ? '#' + el.id : '';
        const classes = [...el.classList].join('.');
        out.push(`${el.tagName.toLowerCase()}${id}.${classes} ${Math.round(box.right)}`);
      }
    }
  }
  return out.slice(0, 6);
}"""


def test_no_page_scrolls_sideways_on_a_phone(admin_page: Page, superuser: User):
    page = admin_page
    urls = every_page(superuser)
    page.set_viewport_size(PHONE)
    too_wide = {}
    for name, url in urls.items():
        open_page(page, url)
        screenshot(page, f"firsthour-phone-{name}")
        if extra := sideways(page):
            # The outermost elements that stick out, to say where to look.
            too_wide[name] = (extra, page.evaluate(WIDEST))
    assert too_wide == {}

    # The review screen with nothing waiting: no bulk buttons, the words and the way back.
    Proposal.objects.all().delete()
    open_page(page, urls["review"])
    screenshot(page, "firsthour-phone-review-empty")
    expect(page.get_by_role("button", name="Approve selected")).to_have_count(0)
    assert sideways(page) == 0
    assert serious(page) == []
    page.get_by_role("link", name="back to the library").click()
    expect(page.locator("h1")).to_have_text("Select image to change")


AXE_PAGES = (
    "job",
    "image",
    "history",
    "compare",
    "restore",
    "undo",
    "failures",
    "jobs",
    "accounts",
    "account",
    "grant",
    "ledger",
    "holds",
    "meters",
)


def serious(page: Page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']}: {v['help']} {[n['target'] for n in v['nodes']][:5]}"
        for v in results.response["violations"]
        if v.get("impact") in {"serious", "critical"}
    ]


def test_the_pages_have_no_serious_accessibility_violation(admin_page: Page, superuser: User):
    page = admin_page
    urls = every_page(superuser)
    page.set_viewport_size(DESKTOP)
    found = {}
    for name in AXE_PAGES:
        open_page(page, urls[name])
        screenshot(page, f"firsthour-{name}")
        if violations := serious(page):
            found[name] = violations
    assert found == {}


# The lists whose tables scroll inside their own box (Django's .results): at 1366x768 beside
# the open sidebar, every column must show without that scroll.
LISTS_AT_1366 = ("library", "jobs", "revisions", "ledger")


def hidden_columns(page: Page) -> list[str]:
    """The headers of the columns that stick out of the table's box, past its right edge."""
    return page.evaluate(
        """() => {
          const table = document.querySelector('#result_list');
          if (!table) return ['no #result_list'];
          const edge = table.parentElement.getBoundingClientRect().right;
          return [...table.querySelectorAll('thead th')]
            .filter((th) => th.getBoundingClientRect().right > edge + 1)
            .map((th) => th.className || th.innerText.trim());
        }"""
    )


def test_every_column_of_the_lists_shows_at_1366_beside_the_sidebar(
    admin_page: Page, superuser: User
):
    page = admin_page
    urls = every_page(superuser)
    page.set_viewport_size(DESKTOP)
    hidden = {}
    for name in LISTS_AT_1366:
        open_page(page, urls[name])
        expect(page.locator("#nav-sidebar")).to_be_visible()
        screenshot(page, f"firsthour-list-{name}")
        if columns := hidden_columns(page):
            hidden[name] = columns
    assert hidden == {}


DARK_PAGES = ("index", "library", "job", "bulk-confirmation", "settings", "review")


def test_the_admins_dark_theme_holds_on_the_pages_with_no_serious_violation(
    admin_page: Page, superuser: User
):
    """The admin's own toggle (stored by its theme script, data-theme on <html>), not the
    system's preference: the system here says light."""
    page = admin_page
    urls = every_page(superuser)
    page.set_viewport_size(DESKTOP)
    page.emulate_media(color_scheme="light")
    open_page(page, urls["index"])
    # The toggle cycles auto → dark → light (auto first, then the opposite of the system's).
    toggle = page.locator("#header button.theme-toggle").first
    for _ in range(3):
        if page.evaluate("document.documentElement.dataset.theme") == "dark":
            break
        toggle.click()
    found = {}
    for name in DARK_PAGES:
        open_page(page, urls[name])
        assert page.evaluate("document.documentElement.dataset.theme") == "dark", name
        background = page.evaluate(
            "getComputedStyle(document.querySelector('#content')).backgroundColor"
            " || getComputedStyle(document.body).backgroundColor"
        )
        screenshot(page, f"firsthour-dark-{name}")
        print(f"content background in the dark theme: {background}")
        if violations := serious(page):
            found[name] = violations
    assert found == {}
