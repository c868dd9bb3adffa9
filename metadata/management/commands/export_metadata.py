import csv
import json
from contextlib import ExitStack

from django.core.management.base import BaseCommand
from django.db.models import Exists, OuterRef

from mediaopt.library.fields import FIELDS, source_field
from mediaopt.library.models import MediaAsset
from metadata.models import Proposal

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

COLUMNS = [
    "id",
    "original_name",
    *FIELDS,
    *(source_field(name) for name in FIELDS),
    "is_decorative",
]
# The quality checks' findings on the current values, and whether a proposal waits.
FINDINGS = "current_revision__findings"
EXTRA_COLUMNS = ["findings", "needs_review"]


def neutralise_formula(value: object) -> object:
    """A text cell a spreadsheet would execute, prefixed with ' so it is shown as text."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_row(row: dict) -> dict:
    flat = {**row, "findings": "; ".join(f["code"] for f in row["findings"])}
    return {key: neutralise_formula(value) for key, value in flat.items()}


def _rows():
    # Streamed in chunks: a library of 100,000 images never sits in memory at once.
    pending = Proposal.objects.pending().filter(asset=OuterRef("pk"))
    rows = (
        MediaAsset.objects.order_by("pk")
        .annotate(needs_review=Exists(pending))
        .values(*COLUMNS, FINDINGS, "needs_review")
        .iterator(chunk_size=2000)
    )
    for row in rows:
        row["findings"] = row.pop(FINDINGS) or []
        yield row


class Command(BaseCommand):
    help = "Write every image's metadata and its sources as CSV or JSON."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=["csv", "json"], default="csv")
        parser.add_argument("--output", "-o", help="A file to write (default: standard output).")

    def handle(self, *args, format: str, output: str | None, **options):
        rows = _rows()
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
                    fieldnames=[*COLUMNS, *EXTRA_COLUMNS],
                    lineterminator="\n",
                    quoting=csv.QUOTE_NONNUMERIC,
                )
                writer.writeheader()
                writer.writerows(csv_row(row) for row in rows)
            else:
                # One object at a time, so memory stays flat whatever the library's size.
                handle.write("[")
                for index, row in enumerate(rows):
                    handle.write(("," if index else "") + "\n  ")
                    handle.write(json.dumps(row, ensure_ascii=False))
                handle.write("\n]\n")
