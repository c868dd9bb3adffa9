"""A stored "select all" scope replays the library's list exactly, without the admin."""

from __future__ import annotations

import pytest
from django.urls import reverse

from mediaopt.library.fields import Source
from metadata import library_filters
from tests import factories
from tests.revision_builders import finished_job, generated, imported

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:mediaopt_mediaasset_changelist")


@pytest.fixture
def library():
    factories.bare_assets(3, start=0)  # photo-0..2: nothing
    factories.bare_assets(2, start=10, alt_text="A red dog", alt_text_source=Source.AI)
    factories.bare_assets(2, start=20, alt_text="Guessed cat", alt_text_source=Source.HEURISTIC)
    factories.bare_assets(1, start=30, is_decorative=True)
    factories.bare_assets(1, start=40, title="Dog show", alt_text="Prize", alt_text_source="manual")


QUERIES = [
    "",
    "alt_text_missing=yes",
    "alt_text_missing=no",
    "alt_text_source__exact=ai",
    "alt_text_source__exact=heuristic",
    "alt_text_source__exact=",
    "is_decorative__exact=1",
    "is_decorative__exact=0",
    "q=dog",
    "q=red+dog",
    "q=%22red+dog%22",
    "q=photo-1",
    "alt_text_missing=no&q=dog",
    "alt_text_missing=yes&is_decorative__exact=0&q=photo",
    "o=-2&alt_text_missing=yes",
    # Words under three characters are left out (no index finds them), here and there.
    "q=do",
    "q=a+dog",
    "q=%22a%22",
    "alt_text_missing=yes&q=x+y",
    "q=d+photo-1",
]


@pytest.mark.parametrize("query", QUERIES)
def test_replay_selects_what_the_changelist_lists(library, admin_client, query):
    response = admin_client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    listed = set(response.context["cl"].queryset.values_list("pk", flat=True))
    assert set(library_filters.replay(query).values_list("pk", flat=True)) == listed


def test_changed_by_job_and_revised_replay_as_listed(admin_client):
    first, second, _ = imported(3, start=50)
    job = finished_job()
    generated(first, job, alt_text="A boat")
    generated(second, None, alt_text="A car")
    for query in ("revised=yes", "revised=no", f"job={job.pk}", "job=999", "job=-1"):
        response = admin_client.get(f"{CHANGELIST}?{query}")
        listed = set(response.context["cl"].queryset.values_list("pk", flat=True))
        assert set(library_filters.replay(query).values_list("pk", flat=True)) == listed, query


def test_a_large_job_or_review_queue_selects_the_same_images(monkeypatch):
    first, second, _ = imported(3, start=60)
    job = finished_job()
    generated(first, job, alt_text="A boat")
    generated(second, job, alt_text="A car")
    queries = (f"job={job.pk}", "needs_review=yes", "needs_review=no")
    few = {
        query: set(library_filters.replay(query).values_list("pk", flat=True)) for query in queries
    }
    monkeypatch.setattr(library_filters, "FEW", 0)  # every job and queue is "large"
    many = {
        query: set(library_filters.replay(query).values_list("pk", flat=True)) for query in queries
    }
    assert many == few
    assert few[f"job={job.pk}"] == {first.pk, second.pk}


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("", "all images"),
        ("alt_text_missing=yes", "all images missing alt text"),
        ("alt_text_missing=yes&q=dog", "all images missing alt text, matching “dog”"),
        ("alt_text_source__exact=ai", "all images alt text from AI"),
        ("q=do", "all images"),
        (
            "alt_text_missing=yes&q=a+%22red+dog%22+x",
            'all images missing alt text, matching “"red dog"”',
        ),
        ("job=12&o=1", "all images changed by job #12"),
    ],
)
def test_a_scope_reads_in_words(query, words):
    assert library_filters.describe(query) == words


@pytest.mark.parametrize(
    "query",
    ["no_such_field__gt=1", "alt_text_missing=maybe", "job=abc", "alt_text_source__exact=x"],
)
def test_a_filter_the_library_does_not_have_is_refused(query):
    with pytest.raises(library_filters.UnknownFilter):
        library_filters.replay(query)
