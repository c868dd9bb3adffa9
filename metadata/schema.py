"""Cleaning of untrusted model output into values fit to store and show.

The field vocabulary (names, limits, labels, sources) is mediaopt.library.fields.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from mediaopt.library.fields import (
    FIELDS,
    KEYWORD_MAX,
    KEYWORDS_MAX,
    MAX_LENGTHS,
)
from metadata import quality, text
from metadata.language import alt_limits


@dataclass(frozen=True)
class Metadata:
    """Cleaned values for some of the fields (absent = the provider said nothing)."""

    values: dict[str, str] = field(default_factory=dict)
    is_decorative: bool = False


# Cleaning of untrusted model output. Lengths are user-perceived characters (metadata.text).
_KEYWORD_SPLIT = re.compile(r"[,;\n、，；]")
_TRUE = frozenset({"true", "yes", "1", "y", "on", "wahr", "ja", "oui", "sí", "si", "sim"})
# No field holds more than a few hundred characters; longer input is cut before the
# regular expressions see it, so hostile input cannot make cleaning slow.
_MAX_INPUT = 4000
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```$", re.S)


@dataclass(frozen=True)
class Cleaned(Metadata):
    """Cleaned values plus what did not fit (``overflow``: field -> the text left out)
    and which fixes were applied (``fixed``: field -> rule codes), so the caller can ask
    again rather than store a value that was cut."""

    overflow: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, tuple[str, ...]] = field(default_factory=dict)


def plain_text(value: object) -> str:
    """One line of plain text: entities unescaped, real tags and markdown removed, NFC,
    control characters gone (joiners kept), emoji and wrapping quotes dropped."""
    if value is None:
        return ""
    result = text.unescape(str(value)[:_MAX_INPUT])
    result = text.strip_tags(result)
    result = unicodedata.normalize("NFC", result)
    result = text.strip_controls(result)
    result = text.collapse_spaces(result)
    result = text.strip_markdown(result)
    result = text.strip_emoji(result)
    result = text.collapse_spaces(result)
    return text.strip_wrapping_quotes(result)


def clean_text(value: object, *, max_length: int) -> str:
    """Plain, single-line text fitted into max_length at a sentence or word boundary."""
    return text.fit(plain_text(value), limit=max_length).text


def truncate(value: str, max_length: int) -> str:
    """Fit at a sentence or word boundary, counting user-perceived characters."""
    return text.fit(value, limit=max_length).text


def clean_alt_text(value: object, *, language: str = "en") -> str:
    return _clean_alt(value, language=language)[0].text


def _clean_alt(value: object, *, language: str) -> tuple[text.Fitted, tuple[str, ...]]:
    plain = plain_text(value)
    # "Image of a dog" says nothing a screen reader doesn't already announce.
    stripped = quality.strip_opener(plain)
    fixes = ("alt.opener",) if stripped != plain else ()
    return text.fit(stripped, limit=alt_limits(language).max), fixes


def split_keywords(value: object) -> list[str]:
    """Keywords in their own case ("İstanbul", "Hund"), without hashtags, generic words or
    stock-photo sites, deduplicated ignoring case, at most KEYWORDS_MAX."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        items = [str(item) for item in value]
    else:
        items = _KEYWORD_SPLIT.split(str(value))
    seen: set[str] = set()
    keywords: list[str] = []
    for item in items:
        keyword = plain_text(item).strip(" .#")
        keyword = text.fit(keyword, limit=KEYWORD_MAX).text
        folded = text.fold(keyword)
        if not keyword or folded in seen or quality.is_generic_keyword(keyword):
            continue
        seen.add(folded)
        keywords.append(keyword)
    return keywords[:KEYWORDS_MAX]


def clean_keywords(value: object) -> str:
    return ", ".join(split_keywords(value))


def clean_value(name: str, value: object, *, language: str = "en") -> str:
    return _clean_field(name, value, language=language)[0].text


def _clean_field(name: str, value: object, *, language: str) -> tuple[text.Fitted, tuple[str, ...]]:
    if name == "alt_text":
        return _clean_alt(value, language=language)
    if name == "keywords":
        return text.Fitted(clean_keywords(value)), ()
    return text.fit(plain_text(value), limit=MAX_LENGTHS[name]), ()


def as_bool(value: object) -> bool:
    """A model's boolean: JSON true/false, or the strings "true"/"false", "yes"/"no"."""
    if isinstance(value, str):
        return value.strip().casefold() in _TRUE
    return bool(value) if isinstance(value, (bool, int, float)) else False


def parse_output(raw: str) -> dict:
    """The JSON object in a model's raw answer, also inside a ```json fence or after a
    sentence of chatter; ValueError when there is none."""
    body = (raw or "").strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body.startswith("{"):
        start, end = body.find("{"), body.rfind("}")
        if start < 0 or end < start:
            raise ValueError("The answer holds no JSON object.")
        body = body[start : end + 1]
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("The answer's JSON is not an object.")
    return data


def coerce_output(data: Mapping) -> dict:
    """Shapes models commonly return, made regular without asking again: keywords as one
    comma string, booleans as strings, numbers or lists where text was asked."""
    output: dict = {}
    for key, value in data.items():
        if key == "is_decorative":
            output[key] = as_bool(value)
        elif key == "keywords":
            output[key] = split_keywords(value)
        elif key in FIELDS:
            if isinstance(value, (list, tuple)):
                value = " ".join(str(item) for item in value)
            output[key] = "" if value is None else str(value)
        else:
            output[key] = value
    return output


def clean(output: Mapping, *, language: str = "en") -> Cleaned:
    """Turn a provider's raw output into values safe to store and show.

    A decorative verdict yields an intentionally empty alt text.
    """
    is_decorative = as_bool(output.get("is_decorative", False))
    values: dict[str, str] = {}
    overflow: dict[str, str] = {}
    fixed: dict[str, tuple[str, ...]] = {}
    for name in FIELDS:
        if name not in output:
            continue
        fitted, fixes = _clean_field(name, output[name], language=language)
        values[name] = fitted.text
        if fitted.overflow:
            overflow[name] = fitted.overflow
        if fixes:
            fixed[name] = fixes
    if is_decorative:
        values["alt_text"] = ""
        overflow.pop("alt_text", None)
    return Cleaned(values=values, is_decorative=is_decorative, overflow=overflow, fixed=fixed)
