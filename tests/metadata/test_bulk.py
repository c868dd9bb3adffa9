"""bulk.py: drafts that hold only a scope, the preview, and confirmation."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import bulk, intake, jobs, runner
from metadata.models import (
    ItemState,
    JobItem,
    JobKind,
    JobState,
    RegenerationJob,
    Settings,
    Strategy,
)
from tests import factories
from tests.billing.helpers import funded_account

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

ALT_ONLY = bulk.BulkOptions(fields=("alt_text",), strategy=Strategy.FILL_EMPTY)


@pytest.fixture
def server_key(settings):
    """The gate answers "AI with bundled credits", so previews carry an estimate."""
    settings.OPENAI_API_KEY = "sk-test-not-used"


def ids(assets) -> list[int]:
    return [asset.pk for asset in assets]


def draft(assets, **kwargs) -> RegenerationJob:
    return bulk.draft_bulk(actor=None, asset_ids=ids(assets), **kwargs)


# -- drafts ------------------------------------------------------------------------------


def test_a_draft_stores_the_selection_and_makes_no_image_busy():
    assets = factories.bare_assets(3)
    job = draft(assets)
    assert job.state == JobState.DRAFT and job.kind == JobKind.BULK
    assert job.scope == {"ids": ids(assets)}
    assert not JobItem.objects.exists()
    # Another job may still take the images.
    assert jobs.create_job(kind=JobKind.SINGLE, asset_ids=ids(assets)).busy_count == 0


def test_select_all_stores_the_changelist_filter_without_paging():
    job = bulk.draft_bulk(
        actor=None, filter_params={"alt_text_missing": ["yes"], "p": ["3"], "q": ["dog"]}
    )
    assert job.scope == {"filter": "alt_text_missing=yes&q=dog"}
    assert not JobItem.objects.filter(job=job).exists()


def test_named_scopes():
    factories.bare_assets(2)
    described = factories.bare_assets(1, start=10, alt_text="A dog", alt_text_source=Source.AI)
    everything = bulk.draft_bulk(actor=None)
    missing = bulk.draft_bulk(actor=None, missing_alt_text_only=True)
    assert everything.scope == {"named": "all"} and missing.scope == {"named": "missing_alt_text"}
    assert bulk.scope_queryset(everything).count() == 3
    assert described[0].pk not in set(bulk.scope_queryset(missing).values_list("pk", flat=True))


def test_a_filter_scope_reads_the_changelist_as_the_person_saw_it():
    factories.bare_assets(4)
    factories.bare_assets(2, start=10, alt_text="A dog", alt_text_source=Source.AI)
    job = bulk.draft_bulk(actor=None, filter_params={"alt_text_missing": "yes"})
    assert bulk.scope_queryset(job).count() == 4


# -- preview -----------------------------------------------------------------------------


@pytest.fixture
def library():
    """One image of each kind the strategies tell apart, for alt text."""
    made = {
        "empty": factories.bare_assets(1, start=0),
        "heuristic": factories.bare_assets(
            1, start=1, alt_text="guess", alt_text_source=Source.HEURISTIC
        ),
        "ai": factories.bare_assets(1, start=2, alt_text="A dog", alt_text_source=Source.AI),
        "manual": factories.bare_assets(
            1, start=3, alt_text="typed", alt_text_source=Source.MANUAL
        ),
        "decorative": factories.bare_assets(1, start=4, is_decorative=True),
        "busy": factories.bare_assets(1, start=5),
    }
    jobs.create_job(kind=JobKind.BULK, asset_ids=ids(made["busy"]))
    return {name: assets[0] for name, assets in made.items()}


def test_preview_counts_busy_images_and_those_needing_a_call(library, server_key):
    job = draft(library.values())
    look = bulk.preview(job=job, options=ALT_ONLY)
    # Fill empty: the empty one and the heuristic guess (it counts as empty).
    assert (look.images, look.busy, look.needing_call) == (6, 1, 2)
    assert look.nothing_to_do == 3
    assert look.estimate is not None and look.estimate.credits_needed == 2
    assert look.estimate.credits_available == 10_000 and look.enough


def test_overwrite_needs_every_image_but_keeps_hand_edits_unless_forced(library):
    job = draft(library.values())
    overwrite = bulk.BulkOptions(fields=("alt_text",), strategy=Strategy.OVERWRITE)
    assert bulk.preview(job=job, options=overwrite).needing_call == 4
    forced = bulk.BulkOptions(fields=("alt_text",), strategy=Strategy.OVERWRITE, force=True)
    assert bulk.preview(job=job, options=forced).needing_call == 5
    # Forcing alone writes no field that already holds a value under fill-empty.
    fill_forced = bulk.BulkOptions(fields=("alt_text",), force=True)
    assert bulk.preview(job=job, options=fill_forced).needing_call == 2


def test_per_field_strategy(library):
    job = draft(library.values())
    options = bulk.BulkOptions(
        fields=("alt_text",), strategy=Strategy.PER_FIELD, per_field={"alt_text": "overwrite"}
    )
    assert bulk.preview(job=job, options=options).needing_call == 4


def test_without_ai_the_preview_says_so_and_costs_nothing(library):
    look = bulk.preview(job=draft(library.values()), options=ALT_ONLY)
    assert look.estimate is None and look.enough and not look.decision.uses_ai


# -- confirmation ------------------------------------------------------------------------


def test_confirm_makes_items_and_queues_the_job(server_key):
    assets = factories.bare_assets(5)
    job = draft(assets)
    result = bulk.confirm(job=job, options=ALT_ONLY, actor=None)
    job.refresh_from_db()
    assert result.started and result.items == 5 and result.busy_count == 0
    assert job.state == JobState.QUEUED
    assert job.options == {"fields": ["alt_text"], "strategy": "fill_empty", "force": False}
    assert JobItem.objects.filter(job=job, state=ItemState.PENDING).count() == 5


def test_confirming_twice_makes_one_job():
    job = draft(factories.bare_assets(4))
    first = bulk.confirm(job=job, options=ALT_ONLY, actor=None)
    second = bulk.confirm(job=job, options=ALT_ONLY, actor=None)
    assert first.started and not second.started and second.already_confirmed
    assert second.job.pk == job.pk
    assert RegenerationJob.objects.exclude(state=JobState.DRAFT).count() == 1
    assert JobItem.objects.count() == 4


def test_the_same_image_in_two_selections_is_busy_in_the_second():
    a, b, c = factories.bare_assets(3)
    first, second = draft([a, b]), draft([b, c])
    assert bulk.confirm(job=first, options=ALT_ONLY, actor=None).items == 2
    result = bulk.confirm(job=second, options=ALT_ONLY, actor=None)
    assert result.started and result.items == 1 and result.busy_count == 1
    assert list(JobItem.objects.filter(job=second).values_list("asset_id", flat=True)) == [c.pk]


def test_images_with_nothing_to_fill_get_no_item():
    empty = factories.bare_assets(2)
    filled = factories.bare_assets(2, start=10, alt_text="A dog", alt_text_source=Source.AI)
    result = bulk.confirm(job=draft([*empty, *filled]), options=ALT_ONLY, actor=None)
    assert result.items == 2 and result.nothing_to_do == 2


def test_nothing_to_do_cancels_the_draft():
    filled = factories.bare_assets(2, alt_text="A dog", alt_text_source=Source.AI)
    job = draft(filled)
    result = bulk.confirm(job=job, options=ALT_ONLY, actor=None)
    job.refresh_from_db()
    assert not result.started and "nothing to fill" in result.message
    assert job.state == JobState.CANCELLED


def test_items_are_newest_uploads_first():
    assets = factories.bare_assets(6)
    job = draft(assets)
    bulk.confirm(job=job, options=ALT_ONLY, actor=None)
    newest_first = list(
        MediaAsset.objects.order_by("-created_at", "-pk").values_list("pk", flat=True)
    )
    items = list(JobItem.objects.filter(job=job).order_by("id").values_list("asset_id", flat=True))
    assert items == newest_first


@pytest.mark.unfunded
def test_dont_start_when_the_credits_will_not_cover_it(server_key):
    funded_account(credits=2, plan="agency")
    job = draft(factories.bare_assets(3))
    look = bulk.preview(job=job, options=ALT_ONLY)
    assert not look.enough and "2 available" in look.estimate.summary
    result = bulk.confirm(job=job, options=ALT_ONLY, actor=None, on_shortfall=bulk.DONT_START)
    job.refresh_from_db()
    assert not result.started and result.message.startswith("Not started, as you chose")
    assert job.state == JobState.CANCELLED and not JobItem.objects.exists()


@pytest.mark.unfunded
def test_partial_starts_what_the_credits_allow_and_the_runner_pauses(server_key):
    funded_account(credits=2, plan="agency")
    job = draft(factories.bare_assets(3))
    result = bulk.confirm(job=job, options=ALT_ONLY, actor=None, on_shortfall=bulk.PARTIAL)
    assert result.started and result.items == 3


@pytest.mark.unfunded
def test_out_of_credits_refuses_instead_of_holding_the_images(server_key):
    funded_account(credits=0, plan="agency")
    job = draft(factories.bare_assets(2))
    result = bulk.confirm(job=job, options=ALT_ONLY, actor=None)
    job.refresh_from_db()
    assert not result.started and "out of credits" in result.message.lower()
    assert job.state == JobState.CANCELLED and not JobItem.objects.exists()


def test_the_language_is_stored_with_the_options():
    job = draft(factories.bare_assets(1))
    options = bulk.BulkOptions(fields=("alt_text",), language="de")
    bulk.confirm(job=job, options=options, actor=None)
    job.refresh_from_db()
    assert job.options["language"] == "de"


def make_images(n: int) -> list[MediaAsset]:
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "brown", "gray"]
    return [
        intake.import_file(
            source=factories.jpeg(40 + i, 30, color=colours[i % len(colours)]),
            original_name=f"IMG_{i:04}.jpg",
        ).asset
        for i in range(n)
    ]


def test_try_first_works_twenty_spread_over_the_selection_in_review_mode():
    assets = factories.bare_assets(200)
    job = draft(assets)
    result = bulk.confirm(
        job=job, options=bulk.BulkOptions.defaults(), actor=None, try_first=bulk.TRY_FIRST
    )
    job.refresh_from_db()
    chosen = sorted(JobItem.objects.filter(job=job).values_list("asset_id", flat=True))
    assert result.started and result.items == 20 == len(chosen)
    assert job.options["review"] is True and job.options["trial"] == 20
    # Spread: every tenth image of the 200, not the first or newest twenty.
    assert chosen[-1] - chosen[0] >= 180


def test_run_the_remaining_after_a_trial_skips_none_and_repeats_none():
    # No server key: the heuristic works the images, so nothing needs a provider.
    images = make_images(26)
    trial = draft(images)
    bulk.confirm(job=trial, options=bulk.BulkOptions.defaults(), actor=None, try_first=20)
    runner._run(job_id=trial.pk, to_the_end=True)
    trial.refresh_from_db()
    assert trial.state == JobState.COMPLETED
    look = bulk.trial_of(trial.pk)
    assert look.finished and look.remaining == 6

    rest = bulk.run_remaining(trial=trial, actor=None)
    assert bulk.preview(job=rest, options=bulk.BulkOptions.defaults()).needing_call == 6
    assert "without the images tried in job" in bulk.describe_scope(rest)
    bulk.confirm(job=rest, options=bulk.BulkOptions.defaults(), actor=None)
    tried = set(JobItem.objects.filter(job=trial).values_list("asset_id", flat=True))
    remaining = set(JobItem.objects.filter(job=rest).values_list("asset_id", flat=True))
    assert not tried & remaining
    assert tried | remaining == {a.pk for a in images}


# -- cost does not grow with the selection -----------------------------------------------


def queries_to_draft_and_confirm(assets, **draft_kwargs) -> tuple[int, int, RegenerationJob]:
    with CaptureQueriesContext(connection) as drafting:
        job = bulk.draft_bulk(actor=None, **draft_kwargs) if draft_kwargs else draft(assets)
    with CaptureQueriesContext(connection) as confirming:
        result = bulk.confirm(job=job, options=ALT_ONLY, actor=None)
    assert result.started and result.items == len(assets)
    return len(drafting), len(confirming), job


def test_queries_to_create_and_confirm_are_the_same_at_10_and_1000_selected_images(
    server_key, django_assert_num_queries
):
    Settings.objects.current()  # created on first use; not part of what is measured
    small_draft, small_confirm, _ = queries_to_draft_and_confirm(factories.bare_assets(10))
    large = factories.bare_assets(jobs.MAX_LISTED_IDS, start=100)
    with django_assert_num_queries(small_draft):
        job = draft(large)
    with django_assert_num_queries(small_confirm):
        result = bulk.confirm(job=job, options=ALT_ONLY, actor=None)
    assert result.items == jobs.MAX_LISTED_IDS


def test_queries_for_a_named_scope_are_the_same_at_10_and_10000_images(
    server_key, django_assert_num_queries
):
    Settings.objects.current()
    small = factories.bare_assets(10)
    small_draft, small_confirm, first = queries_to_draft_and_confirm(
        small, missing_alt_text_only=True
    )
    jobs.cancel(first)  # its images are free again
    factories.bare_assets(9_990, start=100)
    with django_assert_num_queries(small_draft):
        job = bulk.draft_bulk(actor=None, missing_alt_text_only=True)
    with django_assert_num_queries(small_confirm):
        result = bulk.confirm(job=job, options=ALT_ONLY, actor=None)
    assert result.items == 10_000
