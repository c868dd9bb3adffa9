"""The media library's list filters as the domain knows them: each changelist parameter,
the images it selects, and what it says in words.

The admin's list filters select through these functions, and a bulk job whose scope is
"every image the library listed" (select all across pages) stores the changelist's query
string and replays it here, so the job works on exactly the images the person saw,
without building a request or asking the admin.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from django.db.models import Exists, OuterRef, Q, QuerySet

from mediaopt.library.fields import Source
from mediaopt.library.models import MediaAsset, search_words
from metadata.models import MetadataRevision, Proposal, Settings

# The largest id a database column holds: a bigger number names no job.
MAX_ID = 2**63 - 1
# Up to this many revisions of a job (proposals waiting), the filter reads them first.
FEW = 10_000
# Query-string keys of the changelist that choose a page, an order or a view, never
# which images.
NOT_FILTERS = frozenset({"p", "o", "all", "_popup", "_to_field", "e"})


class UnknownFilter(ValueError):
    """A stored filter names a parameter or value the library does not have (any more)."""


def _few_or_many(queryset: QuerySet[MediaAsset], rows: QuerySet) -> QuerySet[MediaAsset]:
    """The images that ``rows`` (revisions or proposals, with an ``asset``) name, in the
    form that reads least at a million images: up to FEW rows, their asset ids (an index
    read, then a sort of at most FEW images); above, a test of each image in the list's
    order, which meets a page of them soon. One capped count over the rows' index
    decides; the images selected are the same either way."""
    if rows.order_by().values("pk")[: FEW + 1].count() <= FEW:
        return queryset.filter(pk__in=rows.values("asset_id"))
    return queryset.filter(Exists(rows.filter(asset=OuterRef("pk"))))


def job_number(value: str) -> int | None:
    """A job number from a URL; None for anything but an integer."""
    return int(value) if re.fullmatch(r"-?[0-9]+", value or "") else None


def revised(queryset: QuerySet[MediaAsset], *, since_import: bool) -> QuerySet[MediaAsset]:
    """Images changed since their import, or (``since_import=False``) only imported: the
    column revisions.py keeps (the current revision is past number 1)."""
    return queryset.filter(revised=since_import)


def changed_by_job(queryset: QuerySet[MediaAsset], *, job_id: int) -> QuerySet[MediaAsset]:
    """Images the job wrote a revision on (none for a number no job can have)."""
    if not 0 < job_id <= MAX_ID:
        return queryset.none()
    return _few_or_many(queryset, MetadataRevision.objects.filter(job_id=job_id))


def other_language(language: str) -> Q:
    """AI text asked in another language than ``language``: two ranges of the column's
    index, below and above it (a "not equal" no index serves)."""
    return (Q(ai_language__lt=language) | Q(ai_language__gt=language)) & ~Q(ai_language="")


def in_other_language(queryset: QuerySet[MediaAsset], *, language: str) -> QuerySet[MediaAsset]:
    """Images whose latest AI text was asked in another language than ``language``: what to
    regenerate after the language setting changed (``ai_language``, kept by revisions.py).

    As two ranges of the column's index (below and above ``language``): up to FEW such
    images, their ids are read from it; above, the list's order is walked."""
    other = other_language(language)
    matching = MediaAsset.objects.filter(other).order_by().values("pk")
    if matching[: FEW + 1].count() <= FEW:
        return queryset.filter(pk__in=matching)
    return queryset.filter(other)


@dataclass(frozen=True)
class _Filter:
    select: Callable[[QuerySet[MediaAsset], str], QuerySet[MediaAsset]]
    words: Callable[[str], str]


def _yes_no(value: str) -> bool:
    if value not in {"yes", "no"}:
        raise UnknownFilter(value)
    return value == "yes"


def _alt_text_missing(queryset: QuerySet[MediaAsset], value: str) -> QuerySet[MediaAsset]:
    return queryset.missing_alt_text() if _yes_no(value) else queryset.with_alt_text()


def _source(queryset: QuerySet[MediaAsset], value: str) -> QuerySet[MediaAsset]:
    if value not in Source.values:
        raise UnknownFilter(value)
    return queryset.filter(alt_text_source=value)


def _decorative(queryset: QuerySet[MediaAsset], value: str) -> QuerySet[MediaAsset]:
    if value not in {"0", "1"}:
        raise UnknownFilter(value)
    return queryset.filter(is_decorative=value == "1")


def needs_review(queryset: QuerySet[MediaAsset], *, waiting: bool) -> QuerySet[MediaAsset]:
    """Images with a proposal waiting for a person (or, ``waiting=False``, without)."""
    if waiting:
        return _few_or_many(queryset, Proposal.objects.pending())
    return queryset.filter(~Exists(Proposal.objects.pending().filter(asset=OuterRef("pk"))))


def _job(queryset: QuerySet[MediaAsset], value: str) -> QuerySet[MediaAsset]:
    job_id = job_number(value)
    if job_id is None:
        raise UnknownFilter(value)
    return changed_by_job(queryset, job_id=job_id)


# The changelist's parameters: those of the list filters (metadata.admin.media and the
# library's admin) and the search box.
FILTERS: dict[str, _Filter] = {
    "alt_text_missing": _Filter(
        _alt_text_missing,
        lambda v: "missing alt text" if v == "yes" else "with alt text or decorative",
    ),
    "alt_text_source__exact": _Filter(
        _source, lambda v: f"alt text from {Source(v).label}" if v else "alt text from nowhere"
    ),
    "is_decorative__exact": _Filter(
        _decorative, lambda v: "decorative" if v == "1" else "not decorative"
    ),
    "revised": _Filter(
        lambda qs, v: revised(qs, since_import=_yes_no(v)),
        lambda v: "changed since import" if v == "yes" else "only imported",
    ),
    "job": _Filter(_job, lambda v: f"changed by job #{v}"),
    "needs_review": _Filter(
        lambda qs, v: needs_review(qs, waiting=_yes_no(v)),
        lambda v: "needing review" if v == "yes" else "not needing review",
    ),
    "q": _Filter(lambda qs, v: qs.search(v), lambda v: _matching(v)),
    "ai_language": _Filter(
        lambda qs, v: in_other_language(qs, language=_settings_language(v)),
        lambda v: "with AI text in another language than the settings'",
    ),
}


def _matching(value: str) -> str:
    """The search in words: only the words it looks for (search_words: shorter ones are
    left out, as the list said); nothing when it looks for none."""
    kept, _ = search_words(value)
    return f"matching “{' '.join(kept)}”" if kept else ""


def _settings_language(value: str) -> str:
    if value != "other":
        raise UnknownFilter(value)
    return Settings.objects.current().language


def _params(query: str) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key, value in parse_qsl(query, keep_blank_values=True)
        if key not in NOT_FILTERS
    ]


def replay(query: str) -> QuerySet[MediaAsset]:
    """The images the library's list shows for ``query`` (a changelist query string).

    Raises UnknownFilter for a parameter or value the library does not have.
    """
    queryset = MediaAsset.objects.all()
    for key, value in _params(query):
        chosen = FILTERS.get(key)
        if chosen is None:
            raise UnknownFilter(key)
        queryset = chosen.select(queryset, value)
    return queryset


def describe(query: str) -> str:
    """``query`` in words, e.g. "all images missing alt text, matching “dog”"."""
    parts = []
    for key, value in _params(query):
        chosen = FILTERS.get(key)
        if chosen is None:
            raise UnknownFilter(key)
        try:
            words = chosen.words(value)
        except ValueError as error:
            raise UnknownFilter(value) from error
        if words:
            parts.append(words)
    return "all images" + (" " + ", ".join(parts) if parts else "")
