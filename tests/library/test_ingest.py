import hashlib
import io

import pytest
from django.core.files.uploadedfile import TemporaryUploadedFile

from mediaopt.library import ingest
from mediaopt.library.models import MediaAsset
from tests import factories

pytestmark = pytest.mark.django_db


def test_import_stores_the_file_facts():
    outcome = ingest.import_file(source=factories.jpeg(64, 48), original_name="boats.jpg")
    assert outcome.status == ingest.IMPORTED
    asset = outcome.asset
    assert (asset.format, asset.width, asset.height) == ("JPEG", 64, 48)
    assert asset.thumbnail.name and asset.file.name.endswith(".jpeg")


def test_the_same_bytes_are_reported_as_a_duplicate_not_stored_twice():
    data = factories.jpeg(32, 32, color="blue")
    first = ingest.import_file(source=data, original_name="a.jpg")
    second = ingest.import_file(source=data, original_name="copy-of-a.jpg")
    assert second.status == ingest.DUPLICATE
    assert second.asset.pk == first.asset.pk
    assert "a.jpg" in second.reason
    assert MediaAsset.objects.count() == 1


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("empty.jpg", lambda: b""),
        ("corrupt.jpg", factories.corrupt_bytes),
        ("truncated.jpg", factories.truncated_jpeg),
        ("drawing.svg", factories.svg),
        ("ghost.jpg", factories.postscript_named_jpg),
        ("bomb.png", factories.decompression_bomb_png),
    ],
)
def test_bad_input_is_rejected_with_a_reason_and_nothing_is_stored(name, make, media_root):
    outcome = ingest.import_file(source=make(), original_name=name)
    assert outcome.status == ingest.REJECTED
    assert outcome.reason
    assert not MediaAsset.objects.exists()
    assert not any(p.is_file() for p in media_root.rglob("*"))


class ReadLog(io.BytesIO):
    """A file object that remembers how much each read asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.sizes.append(-1 if size is None else size)
        return super().read(size)


def test_a_file_object_is_hashed_checked_and_stored_in_chunks(media_root):
    data = factories.jpeg(1600, 1200) + bytes(3 * 1024 * 1024)  # trailing bytes: a big file
    source = ReadLog(data)
    outcome = ingest.import_file(source=source, original_name="big.jpg")
    assert outcome.status == ingest.IMPORTED
    assert all(0 < size <= 1024 * 1024 for size in source.sizes), source.sizes
    assert outcome.asset.bytes == len(data)
    assert outcome.asset.sha256 == hashlib.sha256(data).hexdigest()
    with outcome.asset.file.open("rb") as stored:
        assert stored.read() == data


def test_a_temporary_upload_is_imported_from_disk(media_root):
    data = factories.png(300, 200)
    upload = TemporaryUploadedFile("upload.png", "image/png", len(data), None)
    upload.write(data)
    upload.flush()
    outcome = ingest.import_file(source=upload, original_name=upload.name)
    assert outcome.status == ingest.IMPORTED
    assert (outcome.asset.width, outcome.asset.height) == (300, 200)
    with outcome.asset.file.open("rb") as stored:
        assert stored.read() == data


def test_a_file_over_the_upload_limit_is_rejected_from_its_size_alone(settings, media_root):
    settings.MEDIAOPT_MAX_UPLOAD_BYTES = 2 * 1024 * 1024
    source = ReadLog(factories.jpeg(16, 16) + bytes(3 * 1024 * 1024))
    outcome = ingest.import_file(source=source, original_name="huge.jpg")
    assert (outcome.status, outcome.reason) == (ingest.REJECTED, "larger than 2 MB")
    assert source.sizes == []
    assert not MediaAsset.objects.exists()


def test_a_hostile_image_is_rejected_with_its_reason_not_raised(settings, media_root):
    settings.MEDIAOPT_MAX_DECODE_BYTES = 100_000
    outcome = ingest.import_file(
        source=factories.png(200, 200, mode="RGBA"), original_name="wide.png"
    )
    assert outcome.status == ingest.REJECTED
    assert outcome.reason.startswith("the image is too large to decode: 200x200 PNG")
    assert not any(p.is_file() for p in media_root.rglob("*"))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\x1b[2Jphoto.jpg", "[2Jphoto.jpg"),
        ("invoice-\u202egpj.exe", "invoice-gpj.exe"),
        ("a\u2066b\u2069c\u200e\u200f\u061c.png", "abc.png"),
        ("line\nbreak\ttab.jpg", "line break tab.jpg"),
        ("bell\x07and\x9bcsi.jpg", "bellandcsi.jpg"),
        ("café 東京 صورة.jpg", "café 東京 صورة.jpg"),
        ("می\u200cخواهم.jpg", "می\u200cخواهم.jpg"),  # ZWNJ is part of the word
        ("👩\u200d💻.png", "👩\u200d💻.png"),  # ZWJ joins the emoji
        ("\x1b\x07", "unnamed"),
    ],
)
def test_file_names_are_cleaned_of_controls_and_bidi_overrides(raw, clean, media_root):
    data = factories.jpeg(8, 8, color=(len(raw) * 7 % 255, 10, 10))
    outcome = ingest.import_file(source=data, original_name=raw)
    assert outcome.original_name == clean
    assert outcome.asset.original_name == clean
    assert "\x1b" not in outcome.asset.file.name and "\u202e" not in outcome.asset.file.name
