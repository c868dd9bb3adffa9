import csv
import json
from contextlib import ExitStack

from django.core.management.base import BaseCommand

from mediaopt.library.fields import FIELDS, source_field
from mediaopt.library.models import MediaAsset

COLUMNS = [
    "id",
    "original_name",
    *FIELDS,
    *(source_field(name) for name in FIELDS),
    "is_decorative",
]


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
                writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
            else:
                handle.write(json.dumps(list(rows), indent=2, ensure_ascii=False) + "\n")
