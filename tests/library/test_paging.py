"""The library list's count stops at 10,000: above it the page says "more than 10,000"
and its links end in "…"; at or below it, the exact number as before."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from mediaopt.library.models import MediaAsset
from mediaopt.library.paging import COUNT_CAP, CappedPaginator
from tests import factories

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:mediaopt_mediaasset_changelist")


def test_above_the_cap_the_list_says_more_than_10000(admin_client):
    factories.bare_assets(COUNT_CAP + 1)
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    paginator = response.context["cl"].paginator
    assert paginator.capped and paginator.count == COUNT_CAP + 1
    page = response.content.decode()
    assert '<span class="mediaopt-capped-count">more than 10,000 images</span>' in page
    assert "Select all images (more than 10,000)" in page
    assert f"{COUNT_CAP + 1} images" not in page
    # The links: the first pages, then "…" where a last page nobody counted would be.
    assert list(paginator.get_elided_page_range(1)) == [1, 2, 3, 4, "…"]
    assert list(paginator.get_elided_page_range(50)) == [1, 2, "…", *range(47, 54), "…"]
    assert 'href="?p=101"' not in page

    searched = admin_client.get(CHANGELIST, {"q": "photo"}).content.decode()
    assert "more than 10,000 results" in searched


def test_pages_past_the_cap_stay_reachable_by_number(admin_client):
    assets = factories.bare_assets(COUNT_CAP + 1)
    # The last page of 100: the oldest image, reached although the count stopped.
    response = admin_client.get(CHANGELIST, {"p": 101})
    assert response.status_code == 200
    assert [a.pk for a in response.context["cl"].result_list] == [assets[0].pk]


def test_at_the_cap_the_count_is_exact(admin_client):
    factories.bare_assets(COUNT_CAP)
    response = admin_client.get(CHANGELIST)
    paginator = response.context["cl"].paginator
    assert not paginator.capped and paginator.count == COUNT_CAP
    page = response.content.decode()
    assert f"{COUNT_CAP} images" in page and "more than" not in page
    assert list(paginator.get_elided_page_range(1))[-1] == 100


def test_the_count_reads_at_most_cap_plus_one_rows():
    factories.bare_assets(30)
    paginator = CappedPaginator(MediaAsset.objects.all(), 10)
    paginator.cap = 20
    with CaptureQueriesContext(connection) as captured:
        assert paginator.count == 21
    (query,) = captured.captured_queries
    assert "LIMIT 21" in query["sql"] and "ORDER BY" not in query["sql"]
    assert paginator.shown_count == "more than 20"
    assert [a.pk for a in paginator.page(3).object_list] == list(
        MediaAsset.objects.values_list("pk", flat=True)[20:30]
    )
