"""What an image's metadata history shows: each revision in words, its fields beside
another snapshot's, and a word-level diff of the two.

Plain functions over revisions and assets, for the admin's history, compare and restore
pages. They make no queries of their own: the caller selects the related rows they name
(MetadataRevision.objects.history). Values may come from a model, so every piece of HTML
here is built with format_html or conditional_escape, never marked safe by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString

from mediaopt.library.fields import (
    DECORATIVE,
    EDITABLE_FIELDS,
    FIELD_LABELS,
    FIELDS,
    Source,
    source_field,
)
from mediaopt.library.models import MetadataFields
from metadata.models import MetadataRevision, RevisionKind
from metadata.undo_plan import field_state

HEURISTIC_PROVIDER = "heuristic"

# Words and the runs of white space between them: the diff keeps the text as it was.
_TOKENS = re.compile(r"\s+|\S+")


def kind_label(revision: MetadataRevision) -> str:
    """The revision's kind in words, e.g. "AI (gpt-4o-mini)", "Restore of revision 3"."""
    if revision.kind == RevisionKind.GENERATED:
        if revision.provider == HEURISTIC_PROVIDER:
            return "Heuristic"
        return f"AI ({revision.model})" if revision.model else "AI"
    if revision.kind == RevisionKind.IMPORT:
        embedded = any(getattr(revision, source_field(name)) == Source.EMBEDDED for name in FIELDS)
        return "Embedded" if embedded else "Import"
    if revision.kind == RevisionKind.MANUAL:
        return "Manual edit"
    if revision.kind == RevisionKind.RESTORE:
        if revision.restored_from_id is None:
            # The revision it took back has since been pruned.
            return "Restore"
        return f"Restore of revision {revision.restored_from.number}"
    if revision.kind == RevisionKind.UNDO:
        if revision.job is None or revision.job.undo_of_id is None:
            return "Undo"
        return f"Undo of job #{revision.job.undo_of_id}"
    return revision.get_kind_display()


def display_value(snapshot: MetadataFields, name: str) -> str:
    if name == DECORATIVE:
        return "Yes" if snapshot.is_decorative else "No"
    return getattr(snapshot, name)


def source_label(snapshot: MetadataFields, name: str) -> str:
    """Where the field's value came from ("AI", "Manual", ...); "" for decorative and for
    an empty field (which has no source)."""
    if name == DECORATIVE:
        return ""
    source = getattr(snapshot, source_field(name))
    return Source(source).label if source else ""


def word_diff(old: str, new: str) -> tuple[SafeString, SafeString]:
    """Both texts as safe HTML: words only in ``old`` in <del>, only in ``new`` in <ins>."""
    before, after = _TOKENS.findall(old), _TOKENS.findall(new)
    left: list[SafeString] = []
    right: list[SafeString] = []
    matcher = SequenceMatcher(None, before, after, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        removed, added = "".join(before[i1:i2]), "".join(after[j1:j2])
        if op == "equal":
            left.append(conditional_escape(removed))
            right.append(conditional_escape(added))
            continue
        if removed:
            left.append(format_html("<del>{}</del>", removed))
        if added:
            right.append(format_html("<ins>{}</ins>", added))
    return _joined(left), _joined(right)


def _joined(parts: Sequence[SafeString]) -> SafeString:
    return format_html_join("", "{}", ((part,) for part in parts))


@dataclass(frozen=True)
class FieldRow:
    """One field of two snapshots, side by side (old on the left, new on the right)."""

    name: str
    label: str
    old_value: str
    old_source: str
    new_value: str
    new_source: str
    # Value or source differ: restoring the old one would change the field.
    differs: bool
    # The field is in the (old) revision's changed_fields.
    changed: bool
    old_html: SafeString
    new_html: SafeString


def field_rows(
    old: MetadataFields, new: MetadataFields, *, changed: Iterable[str] = ()
) -> list[FieldRow]:
    """The five fields and the decorative flag of ``old`` beside ``new``'s."""
    changed = set(changed)
    rows = []
    for name in EDITABLE_FIELDS:
        old_value, new_value = display_value(old, name), display_value(new, name)
        differs = field_state(old, name) != field_state(new, name)
        if differs and name != DECORATIVE:
            old_html, new_html = word_diff(old_value, new_value)
        else:
            old_html, new_html = conditional_escape(old_value), conditional_escape(new_value)
        rows.append(
            FieldRow(
                name=name,
                label=FIELD_LABELS[name],
                old_value=old_value,
                old_source=source_label(old, name),
                new_value=new_value,
                new_source=source_label(new, name),
                differs=differs,
                changed=name in changed,
                old_html=old_html,
                new_html=new_html,
            )
        )
    return rows


@dataclass(frozen=True)
class HistoryEntry:
    """One revision on the history page, its fields beside the image's current ones."""

    revision: MetadataRevision
    kind: str
    is_current: bool
    rows: list[FieldRow]


def history_entries(
    revisions: Iterable[MetadataRevision],
    *,
    current: MetadataFields,
    current_revision_id: int | None,
) -> list[HistoryEntry]:
    return [
        HistoryEntry(
            revision=revision,
            kind=kind_label(revision),
            is_current=revision.pk == current_revision_id,
            rows=field_rows(revision, current, changed=revision.changed_fields),
        )
        for revision in revisions
    ]
