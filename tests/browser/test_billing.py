"""Credits as an admin meets them in Chromium: "Add credits" with a reason, a BYOK key
shown only as its last four characters, and a generation's capture in the ledger.

The installation's account comes from tests/conftest.py's ``funded_installation``
(agency plan, bundled, 10,000 credits granted by a command, so no actor).
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from billing import crypto, estimate, ledger
from billing.models import Account, AccountMode, EntryKind, LedgerEntry
from mediaopt.library import ingest
from metadata import intake, jobs, runner
from metadata.models import ItemState, JobItem, JobKind, JobState
from tests import factories
from tests.fakeopenai import FakeOpenAI

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(60),
]

FUNDED = 10_000  # tests/conftest.py's funded_installation
CANARY_KEY = "sk-canary-7d3e91b0c4a2f58e61-WXYZ"
KEY_MIDDLE = "7d3e91b0c4a2f58e61"


def account_path(account: Account) -> str:
    return reverse("admin:billing_account_change", args=[account.pk])


def ledger_path(**filters: str) -> str:
    query = "&".join(f"{name}={value}" for name, value in filters.items())
    return reverse("admin:billing_ledgerentry_changelist") + (f"?{query}" if query else "")


def ledger_rows(page: Page):
    return page.locator("#result_list tbody tr")


def readonly(page: Page, field: str):
    return page.locator(f".field-{field} .readonly")


def test_an_admin_adds_credits_with_a_reason_and_sees_who_made_the_entry(
    admin_page: Page, superuser
):
    page = admin_page
    account = Account.objects.current()
    page.goto(account_path(account))
    expect(readonly(page, "balance")).to_have_text(str(FUNDED))

    page.get_by_role("link", name="Add credits").click()
    expect(page.locator("h1")).to_have_text(f"Add credits to {account.name}")
    amount = page.get_by_label("Amount")
    reason = page.get_by_label("Reason")

    # No reason (spaces only): refused on the page, with the amount kept, nothing written.
    amount.fill("250")
    reason.fill("   ")
    page.get_by_role("button", name="Add credits").click()
    expect(page.locator(".field-reason .errorlist")).to_have_text(re.compile("reason is required"))
    expect(page.locator("h1")).to_have_text(f"Add credits to {account.name}")
    expect(page.get_by_label("Amount")).to_have_value("250")
    assert ledger.balance(account) == FUNDED
    assert LedgerEntry.objects.filter(kind=EntryKind.GRANT).count() == 1

    page.get_by_label("Reason").fill("Invoice 2024-117")
    page.get_by_role("button", name="Add credits").click()

    expect(page).to_have_url(re.compile(re.escape(account_path(account)) + "$"))
    expect(page.locator("ul.messagelist")).to_contain_text(
        f"Added 250 credits to {account.name}: balance 10,250."
    )
    expect(readonly(page, "balance")).to_have_text("10250")
    expect(readonly(page, "available_display")).to_have_text("10250")

    page.goto(ledger_path())
    rows = ledger_rows(page)
    expect(rows).to_have_count(2)
    newest = rows.first
    expect(newest.locator(".field-kind")).to_have_text("Grant")
    expect(newest.locator(".field-amount_display")).to_have_text("+250 credits")
    expect(newest.locator(".field-balance_after")).to_have_text("10250")
    expect(newest.locator(".field-reason")).to_have_text("Invoice 2024-117")
    expect(newest.locator(".field-actor_display")).to_have_text(superuser.username)
    # The fixture's grant came from no person.
    expect(rows.nth(1).locator(".field-actor_display")).to_have_text("command")

    entry = LedgerEntry.objects.get(reason="Invoice 2024-117")
    assert (entry.kind, entry.amount, entry.actor) == (EntryKind.GRANT, 250, superuser)
    assert ledger.balance(account) == estimate.sum_of_entries(account) == FUNDED + 250


def test_a_byok_key_is_shown_only_as_its_last_four_characters(admin_page: Page, superuser):
    page = admin_page
    account = Account.objects.current()
    # Every HTML document the server sends this browser, as sent (before any script).
    documents: list[tuple[str, str]] = []

    def record(response) -> None:
        if response.request.resource_type == "document" and response.status == 200:
            documents.append((response.url, response.text()))

    page.on("response", record)

    def visit(path: str | None = None) -> str:
        """Open ``path`` (or stay) and check the page's HTML never holds the key."""
        if path is not None:
            page.goto(path)
        html = page.content()
        assert CANARY_KEY not in html, f"the key is in the HTML of {page.url}"
        assert KEY_MIDDLE not in html, f"part of the key is in the HTML of {page.url}"
        return html

    visit(account_path(account))
    page.get_by_label("Mode").select_option(AccountMode.BYOK)
    page.get_by_label("OpenAI API key").fill(CANARY_KEY)
    # A mistake elsewhere in the form: the page comes back with errors, and the key
    # typed in the password field is not rendered back into it.
    page.get_by_label("Byok monthly cap requests").fill("-5")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.get_by_label("OpenAI API key")).to_have_value("")
    visit()
    account.refresh_from_db()
    assert (account.mode, account.has_api_key) == (AccountMode.BUNDLED, False)

    page.get_by_label("Byok monthly cap requests").fill("")
    page.get_by_label("OpenAI API key").fill(CANARY_KEY)
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    visit()

    expect(readonly(page, "key_display")).to_have_text("…WXYZ")
    expect(readonly(page, "key_set_display")).to_have_text(
        re.compile(rf" by {superuser.username}$")
    )
    expect(page.locator(".field-api_key .help")).to_contain_text("Current key: …WXYZ")
    expect(page.get_by_label("OpenAI API key")).to_have_value("")
    expect(page.get_by_label("Mode")).to_have_value(AccountMode.BYOK)

    changelist = visit(reverse("admin:billing_account_changelist"))
    expect(page.locator("#result_list .field-key_display")).to_have_text("…WXYZ")
    assert "…WXYZ" in changelist
    visit(ledger_path())
    visit(reverse("admin:billing_account_history", args=[account.pk]))
    expect(page.locator("#change-history")).to_contain_text("OpenAI API key")
    visit(reverse("admin:index"))

    # Seven documents: the form, its error, the saved form, changelist, ledger, history,
    # index; none with the key or any part of it but the last four characters.
    assert len(documents) == 7, [url for url, _ in documents]
    for url, html in documents:
        assert CANARY_KEY not in html and KEY_MIDDLE not in html, url

    # Stored encrypted, readable by the server alone; the balance was not touched.
    account.refresh_from_db()
    assert account.mode == AccountMode.BYOK and account.api_key_last4 == "WXYZ"
    assert CANARY_KEY not in account.encrypted_api_key
    assert crypto.decrypted_key(account) == CANARY_KEY
    assert account.api_key_set_by == superuser
    assert ledger.balance(account) == FUNDED


def test_a_generation_appears_in_the_ledger_as_one_capture(
    admin_page: Page, fake_openai_settings: FakeOpenAI
):
    page = admin_page
    account = Account.objects.current()
    assert account.mode == AccountMode.BUNDLED
    outcome = intake.import_file(
        source=factories.jpeg(64, 36, color="teal"), original_name="lighthouse.jpg"
    )
    assert outcome.status == ingest.IMPORTED, outcome.reason
    job = jobs.create_job(kind=JobKind.BULK, asset_ids=[outcome.asset.pk]).job
    runner.run_inline(job)  # in this process, against the fake server: no cluster needed

    job.refresh_from_db()
    item = JobItem.objects.get(job=job)
    assert (job.state, item.state) == (JobState.COMPLETED, ItemState.SUCCEEDED)
    assert fake_openai_settings.request_count == 1
    capture = LedgerEntry.objects.get(kind=EntryKind.CAPTURE)
    assert (capture.amount, capture.job_id, capture.item_id) == (-1, job.pk, item.pk)

    page.goto(ledger_path())
    rows = ledger_rows(page)
    expect(rows).to_have_count(2)
    newest = rows.first
    expect(newest.locator(".field-kind")).to_have_text("Capture")
    expect(newest.locator(".field-amount_display")).to_have_text("-1 credits")
    expect(newest.locator(".field-balance_after")).to_have_text(str(FUNDED - 1))
    expect(newest.locator(".field-actor_display")).to_have_text("job")
    expect(newest.locator(".field-job_id")).to_have_text(str(job.pk))
    expect(newest.locator(".field-item_id")).to_have_text(str(item.pk))

    # The kind filter finds it alone; the account's page shows the balance it left.
    page.get_by_role("link", name="Capture", exact=True).click()
    expect(page).to_have_url(re.compile(r"kind__exact=capture"))
    expect(ledger_rows(page)).to_have_count(1)
    expect(ledger_rows(page).first.locator(".field-job_id")).to_have_text(str(job.pk))
    page.goto(account_path(account))
    expect(readonly(page, "balance")).to_have_text(str(FUNDED - 1))
    expect(readonly(page, "held")).to_have_text("0")
