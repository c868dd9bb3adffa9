"""The two columns revisions.py keeps on each image for the library's filters at scale
(``ai_language``, ``revised``) say what the revisions say, through every kind of write and
after the migration that fills them for an existing library."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db.models import OuterRef, Subquery

from mediaopt.library.models import MediaAsset
from metadata import library_filters
from metadata.models import MetadataRevision, RevisionKind
from tests.revision_builders import generated, hand_edit, imported

pytestmark = pytest.mark.django_db


def columns(asset: MediaAsset) -> tuple[str, bool]:
    asset.refresh_from_db()
    return asset.ai_language, asset.revised


def from_revisions() -> dict[int, tuple[str, bool]]:
    """What the columns summarise, read from the revisions (the filters' old queries)."""
    latest_ai = (
        MetadataRevision.objects.filter(asset=OuterRef("pk"), kind=RevisionKind.GENERATED)
        .exclude(language="")
        .order_by("-number")
        .values("language")[:1]
    )
    rows = MediaAsset.objects.annotate(lang=Subquery(latest_ai)).values_list(
        "pk", "lang", "current_revision__number"
    )
    return {pk: (lang or "", number > 1) for pk, lang, number in rows}


def test_the_columns_follow_imports_ai_writes_and_hand_edits():
    only_imported, in_german, edited_after = imported(3, alt_text="")
    generated(in_german, alt_text="Ein Hund", language="de")
    generated(edited_after, alt_text="A dog", language="en")
    hand_edit(edited_after, alt_text="A brown dog")
    assert columns(only_imported) == ("", False)
    assert columns(in_german) == ("de", True)
    # A person's edit leaves the language of the latest AI values as it was.
    assert columns(edited_after) == ("en", True)
    assert {a.pk: columns(a) for a in MediaAsset.objects.all()} == from_revisions()


def test_the_filters_read_the_columns():
    english, german, untouched = imported(3, alt_text="")
    generated(english, alt_text="A dog", language="en")
    generated(german, alt_text="Ein Hund", language="de")
    everything = MediaAsset.objects.all()
    assert set(library_filters.in_other_language(everything, language="en")) == {german}
    assert set(library_filters.in_other_language(everything, language="fr")) == {english, german}
    assert set(library_filters.revised(everything, since_import=True)) == {english, german}
    assert set(library_filters.revised(everything, since_import=False)) == {untouched}


def test_the_filter_reads_ids_when_few_and_walks_the_list_when_many(monkeypatch):
    english, german = imported(2, alt_text="")
    generated(english, alt_text="A dog", language="en")
    generated(german, alt_text="Ein Hund", language="de")
    few = library_filters.in_other_language(MediaAsset.objects.all(), language="fr")
    monkeypatch.setattr(library_filters, "FEW", 1)
    many = library_filters.in_other_language(MediaAsset.objects.all(), language="fr")
    assert "IN (SELECT" in str(few.query) and "IN (SELECT" not in str(many.query)
    assert set(few) == set(many) == {english, german}


def test_the_migration_fills_the_columns_of_an_existing_library(monkeypatch):
    assets = imported(5, alt_text="")
    generated(assets[0], alt_text="Ein Hund", language="de")
    generated(assets[0], alt_text="Un chien", language="fr")  # the latest counts
    generated(assets[1], alt_text="A dog", language="en")
    hand_edit(assets[2], alt_text="By hand")
    expected = from_revisions()
    MediaAsset.objects.update(ai_language="", revised=False)  # as before the migration
    migration = importlib.import_module("mediaopt.library.migrations.0006_filter_columns")
    monkeypatch.setattr(migration, "BATCH", 2)  # several batches
    migration.fill(apps, None)
    assert {a.pk: columns(a) for a in MediaAsset.objects.all()} == expected
    assert expected[assets[0].pk] == ("fr", True) and expected[assets[2].pk] == ("", True)
