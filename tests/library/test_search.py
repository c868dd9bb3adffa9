"""The library's search through its index (FTS5 trigrams on SQLite, pg_trgm on
PostgreSQL) finds exactly what the plain LIKE over the five fields finds."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Q
from django.utils.text import smart_split, unescape_string_literal

from mediaopt.library import search
from mediaopt.library.models import SEARCH_FIELDS, MediaAsset, search_words
from tests import factories

pytestmark = pytest.mark.django_db

TEXTS = [
    {"alt_text": "A red dog in a park", "title": "Dog show"},
    {"alt_text": "Un café en Provence", "keywords": "café, été"},
    {"alt_text": "CAFÉ SIGN ON A WALL", "caption": "Straße bei Nacht"},
    {"alt_text": "Ein Hund läuft", "title": "ÉLAN"},
    {"alt_text": "50% off, under_score", "keywords": "sale"},
    {"alt_text": 'He said "hello"', "caption": "it's fine"},
    {"alt_text": "Tokyo 東京 at night", "keywords": "city, 東京"},
    {"alt_text": "", "title": "Kiwi"},
]

SEARCHES = [
    "dog", "DOG", "Dog show", "red dog", '"red dog"', '"dog red"', "do", "a", "x", "é",
    "café", "CAFÉ", "Café", "cafe", "été", "straße", "STRASSE", "élan", "ÉLAN", "hund läuft",
    "50%", "%", "_", "under_score", "hello", '"hello"', "it's", "東京", "東", "kiwi",
    "photo-3", "photo", "jpg", "nothing-like-this", "  ", "", "r_s", '"東京 at"', "do dog",
]  # fmt: skip


def old_search(text: str):
    """The search before its index: every term in one of the fields, icontains (terms
    under three characters left out, as the search leaves them: no index finds them)."""
    queryset = MediaAsset.objects.all()
    for term in smart_split(text):
        if term.startswith(('"', "'")) and term[0] == term[-1]:
            term = unescape_string_literal(term)
        if len(term) < search.MIN_TERM:
            continue
        any_field = Q()
        for name in SEARCH_FIELDS:
            any_field |= Q(**{f"{name}__icontains": term})
        queryset = queryset.filter(any_field)
    return queryset


@pytest.fixture
def library():
    for start, fields in enumerate(TEXTS):
        factories.bare_assets(1, start=start, **fields)


@pytest.mark.parametrize("text", SEARCHES)
def test_the_indexed_search_finds_what_the_plain_like_finds(library, text):
    found = set(MediaAsset.objects.search(text).values_list("pk", flat=True))
    assert found == set(old_search(text).values_list("pk", flat=True))


@pytest.mark.parametrize("text", ["dog", "red dog", "café", "東京", "do"])
def test_a_common_term_walks_the_list_and_finds_the_same(library, monkeypatch, text):
    expected = set(old_search(text).values_list("pk", flat=True))
    monkeypatch.setattr(search, "SELECTIVE", 0)  # every match is "common"
    queryset = MediaAsset.objects.search(text).order_by("-created_at")
    assert search.TABLE not in str(queryset.query)
    assert set(queryset.values_list("pk", flat=True)) == expected
    # The count reads the index (the narrowing survives the list's later clones).
    counted = queryset.for_count()
    if connection.vendor == "sqlite" and len(text) >= search.MIN_TERM:
        assert search.TABLE in str(counted.query)
    assert set(counted.values_list("pk", flat=True)) == expected


def test_the_searches_find_something_to_compare():
    # The comparison above means something only if most searches find images.
    factories.bare_assets(1, start=0, **TEXTS[0])
    assert MediaAsset.objects.search("red dog").count() == 1
    assert MediaAsset.objects.search("cat").count() == 0


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the FTS5 table is SQLite's")
def test_on_sqlite_terms_of_three_characters_go_through_the_fts_table(library):
    assert search.trigram_available()
    assert search.TABLE in str(MediaAsset.objects.search("dog").query)
    assert search.TABLE in str(MediaAsset.objects.search("do dog").query)


@pytest.mark.parametrize("text", ["do", "a", "東京", '"é"', "%", "x y"])
def test_a_search_of_only_short_words_selects_the_library_without_a_scan(library, text):
    """No index finds a term under three characters (no trigram, here or in pg_trgm): its
    LIKE would read the whole library when little matches. The search leaves it out."""
    assert search_words(text) == ([], text.split())
    queryset = MediaAsset.objects.search(text)
    assert "LIKE" not in str(queryset.query).upper()
    assert queryset.count() == len(TEXTS)


def test_short_words_beside_a_long_one_are_left_out():
    factories.bare_assets(1, start=0, alt_text="A red dog", title="Dog 5")
    factories.bare_assets(1, start=1, alt_text="A dog", title="Dog 6")
    assert search_words("a \"red dog\" 5 'ok'") == (['"red dog"'], ["a", "5", "'ok'"])
    assert MediaAsset.objects.search("dog 5").count() == 2
    assert str(MediaAsset.objects.search("dog 5").query) == str(
        MediaAsset.objects.search("dog").query
    )


def test_the_index_follows_inserts_updates_and_deletes(library):
    assets = factories.bare_assets(2, start=100, alt_text="A grey heron")
    assert MediaAsset.objects.search("heron").count() == 2
    MediaAsset.objects.filter(pk=assets[0].pk).update(alt_text="A white egret")
    assert set(MediaAsset.objects.search("heron").values_list("pk", flat=True)) == {assets[1].pk}
    assert set(MediaAsset.objects.search("egret").values_list("pk", flat=True)) == {assets[0].pk}
    asset = MediaAsset.objects.get(pk=assets[1].pk)
    asset.keywords = "bird, lake"
    asset.save()
    assert list(MediaAsset.objects.search("lake").values_list("pk", flat=True)) == [asset.pk]
    MediaAsset.objects.filter(pk=assets[0].pk).delete()
    assert MediaAsset.objects.search("egret").count() == 0
    # Writes to other columns leave the index as it was.
    MediaAsset.objects.filter(pk=asset.pk).update(width=99)
    assert MediaAsset.objects.search("heron lake").count() == 1


def test_a_quote_inside_a_term_is_an_fts_string_not_syntax():
    assert search.phrase('say "hi"') == '"say ""hi"""'
