"""The library re-checked by today's rules: counts per rule, openers fixed, flat costs."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mediaopt.library.fields import Source
from metadata import quality, relint
from metadata.models import LintRun, Settings
from tests import factories
from tests.revision_builders import generated, imported

pytestmark = pytest.mark.django_db


def test_counts_per_rule_and_images_with_errors():
    factories.bare_assets(3)  # no alt text at all
    (opener,) = imported(1, start=10)
    generated(opener, alt_text="Image of a red fox asleep in the snow beside a fence")
    (good,) = imported(1, start=20)
    generated(good, alt_text="A red fox asleep in the snow beside a wooden fence")
    run = relint.relint_library()
    assert run.images == 5 and run.finished_at is not None
    assert run.counts["alt.empty"] == 3
    assert run.counts["alt.opener"] == 1
    assert run.with_errors == 3
    assert relint.latest_run() == run


def test_fix_openers_writes_a_revision_that_keeps_the_source():
    (asset,) = imported(1)
    generated(asset, alt_text="Photo of a red fox asleep in the snow beside a fence")
    run = relint.relint_library(fix_openers=True)
    asset.refresh_from_db()
    assert run.fixed == 1
    assert asset.alt_text == "A red fox asleep in the snow beside a fence"
    assert asset.alt_text_source == Source.AI
    assert asset.current_revision.provider == "lint"


def test_the_command_prints_counts_and_json_lines(capsys):
    factories.bare_assets(2)
    call_command("lint_metadata")
    out = capsys.readouterr().out
    assert "2 images checked: 2 with errors" in out and "alt.empty" in out
    call_command("lint_metadata", "--json")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["findings"][0]["code"] for line in lines[:-1]] == ["alt.empty", "alt.empty"]
    assert lines[-1]["counts"] == {"alt.empty": 2}


def test_every_rule_the_lint_can_report_is_documented():
    import inspect
    import re

    source = inspect.getsource(quality)
    emitted = set(re.findall(r'"((?:alt|text|keywords|caption)\.[a-z_]+)"', source))
    assert emitted and emitted <= set(quality.RULES)


def _queries(n: int, start: int) -> int:
    LintRun.objects.all().delete()
    Settings.objects.current()  # made once, not counted
    factories.bare_assets(n, start=start)
    with CaptureQueriesContext(connection) as queries:
        relint.relint_library(batch=1000)
    return len(queries)


def test_queries_stay_a_few_per_batch_from_100_to_10000_images():
    small = _queries(100, 0)
    large = _queries(9_900, 1_000)  # 10,000 in all: ten batches instead of one
    # One query per extra batch of a thousand images, nothing per image.
    assert large - small == 9
