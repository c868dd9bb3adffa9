"""manage.py lint_metadata: the whole library re-checked by today's quality rules."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from metadata import relint


class Command(BaseCommand):
    help = (
        "Check every image's current metadata with the quality rules and print the counts "
        "per rule (streamed: constant memory whatever the library's size)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="One JSON object per image with findings, then the counts (JSON lines).",
        )
        parser.add_argument(
            "--fix-openers",
            action="store_true",
            help='Take "Image of ..." openers off alt texts (a new revision each, same source).',
        )

    def handle(self, *args: Any, as_json: bool, fix_openers: bool, **options: Any) -> None:
        def report(found: relint.AssetFindings) -> None:
            if as_json and (found.findings or found.fixed):
                self.stdout.write(
                    _dumps(
                        {
                            "id": found.asset_id,
                            "name": found.name,
                            "findings": found.findings.as_json(),
                            "fixed": found.fixed,
                        }
                    )
                )

        run = relint.relint_library(fix_openers=fix_openers, on_asset=report)
        if as_json:
            self.stdout.write(
                _dumps(
                    {
                        "images": run.images,
                        "with_errors": run.with_errors,
                        "with_warnings": run.with_warnings,
                        "fixed": run.fixed,
                        "counts": run.counts,
                    }
                )
            )
            return
        self.stdout.write(
            f"{run.images:,} images checked: {run.with_errors:,} with errors, "
            f"{run.with_warnings:,} with warnings"
            + (f", {run.fixed:,} openers fixed." if fix_openers else ".")
        )
        for code, count in run.counts.items():
            self.stdout.write(f"  {code:<22} {count:,}")


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
