"""The review screen's domain: what waits for a person, one page at a time, each proposal
beside the image's current values; and the decisions taken on many at once.

Plain functions over proposals. Pages are read by key (``after_id``), never by OFFSET or
a COUNT of the whole table, so a page costs the same at 20 or 100,000 proposals. Every
decision goes through proposals.py (the only writer of proposals), one proposal per
transaction, so one that was decided meanwhile does not undo the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString

from mediaopt.library.fields import DECORATIVE, EDITABLE_FIELDS, FIELD_LABELS, FIELDS
from metadata import history, proposals
from metadata.models import Proposal, ProposalReason, Settings
from metadata.providers.prompt import IMAGE_TYPES

PAGE_SIZE = 20
# Approve-all works through what waits in batches of this many, each read with one query.
BATCH_SIZE = 100
# Counts shown on the screen stop here: counting further would cost a scan.
COUNT_CAP = 1000


@dataclass(frozen=True)
class Filters:
    """What the screen narrows the waiting proposals to; empty means any."""

    job_id: int | None = None
    # A finding's code, e.g. "alt.length".
    code: str = ""
    # A field the proposal would change, e.g. "alt_text".
    field: str = ""
    image_type: str = ""
    reason: str = ""

    @property
    def active(self) -> bool:
        return any((self.job_id, self.code, self.field, self.image_type, self.reason))


@dataclass(frozen=True)
class FieldComparison:
    """One field of a proposal: the image's current value beside the proposed one."""

    name: str
    label: str
    current: str
    proposed: str
    differs: bool
    current_html: SafeString
    proposed_html: SafeString
    findings: tuple[dict, ...]


@dataclass(frozen=True)
class Card:
    """One proposal as the screen shows it."""

    proposal: Proposal
    fields: tuple[FieldComparison, ...]
    # Fields changed on the image since the proposal was made (approving keeps them).
    conflicts: tuple[str, ...]
    # Findings that name no field the card shows (e.g. about the whole image).
    other_findings: tuple[dict, ...] = field(default=())
    # The language the settings ask for now, when the proposal was made in another one:
    # approving writes text in the proposal's language.
    setting_language: str = ""

    @property
    def outdated(self) -> bool:
        return bool(self.conflicts)

    @property
    def conflict_labels(self) -> str:
        return ", ".join(FIELD_LABELS[name].lower() for name in self.conflicts)

    @property
    def clean(self) -> bool:
        return not self.proposal.findings


@dataclass(frozen=True)
class Page:
    cards: tuple[Card, ...]
    # The key of the next page (the last id shown), None on the last page.
    next_after_id: int | None


@dataclass(frozen=True)
class Decisions:
    """What deciding many proposals did, by outcome."""

    approved: int = 0
    rejected: int = 0
    # Already approved, rejected or superseded by someone or something else.
    not_pending: int = 0
    # Skipped by approve-all: the image changed since (a person must decide).
    outdated: int = 0
    # Skipped by approve-all: it has findings.
    with_findings: int = 0
    ids: tuple[int, ...] = ()


def waiting(filters: Filters = Filters()) -> QuerySet[Proposal]:
    """The proposals waiting for review that ``filters`` lets through, oldest first."""
    queryset = Proposal.objects.pending()
    if filters.job_id is not None:
        queryset = queryset.filter(job_id=filters.job_id)
    if filters.code:
        queryset = queryset.annotate(findings_text=Cast("findings", TextField())).filter(
            # Both SQLite's text and PostgreSQL's jsonb print a key as "key": value.
            findings_text__contains=f'"code": "{_json_text(filters.code)}"'
        )
    if filters.field:
        if filters.field == DECORATIVE:
            queryset = queryset.filter(is_decorative__isnull=False)
        else:
            queryset = queryset.filter(changes__has_key=filters.field)
    if filters.image_type:
        queryset = queryset.filter(image_type=filters.image_type)
    if filters.reason:
        queryset = queryset.filter(reason=filters.reason)
    return queryset.order_by("id")


def _json_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def review_page(
    *, filters: Filters = Filters(), after_id: int | None = None, size: int = PAGE_SIZE
) -> Page:
    """One page of cards after ``after_id``: three queries, whatever the table holds."""
    language = Settings.objects.current().language
    queryset = waiting(filters).select_related(
        "asset", "asset__current_revision", "based_on", "job"
    )
    if after_id is not None:
        queryset = queryset.filter(id__gt=after_id)
    rows = list(queryset[: size + 1])
    shown = rows[:size]
    next_after = shown[-1].pk if len(rows) > size else None
    return Page(
        cards=tuple(card(proposal, setting_language=language) for proposal in shown),
        next_after_id=next_after,
    )


def capped_count(queryset: QuerySet, *, cap: int = COUNT_CAP) -> int:
    """How many rows, counting no further than ``cap + 1`` (shown as "1,000+")."""
    return queryset.order_by()[: cap + 1].count()


def waiting_count(*, job_id: int | None = None, cap: int = COUNT_CAP) -> int:
    return capped_count(waiting(Filters(job_id=job_id)), cap=cap)


def card(proposal: Proposal, *, setting_language: str = "") -> Card:
    """The proposal beside its image's current values; no queries if the caller selected
    the asset and the based-on revision. ``setting_language``: the settings' language,
    to say when the proposal was made under another."""
    asset = proposal.asset
    by_field: dict[str, list[dict]] = {}
    for finding in proposal.findings:
        by_field.setdefault(str(finding.get("field", "")), []).append(finding)
    comparisons = []
    for name in EDITABLE_FIELDS:
        if name == DECORATIVE:
            if proposal.is_decorative is None:
                continue
            current = "Yes" if asset.is_decorative else "No"
            proposed = "Yes" if proposal.is_decorative else "No"
            current_html, proposed_html = conditional_escape(current), conditional_escape(proposed)
        else:
            if name not in proposal.changes:
                continue
            current = getattr(asset, name)
            proposed = str(proposal.changes[name].get("value", ""))
            current_html, proposed_html = history.word_diff(current, proposed)
        comparisons.append(
            FieldComparison(
                name=name,
                label=FIELD_LABELS[name],
                current=current,
                proposed=proposed,
                differs=current != proposed,
                current_html=current_html,
                proposed_html=proposed_html,
                findings=tuple(by_field.get(name, ())),
            )
        )
    shown = {comparison.name for comparison in comparisons}
    other = tuple(f for name, found in by_field.items() if name not in shown for f in found)
    return Card(
        proposal=proposal,
        fields=tuple(comparisons),
        conflicts=proposals.proposal_conflicts(proposal, current=asset),
        other_findings=other,
        setting_language=(
            setting_language
            if proposal.language and setting_language and proposal.language != setting_language
            else ""
        ),
    )


def _decide(ids: Iterable[int]) -> Iterator[Proposal]:
    """The waiting proposals among ``ids``, with what approving reads, in id order."""
    chosen = sorted({int(pk) for pk in ids})
    for start in range(0, len(chosen), BATCH_SIZE):
        yield from (
            Proposal.objects.pending()
            .filter(pk__in=chosen[start : start + BATCH_SIZE])
            .select_related("asset", "based_on", "job")
            .order_by("id")
        )


def approve_many(*, ids: Sequence[int], actor) -> Decisions:
    """Approve each of ``ids`` still waiting. A field changed on the image since its
    proposal was made is kept (proposals.approve without override)."""
    approved, done = 0, []
    for proposal in _decide(ids):
        try:
            proposals.approve(proposal=proposal, actor=actor)
        except proposals.NotPending:
            continue
        approved += 1
        done.append(proposal.pk)
    return Decisions(approved=approved, not_pending=len(set(ids)) - approved, ids=tuple(done))


def reject_many(*, ids: Sequence[int], actor, note: str = "") -> Decisions:
    """Reject each of ``ids`` still waiting: the images keep their values."""
    rejected, done = 0, []
    for proposal in _decide(ids):
        try:
            proposals.reject(proposal=proposal, actor=actor, note=note)
        except proposals.NotPending:
            continue
        rejected += 1
        done.append(proposal.pk)
    return Decisions(rejected=rejected, not_pending=len(set(ids)) - rejected, ids=tuple(done))


def clean_candidates(*, job_id: int | None = None) -> QuerySet[Proposal]:
    """What approve-all considers: waiting proposals without any finding."""
    return waiting(Filters(job_id=job_id)).filter(findings=[])


def approve_clean(*, actor, job_id: int | None = None, dry_run: bool = False) -> Decisions:
    """Approve every waiting proposal without findings (of one job, or all).

    Read in batches by key, one query a batch; an outdated proposal (its image changed
    since in a field it would change) is left for a person, since approving it would
    silently keep only part of it. ``dry_run`` decides nothing and says what it would do.
    """
    approved, outdated, done = 0, 0, []
    after = 0
    while True:
        batch = list(
            clean_candidates(job_id=job_id)
            .filter(id__gt=after)
            .select_related("asset", "based_on", "job")[:BATCH_SIZE]
        )
        if not batch:
            break
        after = batch[-1].pk
        for proposal in batch:
            if proposals.proposal_conflicts(proposal, current=proposal.asset):
                outdated += 1
                continue
            if not dry_run:
                try:
                    proposals.approve(proposal=proposal, actor=actor)
                except proposals.NotPending:
                    continue
            approved += 1
            done.append(proposal.pk)
    with_findings = capped_count(waiting(Filters(job_id=job_id)).exclude(findings=[]))
    return Decisions(
        approved=approved, outdated=outdated, with_findings=with_findings, ids=tuple(done)
    )


def reason_label(reason: str) -> str:
    try:
        return ProposalReason(reason).label
    except ValueError:
        return reason


def field_choices() -> list[tuple[str, str]]:
    return [(name, FIELD_LABELS[name]) for name in (*FIELDS, DECORATIVE)]


def parse_filters(
    *, job: str = "", code: str = "", field_name: str = "", image_type: str = "", reason: str = ""
) -> Filters:
    """Filters from untrusted text (a URL, a command line): anything unknown is ignored."""
    job_id = int(job) if job.strip().isdigit() else None
    return Filters(
        job_id=job_id,
        code=code.strip()[:64],
        field=field_name if field_name in EDITABLE_FIELDS else "",
        image_type=image_type if image_type in IMAGE_TYPES else "",
        reason=reason if reason in ProposalReason.values else "",
    )
