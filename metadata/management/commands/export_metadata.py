import csv
import json
from contextlib import ExitStack

from django.core.management.base import BaseCommand

from mediaopt.library.fields import FIELDS, source_field
from mediaopt.library.models import MediaAsset

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

COLUMNS = [
    "id",
    "original_name",
    *FIELDS,
    *(source_field(name) for name in FIELDS),
    "is_decorative",
]


def neutralise_formula(value: object) -> object:
    """A text cell a spreadsheet would execute, prefixed with ' so it is shown as text."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_row(row: dict) -> dict:
    return {key: neutralise_formula(value) for key, value in row.items()}


class Command(BaseCommand):
    help = "Write every image's metadata and its sources as CSV or JSON."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=["csv", "json"], default="csv")
        parser.add_argument("--output", "-o", help="A file to write (default: standard output).")

    def handle(self, *args, format: str, output: str | None, **options):
        # Streamed in chunks: a library of 100,000 images never sits in memory at once.
        rows = MediaAsset.objects.order_by("pk").values(*COLUMNS).iterator(chunk_size=2000)
        with ExitStack() as stack:
            handle = (
                stack.enter_context(open(output, "w", newline="", encoding="utf-8"))
                if output
                else self.stdout
            )
            if format == "csv":
                # Every text quoted: a bare CR inside a cell would otherwise end the row.
                writer = csv.DictWriter(
                    handle,
                    fieldnames=COLUMNS,
                    lineterminator="\n",
                    quoting=csv.QUOTE_NONNUMERIC,
                )
                writer.writeheader()
                writer.writerows(csv_row(row) for row in rows)
            else:
                handle.write(json.dumps(list(rows), indent=2, ensure_ascii=False) + "\n")
