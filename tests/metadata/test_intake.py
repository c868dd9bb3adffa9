import pytest

from mediaopt.library import ingest
from mediaopt.library.fields import Source
from metadata import intake
from tests import factories

pytestmark = pytest.mark.django_db


def test_an_imported_file_gets_revision_one():
    outcome = intake.import_file(source=factories.jpeg(64, 48), original_name="boats.jpg")
    assert outcome.status == ingest.IMPORTED
    asset = outcome.asset
    assert (asset.format, asset.width, asset.height) == ("JPEG", 64, 48)
    assert asset.thumbnail.name and asset.file.name.endswith(".jpeg")
    assert asset.current_revision.number == 1


def test_embedded_text_becomes_revision_one_with_source_embedded():
    data = factories.jpeg_with_embedded_text(
        description="Fishing boats moored at dawn",
        keywords=["boats", "harbour"],
        title="Dawn harbour",
    )
    asset = intake.import_file(source=data, original_name="IMG_0001.jpg").asset
    assert asset.title == "Dawn harbour"
    assert asset.caption == "Fishing boats moored at dawn"
    assert "boats" in asset.keywords
    assert asset.title_source == asset.caption_source == Source.EMBEDDED
    assert asset.alt_text == "" and asset.alt_text_source == ""
