"""``manage.py metadata_history ASSET_ID``: an image's revisions, newest first, with values.

Each revision's id is what ``restore_metadata`` takes.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mediaopt.library.fields import FIELD_LABELS, FIELDS, source_field
from mediaopt.library.models import MediaAsset
from metadata import history
from metadata.models import MetadataRevision


def revision_dict(revision: MetadataRevision, *, current_id: int | None) -> dict[str, Any]:
    return {
        "id": revision.pk,
        "number": revision.number,
        "current": revision.pk == current_id,
        "kind": revision.kind,
        "description": history.kind_label(revision),
        "created_at": revision.created_at.isoformat(),
        "actor": revision.actor.get_username() if revision.actor else None,
        "job": revision.job_id,
        "parent": revision.parent_id,
        "restored_from": revision.restored_from_id,
        "provider": revision.provider,
        "model": revision.model,
        "changed_fields": revision.changed_fields,
        "values": {
            name: {
                "value": getattr(revision, name),
                "source": getattr(revision, source_field(name)),
            }
            for name in FIELDS
        },
        "is_decorative": revision.is_decorative,
    }


class Command(BaseCommand):
    help = (
        "Show an image's metadata revisions, newest first: id, kind, who or which job, "
        "and every value with its source. Give a revision's id to restore_metadata."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("asset_id", type=int, help="The image's id.")
        parser.add_argument("--limit", type=int, help="Only the newest N revisions.")
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        asset = MediaAsset.objects.filter(pk=options["asset_id"]).first()
        if asset is None:
            raise CommandError(f"No image #{options['asset_id']}.")
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be 1 or more.")
        rows = MetadataRevision.objects.history(asset.pk)
        if options["limit"]:
            rows = rows[: options["limit"]]
        revisions = [revision_dict(r, current_id=asset.current_revision_id) for r in rows]
        if options["json"]:
            report = {"asset": asset.pk, "name": asset.original_name, "revisions": revisions}
            self.stdout.write(json.dumps(report, indent=2, ensure_ascii=False))
            return
        self.stdout.write(
            f"{asset.original_name} (image #{asset.pk}): {len(revisions)} revision(s)"
        )
        for rev in revisions:
            who = rev["actor"] or (f"job #{rev['job']}" if rev["job"] else "system")
            current = "  (current)" if rev["current"] else ""
            changed = ", ".join(rev["changed_fields"]) or "nothing"
            self.stdout.write(
                f"\n#{rev['number']}  id {rev['id']}  {rev['created_at'][:19]}  "
                f"{rev['description']}  by {who}  changed: {changed}{current}"
            )
            for name in FIELDS:
                value = rev["values"][name]
                source = f" [{value['source']}]" if value["source"] else ""
                self.stdout.write(f"  {FIELD_LABELS[name]:<12} {value['value'] or '—'}{source}")
            decorative = "yes" if rev["is_decorative"] else "no"
            self.stdout.write(f"  {FIELD_LABELS['is_decorative']:<12} {decorative}")
