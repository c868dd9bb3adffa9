"""Cleaning of untrusted model output into values fit to store and show.

The field vocabulary (names, limits, labels, sources) is mediaopt.library.fields.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from mediaopt.library.fields import (
    ALT_TEXT_MAX,
    FIELDS,
    KEYWORD_MAX,
    KEYWORDS_MAX,
    MAX_LENGTHS,
)


@dataclass(frozen=True)
class Metadata:
    """Cleaned values for some of the fields (absent = the provider said nothing)."""

    values: dict[str, str] = field(default_factory=dict)
    is_decorative: bool = False


_TAG = re.compile(r"<[^>]*>")
_WS = re.compile(r"\s+")
_OPENER = re.compile(
    r"^(?:an?\s+|the\s+)?(?:image|picture|photo|photograph|graphic|illustration)\s+"
    r"(?:of|showing|depicting|that shows)\s+",
    re.IGNORECASE,
)


def clean_text(value: object, *, max_length: int) -> str:
    """Plain, single-line text: no markup, no control characters, at most max_length."""
    if value is None:
        return ""
    text = str(value)
    text = _TAG.sub(" ", text)
    text = "".join(
        " " if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch for ch in text
    )
    text = text.replace("<", "").replace(">", "")
    text = _WS.sub(" ", text).strip()
    return truncate(text, max_length)


def truncate(text: str, max_length: int) -> str:
    """Cut at a word boundary, never mid-word, when over the limit."""
    if len(text) <= max_length:
        return text
    cut = text[: max_length + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > max_length // 2 else text[:max_length]
    return cut.rstrip(" ,;:-")


def clean_alt_text(value: object) -> str:
    text = clean_text(value, max_length=10_000)
    # "Image of a dog" says nothing a screen reader doesn't already announce.
    stripped = _OPENER.sub("", text)
    if stripped != text and stripped:
        text = stripped[0].upper() + stripped[1:]
    return truncate(text, ALT_TEXT_MAX)


def split_keywords(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        items = [str(item) for item in value]
    else:
        items = re.split(r"[,;\n]", str(value))
    seen: set[str] = set()
    keywords: list[str] = []
    for item in items:
        keyword = clean_text(item, max_length=KEYWORD_MAX).strip(" .#").lower()
        if keyword and keyword not in seen:
            seen.add(keyword)
            keywords.append(keyword)
    return keywords[:KEYWORDS_MAX]


def clean_keywords(value: object) -> str:
    return ", ".join(split_keywords(value))


def clean_value(name: str, value: object) -> str:
    if name == "alt_text":
        return clean_alt_text(value)
    if name == "keywords":
        return clean_keywords(value)
    return clean_text(value, max_length=MAX_LENGTHS[name])


def clean(output: dict) -> Metadata:
    """Turn a provider's raw output into values safe to store and show.

    A decorative verdict yields an intentionally empty alt text.
    """
    is_decorative = bool(output.get("is_decorative", False))
    values: dict[str, str] = {}
    for name in FIELDS:
        if name in output:
            values[name] = clean_value(name, output[name])
    if is_decorative:
        values["alt_text"] = ""
    return Metadata(values=values, is_decorative=is_decorative)
