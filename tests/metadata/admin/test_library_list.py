"""The library list's queries do not grow with the library: the first page, each filter
and a search make as many queries at 10,000 images as at 10."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from tests import factories

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:mediaopt_mediaasset_changelist")

QUERIES = [
    "",
    "alt_text_missing=yes",
    "alt_text_missing=no",
    "alt_text_source__exact=ai",
    "alt_text_source__exact=heuristic",
    "is_decorative__exact=1",
    "is_decorative__exact=0",
    "revised=yes",
    "revised=no",
    "job=1",
    "needs_review=yes",
    "needs_review=no",
    "ai_language=other",
    "q=dog",
    "q=red+dog",
    "q=do",
    "q=photo-1",
    "alt_text_missing=yes&q=photo",
]


def library(n: int, *, start: int) -> None:
    third = n // 3
    factories.bare_assets(third, start=start)
    factories.bare_assets(
        third, start=start + third, alt_text="A red dog", alt_text_source=Source.AI
    )
    factories.bare_assets(n - 2 * third, start=start + 2 * third, is_decorative=True)


def query_counts(client) -> dict[str, int]:
    counts = {}
    for query in QUERIES:
        client.get(f"{CHANGELIST}?{query}")  # once first: the settings row, caches
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"{CHANGELIST}?{query}")
        assert response.status_code == 200, query
        counts[query] = len(captured.captured_queries)
    return counts


def test_the_list_makes_as_many_queries_at_10000_images_as_at_10(admin_client):
    library(10, start=0)
    few = query_counts(admin_client)
    library(9_990, start=10)
    many = query_counts(admin_client)
    assert many == few
    # Every page read rows: the comparison is of working pages, not of empty ones.
    assert admin_client.get(f"{CHANGELIST}?q=dog").context["cl"].result_count > 100


def test_words_too_short_to_search_are_left_out_and_the_list_says_so(admin_client):
    library(9, start=0)
    page = admin_client.get(f"{CHANGELIST}?q=do")
    text = page.content.decode()
    assert set(page.context["cl"].queryset.values_list("pk", flat=True)) == set(
        MediaAsset.objects.values_list("pk", flat=True)
    )
    assert "Search words need at least 3 characters: “do” left out, showing every image." in text
    # Beside a word it can search, the short ones are left out of it.
    page = admin_client.get(f"{CHANGELIST}?q=a+red+dog+x")
    assert page.context["cl"].queryset.count() == 3
    assert (
        "Search words need at least 3 characters: “a”, “x” left out, showing the images "
        "matching “red dog”." in page.content.decode()
    )
    # The search box says the rule before anyone trips on it.
    assert "Finds every word of 3 characters or more" in text


def test_a_search_of_long_words_says_nothing_about_length(admin_client):
    library(3, start=0)
    text = admin_client.get(f"{CHANGELIST}?q=red+dog").content.decode()
    assert "Search words need" not in text
