"""``manage.py import_media PATH...``: import files now, write their metadata in an import job.

By default the job goes to the bulk cluster and the command ends; ``--wait`` follows it
with a progress bar; ``--inline`` works it in this process, with no cluster at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from tqdm import tqdm

from mediaopt.library import filenames, ingest
from metadata import intake, jobs, progress, terminal
from metadata.models import JobItem, JobKind, RegenerationJob

POLL_SECONDS = terminal.POLL_SECONDS


def files_under(paths: list[str]) -> list[Path]:
    """Files named, and every file below the folders named, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"{filenames.printable(raw)}: no such file or folder")
    return found


class Command(terminal.TerminalCommand):
    help = (
        "Import image files or folders (recursively); their metadata is written by an "
        "import job on the bulk cluster (--wait follows it, --inline needs no cluster)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", help="Files or folders.")
        parser.add_argument("--no-generate", action="store_true", help="Import only; start no job.")
        follow = parser.add_mutually_exclusive_group()
        follow.add_argument(
            "--wait",
            action="store_true",
            help="Follow the job with a progress bar until it completes or pauses "
            "(needs the clusters running, e.g. scripts/run).",
        )
        follow.add_argument(
            "--inline",
            action="store_true",
            help="Work the job in this process, without a cluster.",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print imported, duplicates and rejected (and, with --wait or --inline, "
            "each image's result) as JSON.",
        )

    def handle(
        self,
        *args: Any,
        paths: list[str],
        no_generate: bool,
        wait: bool,
        inline: bool,
        json: bool,
        **options: Any,
    ) -> None:
        files = files_under(paths)
        show_bar = not json and options.get("verbosity", 1) > 0
        report: dict[str, Any] = {"imported": [], "duplicates": [], "rejected": []}
        for path in tqdm(files, unit="file", disable=not show_bar, file=self.bar_stream()):
            outcome = intake.import_file(source=path, original_name=path.name)
            entry = {**outcome.as_dict(), "path": str(path)}
            key = {ingest.IMPORTED: "imported", ingest.DUPLICATE: "duplicates"}
            report[key.get(outcome.status, "rejected")].append(entry)

        job = None
        if not no_generate:
            job = intake.draft_for_new_assets(
                kind=JobKind.IMPORT, asset_ids=[entry["id"] for entry in report["imported"]]
            )
        if job is not None:
            if inline:
                terminal.work_inline(job, stream=self.bar_stream(), show_bar=show_bar)
            else:
                # Not in a transaction: the runner is sent to the bulk cluster at once.
                jobs.enqueue(job)
                if wait:
                    terminal.follow(
                        job, stream=self.bar_stream(), show_bar=show_bar, poll_seconds=POLL_SECONDS
                    )
            job.refresh_from_db()
            report["job"] = job_summary(job)
            if wait or inline:
                report["items"] = item_results(job)

        if json:
            self.stdout.write(_json_dumps(report))
        else:
            self.print_report(report, followed=wait or inline)

    def print_report(self, report: dict[str, Any], *, followed: bool) -> None:
        """The report for a person at a terminal: names and reasons come from files and
        from models, so every control character in them is written escaped."""
        safe = filenames.printable
        self.stdout.write(
            f"{len(report['imported'])} imported, {len(report['duplicates'])} duplicates, "
            f"{len(report['rejected'])} rejected."
        )
        for entry in report["duplicates"]:
            self.stdout.write(f"  duplicate {safe(entry['path'])}: {safe(entry['reason'])}")
        for entry in report["rejected"]:
            self.stdout.write(
                self.style.WARNING(f"  rejected {safe(entry['path'])}: {safe(entry['reason'])}")
            )
        summary = report.get("job")
        if summary is None:
            return
        if not followed:
            self.stdout.write(
                f"Metadata: import job #{summary['id']} is queued on the bulk cluster "
                "(--wait follows a job, --inline works it here)."
            )
            return
        counts = summary["progress"]
        line = (
            f"Metadata: import job #{summary['id']} {summary['state']}: "
            f"{counts['succeeded']} written, {counts['skipped']} unchanged, "
            f"{counts['failed']} failed."
        )
        if summary["pause_reason"]:
            line += f" Paused: {safe(summary['pause_reason'])}"
        self.stdout.write(line)
        for entry in report["items"]:
            if entry["state"] == "failed":
                self.stdout.write(
                    self.style.WARNING(
                        f"  no metadata for {safe(entry['name'])}: {safe(entry['reason'])}"
                    )
                )


def job_summary(job: RegenerationJob) -> dict[str, Any]:
    counts = progress.progress(job)
    return {
        "id": job.pk,
        "state": job.state,
        "pause_reason": job.pause_reason,
        "progress": counts.counts(),
    }


def item_results(job: RegenerationJob) -> list[dict[str, Any]]:
    """Each image's result: succeeded, skipped or failed, with the reason."""
    rows = JobItem.objects.filter(job=job).values_list(
        "asset_id", "asset__original_name", "state", "error"
    )
    return [
        {"id": asset_id, "name": name, "state": state, "reason": error}
        for asset_id, name, state, error in rows
    ]


def _json_dumps(value: Any) -> str:
    # json escapes C0 controls only; C1 and bidi controls would reach the terminal raw.
    return filenames.json_safe(json.dumps(value, indent=2, ensure_ascii=False))
