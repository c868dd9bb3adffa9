"""One image end to end through a job: preview -> gate -> real SDK -> fake server -> clean
-> revision, with the one retry policy (an item's attempts and not_before).

Whole-job behaviour (429s and 500s across many items, the attempt counted before the image
is opened, a broken file among good ones, pause and resume) is in test_jobs.py.
"""

import io

import pytest
from django.conf import settings as django_settings
from PIL import Image

from mediaopt.library.fields import FIELDS, Source
from metadata import intake, jobs, runner, schema
from metadata.models import ItemState, JobItem, JobKind, JobState, Settings, Strategy
from tests import factories
from tests.fakeopenai import Fault, expected_metadata

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(30)]


@pytest.fixture(autouse=True)
def quick(settings):
    """Backoff without waiting: the attempts are real, the delays are not."""
    settings.MEDIAOPT_RETRY_BASE_SECONDS = 0
    settings.MEDIAOPT_JOB_MAX_SLEEP_SECONDS = 0.05


def imported(data: bytes, name: str = "IMG_0001.jpg"):
    return intake.import_file(source=data, original_name=name).asset


def run_single(asset, kind=JobKind.SINGLE, **options) -> JobItem:
    """One job for one asset, worked to the end in this process; its item."""
    job = jobs.create_job(kind=kind, asset_ids=[asset.pk], options=options).job
    runner.run_inline(job)
    return JobItem.objects.select_related("job", "revision").get(job=job)


def attempts() -> int:
    return django_settings.MEDIAOPT_JOB_MAX_ATTEMPTS


def test_ai_result_is_stored_exactly_with_source_ai_and_the_model(fake_openai_settings):
    asset = imported(factories.jpeg(96, 64, color="green"))

    item = run_single(asset)

    assert item.state == ItemState.SUCCEEDED, item.error
    [request] = fake_openai_settings.requests
    expected = schema.clean(expected_metadata(request.image)).values
    asset.refresh_from_db()
    assert asset.values() == expected
    assert asset.alt_text == "A green scene with a green band at the top"
    assert set(asset.sources().values()) == {Source.AI}
    revision = asset.current_revision
    assert revision == item.revision and revision.job == item.job
    assert (revision.provider, revision.model) == ("openai", "gpt-4o-mini")
    assert revision.prompt_tokens > 0 and revision.number == 2


def test_preview_reaches_the_server_upright_and_without_metadata(fake_openai_settings):
    asset = imported(factories.red_top_band_jpeg_with_orientation_6())
    assert run_single(asset).state == ItemState.SUCCEEDED

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


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (500, "(500)"),
        (Fault.refusal(), "refused"),
        (Fault.broken_json(), "not valid JSON"),
        (Fault.off_schema(), "lacks"),
        (Fault.timeout(delay=3), "did not answer within 0.5 s"),
    ],
    ids=["500", "refusal", "broken-json", "off-schema", "timeout"],
)
def test_retryable_failures_use_exactly_our_attempts_then_change_nothing_and_say_why(
    fake_openai_settings, settings, fault, words
):
    settings.OPENAI_TIMEOUT = 0.5
    asset = imported(factories.jpeg(32, 32))
    before = (asset.values(), asset.current_revision_id)
    fake_openai_settings.always(fault)

    item = run_single(asset)

    # A setting other than the default is honoured too: test_jobs.py, 2 attempts.
    assert fake_openai_settings.request_count == attempts() > 1
    assert (item.state, item.attempts, item.revision) == (ItemState.FAILED, attempts(), None)
    assert item.error.startswith(f"gave up after {attempts()} attempts: "), item.error
    assert words in item.error
    asset.refresh_from_db()
    assert (asset.values(), asset.current_revision_id) == before


def test_a_rejected_key_is_not_retried_pauses_the_job_and_is_never_shown(
    fake_openai_settings, settings
):
    settings.OPENAI_API_KEY = "sk-wrong-key-1234"
    asset = imported(factories.jpeg(32, 32))

    item = run_single(asset)

    assert fake_openai_settings.request_count == 1
    job = item.job
    assert job.state == JobState.PAUSED
    assert "401" in job.pause_reason
    assert "sk-wrong-key-1234" not in job.pause_reason and "1234" not in job.pause_reason
    # The fake echoes the key, as OpenAI echoes part of it; it reaches no stored reason.
    assert "sk-wrong-key-1234" not in item.error
    assert (item.state, item.attempts) == (ItemState.PENDING, 0)
    asset.refresh_from_db()
    assert asset.alt_text == ""


def test_a_bad_request_is_not_retried_and_fails_the_item_with_the_reason(fake_openai_settings):
    asset = imported(factories.jpeg(32, 32))
    fake_openai_settings.always(400)

    item = run_single(asset)

    assert fake_openai_settings.request_count == 1
    assert item.state == ItemState.FAILED and "(400)" in item.error
    assert not item.error.startswith("gave up")
    assert item.job.state == JobState.COMPLETED


def test_uploads_fall_back_to_the_heuristic_when_ai_fails(fake_openai_settings):
    assert Settings.objects.current().heuristic_fallback
    asset = imported(factories.jpeg(32, 32), name="red-kite-over-a-field.jpg")
    fake_openai_settings.always(500)

    item = run_single(asset, kind=JobKind.UPLOAD)

    # AI is tried with our attempts first; the last failure falls back.
    assert fake_openai_settings.request_count == attempts()
    assert item.state == ItemState.SUCCEEDED, item.error
    assert item.revision.provider == "heuristic"
    asset.refresh_from_db()
    assert (asset.alt_text, asset.alt_text_source) == ("Red kite over a field", Source.HEURISTIC)


def test_bulk_jobs_never_fall_back(fake_openai_settings):
    row = Settings.objects.current()
    row.heuristic_fallback = True
    row.save()
    asset = imported(factories.jpeg(32, 32), name="red-kite-over-a-field.jpg")
    fake_openai_settings.always(500)

    item = run_single(asset, kind=JobKind.BULK)

    assert item.state == ItemState.FAILED and "(500)" in item.error
    asset.refresh_from_db()
    assert asset.alt_text == ""


def test_fallback_off_means_an_upload_fails_and_changes_nothing(fake_openai_settings):
    row = Settings.objects.current()
    row.heuristic_fallback = False
    row.save()
    asset = imported(factories.jpeg(32, 32), name="red-kite-over-a-field.jpg")
    revision_before = asset.current_revision_id
    fake_openai_settings.always(500)

    item = run_single(asset, kind=JobKind.UPLOAD)

    assert item.state == ItemState.FAILED and "(500)" in item.error
    asset.refresh_from_db()
    assert asset.alt_text == "" and asset.current_revision_id == revision_before


def test_ai_improves_a_heuristic_guess_under_fill_empty(fake_openai_settings, settings):
    asset = imported(factories.jpeg(40, 30, color="blue"), name="blue-door.jpg")
    settings.OPENAI_API_KEY = ""
    assert run_single(asset).revision.provider == "heuristic"
    asset.refresh_from_db()
    assert asset.alt_text_source == Source.HEURISTIC
    assert fake_openai_settings.request_count == 0

    settings.OPENAI_API_KEY = fake_openai_settings.api_key
    item = run_single(asset, strategy=Strategy.FILL_EMPTY)

    assert item.state == ItemState.SUCCEEDED, item.error
    asset.refresh_from_db()
    assert asset.alt_text == "A blue scene with a blue band at the top"
    assert asset.alt_text_source == Source.AI
    assert asset.revisions.count() == 3


def test_without_a_key_the_heuristic_writes_only_what_it_knows():
    named = imported(factories.jpeg(32, 32), name="old-stone-bridge.jpg")
    anonymous = imported(factories.jpeg(32, 32, color="blue"), name="DSC00012.jpg")

    written = run_single(named)
    skipped = run_single(anonymous)

    assert written.state == ItemState.SUCCEEDED and written.revision is not None
    assert (skipped.state, skipped.revision) == (ItemState.SKIPPED, None)
    assert skipped.error == "nothing to change"
    anonymous.refresh_from_db()
    assert anonymous.values() == {name: "" for name in FIELDS}
