"""An image's metadata history: one immutable revision per change (import, generation,
manual edit, restore, undo); the image's current values are its latest revision's."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from mediaopt.library.models import MetadataFields


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
