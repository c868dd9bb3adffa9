"""Every result checked before it is written, through the real provider path: the real SDK
against the fake server answering realistic bad outputs, a job worked inline.

An error never reaches the library unseen (a proposal waits, with its findings); a
decorative verdict is only a proposal; warnings are written and stored; the language is
stored with every AI revision; a heuristic value with an error is dropped.
"""

from __future__ import annotations

import pytest

from billing.models import EntryKind, LedgerEntry
from mediaopt.library.fields import Source
from metadata import generation, intake, jobs, runner
from metadata.models import (
    ItemState,
    JobItem,
    JobKind,
    Proposal,
    ProposalReason,
    ProposalState,
    Strategy,
)
from metadata.providers.base import DescribeResult
from tests import factories
from tests.fakeopenai import Fault, expected_metadata

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def quick(settings):
    settings.MEDIAOPT_RETRY_BASE_SECONDS = 0
    settings.MEDIAOPT_JOB_MAX_SLEEP_SECONDS = 0.05


def imported(color="green", name="IMG_0001.jpg", width=96):
    return intake.import_file(
        source=factories.jpeg(width, 64, color=color), original_name=name
    ).asset


def run_single(asset, **options) -> JobItem:
    job = jobs.create_job(kind=JobKind.SINGLE, asset_ids=[asset.pk], options=options).job
    runner.run_inline(job)
    return JobItem.objects.select_related("job").get(job=job)


def answer(asset, **changes) -> Fault:
    """The fake's normal answer for this image, with some values replaced."""
    from mediaopt.library import images

    with asset.file.open("rb") as handle:
        preview = images.preview(handle)
    return Fault.with_content({**expected_metadata(preview), **changes})


def captured(job) -> int:
    return -sum(
        LedgerEntry.objects.filter(job_id=job.pk, kind=EntryKind.CAPTURE).values_list(
            "amount", flat=True
        )
    )


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ({"alt_text": "I'm sorry, I can't help with describing this image."}, "text.refusal"),
        ({"alt_text": "IMG_1234.jpg"}, "text.filename"),
        ({"alt_text": "Alt text here"}, "text.placeholder"),
        ({"alt_text": "Buy cheap pills at spam.example, 50% off today"}, "text.promo"),
    ],
    ids=["refusal", "file-name", "placeholder", "spam"],
)
def test_an_error_waits_for_review_and_the_image_keeps_its_values(fake_openai_settings, bad, code):
    asset = imported()
    fake_openai_settings.always(answer(asset, **bad))
    item = run_single(asset, strategy=Strategy.OVERWRITE)

    asset.refresh_from_db()
    assert asset.alt_text == "" and asset.current_revision.number == 1
    proposal = Proposal.objects.get(asset=asset)
    assert proposal.state == ProposalState.PENDING and proposal.reason == ProposalReason.FINDINGS
    assert code in {finding["code"] for finding in proposal.findings}
    assert proposal.changes["alt_text"]["value"] == bad["alt_text"]
    assert item.state == ItemState.SUCCEEDED and "review" in item.error
    # Asked once more with the findings as corrections, then kept for review; the image
    # costs its one credit, once.
    first, second = fake_openai_settings.requests
    assert "Your earlier answer" not in first.messages[1]["content"][0]["text"]
    assert "Your earlier answer" in second.messages[1]["content"][0]["text"]
    assert captured(item.job) == 1


def test_a_second_answer_without_errors_is_written(fake_openai_settings):
    asset = imported()
    fake_openai_settings.script([answer(asset, alt_text="I'm sorry, I can't describe this.")])
    item = run_single(asset)
    asset.refresh_from_db()
    assert fake_openai_settings.request_count == 2
    assert asset.alt_text == "A green scene with a green band at the top"
    assert not Proposal.objects.exists() and captured(item.job) == 1


def test_when_the_second_try_fails_the_first_answer_is_kept_for_review(fake_openai_settings):
    asset = imported()
    fake_openai_settings.script([answer(asset, alt_text="IMG_1234.jpg"), 500])
    item = run_single(asset)
    asset.refresh_from_db()
    assert asset.alt_text == ""
    assert Proposal.objects.get(asset=asset).changes["alt_text"]["value"] == "IMG_1234.jpg"
    assert captured(item.job) == 1


def test_a_decorative_verdict_never_empties_a_good_alt_text(fake_openai_settings):
    asset = imported()
    first = run_single(asset)
    asset.refresh_from_db()
    good = asset.alt_text
    assert first.state == ItemState.SUCCEEDED and good

    fake_openai_settings.always(answer(asset, alt_text="", is_decorative=True))
    run_single(asset, strategy=Strategy.OVERWRITE)

    asset.refresh_from_db()
    assert asset.alt_text == good and not asset.is_decorative
    proposal = Proposal.objects.get(asset=asset, state=ProposalState.PENDING)
    assert proposal.reason == ProposalReason.DECORATIVE and proposal.is_decorative is True


def test_a_chart_needs_a_long_description(fake_openai_settings):
    asset = imported()
    fake_openai_settings.always(answer(asset, image_type="chart"))
    run_single(asset)
    assert Proposal.objects.get(asset=asset).reason == ProposalReason.COMPLEX


def test_review_mode_proposes_every_result(fake_openai_settings):
    asset = imported()
    item = run_single(asset, review=True)
    asset.refresh_from_db()
    assert asset.alt_text == ""
    assert Proposal.objects.get(asset=asset).reason == ProposalReason.REVIEW
    assert captured(item.job) == 1


def test_a_clean_answer_is_written_with_its_language_and_warnings(fake_openai_settings):
    asset = imported()
    fake_openai_settings.always(answer(asset, keywords=["red", "blue"]))  # too few: a warning
    item = run_single(asset)
    asset.refresh_from_db()
    revision = asset.current_revision
    assert revision == item.revision and revision.language == "en"
    assert asset.alt_text_source == Source.AI
    assert [f["code"] for f in revision.findings] == ["keywords.count"]
    assert not Proposal.objects.exists()


def test_english_when_german_was_asked_waits_for_review(fake_openai_settings):
    asset = imported()
    fake_openai_settings.always(
        answer(asset, alt_text="A green meadow with tall grass under a clear summer sky")
    )
    run_single(asset, language="de")
    asset.refresh_from_db()
    assert asset.alt_text == ""
    proposal = Proposal.objects.get(asset=asset)
    assert "text.language" in {finding["code"] for finding in proposal.findings}
    assert proposal.language == "de"
    request = fake_openai_settings.requests[0]
    assert "Write every text in German (de)." in request.messages[1]["content"][0]["text"]


def test_a_heuristic_value_with_an_error_is_dropped_not_written():
    asset = imported(name="IMG_0001.jpg")
    result = DescribeResult(
        output={"alt_text": "IMG_0001.jpg", "title": "Harbour at dawn"}, provider="heuristic"
    )
    options = generation.GenerationOptions(fields=("alt_text", "title"))
    outcome = generation.write_result(
        asset=asset, result=result, source=Source.HEURISTIC, options=options
    )
    asset.refresh_from_db()
    assert outcome.revision is not None and outcome.proposal is None
    assert asset.alt_text == "" and asset.title == "Harbour at dawn"


def test_the_duplicate_alt_text_count_reads_an_index_not_the_library():
    """Once per written image: a scan would read every image of a million-image library."""
    from mediaopt.library.models import MediaAsset

    plan = MediaAsset.objects.filter(alt_text="A red kite").exclude(pk=1).explain()
    assert "asset_alt_text" in plan, plan
