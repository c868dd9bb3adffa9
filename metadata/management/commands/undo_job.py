"""``manage.py undo_job JOB_ID``: give every image a job changed its values from before it.

``--dry-run`` lists, image by image, what would be restored and the conflicts (fields
changed again after the job, kept unless ``--override``), streaming the whole job. Otherwise
an ``undo`` job is queued (``--wait`` follows it, ``--inline`` works it here). It never
calls a provider and never costs credits. Exit status as regenerate_metadata's.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser

from metadata import progress, terminal, undo, undo_plan
from metadata.models import RegenerationJob


class Command(terminal.TerminalCommand):
    help = (
        "Undo a job: every image it changed gets its values from before it, except fields "
        "changed again since (conflicts), unless --override. --dry-run shows what would "
        "change and the conflicts. Exit status: 0 done, 2 some failed, 3 paused or cancelled."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job_id", type=int, help="The job to undo.")
        parser.add_argument(
            "--override",
            action="store_true",
            help="Also restore fields changed after the job (conflicts).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would change; write nothing."
        )
        follow = parser.add_mutually_exclusive_group()
        follow.add_argument(
            "--wait", action="store_true", help="Follow the undo job until it ends."
        )
        follow.add_argument(
            "--inline", action="store_true", help="Work the undo job in this process."
        )
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = options["json"]
        job = RegenerationJob.objects.filter(pk=options["job_id"]).first()
        if job is None:
            raise CommandError(f"No job #{options['job_id']}.")
        if options["dry_run"]:
            self.dry_run(job, override=options["override"])
            return
        try:
            started = undo.start(
                job=job, override=options["override"], queue_it=not options["inline"]
            )
        except undo.CannotUndo as error:
            raise CommandError(str(error)) from error
        undo_job = started.job
        show_bar = not self.as_json and options.get("verbosity", 1) > 0
        if options["inline"]:
            terminal.work_inline(undo_job, stream=self.bar_stream(), show_bar=show_bar)
        elif options["wait"]:
            terminal.follow(undo_job, stream=self.bar_stream(), show_bar=show_bar)
        undo_job.refresh_from_db()
        summary = progress.job_summary(undo_job, failures_shown=None)
        outcome = undo.result(undo_job, limit=None)
        report = {
            **terminal.summary_dict(summary),
            "undo_of": job.pk,
            "busy_left_out": started.busy_count,
            "restored": outcome.restored,
            "conflicts": [{"id": item.asset_id, "fields": item.conflicts} for item in outcome.kept],
        }
        p = summary.progress
        lines = [
            f"Undo job #{undo_job.pk} of job #{job.pk} {undo_job.get_state_display().lower()}: "
            f"{p.done} of {p.total} image(s) done, {outcome.restored} restored."
        ]
        if started.busy_count:
            lines.append(
                f"{started.busy_count} image(s) were busy in another job and left out; "
                "undo the job again later to reach them."
            )
        verb = "replaced" if options["override"] else "kept"
        lines += [
            f"  image #{item.asset_id}: {verb} {', '.join(item.conflicts)} (changed after the job)"
            for item in outcome.kept
        ]
        if undo_job.state in {"queued", "running"}:
            lines.append(f"It runs on the {undo_job.queue} cluster (--wait follows it).")
        self.say(report, "\n".join(lines))
        status = terminal.exit_status(summary)
        if status:
            sys.exit(status)

    def dry_run(self, job: RegenerationJob, *, override: bool) -> None:
        """Every image's plan, streamed; nothing is written."""
        reason = undo.refusal(job)
        images, restoring, conflicting = [], 0, 0
        lines = []
        for plan in undo_plan.undo_plans(job_id=job.pk, override=override):
            entry = {
                "id": plan.asset_id,
                "restore": list(plan.restore),
                "conflicts": list(plan.conflicts),
                "unavailable": plan.unavailable,
            }
            images.append(entry)
            restoring += bool(plan.restore)
            conflicting += bool(plan.conflicts)
            if not self.as_json:
                text = f"  image #{plan.asset_id}: restore {', '.join(plan.restore) or 'nothing'}"
                if plan.conflicts:
                    verb = "override" if override else "keep"
                    text += f"; {verb} {', '.join(plan.conflicts)} (changed after the job)"
                if plan.unavailable:
                    text += f"; {plan.unavailable}"
                lines.append(text)
        report = {
            "dry_run": True,
            "job": job.pk,
            "refused": reason,
            "images": len(images),
            "would_restore": restoring,
            "with_conflicts": conflicting,
            "override": override,
            "plans": images,
        }
        head = (
            f"Dry run: job #{job.pk} changed {len(images)} image(s); {restoring} would get "
            f"values back, {conflicting} have fields changed since"
            + (" (overridden)." if override else " (kept).")
        )
        if reason:
            head += f"\nIt cannot be undone now: {reason}"
        self.say(report, "\n".join([head, *lines]))

    def say(self, report: dict[str, Any], text: str) -> None:
        self.stdout.write(
            json.dumps(report, indent=2, ensure_ascii=False) if self.as_json else text
        )
