"""review_metadata: --list, --approve-clean with --dry-run and --json, --approve, --reject."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from metadata.models import Proposal, ProposalState
from tests.metadata.test_review import LENGTH, propose
from tests.revision_builders import finished_job, imported

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("review_metadata", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def states() -> dict[int, str]:
    return dict(Proposal.objects.values_list("pk", "state"))


def test_list_shows_what_waits_with_findings():
    a, b = imported(2)
    clean = propose(a, alt_text="Clean")
    flagged = propose(b, alt_text="Flagged", findings=[LENGTH])
    out, err = run("--list")
    assert f"#{clean.pk} " in out and "no findings" in out
    assert f"#{flagged.pk} " in out and "alt.length" in out
    assert "2 shown of 2 waiting" in err
    listed = json.loads(run("--list", "--json")[0])
    assert [row["id"] for row in listed] == [clean.pk, flagged.pk]
    assert listed[1]["fields"]["alt_text"] == {"current": "", "proposed": "Flagged"}


def test_approve_clean_dry_run_then_for_real():
    job = finished_job()
    a, b = imported(2)
    clean = propose(a, job, alt_text="Clean")
    flagged = propose(b, job, alt_text="Flagged", findings=[LENGTH])
    dry = json.loads(run("--job", str(job.pk), "--approve-clean", "--dry-run", "--json")[0])
    assert (dry["approved"], dry["with_findings"], dry["dry_run"]) == (1, 1, True)
    assert states()[clean.pk] == ProposalState.PENDING
    out, _ = run("--job", str(job.pk), "--approve-clean")
    assert "Approved 1 without findings; 1 with findings" in out
    assert states() == {clean.pk: ProposalState.APPROVED, flagged.pk: ProposalState.PENDING}


def test_approve_clean_needs_a_job():
    with pytest.raises(CommandError):
        run("--approve-clean")


def test_approve_and_reject_by_ids():
    a, b = imported(2)
    first, second = propose(a, alt_text="First"), propose(b, alt_text="Second")
    assert "Approved 1" in run("--approve", str(first.pk))[0]
    out, _ = run("--reject", f"{second.pk},{first.pk}", "--reason", "Off topic")
    assert "Rejected 1; 1 not waiting" in out
    second.refresh_from_db()
    assert (second.state, second.note) == (ProposalState.REJECTED, "Off topic")
    a.refresh_from_db()
    assert a.alt_text == "First"
    with pytest.raises(CommandError):
        run("--approve", "1,x")
