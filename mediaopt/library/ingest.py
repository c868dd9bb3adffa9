"""Bringing files into the library: checks, de-duplication by sha256, storage.

The metadata app records each new image's first revision (its embedded text) through
``on_created``, in the same transaction as the image itself (metadata.intake).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from mediaopt.library import images
from mediaopt.library.models import MediaAsset

IMPORTED = "imported"
DUPLICATE = "duplicate"
REJECTED = "rejected"


@dataclass(frozen=True)
class ImportOutcome:
    status: str
    original_name: str
    asset: MediaAsset | None = None
    reason: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.original_name,
            "status": self.status,
            "id": self.asset.pk if self.asset else None,
            "reason": self.reason,
        }


def _read(source: bytes | BinaryIO | Path | str, limit: int) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            return handle.read(limit + 1)
    if hasattr(source, "seek"):
        source.seek(0)
    return source.read(limit + 1)


def import_file(
    *,
    source: bytes | BinaryIO | Path | str,
    original_name: str,
    on_created: Callable[[MediaAsset, images.EmbeddedText], None] | None = None,
) -> ImportOutcome:
    """Import one file. Never raises for bad input: a rejection carries its reason.

    ``on_created`` runs in the transaction that inserts a new image, so what it writes
    exists exactly when the image does.
    """
    original_name = Path(original_name).name[:255] or "unnamed"
    limit = settings.MEDIAOPT_MAX_UPLOAD_BYTES
    try:
        data = _read(source, limit)
    except OSError as error:
        return ImportOutcome(REJECTED, original_name, reason=f"cannot be read: {error}")
    if not data:
        return ImportOutcome(REJECTED, original_name, reason="the file is empty")
    if len(data) > limit:
        return ImportOutcome(
            REJECTED, original_name, reason=f"larger than {limit // (1024 * 1024)} MB"
        )

    sha256 = hashlib.sha256(data).hexdigest()
    existing = MediaAsset.objects.filter(sha256=sha256).first()
    if existing:
        return ImportOutcome(
            DUPLICATE,
            original_name,
            asset=existing,
            reason=f"already in the library as “{existing.original_name}” (#{existing.pk})",
        )
    try:
        info = images.inspect(data)
        thumbnail = images.thumbnail(data)
    except images.ImageError as error:
        return ImportOutcome(REJECTED, original_name, reason=error.reason)
    embedded = images.embedded_text(data)

    asset = MediaAsset(
        original_name=original_name,
        sha256=sha256,
        format=info.format,
        width=info.width,
        height=info.height,
        bytes=len(data),
    )
    asset.file.save(original_name, ContentFile(data), save=False)
    asset.thumbnail.save(original_name, ContentFile(thumbnail), save=False)
    try:
        with transaction.atomic():
            asset.save()
            if on_created is not None:
                on_created(asset, embedded)
    except IntegrityError:
        # Another process imported the same bytes between our check and our insert.
        existing = MediaAsset.objects.filter(sha256=sha256).first()
        if existing is None:
            raise
        if asset.file.name != existing.file.name:
            asset.file.delete(save=False)
        if asset.thumbnail.name != existing.thumbnail.name:
            asset.thumbnail.delete(save=False)
        return ImportOutcome(
            DUPLICATE,
            original_name,
            asset=existing,
            reason=f"already in the library as “{existing.original_name}” (#{existing.pk})",
        )
    return ImportOutcome(IMPORTED, original_name, asset=asset)
