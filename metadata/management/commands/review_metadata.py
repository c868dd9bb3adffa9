"""What waits for review, and decisions on it, from the shell (metadata/review.py)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from metadata import review


def _ids(raw: str) -> list[int]:
    try:
        return [int(part) for part in raw.replace(" ", "").split(",") if part]
    except ValueError as error:
        raise CommandError(f"IDS must be numbers separated by commas, not {raw!r}.") from error


class Command(BaseCommand):
    help = (
        "List the proposals waiting for review (--list), approve those of a job without "
        "findings (--job N --approve-clean), or approve or reject proposals by id."
    )

    def add_arguments(self, parser):
        actions = parser.add_mutually_exclusive_group(required=True)
        actions.add_argument("--list", action="store_true", help="What waits, with findings.")
        actions.add_argument(
            "--approve-clean", action="store_true", help="Approve every one without findings."
        )
        actions.add_argument("--approve", metavar="IDS", help="Approve these (1,2,3).")
        actions.add_argument("--reject", metavar="IDS", help="Reject these (1,2,3).")
        parser.add_argument("--job", type=int, help="Only the proposals of this job.")
        parser.add_argument("--reason", default="", help="Why they were rejected.")
        parser.add_argument("--dry-run", action="store_true", help="Decide nothing; say what.")
        parser.add_argument("--limit", type=int, default=100, help="--list shows this many.")
        parser.add_argument("--json", action="store_true", help="JSON on standard output.")

    def handle(self, *args, **options):
        if options["list"]:
            return self.list_waiting(options)
        if options["approve_clean"]:
            if options["job"] is None:
                raise CommandError("--approve-clean needs --job N.")
            done = review.approve_clean(
                actor=None, job_id=options["job"], dry_run=options["dry_run"]
            )
            verb = "Would approve" if options["dry_run"] else "Approved"
            self.report(
                done,
                f"{verb} {done.approved} without findings; {done.with_findings} with findings "
                f"and {done.outdated} outdated wait for a person.",
                options,
            )
        elif options["approve"]:
            done = review.approve_many(ids=_ids(options["approve"]), actor=None)
            self.report(done, f"Approved {done.approved}; {done.not_pending} not waiting.", options)
        else:
            done = review.reject_many(
                ids=_ids(options["reject"]), actor=None, note=options["reason"]
            )
            self.report(done, f"Rejected {done.rejected}; {done.not_pending} not waiting.", options)

    def report(self, done: review.Decisions, line: str, options) -> None:
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "dry_run": options["dry_run"],
                        "approved": done.approved,
                        "rejected": done.rejected,
                        "not_pending": done.not_pending,
                        "outdated": done.outdated,
                        "with_findings": done.with_findings,
                        "ids": list(done.ids),
                    }
                )
            )
        else:
            self.stdout.write(line)

    def list_waiting(self, options) -> None:
        job_id, limit = options["job"], options["limit"]
        filters = review.Filters(job_id=job_id)
        rows, after = [], None
        while len(rows) < limit:
            page = review.review_page(filters=filters, after_id=after)
            rows.extend(page.cards)
            if page.next_after_id is None:
                break
            after = page.next_after_id
        rows = rows[:limit]
        if options["json"]:
            self.stdout.write(json.dumps([self.as_dict(card) for card in rows], ensure_ascii=False))
            return
        for card in rows:
            proposal = card.proposal
            codes = ", ".join(f.get("code", "") for f in proposal.findings) or "no findings"
            outdated = "; outdated" if card.outdated else ""
            self.stdout.write(
                f"#{proposal.pk} image {proposal.asset_id} {proposal.asset.original_name}: "
                f"{', '.join(f.name for f in card.fields)} ({codes}{outdated})"
            )
        waiting = review.waiting_count(job_id=job_id)
        more = f"{review.COUNT_CAP}+" if waiting > review.COUNT_CAP else str(waiting)
        self.stderr.write(f"{len(rows)} shown of {more} waiting.")

    @staticmethod
    def as_dict(card: review.Card) -> dict:
        proposal = card.proposal
        return {
            "id": proposal.pk,
            "asset": proposal.asset_id,
            "job": proposal.job_id,
            "reason": proposal.reason,
            "model": proposal.model,
            "outdated": card.outdated,
            "fields": {f.name: {"current": f.current, "proposed": f.proposed} for f in card.fields},
            "findings": proposal.findings,
        }
