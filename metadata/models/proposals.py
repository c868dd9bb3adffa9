"""Proposals: a job's values for an image kept for a person to approve, edit or reject."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from metadata.models.jobs import RegenerationJob
from metadata.models.revisions import MetadataRevision


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
