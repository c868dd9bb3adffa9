from __future__ import annotations

from django.db import models
from django.db.models import Q

from metadata.models import MetadataFields
from metadata.schema import Source


def asset_upload_to(instance: MediaAsset, filename: str) -> str:
    # Content-addressed: the name never collides and says nothing about the user's file.
    return f"assets/{instance.sha256[:2]}/{instance.sha256}.{instance.format.lower()}"


def thumbnail_upload_to(instance: MediaAsset, filename: str) -> str:
    return f"thumbs/{instance.sha256[:2]}/{instance.sha256}.jpg"


class MediaAssetQuerySet(models.QuerySet):
    def missing_alt_text(self) -> MediaAssetQuerySet:
        """Alt text empty or only guessed by the heuristic, and not marked decorative."""
        return self.filter(
            Q(alt_text="") | Q(alt_text_source=Source.HEURISTIC), is_decorative=False
        )


class MediaAsset(MetadataFields):
    file = models.FileField(upload_to=asset_upload_to, max_length=255)
    thumbnail = models.FileField(upload_to=thumbnail_upload_to, max_length=255, blank=True)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, unique=True, editable=False)
    format = models.CharField(max_length=16, editable=False)
    width = models.PositiveIntegerField(editable=False)
    height = models.PositiveIntegerField(editable=False)
    bytes = models.PositiveBigIntegerField(editable=False)

    current_revision = models.ForeignKey(
        "metadata.MetadataRevision",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MediaAssetQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "image"
        verbose_name_plural = "images"
        indexes = [models.Index(fields=["alt_text_source"])]

    def __str__(self) -> str:
        return self.original_name
