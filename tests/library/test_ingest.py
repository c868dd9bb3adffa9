import pytest

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
