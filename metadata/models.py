from __future__ import annotations

import os
from functools import partial

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from mediaopt.library.fields import FIELDS
from mediaopt.library.models import MetadataFields


class Strategy(models.TextChoices):
    FILL_EMPTY = "fill_empty", "Fill empty fields only"
    OVERWRITE = "overwrite", "Overwrite (keep fields edited by hand)"
    PER_FIELD = "per_field", "Choose per field"


class Detail(models.TextChoices):
    LOW = "low", "Low (cheaper)"
    HIGH = "high", "High"
    AUTO = "auto", "Auto"


class RevisionKind(models.TextChoices):
    IMPORT = "import", "Import"
    GENERATED = "generated", "Generated"
    MANUAL = "manual", "Manual edit"
    RESTORE = "restore", "Restore"
    UNDO = "undo", "Undo"


class MetadataRevisionQuerySet(models.QuerySet):
    def for_asset(self, asset_id: int) -> MetadataRevisionQuerySet:
        return self.filter(asset_id=asset_id).order_by("-number")

    def history(self, asset_id: int) -> MetadataRevisionQuerySet:
        """An asset's revisions, newest first, with what the history page names: who made
        each, its job (and the job an undo undid) and the revision a restore took back."""
        return self.for_asset(asset_id).select_related(
            "actor", "job", "job__undo_of", "restored_from"
        )


class MetadataRevision(MetadataFields):
    """A full snapshot of an asset's metadata after one change. Append-only."""

    asset = models.ForeignKey(
        "mediaopt.MediaAsset", on_delete=models.CASCADE, related_name="revisions"
    )
    number = models.PositiveIntegerField(help_text="1 for the import, then one more each change.")
    kind = models.CharField(max_length=16, choices=RevisionKind.choices)

    changed_fields = models.JSONField(default=list, blank=True)

    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    job = models.ForeignKey(
        "metadata.RegenerationJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="revisions",
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # A restore's source: the revision whose values it took back.
    restored_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=100, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    # The language the text was asked in (a BCP 47 tag; empty where none was asked), so
    # text written in an old language can be found after the setting changes.
    language = models.CharField(max_length=35, blank=True)
    # The quality checks' findings on the values, per field (metadata/quality.py).
    findings = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MetadataRevisionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["asset", "number"], name="revision_number_per_asset"),
        ]
        indexes = [
            # A job's revision on given images: what an undo reads for each batch.
            models.Index(fields=["job", "asset"], name="revision_job_asset"),
        ]

    def __str__(self) -> str:
        return f"Revision {self.number} ({self.get_kind_display()})"


class JobKind(models.TextChoices):
    UPLOAD = "upload", "Upload"
    IMPORT = "import", "Import"
    SINGLE = "single", "Single image"
    BULK = "bulk", "Bulk"
    UNDO = "undo", "Undo"
    RETRY = "retry", "Retry"


class JobState(models.TextChoices):
    DRAFT = "draft", "Draft"
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


def _item_count(**filters) -> Coalesce:
    """Items of the row's job, counted by a correlated subquery: evaluated for the rows
    selected only, instead of grouping every item of every job."""
    counted = (
        JobItem.objects.filter(job=OuterRef("pk"), **filters)
        .order_by()
        .values("job")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(counted), 0)


class RegenerationJobQuerySet(models.QuerySet):
    def unfinished(self) -> RegenerationJobQuerySet:
        return self.filter(state__in=[JobState.QUEUED, JobState.RUNNING])

    def undoable_since(self, cutoff) -> RegenerationJobQuerySet:
        """Jobs that may still be undone: not finished, or finished after ``cutoff``.

        Retention (revisions.prune) keeps every revision such a job wrote and the ones
        they replaced, so its undo always finds the values from before it.
        """
        return self.filter(models.Q(finished_at__isnull=True) | models.Q(finished_at__gte=cutoff))

    def with_progress(self) -> RegenerationJobQuerySet:
        """Each job with item_total, item_done, item_succeeded and item_failed: one query
        for the rows whatever the number of items (the admin's list and the settings page)."""
        return self.annotate(
            item_total=_item_count(),
            item_done=_item_count(state__in=DONE_ITEM_STATES),
            item_succeeded=_item_count(state=ItemState.SUCCEEDED),
            item_failed=_item_count(state=ItemState.FAILED),
        )

    def recent_with_progress(self, limit: int = 10) -> RegenerationJobQuerySet:
        """The newest ``limit`` jobs with their counts and who started them, in one query."""
        return (
            self.with_progress().select_related("created_by").order_by("-created_at", "-id")[:limit]
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

    objects = RegenerationJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state"])]
        permissions = [("run_regeneration", "Can start and control regeneration jobs")]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.get_kind_display()}, {self.get_state_display()})"

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

    job = models.ForeignKey(RegenerationJob, on_delete=models.CASCADE, related_name="items")
    asset = models.ForeignKey(
        "mediaopt.MediaAsset", on_delete=models.CASCADE, related_name="job_items"
    )
    state = models.CharField(max_length=16, choices=ItemState.choices, default=ItemState.PENDING)
    # Counted when the runner opens the image (jobs.open_item), before any call: an image
    # that kills its worker still uses up its attempts, its batch mates do not.
    attempts = models.PositiveIntegerField(default=0)
    not_before = models.DateTimeField(default=timezone.now)
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    revision = models.ForeignKey(
        MetadataRevision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # An undo item's fields that were changed again after the undone job: kept, unless
    # the undo was told to override them (then they are listed and restored anyway).
    conflicts = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = JobItemQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["job", "state", "not_before"], name="jobitem_claim"),
            models.Index(fields=["state", "lease_expires_at"], name="jobitem_lease"),
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


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if not value:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def default_fields() -> list[str]:
    raw = os.environ.get("MEDIAOPT_DEFAULT_FIELDS")
    if not raw:
        return list(FIELDS)
    return [name for name in (part.strip() for part in raw.split(",")) if name in FIELDS]


class SettingsManager(models.Manager):
    def current(self) -> Settings:
        """The installation's one Settings row, created from the environment on first use."""
        settings_row, _ = self.get_or_create(pk=1)
        return settings_row


class Settings(models.Model):
    """The installation's generation settings: one row, edited on the admin's settings page.

    Field defaults come from environment variables, read when the row is first created.
    """

    generate_on_upload = models.BooleanField(
        default=partial(_env_bool, "MEDIAOPT_GENERATE_ON_UPLOAD", True),
        help_text="Write metadata for new uploads and imports at once.",
    )
    heuristic_fallback = models.BooleanField(
        default=partial(_env_bool, "MEDIAOPT_HEURISTIC_FALLBACK", True),
        help_text=(
            "When AI fails for an upload, fill what embedded text and file names tell. "
            "Bulk jobs never fall back."
        ),
    )
    default_fields = models.JSONField(
        default=default_fields, help_text="Fields written unless a run chooses others."
    )
    default_strategy = models.CharField(
        max_length=16,
        choices=Strategy.choices,
        default=partial(_env, "MEDIAOPT_DEFAULT_STRATEGY", Strategy.FILL_EMPTY),
    )
    language = models.CharField(
        max_length=35,
        default=partial(_env, "MEDIAOPT_LANGUAGE", "en"),
        help_text="Language of the generated text, e.g. en, de, pt-BR.",
    )
    review_by_default = models.BooleanField(
        "review results before they are written",
        default=partial(_env_bool, "MEDIAOPT_REVIEW_BY_DEFAULT", False),
        help_text=(
            "Bulk jobs keep each result for review instead of writing it (the confirmation "
            "page can change this per job)."
        ),
    )
    site_context = models.TextField(
        blank=True,
        max_length=500,
        default=partial(_env, "MEDIAOPT_SITE_CONTEXT", ""),
        help_text="A sentence about the site, given to the model, e.g. 'a bakery in Lyon'.",
    )
    model = models.CharField(max_length=100, default=partial(_env, "MEDIAOPT_MODEL", "gpt-4o-mini"))
    detail = models.CharField(
        max_length=8,
        choices=Detail.choices,
        default=partial(_env, "MEDIAOPT_DETAIL", Detail.LOW),
    )
    requests_per_minute = models.PositiveIntegerField(
        default=partial(_env_int, "MEDIAOPT_REQUESTS_PER_MINUTE", 500)
    )
    tokens_per_minute = models.PositiveIntegerField(
        default=partial(_env_int, "MEDIAOPT_TOKENS_PER_MINUTE", 200_000)
    )
    revisions_keep = models.PositiveIntegerField(
        "revisions kept per image",
        default=partial(_env_int, "MEDIAOPT_REVISIONS_KEEP", 50),
        validators=[MinValueValidator(1)],
        help_text="Each image keeps at least its latest revisions, however old.",
    )
    revisions_keep_days = models.PositiveIntegerField(
        "keep revisions for (days)",
        default=partial(_env_int, "MEDIAOPT_REVISIONS_KEEP_DAYS", 90),
        validators=[MinValueValidator(1)],
        help_text=(
            "Every revision younger than this is kept, and jobs finished within it can be "
            "undone. Older ones beyond the count above are pruned daily."
        ),
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = SettingsManager()

    class Meta:
        verbose_name = "settings"
        verbose_name_plural = "settings"

    def __str__(self) -> str:
        return "Settings"


class RateWindow(models.Model):
    """One time window of the shared provider rate limiter (metadata/ratelimit.py) for
    one key, used when there is no Redis.

    ``window_start`` is the window's start in epoch seconds. The row with window_start 0
    is the key's control row: its ``blocked_until`` (epoch seconds) is when callers may
    call again after a 429 or an exhausted ``x-ratelimit-remaining-*``, and locking it
    first serialises admissions (PostgreSQL has no lock on rows that do not exist yet).
    """

    key = models.CharField(max_length=64)
    window_start = models.BigIntegerField()
    requests = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    blocked_until = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "window_start"], name="rate_window_per_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} @ {self.window_start}: {self.requests} requests, {self.tokens} tokens"


class ProposalState(models.TextChoices):
    PENDING = "pending", "Waiting for review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    # A newer proposal for the same image took its place.
    SUPERSEDED = "superseded", "Superseded"


class ProposalReason(models.TextChoices):
    """Why a result waits for a person instead of being written."""

    REVIEW = "review", "The job runs in review mode"
    FINDINGS = "findings", "It failed the quality checks"
    DECORATIVE = "decorative", "The model thinks this image is decorative"
    COMPLEX = "complex", "A chart, diagram or text-heavy image needs a long description"


class ProposalQuerySet(models.QuerySet):
    def pending(self) -> ProposalQuerySet:
        return self.filter(state=ProposalState.PENDING)


class Proposal(models.Model):
    """A revision-to-be: values a job proposes for an image, kept for a person to approve,
    edit or reject. Written only by revisions.py; approving writes a normal revision."""

    asset = models.ForeignKey(
        "mediaopt.MediaAsset", on_delete=models.CASCADE, related_name="proposals"
    )
    job = models.ForeignKey(
        RegenerationJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="proposals"
    )
    # The image's revision when the values were proposed: a field changed since is a
    # conflict at approval.
    based_on = models.ForeignKey(
        MetadataRevision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # {field: {"value": ..., "source": ...}} for the fields the proposal would change.
    changes = models.JSONField(default=dict, blank=True)
    # None: no verdict; True: the model thinks the image is decorative (empty alt text).
    is_decorative = models.BooleanField(null=True, blank=True)
    reason = models.CharField(max_length=16, choices=ProposalReason.choices)
    findings = models.JSONField(default=list, blank=True)
    image_type = models.CharField(max_length=32, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=100, blank=True)
    language = models.CharField(max_length=35, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    state = models.CharField(
        max_length=16, choices=ProposalState.choices, default=ProposalState.PENDING
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, help_text="Why it was rejected, in the reviewer's words.")
    # The revision its approval wrote.
    revision = models.ForeignKey(
        MetadataRevision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProposalQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["asset"],
                condition=models.Q(state="pending"),
                name="one_pending_proposal_per_asset",
            ),
        ]
        indexes = [
            # The review screen pages by id through what waits, per job.
            models.Index(fields=["state", "id"], name="proposal_state"),
            models.Index(fields=["job", "state", "id"], name="proposal_job_state"),
        ]

    def __str__(self) -> str:
        return f"Proposal {self.pk} for image {self.asset_id} ({self.get_state_display()})"


class LintRun(models.Model):
    """One re-check of the whole library's current values (metadata/relint.py): how many
    images each rule found something in, so rules added later reach old values too."""

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    images = models.PositiveIntegerField(default=0)
    with_errors = models.PositiveIntegerField(default=0)
    with_warnings = models.PositiveIntegerField(default=0)
    fixed = models.PositiveIntegerField(default=0)
    # {rule code: images with that finding}
    counts = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        get_latest_by = "started_at"

    def __str__(self) -> str:
        return f"Quality check of {self.images} images ({self.started_at:%Y-%m-%d %H:%M})"
