"""``manage.py restore_metadata REVISION_ID [--fields ...]``: take back a revision's values.

Writes one new revision (kind "restore"); each restored field takes back its source.
``--dry-run`` shows what would change and writes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mediaopt.library.fields import EDITABLE_FIELDS, FIELD_LABELS
from metadata import revisions, undo_plan
from metadata.models import MetadataRevision


def _fields(raw: str) -> list[str]:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [name for name in names if name not in EDITABLE_FIELDS]
    if unknown or not names:
        raise CommandError(
            f"--fields: unknown {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(EDITABLE_FIELDS)}."
        )
    return names


class Command(BaseCommand):
    help = (
        "Restore an image's metadata from one of its revisions (ids: metadata_history), "
        "all fields or --fields, as a new revision."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("revision_id", type=int, help="The revision to take values from.")
        parser.add_argument(
            "--fields",
            type=_fields,
            help=f"Comma-separated, from {', '.join(EDITABLE_FIELDS)} (default: all).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would change; write nothing."
        )
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        revision = (
            MetadataRevision.objects.select_related("asset")
            .filter(pk=options["revision_id"])
            .first()
        )
        if revision is None:
            raise CommandError(f"No revision #{options['revision_id']}.")
        asset = revision.asset
        chosen = options["fields"] or list(EDITABLE_FIELDS)
        changes = [
            {
                "field": name,
                "from": undo_plan.field_state(asset, name),
                "to": undo_plan.field_state(revision, name),
            }
            for name in EDITABLE_FIELDS
            if name in chosen
            and undo_plan.field_state(asset, name) != undo_plan.field_state(revision, name)
        ]
        report: dict[str, Any] = {
            "asset": asset.pk,
            "revision": revision.pk,
            "dry_run": options["dry_run"],
            "changes": changes,
            "new_revision": None,
        }
        if changes and not options["dry_run"]:
            try:
                written = revisions.restore(
                    revision=revision,
                    fields=chosen,
                    based_on_revision_id=asset.current_revision_id,
                )
            except revisions.StaleRevision as error:
                raise CommandError(f"{error} Nothing was restored; run it again.") from error
            report["new_revision"] = written.pk if written else None
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, ensure_ascii=False, default=list))
            return
        if not changes:
            self.stdout.write(
                f"Image #{asset.pk} already has these values of revision "
                f"{revision.number}; nothing to restore."
            )
            return
        for change in changes:
            before, after = change["from"][0], change["to"][0]
            self.stdout.write(f"  {FIELD_LABELS[change['field']]}: {before!r} -> {after!r}")
        if options["dry_run"]:
            self.stdout.write(f"Dry run: {len(changes)} field(s) would be restored.")
        else:
            self.stdout.write(
                f"Restored {len(changes)} field(s) of image #{asset.pk} from revision "
                f"{revision.number} (new revision id {report['new_revision']})."
            )
