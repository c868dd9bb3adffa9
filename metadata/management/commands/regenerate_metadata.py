"""``manage.py regenerate_metadata``: a bulk job from the command line, and its controls.

Choose images (``--all``, ``--ids``, ``--missing alt_text``), page through them by id
(``--after-id``, ``--limit``: stable while the set shrinks, e.g. as images get alt text),
see what it would cost (``--dry-run``), then queue the job on the bulk cluster, follow it
(``--wait``) or work it here (``--inline``). ``--pause``, ``--resume`` and ``--cancel``
control a job by id.

The exit status tells where the job stands: 0 when every image succeeded or was skipped
(or the job is queued or running), 2 when some failed (or the job could not run), 3 when
it is paused or cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import transaction
from django.db.models import Max, QuerySet

from mediaopt.library.fields import FIELDS
from mediaopt.library.models import MediaAsset
from metadata import bulk, jobs, language, progress, terminal
from metadata.models import (
    JobKind,
    JobQueue,
    JobState,
    RegenerationJob,
    Strategy,
)

EXIT_OK = terminal.EXIT_OK
EXIT_FAILURES = terminal.EXIT_FAILURES
EXIT_STOPPED = terminal.EXIT_STOPPED
POLL_SECONDS = terminal.POLL_SECONDS
MISSING_CHOICES = ("alt_text",)
exit_status = terminal.exit_status


def summary_dict(summary: progress.Summary) -> dict[str, Any]:
    return {**terminal.summary_dict(summary), "credits_spent": summary.credits_spent}


def _field_list(raw: str) -> tuple[str, ...]:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [name for name in names if name not in FIELDS]
    if unknown or not names:
        raise CommandError(
            f"--fields: unknown {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(FIELDS)}."
        )
    return tuple(name for name in FIELDS if name in names)


def _id_list(raw: str) -> list[int]:
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError as error:
        raise CommandError(f"--ids takes numbers separated by commas, not {raw!r}.") from error


class Command(terminal.TerminalCommand):
    help = (
        "Regenerate images' metadata in a bulk job (queued on the bulk cluster; --wait "
        "follows it, --inline works it here), estimate it (--dry-run), or pause, resume or "
        "cancel a job. Exit status: 0 all succeeded or skipped, 2 some failed, 3 paused or "
        "cancelled."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--all", action="store_true", help="Every image in the library.")
        scope.add_argument("--ids", type=_id_list, help="Image ids, e.g. 1,2,3.")
        scope.add_argument(
            "--missing",
            choices=MISSING_CHOICES,
            help="Images missing this field (alt_text: empty or only guessed, not decorative).",
        )
        control = scope  # a control and a scope exclude each other too
        control.add_argument("--pause", type=int, metavar="JOB", help="Pause a job.")
        control.add_argument("--resume", type=int, metavar="JOB", help="Resume a paused job.")
        control.add_argument("--cancel", type=int, metavar="JOB", help="Cancel a job.")

        parser.add_argument(
            "--fields",
            type=_field_list,
            help=f"Comma-separated, from {', '.join(FIELDS)} (default: the settings' fields).",
        )
        parser.add_argument(
            "--strategy",
            choices=[Strategy.FILL_EMPTY.value, Strategy.OVERWRITE.value],
            help="fill_empty (default: the settings') writes only empty or guessed fields; "
            "overwrite writes every chosen field.",
        )
        parser.add_argument(
            "--force", action="store_true", help="Also replace fields edited by hand."
        )
        parser.add_argument(
            "--language",
            type=_language,
            help="A language tag for the text, e.g. de or pt-BR (default: the settings').",
        )
        parser.add_argument("--focus-keywords", help="Words the text should use where they fit.")
        parser.add_argument(
            "--review",
            action="store_true",
            help="Keep each result for review instead of writing it (review_metadata).",
        )
        parser.add_argument(
            "--limit", type=int, help="At most this many images (the lowest ids first)."
        )
        parser.add_argument(
            "--after-id",
            type=int,
            default=0,
            help="Only images with a larger id: the next page after a --limit run.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Say how many images need a paid call and what it costs; change nothing.",
        )
        follow = parser.add_mutually_exclusive_group()
        follow.add_argument(
            "--wait",
            action="store_true",
            help="Follow the job with a progress bar until it ends or pauses (needs the "
            "clusters running, e.g. scripts/run).",
        )
        follow.add_argument(
            "--inline", action="store_true", help="Work the job in this process, no cluster."
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = options["json"]
        self.show_bar = not self.as_json and options.get("verbosity", 1) > 0
        for control in ("pause", "resume", "cancel"):
            if options[control] is not None:
                self.finish(self.control(control, options[control], wait=options["wait"]))
                return
        if options["inline"] and options["wait"]:
            raise CommandError("--wait and --inline exclude each other.")
        if not (options["all"] or options["ids"] or options["missing"]):
            raise CommandError(
                "Choose images (--all, --ids or --missing) or a job (--pause, --resume, --cancel)."
            )
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be 1 or more.")

        bulk_options = self.bulk_options(options)
        page = self.page(options, bulk_options)
        if options["dry_run"]:
            self.dry_run(page, options, bulk_options)
            return
        job = self.start(page, bulk_options, inline=options["inline"])
        if job is None:
            self.say({"job": None, "state": "nothing to do"}, "No image needs regenerating.")
            return
        if options["inline"]:
            terminal.work_inline(job, stream=self.bar_stream(), show_bar=self.show_bar)
        elif options["wait"]:
            terminal.follow(
                job, stream=self.bar_stream(), show_bar=self.show_bar, poll_seconds=POLL_SECONDS
            )
        job.refresh_from_db()
        self.finish(
            progress.job_summary(job, failures_shown=None),
            page_end=page["last_id"],
            paged=options["limit"] is not None,
        )

    # -- choosing images -----------------------------------------------------------------

    def bulk_options(self, options: dict[str, Any]) -> bulk.BulkOptions:
        chosen = bulk.BulkOptions.defaults()
        if options["fields"]:
            chosen = replace(chosen, fields=options["fields"])
        if options["strategy"]:
            chosen = replace(chosen, strategy=options["strategy"])
        if chosen.strategy not in {Strategy.FILL_EMPTY, Strategy.OVERWRITE}:
            chosen = replace(chosen, strategy=Strategy.FILL_EMPTY)  # per-field: not here
        chosen = replace(chosen, force=options["force"])
        if options["language"]:
            chosen = replace(chosen, language=options["language"])
        if options["focus_keywords"]:
            chosen = replace(chosen, focus_keywords=options["focus_keywords"].strip())
        return replace(chosen, review=options["review"] or chosen.review)

    def page(self, options: dict[str, Any], chosen: bulk.BulkOptions) -> dict[str, Any]:
        """The images to work: in scope, after ``--after-id``, with something to write
        under the options; the first ``--limit`` of them by id."""
        if options["all"]:
            scope, named = MediaAsset.objects.all(), {"named": bulk.ALL}
        elif options["missing"]:
            scope, named = MediaAsset.objects.missing_alt_text(), {"named": bulk.MISSING_ALT_TEXT}
        else:
            scope, named = MediaAsset.objects.filter(pk__in=options["ids"]), {}
        in_scope = scope.filter(pk__gt=options["after_id"])
        wanted: QuerySet = in_scope.filter(bulk.needs_call(chosen)).order_by("pk")
        if options["limit"]:
            ids = list(wanted.values_list("pk", flat=True)[: options["limit"]])
            wanted = MediaAsset.objects.filter(pk__in=ids).order_by("pk")
        return {
            "assets": wanted,
            "in_scope": in_scope,
            "last_id": wanted.aggregate(last=Max("pk"))["last"],
            "scope": {
                **(named or {"ids": options["ids"]}),
                "after_id": options["after_id"],
                "limit": options["limit"],
            },
        }

    def start(
        self, page: dict[str, Any], chosen: bulk.BulkOptions, *, inline: bool
    ) -> RegenerationJob | None:
        """A bulk job with an item per image of the page not busy elsewhere; queued on the
        bulk cluster unless it is to be worked here. None when there is nothing to do."""
        with transaction.atomic():
            job = jobs.create_draft(
                kind=JobKind.BULK,
                queue=JobQueue.BULK,
                scope=page["scope"],
                options=chosen.as_dict(),
            )
            if not jobs.add_items(job=job, assets=page["assets"]):
                transaction.set_rollback(True)
                return None
            if not inline:
                jobs.enqueue(job)
        return job

    def dry_run(
        self, page: dict[str, Any], options: dict[str, Any], chosen: bulk.BulkOptions
    ) -> None:
        """How many images need a paid call, and what they would cost. Changes nothing.

        The confirmation page's preview, so both say the same: when the gate gives no paid
        AI (heuristic only, or refused), nothing is estimated and the run costs nothing.
        """
        look = bulk.preview_assets(assets=page["assets"], options=chosen)
        estimate = look.estimate
        needing = look.needing_call if look.decision.uses_ai else 0
        report = {
            "dry_run": True,
            "in_scope": page["in_scope"].count(),
            "need_paid_call": needing,
            "busy": look.busy,
            "last_id": page["last_id"],
            "mode": look.decision.mode.value,
            "refused": look.refused,
            "estimate": None
            if estimate is None
            else {
                "mode": estimate.mode,
                "enough": estimate.enough,
                "credits_needed": estimate.credits_needed,
                "credits_available": estimate.credits_available,
                "requests": estimate.requests,
                "approx_usd": str(estimate.approx_usd) if estimate.approx_usd else None,
                "summary": estimate.summary,
            },
        }
        if estimate is not None:
            cost = estimate.summary
        elif look.refused:
            cost = "Nothing would run."
        else:
            cost = (
                f"{look.needing_call:,} image(s) would get heuristic metadata: no paid call, "
                "it costs nothing."
            )
        busy = f" ({look.busy:,} more are busy in another job)." if look.busy else "."
        lines = [
            f"Dry run: {report['in_scope']:,} image(s) in scope; {needing:,} need a paid call"
            + busy,
            cost,
        ]
        if report["refused"]:
            lines.append(f"AI is refused now: {report['refused']}")
        if options["limit"] and page["last_id"] is not None:
            lines.append(f"Next page: --after-id {page['last_id']}")
        self.say(report, "\n".join(lines))

    # -- controlling a job ---------------------------------------------------------------

    def control(self, action: str, job_id: int, *, wait: bool) -> progress.Summary:
        job = RegenerationJob.objects.filter(pk=job_id).first()
        if job is None:
            raise CommandError(f"No job #{job_id}.")
        try:
            if action == "pause":
                jobs.pause(job, reason="Paused from the command line.")
            elif action == "resume":
                jobs.resume(job)
            else:
                jobs.cancel(job)
        except jobs.IllegalTransition as error:
            job.refresh_from_db()
            raise CommandError(
                f"Job #{job.pk} is {job.get_state_display().lower()}: it cannot be "
                f"{'paused' if action == 'pause' else action + 'd'}."
            ) from error
        if wait and action == "resume":
            terminal.follow(
                job, stream=self.bar_stream(), show_bar=self.show_bar, poll_seconds=POLL_SECONDS
            )
        job.refresh_from_db()
        return progress.job_summary(job, failures_shown=None)

    # -- reporting -----------------------------------------------------------------------

    def say(self, report: dict[str, Any], text: str) -> None:
        self.stdout.write(
            json.dumps(report, indent=2, ensure_ascii=False) if self.as_json else text
        )

    def finish(
        self, summary: progress.Summary, *, page_end: int | None = None, paged: bool = False
    ) -> None:
        report = summary_dict(summary)
        if page_end is not None:
            report["last_id"] = page_end
        p, job = summary.progress, summary.job
        lines = [
            f"Job #{job.pk} {job.get_state_display().lower()}: {p.done} of {p.total} done — "
            f"{p.succeeded} succeeded, {p.skipped} skipped, {p.failed} failed"
            + (f", {p.cancelled} cancelled" if p.cancelled else "")
            + f"; {summary.credits_spent} credit(s) spent."
        ]
        if job.state == JobState.PAUSED:
            lines.append(f"Paused: {job.pause_reason}")
        if job.state in {JobState.QUEUED, JobState.RUNNING}:
            lines.append("It runs on the bulk cluster (--wait follows a job).")
        lines += [f"  failed: {f.name} (#{f.asset_id}): {f.reason}" for f in summary.failures]
        # Without --limit the run took every image: there is no next page to point to.
        if paged and page_end is not None:
            lines.append(f"Next page: --after-id {page_end}")
        self.say(report, "\n".join(lines))
        status = exit_status(summary)
        if status:
            sys.exit(status)


def _language(value: str) -> str:
    try:
        return language.normalize_tag(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
