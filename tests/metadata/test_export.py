"""CSV export neutralises spreadsheet formulas; JSON export keeps values as they are."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import call_command

from tests import factories

pytestmark = pytest.mark.django_db


def export(fmt: str) -> str:
    out = io.StringIO()
    call_command("export_metadata", "--format", fmt, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (
            '=HYPERLINK("http://spam.example","Click")',
            '\'=HYPERLINK("http://spam.example","Click")',
        ),
        ("+1 555 0100", "'+1 555 0100"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\tTabbed", "'\tTabbed"),
        ("\rReturn", "'\rReturn"),
        ("A dog = happy", "A dog = happy"),
        ("A red kite", "A red kite"),
        ("", ""),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_prefixed(value, cell):
    factories.bare_assets(1, alt_text=value, title=value, keywords=value)
    (row,) = csv.DictReader(io.StringIO(export("csv"), newline=""))
    assert (row["alt_text"], row["title"], row["keywords"]) == (cell, cell, cell)


def test_a_formula_in_the_file_name_is_neutralised_too():
    (asset,) = factories.bare_assets(1)
    asset.original_name = "=cmd|' /C calc'!A0.jpg"
    asset.save(update_fields=["original_name"])
    (row,) = csv.DictReader(io.StringIO(export("csv"), newline=""))
    assert row["original_name"] == "'=cmd|' /C calc'!A0.jpg"
    assert row["id"] == str(asset.pk)


def test_json_export_keeps_the_value_as_stored():
    factories.bare_assets(1, alt_text="=1+1")
    (item,) = json.loads(export("json"))
    assert item["alt_text"] == "=1+1"
