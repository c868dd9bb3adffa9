"""Bringing files into the library: checks, de-duplication by sha256, storage.

A file is never read whole into memory: it is hashed in chunks, opened by Pillow as a
stream (one decode gives the size, the thumbnail and the embedded text) and copied to
storage in chunks. An upload may be a temporary file on disk of up to the upload limit.
The metadata app records each new image's first revision (its embedded text) through
``on_created``, in the same transaction as the image itself (metadata.intake).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, transaction

from mediaopt.library import embedded, filenames, images
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


_CHUNK_BYTES = 1024 * 1024


@contextlib.contextmanager
def _opened(source: bytes | BinaryIO | Path | str) -> Iterator[tuple[BinaryIO, int]]:
    """A binary stream of the file and its size; closes only what it opened itself."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(bytes(source)), len(source)
    elif isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            yield handle, os.fstat(handle.fileno()).st_size
    else:
        # The bytes themselves, not an upload's declared ``size``.
        source.seek(0, os.SEEK_END)
        size = source.tell()
        source.seek(0)
        yield source, size


def _sha256(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(_CHUNK_BYTES):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def import_file(
    *,
    source: bytes | BinaryIO | Path | str,
    original_name: str,
    on_created: Callable[[MediaAsset, embedded.EmbeddedText], None] | None = None,
) -> ImportOutcome:
    """Import one file. Never raises for bad input: a rejection carries its reason.

    ``on_created`` runs in the transaction that inserts a new image, so what it writes
    exists exactly when the image does.
    """
    original_name = filenames.clean_name(original_name)
    try:
        with _opened(source) as (stream, size):
            return _import_stream(
                stream=stream, size=size, original_name=original_name, on_created=on_created
            )
    except OSError as error:
        return ImportOutcome(REJECTED, original_name, reason=f"cannot be read: {error}")


def _duplicate(original_name: str, existing: MediaAsset) -> ImportOutcome:
    return ImportOutcome(
        DUPLICATE,
        original_name,
        asset=existing,
        reason=f"already in the library as “{existing.original_name}” (#{existing.pk})",
    )


def _import_stream(
    *,
    stream: BinaryIO,
    size: int,
    original_name: str,
    on_created: Callable[[MediaAsset, embedded.EmbeddedText], None] | None,
) -> ImportOutcome:
    limit = settings.MEDIAOPT_MAX_UPLOAD_BYTES
    if not size:
        return ImportOutcome(REJECTED, original_name, reason="the file is empty")
    if size > limit:
        return ImportOutcome(
            REJECTED, original_name, reason=f"larger than {limit // (1024 * 1024)} MB"
        )

    sha256 = _sha256(stream)
    existing = MediaAsset.objects.filter(sha256=sha256).first()
    if existing:
        return _duplicate(original_name, existing)
    try:
        examined = images.examine(stream)
    except images.ImageError as error:
        return ImportOutcome(REJECTED, original_name, reason=error.reason)
    info = examined.info

    asset = MediaAsset(
        original_name=original_name,
        sha256=sha256,
        format=info.format,
        width=info.width,
        height=info.height,
        bytes=size,
    )
    stream.seek(0)
    asset.file.save(original_name, File(stream, name=original_name), save=False)
    asset.thumbnail.save(original_name, ContentFile(examined.thumbnail), save=False)
    try:
        with transaction.atomic():
            asset.save()
            if on_created is not None:
                on_created(asset, examined.embedded)
    except IntegrityError:
        # Another process imported the same bytes between our check and our insert.
        existing = MediaAsset.objects.filter(sha256=sha256).first()
        if existing is None:
            raise
        if asset.file.name != existing.file.name:
            asset.file.delete(save=False)
        if asset.thumbnail.name != existing.thumbnail.name:
            asset.thumbnail.delete(save=False)
        return _duplicate(original_name, existing)
    return ImportOutcome(IMPORTED, original_name, asset=asset)
