"""A result checked before anything is written: cleaned, linted, and judged.

Every value a provider returns (the heuristic's too) passes the same lint. What the
checks say decides what happens to a result, in this order:

- the job runs in review mode: every result waits for a person (a proposal);
- the model thinks the image is decorative: a proposal (only a person, who knows where
  the image is used, may empty its alt text on purpose);
- a value the image would get has an error finding: asked again once (the runner, at no
  extra credit), then a proposal marked with its findings;
- a chart, diagram or text-heavy image: a proposal, since it needs a long description;
- otherwise the values are written, their warnings stored with the revision.

A heuristic value with an error is dropped instead: a guess is not worth a person's time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset
from metadata import quality, schema
from metadata.models import ProposalReason
from metadata.providers.base import DescribeResult
from metadata.providers.prompt import COMPLEX_IMAGE_TYPES
from metadata.strategies import Plan


@dataclass(frozen=True)
class Checked:
    """A cleaned result and what the lint found in it."""

    cleaned: schema.Cleaned
    findings: quality.Findings
    image_type: str

    def errors_in(self, names: Iterable[str]) -> tuple[quality.Finding, ...]:
        wanted = set(names)
        return tuple(finding for finding in self.findings.errors if finding.field in wanted)


def check(*, result: DescribeResult, language: str, asset: MediaAsset | None = None) -> Checked:
    """Clean ``result`` and lint its values in ``language``. With ``asset``, the same
    alt text on other images counts too (one query)."""
    cleaned = schema.clean(result.output, language=language)
    image_type = str(result.output.get("image_type") or "")
    findings = quality.lint(
        cleaned.values,
        language=language,
        is_decorative=cleaned.is_decorative,
        image_type=image_type or None,
        overflow=cleaned.overflow,
    )
    alt = cleaned.values.get("alt_text", "")
    if asset is not None and alt:
        others = MediaAsset.objects.filter(alt_text=alt).exclude(pk=asset.pk).count()
        duplicate = quality.duplicate_alt(others + 1)
        if duplicate is not None:
            findings = findings + [duplicate]
    return Checked(cleaned=cleaned, findings=findings, image_type=image_type)


def needs_asking_again(checked: Checked, *, fields: Iterable[str]) -> bool:
    """Whether a second answer may fix what the first got wrong in the wanted fields."""
    return bool(checked.errors_in(fields))


def feedback(checked: Checked) -> str:
    """What was wrong with an answer, for the model's second try."""
    return " ".join(f"{finding.field}: {finding.message}" for finding in checked.findings.errors)


def review_reason(*, checked: Checked, plan: Plan, source: str, review: bool) -> str:
    """Why this plan must wait for a person ("" when it may be written)."""
    if review:
        return ProposalReason.REVIEW
    if source == Source.HEURISTIC:
        return ""
    if plan.is_decorative:
        return ProposalReason.DECORATIVE
    if checked.errors_in(plan.changes):
        return ProposalReason.FINDINGS
    if checked.image_type in COMPLEX_IMAGE_TYPES:
        return ProposalReason.COMPLEX
    return ""


def without_errors(plan: Plan, checked: Checked) -> Plan:
    """The plan without the fields whose values have an error finding (a heuristic's)."""
    bad = {finding.field for finding in checked.findings.errors}
    return Plan(
        changes={name: change for name, change in plan.changes.items() if name not in bad},
        is_decorative=plan.is_decorative,
    )


def findings_for(checked: Checked, plan: Plan) -> list[dict]:
    """The findings on the values the plan writes, as stored with a revision."""
    names = set(plan.changes)
    return [finding for finding in checked.findings.as_json() if finding.get("field") in names]
