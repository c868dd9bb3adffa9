import csv
import io
import json

import pytest
from django.core.management import call_command

from mediaopt.models import MediaAsset
from metadata.schema import Source
from tests import factories

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "2024" / "summer").mkdir(parents=True)
    (root / "golden-retriever-on-a-beach.jpg").write_bytes(factories.jpeg(40, 30, "yellow"))
    (root / "2024" / "summer" / "IMG_1234.jpg").write_bytes(factories.jpeg(40, 30, "blue"))
    (root / "z-copy.jpg").write_bytes(factories.jpeg(40, 30, "yellow"))
    (root / "2024" / "summer" / "notes.svg").write_bytes(factories.svg())
    (root / "broken.png").write_bytes(factories.truncated_jpeg())
    return root


def test_import_media_walks_folders_and_reports_as_json(folder):
    report = json.loads(run("import_media", str(folder), "--json"))
    assert sorted(e["name"] for e in report["imported"]) == [
        "IMG_1234.jpg",
        "golden-retriever-on-a-beach.jpg",
    ]
    assert [e["name"] for e in report["duplicates"]] == ["z-copy.jpg"]
    assert sorted(e["name"] for e in report["rejected"]) == ["broken.png", "notes.svg"]
    assert all(e["reason"] for e in report["rejected"])
    assert MediaAsset.objects.count() == 2


def test_import_media_generates_metadata_unless_told_not_to(folder):
    run("import_media", str(folder / "golden-retriever-on-a-beach.jpg"))
    asset = MediaAsset.objects.get()
    # No server key in tests: the heuristic reads the telling file name.
    assert asset.alt_text == "Golden retriever on a beach"
    assert asset.alt_text_source == Source.HEURISTIC

    run("import_media", str(folder / "2024"), "--no-generate")
    blue = MediaAsset.objects.get(original_name="IMG_1234.jpg")
    assert blue.alt_text == "" and blue.revisions.count() == 1


def test_import_media_refuses_a_missing_path(tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no such file"):
        run("import_media", str(tmp_path / "nope"))


def test_export_metadata_writes_every_asset_with_fields_and_sources(folder):
    run("import_media", str(folder))
    rows = list(csv.DictReader(io.StringIO(run("export_metadata", "--format", "csv"))))
    assert len(rows) == 2
    dog = next(r for r in rows if r["original_name"].startswith("golden"))
    assert dog["alt_text"] == "Golden retriever on a beach"
    assert dog["alt_text_source"] == "heuristic"
    assert dog["is_decorative"] == "False"
    assert set(rows[0]) >= {"id", "keywords", "keywords_source", "caption_source"}

    data = json.loads(run("export_metadata", "--format", "json"))
    assert [d["id"] for d in data] == sorted(int(r["id"]) for r in rows)
    assert data[0]["is_decorative"] is False
