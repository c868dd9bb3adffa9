"""Regeneration jobs and their items: the states a job and an item move through, and the
state sets the engine, the pages and the counts share."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import ExpressionWrapper, F
from django.utils import timezone

from metadata.models.revisions import MetadataRevision


class JobKind(models.TextChoices):
    UPLOAD = "upload", "Upload"
    IMPORT = "import", "Import"
    SINGLE = "single", "Single image"
    BULK = "bulk", "Bulk"
    UNDO = "undo", "Undo"
    RETRY = "retry", "Retry"


class JobState(models.TextChoices):
    DRAFT = "draft", "Draft"
    # Confirmed, its items being added in chunks (jobs.add_items); then queued.
    PREPARING = "preparing", "Preparing"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


class JobQueue(models.TextChoices):
    """Each queue has its own cluster, so a click never waits behind a big job."""

    BULK = "bulk", "Bulk"
    INTERACTIVE = "interactive", "Interactive"


class ItemState(models.TextChoices):
    PENDING = "pending", "Pending"
    CLAIMED = "claimed", "Claimed"
    SUCCEEDED = "succeeded", "Succeeded"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# Nothing moves a job out of these: its page stops polling, the CLI stops following, and
# no item under it may be pending or claimed.
FINAL_JOB_STATES = frozenset({JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED})

# An item in one of these states holds its asset: at most one per asset (a DB constraint).
ACTIVE_ITEM_STATES = (ItemState.PENDING, ItemState.CLAIMED)


# An item in one of these states is finished with (for this job).
DONE_ITEM_STATES = (
    ItemState.SUCCEEDED,
    ItemState.SKIPPED,
    ItemState.FAILED,
    ItemState.CANCELLED,
)

# An item in one of these states was worked by a runner (a cancelled one never was): the
# rate a job page shows and "Try on 10 first" count these.
WORKED_ITEM_STATES = (ItemState.SUCCEEDED, ItemState.SKIPPED, ItemState.FAILED)


# The job row's column that counts its items in each final state (kept by the one writer,
# metadata/counts.py, in the transaction that moves an item there). Pending and claimed
# are not kept: claimed is a count over the claim index (at most the concurrency), pending
# is what is left of the total.
COUNT_COLUMNS = {
    ItemState.SUCCEEDED: "items_succeeded",
    ItemState.SKIPPED: "items_skipped",
    ItemState.FAILED: "items_failed",
    ItemState.CANCELLED: "items_cancelled",
}


class RegenerationJobQuerySet(models.QuerySet):
    def listed(self) -> RegenerationJobQuerySet:
        """Jobs a user asked for: a draft is an unconfirmed confirmation page, not a job."""
        return self.exclude(state=JobState.DRAFT)

    def unfinished(self) -> RegenerationJobQuerySet:
        return self.filter(state__in=[JobState.QUEUED, JobState.RUNNING])

    def undoable_since(self, cutoff) -> RegenerationJobQuerySet:
        """Jobs that may still be undone: not finished, or finished after ``cutoff``.

        Retention (revisions.prune) keeps every revision such a job wrote and the ones
        they replaced, so its undo always finds the values from before it.
        """
        return self.filter(models.Q(finished_at__isnull=True) | models.Q(finished_at__gte=cutoff))

    def with_progress(self) -> RegenerationJobQuerySet:
        """Each job with item_total, item_done, item_succeeded and item_failed, read from
        the job row's counts: no query over the items (the admin's list, the settings page)."""
        done = F("items_succeeded") + F("items_skipped") + F("items_failed") + F("items_cancelled")
        return self.annotate(
            item_total=F("items_total"),
            item_done=ExpressionWrapper(done, output_field=models.IntegerField()),
            item_succeeded=F("items_succeeded"),
            item_failed=F("items_failed"),
        )

    def recent_with_progress(self, limit: int = 10) -> RegenerationJobQuerySet:
        """The newest ``limit`` jobs with their counts and who started them, in one query."""
        return (
            self.listed()
            .with_progress()
            .select_related("created_by")
            .order_by("-created_at", "-id")[:limit]
        )


class RegenerationJob(models.Model):
    """A unit of generation work over some assets. States move only through jobs.py."""

    kind = models.CharField(max_length=16, choices=JobKind.choices)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.DRAFT)
    queue = models.CharField(max_length=16, choices=JobQueue.choices, default=JobQueue.BULK)
    # Whose credits (or key) pay for the job's AI calls.
    account = models.ForeignKey(
        "billing.Account", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    scope = models.JSONField(
        default=dict, blank=True, help_text="What was selected: asset ids or a stored filter."
    )
    options = models.JSONField(
        default=dict, blank=True, help_text="fields, strategy, per_field, force."
    )
    pause_reason = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="Why the job could not run at all.")
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    # An undo job's target: the job whose changes it takes back.
    undo_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="undos"
    )
    # Touched by every runner while it works (and at enqueue): recover() gives a job with
    # work but a stale heartbeat a new runner.
    runner_heartbeat = models.DateTimeField(null=True, blank=True)
    # The one runner allowed to work the job (jobs.dispatch names it, the runner takes it
    # over): a duplicate delivery of the same task finds another token and exits.
    runner_token = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Its items, counted by the one writer as they are added and as each reaches a final
    # state (metadata/counts.py): progress reads these, never an aggregate of the items.
    items_total = models.PositiveIntegerField(default=0)
    items_succeeded = models.PositiveIntegerField(default=0)
    items_skipped = models.PositiveIntegerField(default=0)
    items_failed = models.PositiveIntegerField(default=0)
    items_cancelled = models.PositiveIntegerField(default=0)
    # When retention deleted the items of this finished job (metadata/pruning.py): the
    # counts above stay, the item list (failures, skip reasons) is gone.
    items_pruned_at = models.DateTimeField(null=True, blank=True)

    objects = RegenerationJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state"])]
        permissions = [("run_regeneration", "Can start and control regeneration jobs")]

    def __str__(self) -> str:
        # No state: the title and breadcrumb are not polled, the panel says the state.
        return f"Job #{self.pk} ({self.get_kind_display()})"

    @property
    def started_by(self) -> str:
        """Who started the job, for lists: the user, else "command" for a bulk job (the
        CLI makes those without a user) and "job" for one started by the system."""
        if self.created_by is not None:
            return self.created_by.get_username()
        return "command" if self.kind == JobKind.BULK else "job"


class JobItemQuerySet(models.QuerySet):
    def active(self) -> JobItemQuerySet:
        return self.filter(state__in=ACTIVE_ITEM_STATES)

    def active_for_asset(self, asset_id: int) -> JobItemQuerySet:
        """The asset's one active item, if any (the database allows at most one)."""
        return self.active().filter(asset_id=asset_id)


class JobItem(models.Model):
    """One asset's part of a job. States move only through jobs.py."""

    # No index of its own: jobitem_claim_order starts with job_id and serves every lookup
    # by job (a million-item job's creation pays for one index fewer per row).
    job = models.ForeignKey(
        RegenerationJob, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    asset = models.ForeignKey(
        "mediaopt.MediaAsset", on_delete=models.CASCADE, related_name="job_items"
    )
    state = models.CharField(max_length=16, choices=ItemState.choices, default=ItemState.PENDING)
    # Counted when the runner opens the image (items.open_item), before any call: an image
    # that kills its worker still uses up its attempts, its batch mates do not.
    attempts = models.PositiveIntegerField(default=0)
    not_before = models.DateTimeField(default=timezone.now)
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    revision = models.ForeignKey(
        MetadataRevision,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # jobitem_revision below: only the items that have one
    )
    # An undo item's fields that were changed again after the undone job: kept, unless
    # the undo was told to override them (then they are listed and restored anyway).
    conflicts = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = JobItemQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            # The claim's WHERE and its ORDER BY (not_before, id) in one index: with every
            # item due at the same moment, an index without id made PostgreSQL sort all of
            # a job's pending items to return a batch.
            models.Index(fields=["job", "state", "not_before", "id"], name="jobitem_claim_order"),
            # Partial indexes: only the rows they are looked up by, so the pending items
            # a job is created with touch neither.
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(state="claimed"),
                name="jobitem_claimed_lease",
            ),
            models.Index(
                fields=["revision"],
                condition=models.Q(revision__isnull=False),
                name="jobitem_revision",
            ),
            # The job page's rate: the items a job finished in the last minutes, found
            # without reading the others. One partial index per worked state, so the
            # pending items a job is created with (and every lease renewal) touch none.
            *(
                models.Index(
                    fields=["job", "updated_at"],
                    condition=models.Q(state=state),
                    name=f"jobitem_recent_{state.value}",
                )
                for state in WORKED_ITEM_STATES
            ),
            # The job page's failures, in item order: read from here without sorting
            # every failed item of a job (100,000 of them: 101 ms a poll, 0.45 ms here).
            models.Index(
                fields=["job", "id"],
                condition=models.Q(state="failed"),
                name="jobitem_failed_order",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["asset"],
                condition=models.Q(state__in=ACTIVE_ITEM_STATES),
                name="one_active_item_per_asset",
            ),
        ]

    def __str__(self) -> str:
        return f"Job {self.job_id} / image {self.asset_id} ({self.get_state_display()})"


class RunnerSlot(models.Model):
    """One of a job's extra runners, slot 1 and up (the job row names its first runner):
    the token its task was dispatched with and its heartbeat. Written by runner_slots.py."""

    job = models.ForeignKey(RegenerationJob, on_delete=models.CASCADE, related_name="+")
    slot = models.PositiveSmallIntegerField()
    token = models.UUIDField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "slot"], name="runnerslot_one_per_job_slot")
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} runner {self.slot}"
