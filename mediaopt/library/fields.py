"""The metadata vocabulary that the library and the apps above it share: the five field
names, their limits and labels, and where a value came from.

The library's models are built on it and the metadata app cleans, plans and writes with
it, so it lives at the bottom, importing nothing but Django.
"""

from __future__ import annotations

from django.db import models

FIELDS: tuple[str, ...] = ("alt_text", "title", "caption", "description", "keywords")

ALT_TEXT_TARGET = 125
ALT_TEXT_MAX = 150
TITLE_MAX = 60
CAPTION_MAX = 200
DESCRIPTION_MAX = 300
KEYWORDS_MIN = 3
KEYWORDS_MAX = 10
KEYWORD_MAX = 40

MAX_LENGTHS = {
    "alt_text": ALT_TEXT_MAX,
    "title": TITLE_MAX,
    "caption": CAPTION_MAX,
    "description": DESCRIPTION_MAX,
    # keywords: up to 10 of up to 40 characters, joined by ", "
    "keywords": KEYWORDS_MAX * (KEYWORD_MAX + 2),
}

LABELS = {
    "alt_text": "Alt text",
    "title": "Title",
    "caption": "Caption",
    "description": "Description",
    "keywords": "Keywords",
}


class Source(models.TextChoices):
    """Where a field's current value came from. Empty when the field is empty."""

    NONE = "", "—"
    AI = "ai", "AI"
    HEURISTIC = "heuristic", "Heuristic"
    EMBEDDED = "embedded", "Embedded"
    MANUAL = "manual", "Manual"


def source_field(name: str) -> str:
    return f"{name}_source"


DECORATIVE = "is_decorative"
# The five fields and the decorative flag: what a person edits, a revision snapshots, and
# a restore or an undo takes back.
EDITABLE_FIELDS: tuple[str, ...] = (*FIELDS, DECORATIVE)
FIELD_LABELS: dict[str, str] = {**LABELS, DECORATIVE: "Decorative"}
