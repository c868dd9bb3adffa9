"""One image end to end: preview -> gate -> real SDK -> fake server -> clean -> revision."""

import io

import pytest
from PIL import Image

from billing.gate import WorkKind
from mediaopt import ingest
from metadata import generation, schema
from metadata.models import Settings, Strategy
from metadata.schema import Source
from tests import factories
from tests.fakeopenai import Fault, expected_metadata

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(30)]


def imported(data: bytes, name: str = "IMG_0001.jpg"):
    return ingest.import_file(source=data, original_name=name).asset


def test_ai_result_is_stored_exactly_with_source_ai_and_the_model(fake_openai_settings):
    asset = imported(factories.jpeg(96, 64, color="green"))
    outcome = generation.generate(asset=asset)

    assert outcome.ok, outcome.reason
    [request] = fake_openai_settings.requests
    expected = schema.clean(expected_metadata(request.image)).values
    asset.refresh_from_db()
    assert asset.values() == expected
    assert asset.alt_text == "A green scene with a green band at the top"
    assert set(asset.sources().values()) == {Source.AI}
    revision = asset.current_revision
    assert (revision.provider, revision.model) == ("openai", "gpt-4o-mini")
    assert revision.prompt_tokens > 0 and revision.number == 2


def test_preview_reaches_the_server_upright_and_without_metadata(fake_openai_settings):
    asset = imported(factories.red_top_band_jpeg_with_orientation_6())
    assert generation.generate(asset=asset).ok

    [request] = fake_openai_settings.requests
    jpeg = request.image
    assert b"CANARY-COMMENT-7f3a" not in jpeg
    assert b"\xff\xfe" not in jpeg  # no COM segment
    assert b"Exif\x00\x00" not in jpeg and b"http://ns.adobe.com/xap/1.0/" not in jpeg
    with Image.open(io.BytesIO(jpeg)) as picture:
        assert not picture.getexif()
        rgb = picture.convert("RGB")
        top = rgb.getpixel((rgb.width // 2, 1))
        bottom = rgb.getpixel((rgb.width // 2, rgb.height - 2))
    assert top[0] > 180 and top[1] < 80 and top[2] < 80, top
    assert bottom[2] > 150 and bottom[0] < 100, bottom
    asset.refresh_from_db()
    assert asset.alt_text.endswith("with a red band at the top")


def test_server_errors_retry_exactly_our_attempts_then_change_nothing(
    fake_openai_settings, settings
):
    settings.MEDIAOPT_PROVIDER_ATTEMPTS = 3
    asset = imported(factories.jpeg(32, 32))
    before = (asset.values(), asset.current_revision_id)
    fake_openai_settings.always(500)

    outcome = generation.generate(asset=asset)

    assert not outcome.ok and "500" in outcome.reason
    assert len(fake_openai_settings.requests) == 3
    asset.refresh_from_db()
    assert (asset.values(), asset.current_revision_id) == before


@pytest.mark.parametrize(
    "fault", [Fault.refusal(), Fault.broken_json(), Fault.off_schema(), Fault.timeout(delay=3)]
)
def test_bad_answers_change_nothing_and_say_why(fake_openai_settings, settings, fault):
    settings.MEDIAOPT_PROVIDER_ATTEMPTS = 1
    settings.OPENAI_TIMEOUT = 1.0
    asset = imported(factories.jpeg(32, 32))
    revision_before = asset.current_revision_id
    fake_openai_settings.always(fault)

    outcome = generation.generate(asset=asset)

    assert not outcome.ok and outcome.reason
    asset.refresh_from_db()
    assert asset.current_revision_id == revision_before
    assert asset.alt_text == ""


def test_a_rejected_key_is_not_retried(fake_openai_settings, settings):
    settings.OPENAI_API_KEY = "sk-wrong-key-1234"
    asset = imported(factories.jpeg(32, 32))
    outcome = generation.generate(asset=asset)
    assert not outcome.ok and "401" in outcome.reason
    assert "sk-wrong-key-1234" not in outcome.reason
    assert len(fake_openai_settings.requests) == 1


def test_uploads_fall_back_to_the_heuristic_when_ai_fails(fake_openai_settings, settings):
    settings.MEDIAOPT_PROVIDER_ATTEMPTS = 2
    asset = imported(factories.jpeg(32, 32), name="red-kite-over-a-field.jpg")
    fake_openai_settings.always(500)

    outcome = generation.generate(
        asset=asset,
        options=generation.GenerationOptions.from_settings(
            Settings.objects.current(), work=WorkKind.UPLOAD
        ),
    )

    assert outcome.ok and outcome.provider == "heuristic"
    asset.refresh_from_db()
    assert (asset.alt_text, asset.alt_text_source) == ("Red kite over a field", Source.HEURISTIC)


def test_bulk_work_never_falls_back(fake_openai_settings):
    row = Settings.objects.current()
    row.heuristic_fallback = True
    row.save()
    asset = imported(factories.jpeg(32, 32), name="red-kite-over-a-field.jpg")
    fake_openai_settings.always(500)
    outcome = generation.generate(
        asset=asset, options=generation.GenerationOptions.from_settings(row, work=WorkKind.BULK)
    )
    assert not outcome.ok
    asset.refresh_from_db()
    assert asset.alt_text == ""


def test_fallback_off_means_an_upload_fails_and_changes_nothing(fake_openai_settings):
    row = Settings.objects.current()
    row.heuristic_fallback = False
    row.save()
    asset = imported(factories.jpeg(32, 32), name="red-kite-over-a-field.jpg")
    fake_openai_settings.always(500)
    outcome = generation.generate(
        asset=asset, options=generation.GenerationOptions.from_settings(row, work=WorkKind.UPLOAD)
    )
    assert not outcome.ok
    asset.refresh_from_db()
    assert asset.alt_text == ""


def test_ai_improves_a_heuristic_guess_under_fill_empty(fake_openai_settings, settings):
    asset = imported(factories.jpeg(40, 30, color="blue"), name="blue-door.jpg")
    settings.OPENAI_API_KEY = ""
    generation.generate(asset=asset)
    asset.refresh_from_db()
    assert asset.alt_text_source == Source.HEURISTIC

    settings.OPENAI_API_KEY = fake_openai_settings.api_key
    outcome = generation.generate(
        asset=asset,
        options=generation.GenerationOptions(strategy=Strategy.FILL_EMPTY),
    )
    assert outcome.ok
    asset.refresh_from_db()
    assert asset.alt_text == "A blue scene with a blue band at the top"
    assert asset.alt_text_source == Source.AI
    assert asset.revisions.count() == 3


def test_a_broken_stored_file_fails_its_generation_with_a_reason(fake_openai_settings):
    asset = imported(factories.jpeg(32, 32))
    with open(asset.file.path, "wb") as handle:
        handle.write(b"\xff\xd8\xff garbage")
    outcome = generation.generate(asset=asset)
    assert not outcome.ok and outcome.reason
    assert fake_openai_settings.requests == []


def test_without_a_key_the_heuristic_writes_only_what_it_knows():
    named = imported(factories.jpeg(32, 32), name="old-stone-bridge.jpg")
    anonymous = imported(factories.jpeg(32, 32, color="blue"), name="DSC00012.jpg")
    assert generation.generate(asset=named).revision is not None
    outcome = generation.generate(asset=anonymous)
    assert outcome.ok and outcome.revision is None
    anonymous.refresh_from_db()
    assert anonymous.values() == {name: "" for name in schema.FIELDS}
