"""The image's page loads the compact AI status line after it has rendered, as the list does."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.metadata.admin.test_media import add_asset, change_url

pytestmark = pytest.mark.django_db


def test_the_image_page_loads_the_status_line_from_the_staff_only_url(admin_client, settings):
    settings.OPENAI_API_KEY = ""
    page = admin_client.get(change_url(add_asset())).content.decode()
    url = reverse("mediaopt_ai_status")

    assert f'hx-get="{url}" hx-trigger="load"' in page
    line = admin_client.get(url).content.decode()
    assert "mediaopt-status-line" in line
    assert "Heuristic only: no OpenAI key is configured." in line
