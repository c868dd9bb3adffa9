import pytest
from django.core.files.base import ContentFile

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import revisions
from metadata.models import MetadataRevision, RevisionKind
from metadata.schema import Metadata
from metadata.strategies import plan

pytestmark = pytest.mark.django_db


def make_asset(name="harbour.jpg", **embedded) -> MediaAsset:
    asset = MediaAsset(
        original_name=name,
        sha256=name.ljust(64, "0"),
        format="JPEG",
        width=4,
        height=3,
        bytes=10,
    )
    asset.file.save(name, ContentFile(b"not read here"), save=False)
    asset.save()
    revisions.record_import(asset=asset, values=embedded)
    return asset


def generated(asset, values, source=Source.AI, **options):
    p = plan(
        current_values=asset.values(),
        current_sources=asset.sources(),
        current_is_decorative=asset.is_decorative,
        result=Metadata(values=values),
        new_source=source,
        **options,
    )
    return revisions.apply_plan(
        asset=asset,
        plan=p,
        based_on_revision_id=asset.current_revision_id,
        provider="openai",
        model="gpt-test",
        prompt_tokens=11,
        completion_tokens=7,
    )


def test_import_writes_revision_one_with_embedded_sources():
    asset = make_asset(title="Harbour", caption="")
    first = asset.current_revision
    assert (first.number, first.kind, first.parent_id) == (1, RevisionKind.IMPORT, None)
    assert first.title == "Harbour" and first.title_source == Source.EMBEDDED
    assert first.caption_source == "" and first.changed_fields == ["title"]


def test_generated_revision_snapshots_everything_and_links_its_parent():
    asset = make_asset(title="Harbour")
    first = asset.current_revision
    second = generated(asset, {"alt_text": "Boats in a harbour", "title": "Other"})
    assert second.parent_id == first.pk and second.number == 2
    assert second.changed_fields == ["alt_text"]
    assert (second.alt_text, second.alt_text_source) == ("Boats in a harbour", Source.AI)
    assert (second.title, second.title_source) == ("Harbour", Source.EMBEDDED)
    assert (second.provider, second.model, second.prompt_tokens) == ("openai", "gpt-test", 11)
    asset.refresh_from_db()
    assert asset.current_revision_id == second.pk
    assert asset.alt_text_source == Source.AI


def test_manual_edit_marks_only_changed_fields_manual():
    asset = make_asset()
    generated(asset, {"alt_text": "Boats", "title": "Harbour"})
    rev = revisions.apply_manual(
        asset=asset,
        values={**asset.values(), "title": "Old harbour"},
        is_decorative=False,
        changed_fields=["title"],
        actor=None,
        based_on_revision_id=asset.current_revision_id,
    )
    assert rev.kind == RevisionKind.MANUAL and rev.changed_fields == ["title"]
    assert rev.title_source == Source.MANUAL
    assert rev.alt_text_source == Source.AI


def test_a_change_based_on_an_older_revision_is_refused_and_writes_nothing():
    asset = make_asset()
    opened_on = asset.current_revision_id
    generated(asset, {"alt_text": "Boats"})
    count = MetadataRevision.objects.count()
    with pytest.raises(revisions.StaleRevision):
        revisions.apply_manual(
            asset=asset,
            values={**asset.values(), "alt_text": "Mine"},
            is_decorative=False,
            changed_fields=["alt_text"],
            actor=None,
            based_on_revision_id=opened_on,
        )
    asset.refresh_from_db()
    assert asset.alt_text == "Boats"
    assert MetadataRevision.objects.count() == count


def test_a_result_that_changes_nothing_writes_no_revision():
    asset = make_asset()
    generated(asset, {"alt_text": "Boats"})
    assert generated(asset, {"alt_text": "Boats"}) is None
    assert asset.revisions.count() == 2


def test_clearing_a_field_by_hand_leaves_it_without_a_source():
    asset = make_asset()
    generated(asset, {"alt_text": "Boats"})
    rev = revisions.apply_manual(
        asset=asset,
        values={**asset.values(), "alt_text": ""},
        is_decorative=False,
        changed_fields=["alt_text"],
        actor=None,
        based_on_revision_id=asset.current_revision_id,
    )
    assert (rev.alt_text, rev.alt_text_source) == ("", Source.NONE)
