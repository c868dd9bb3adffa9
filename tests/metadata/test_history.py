"""Restore, undo and retention: revisions.py and undo.py against the database."""

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import Account, CreditHold, LedgerEntry
from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import items, jobs, revisions, runner, undo, undo_plan
from metadata.models import (
    ItemState,
    JobItem,
    JobKind,
    JobState,
    MetadataRevision,
    RegenerationJob,
    RevisionKind,
)
from tests.factories import bare_assets
from tests.revision_builders import finished_job, hand_edit, imported
from tests.revision_builders import generated as ai_write

pytestmark = pytest.mark.django_db


def run_undo(job, *, override=False, actor=None) -> RegenerationJob:
    started = undo.start(job=job, actor=actor, override=override)
    undo_job = started.job
    undo_job.refresh_from_db()
    if undo_job.state != JobState.COMPLETED:  # a cluster would run it; here, run it now
        runner._run(job_id=undo_job.pk, to_the_end=True)
        undo_job.refresh_from_db()
    return undo_job


# -- restore -----------------------------------------------------------------------------


def test_restore_takes_back_values_and_their_sources_as_a_new_revision():
    (asset,) = imported(title="Harbour")
    first = asset.current_revision
    ai_write(asset, alt_text="Boats", title="Boats at dusk")
    edited = hand_edit(asset, alt_text="Fishing boats")

    restored = revisions.restore(revision=first, actor=None, based_on_revision_id=edited.pk)
    asset.refresh_from_db()
    assert restored.kind == RevisionKind.RESTORE
    assert restored.parent_id == edited.pk and restored.restored_from_id == first.pk
    assert restored.number == 4 and asset.current_revision_id == restored.pk
    assert (asset.title, asset.title_source) == ("Harbour", Source.EMBEDDED)
    assert (asset.alt_text, asset.alt_text_source) == ("", Source.NONE)
    assert restored.changed_fields == ["alt_text", "title"]
    # Nothing before it was touched: history is append-only.
    assert MetadataRevision.objects.filter(asset=asset).count() == 4


def test_restore_of_single_fields_leaves_the_others():
    (asset,) = imported(title="Harbour")
    generated = ai_write(asset, alt_text="Boats", title="Boats at dusk", caption="Evening")
    hand_edit(asset, alt_text="Fishing boats", caption="Late")

    revision = revisions.restore(
        revision=generated,
        fields=["caption"],
        based_on_revision_id=asset.current_revision_id,
    )
    asset.refresh_from_db()
    assert revision.changed_fields == ["caption"]
    assert (asset.caption, asset.caption_source) == ("Evening", Source.AI)
    assert (asset.alt_text, asset.alt_text_source) == ("Fishing boats", Source.MANUAL)


def test_restore_refuses_a_stale_base_and_writes_nothing():
    (asset,) = imported()
    first = asset.current_revision
    opened_on = ai_write(asset, alt_text="Boats").pk
    hand_edit(asset, alt_text="Changed meanwhile")
    with pytest.raises(revisions.StaleRevision):
        revisions.restore(revision=first, based_on_revision_id=opened_on)
    asset.refresh_from_db()
    assert asset.alt_text == "Changed meanwhile" and asset.current_revision.number == 3


def test_restore_of_what_the_image_already_has_writes_nothing():
    (asset,) = imported()
    ai_write(asset, alt_text="Boats")
    current = asset.current_revision
    assert revisions.restore(revision=current, based_on_revision_id=current.pk) is None


def test_restore_refuses_unknown_fields():
    (asset,) = imported()
    with pytest.raises(ValueError, match="sha256"):
        revisions.restore(
            revision=asset.current_revision,
            fields=["sha256"],
            based_on_revision_id=asset.current_revision_id,
        )


# -- undo: planning ----------------------------------------------------------------------


def test_plan_restores_what_the_job_changed_and_keeps_what_changed_since():
    before = MetadataRevision(alt_text="old", alt_text_source=Source.MANUAL, title="T")
    after = MetadataRevision(
        alt_text="ai", alt_text_source=Source.AI, title="T", caption="c", caption_source="ai"
    )
    current = MetadataRevision(
        alt_text="typed later",
        alt_text_source=Source.MANUAL,
        title="T",
        caption="c",
        caption_source="ai",
    )
    plan = undo_plan.plan_undo(asset_id=1, before=before, after=after, current=current)
    assert plan.restore == ("caption",) and plan.conflicts == ("alt_text",)
    assert plan.kept == ("alt_text",)
    forced = undo_plan.plan_undo(
        asset_id=1, before=before, after=after, current=current, override=True
    )
    assert forced.restore == ("alt_text", "caption") and forced.kept == ()


def test_plan_ignores_a_field_already_back_to_its_old_value():
    before = MetadataRevision(alt_text="old", alt_text_source=Source.MANUAL)
    after = MetadataRevision(alt_text="ai", alt_text_source=Source.AI)
    plan = undo_plan.plan_undo(asset_id=1, before=before, after=after, current=before)
    assert plan.restore == () and plan.conflicts == ()


# -- undo: the job -----------------------------------------------------------------------


def test_undo_restores_untouched_fields_lists_conflicts_and_can_itself_be_undone():
    user = User.objects.create_user("ed")
    a, b, c = imported(3, title="Embedded")
    bulk = finished_job()
    for asset in (a, b, c):
        ai_write(asset, job=bulk, alt_text=f"AI {asset.pk}", title=f"AI title {asset.pk}")
    hand_edit(b, alt_text="Typed after the job")  # b's alt text: a conflict
    hand_edit(c, alt_text="c1", title="c2")  # c: every field a conflict

    preview = undo.preview(bulk)
    assert (preview.images, preview.unchanged_since, preview.changed_since) == (3, 1, 2)
    assert {p.asset_id: p.conflicts for p in preview.sample} == {
        b.pk: ("alt_text",),
        c.pk: ("alt_text", "title"),
    }

    undo_job = run_undo(bulk, actor=user)
    assert (undo_job.kind, undo_job.state, undo_job.undo_of_id) == (
        JobKind.UNDO,
        JobState.COMPLETED,
        bulk.pk,
    )
    for asset in (a, b, c):
        asset.refresh_from_db()
    assert (a.alt_text, a.alt_text_source, a.title, a.title_source) == (
        "",
        Source.NONE,
        "Embedded",
        Source.EMBEDDED,
    )
    assert (b.alt_text, b.title, b.title_source) == (
        "Typed after the job",
        "Embedded",
        Source.EMBEDDED,
    )
    assert (c.alt_text, c.title) == ("c1", "c2")

    items = {i.asset_id: i for i in JobItem.objects.filter(job=undo_job)}
    assert items[a.pk].conflicts == [] and items[a.pk].state == ItemState.SUCCEEDED
    assert items[b.pk].conflicts == ["alt_text"] and items[b.pk].state == ItemState.SUCCEEDED
    assert items[c.pk].conflicts == ["alt_text", "title"]
    assert items[c.pk].state == ItemState.SKIPPED and items[c.pk].revision is None
    undo_revision = items[a.pk].revision
    assert undo_revision.kind == RevisionKind.UNDO and undo_revision.job_id == undo_job.pk
    assert undo_revision.actor == user
    result = undo.result(undo_job)
    assert result.restored == 2 and result.kept_total == 2

    # The undo is a job like any other: undoing it puts the job's values back.
    redo = run_undo(undo_job)
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.alt_text, a.title) == (f"AI {a.pk}", f"AI title {a.pk}")
    assert (b.alt_text, b.title) == ("Typed after the job", f"AI title {b.pk}")
    assert redo.undo_of_id == undo_job.pk


def test_undo_with_override_replaces_later_edits_too():
    (asset,) = imported()
    bulk = finished_job()
    ai_write(asset, job=bulk, alt_text="AI")
    hand_edit(asset, alt_text="Typed")
    undo_job = run_undo(bulk, override=True)
    asset.refresh_from_db()
    assert (asset.alt_text, asset.alt_text_source) == ("", Source.NONE)
    assert JobItem.objects.get(job=undo_job).conflicts == ["alt_text"]


def test_undo_restores_the_decorative_flag():
    (asset,) = imported()
    bulk = finished_job()
    ai_write(asset, job=bulk, decorative=True, alt_text="")
    run_undo(bulk)
    asset.refresh_from_db()
    assert asset.is_decorative is False


def test_undo_costs_no_credits_and_holds_none():
    (asset,) = imported()
    bulk = finished_job()
    ai_write(asset, job=bulk, alt_text="AI")
    account = Account.objects.current()
    before = (account.balance, account.held, LedgerEntry.objects.count())
    assert before[0] > 0  # funded: a paid path would have had something to take
    run_undo(bulk)
    account.refresh_from_db()
    assert (account.balance, account.held, LedgerEntry.objects.count()) == before
    assert not CreditHold.objects.exists()


@pytest.mark.parametrize("state", [JobState.RUNNING, JobState.PAUSED, JobState.QUEUED])
def test_an_unfinished_job_cannot_be_undone(state):
    job = RegenerationJob.objects.create(kind=JobKind.BULK, state=state)
    with pytest.raises(undo.CannotUndo, match="once it has finished"):
        undo.start(job=job)


def test_a_job_that_changed_nothing_cannot_be_undone():
    with pytest.raises(undo.CannotUndo, match="nothing to undo"):
        undo.start(job=finished_job())


def test_confirming_an_undo_twice_makes_one_undo_job(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    (asset,) = imported()
    bulk = finished_job()
    ai_write(asset, job=bulk, alt_text="AI")
    first = undo.start(job=bulk)
    with pytest.raises(undo.CannotUndo, match=f"already being undone by job #{first.job.pk}"):
        undo.start(job=bulk)
    assert RegenerationJob.objects.filter(kind=JobKind.UNDO).count() == 1


def test_images_busy_in_another_job_are_left_out_and_counted():
    a, b = imported(2)
    bulk = finished_job()
    ai_write(a, job=bulk, alt_text="AI a")
    ai_write(b, job=bulk, alt_text="AI b")
    busy = RegenerationJob.objects.create(kind=JobKind.BULK, state=JobState.PAUSED)
    JobItem.objects.create(job=busy, asset=b)
    assert undo.preview(bulk).busy == 1
    started = undo.start(job=bulk)
    assert started.busy_count == 1
    assert list(JobItem.objects.filter(job=started.job).values_list("asset_id", flat=True)) == [
        a.pk
    ]


def test_undo_jobs_offer_no_retry_of_failures():
    (asset,) = imported()
    bulk = finished_job()
    ai_write(asset, job=bulk, alt_text="AI")
    undo_job = run_undo(bulk)
    with pytest.raises(jobs.NothingToRetry, match="undo"):
        jobs.retry_failed(job=undo_job, actor=None)


def _queries(fn) -> int:
    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured.captured_queries)


def _bulk_job_over(n: int, start: int) -> RegenerationJob:
    """A finished job that wrote one AI revision on each of ``n`` new images, in bulk."""
    assets = bare_assets(n, start=start)
    job = finished_job()
    now = timezone.now()
    firsts = MetadataRevision.objects.bulk_create(
        [MetadataRevision(asset=a, number=1, kind=RevisionKind.IMPORT) for a in assets],
        batch_size=1000,
    )
    MetadataRevision.objects.bulk_create(
        [
            MetadataRevision(
                asset=a,
                number=2,
                kind=RevisionKind.GENERATED,
                job=job,
                parent=first,
                alt_text="AI",
                alt_text_source=Source.AI,
                changed_fields=["alt_text"],
            )
            for a, first in zip(assets, firsts, strict=True)
        ],
        batch_size=1000,
    )
    MediaAsset.objects.filter(pk__in=[a.pk for a in assets]).update(
        current_revision=Subquery(
            MetadataRevision.objects.filter(asset=OuterRef("pk"), number=2).values("pk")[:1]
        ),
        alt_text="AI",
        alt_text_source=Source.AI,
        updated_at=now,
    )
    # One of them edited by hand since, so the preview's sample has a conflict to plan.
    hand_edit(assets[0], alt_text="typed")
    return job


def test_undo_preview_and_start_cost_the_same_queries_at_10_and_10000_images(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}  # start only; a cluster runs it
    small, large = _bulk_job_over(10, 0), _bulk_job_over(10_000, 100)

    assert _queries(lambda: undo.preview(small)) == _queries(lambda: undo.preview(large))
    assert undo.preview(large).images == 10_000
    small_start = _queries(lambda: undo.start(job=small))
    large_start = _queries(lambda: undo.start(job=large))
    assert small_start == large_start
    assert JobItem.objects.filter(job__undo_of=large).count() == 10_000


def test_an_undo_job_costs_the_same_queries_per_image_at_any_size(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    per_image = []
    for n, start in ((10, 0), (250, 100)):
        job = _bulk_job_over(n, start)
        undo_job = undo.start(job=job).job
        queries = _queries(
            lambda undo_job=undo_job: runner._run(job_id=undo_job.pk, to_the_end=True)
        )
        undo_job.refresh_from_db()
        assert undo_job.state == JobState.COMPLETED
        per_image.append(queries / n)
    # Fixed costs (start, claims, completion) spread over more images: never more per image.
    # What is left per image is its claim and its own UPDATE; the rest is per chunk.
    assert per_image[1] <= per_image[0]
    assert per_image[1] <= 3


# -- retention ---------------------------------------------------------------------------


def _history(asset, *, count: int, age_days: float) -> list[MetadataRevision]:
    """``count`` hand edits on ``asset``, dated ``age_days`` ago."""
    written = [hand_edit(asset, alt_text=f"edit {i}") for i in range(count)]
    MetadataRevision.objects.filter(pk__in=[r.pk for r in written]).update(
        created_at=timezone.now() - timedelta(days=age_days)
    )
    return written


def _numbers(asset) -> list[int]:
    return sorted(asset.revisions.values_list("number", flat=True))


def test_prune_keeps_the_latest_n_however_old():
    (asset,) = imported()
    MetadataRevision.objects.filter(asset=asset).update(
        created_at=timezone.now() - timedelta(days=400)
    )
    _history(asset, count=9, age_days=200)  # revisions 2..10, all old
    assert revisions.prune(keep=3, days=90) == 7
    assert _numbers(asset) == [8, 9, 10]
    asset.refresh_from_db()
    assert asset.current_revision.number == 10


def test_prune_keeps_everything_younger_than_d_days():
    (asset,) = imported()
    _history(asset, count=5, age_days=89.9)
    assert revisions.prune(keep=1, days=90) == 0
    assert _numbers(asset) == [1, 2, 3, 4, 5, 6]


def test_prune_boundaries_keep_n_and_d_exactly():
    (asset,) = imported()
    old = _history(asset, count=4, age_days=91)  # 2..5
    _history(asset, count=1, age_days=10)  # 6, current
    # revision 1 is new (just imported): kept by age. Keep 2 (5, 6): 2, 3, 4 go.
    assert revisions.prune(keep=2, days=90) == 3
    assert _numbers(asset) == [1, 5, 6]
    # keep=1 would also let 5 go, but 5 is just past the age line only if older:
    MetadataRevision.objects.filter(pk=old[-1].pk).update(
        created_at=timezone.now() - timedelta(days=90) + timedelta(seconds=30)
    )
    assert revisions.prune(keep=1, days=90) == 0


def test_prune_never_takes_the_current_revision():
    (asset,) = imported()
    MetadataRevision.objects.filter(asset=asset).update(
        created_at=timezone.now() - timedelta(days=1000)
    )
    assert revisions.prune(keep=1, days=1) == 0
    assert _numbers(asset) == [1]


def test_prune_spares_what_an_undoable_job_needs_and_lets_go_after():
    (asset,) = imported()
    MetadataRevision.objects.filter(asset=asset).update(
        created_at=timezone.now() - timedelta(days=300)
    )
    _history(asset, count=3, age_days=200)  # 2, 3, 4
    job = finished_job(days_ago=30)
    by_job = ai_write(asset, job=job, alt_text="AI")  # 5
    MetadataRevision.objects.filter(pk=by_job.pk).update(
        created_at=timezone.now() - timedelta(days=200)
    )
    _history(asset, count=3, age_days=150)  # 6, 7, 8
    # keep=1: only 8 by count; 5 (the job's) and 4 (what it replaced) stay for its undo.
    assert revisions.prune(keep=1, days=90) == 5
    assert _numbers(asset) == [4, 5, 8]
    # Once the job is older than the retention, its undo is no longer guaranteed.
    RegenerationJob.objects.filter(pk=job.pk).update(
        finished_at=timezone.now() - timedelta(days=91)
    )
    assert revisions.prune(keep=1, days=90) == 2
    assert _numbers(asset) == [8]


def test_undo_after_pruning_skips_images_whose_old_values_are_gone():
    (asset,) = imported()
    _history(asset, count=2, age_days=200)
    job = finished_job(days_ago=200)
    ai_write(asset, job=job, alt_text="AI")
    MetadataRevision.objects.filter(job=job).update(created_at=timezone.now() - timedelta(days=200))
    hand_edit(asset, title="later")
    revisions.prune(keep=2, days=90)  # the parent of the job's revision goes
    assert not MetadataRevision.objects.filter(asset=asset, number=3).exists()
    undo_job = run_undo(job)
    item = JobItem.objects.get(job=undo_job)
    assert item.state == ItemState.SKIPPED and "pruned" in item.error
    asset.refresh_from_db()
    assert asset.alt_text == "AI"


def test_prune_reads_the_settings_page_values():
    from metadata.models import Settings

    row = Settings.objects.current()
    assert (row.revisions_keep, row.revisions_keep_days) == (50, 90)
    (asset,) = imported()
    MetadataRevision.objects.filter(asset=asset).update(
        created_at=timezone.now() - timedelta(days=100)
    )
    _history(asset, count=60, age_days=100)  # 61 revisions, all older than 90 days
    assert revisions.prune() == 11
    assert _numbers(asset) == list(range(12, 62))


def test_an_undo_batch_writes_nothing_for_an_item_whose_lease_was_lost(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    a, b = imported(2)
    bulk = finished_job()
    ai_write(a, job=bulk, alt_text="AI a")
    ai_write(b, job=bulk, alt_text="AI b")
    undo_job = undo.start(job=bulk).job
    jobs.start(undo_job)
    claimed = items.claim(job_id=undo_job.pk, batch_size=10, lease_seconds=60)
    assert [c.asset_id for c in claimed] == [a.pk, b.pk]
    # recover() gave b's item to another runner meanwhile: a new lease token.
    JobItem.objects.filter(pk=claimed[1].id).update(lease_token=uuid.uuid4())

    assert items.finish_undo_items(items=claimed, job=undo_job) == 1
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.alt_text, b.alt_text) == ("", "AI b")
    states = dict(JobItem.objects.filter(job=undo_job).values_list("asset_id", "state"))
    assert states == {a.pk: ItemState.SUCCEEDED, b.pk: ItemState.CLAIMED}
    assert JobItem.objects.get(job=undo_job, asset=a).revision.kind == RevisionKind.UNDO
