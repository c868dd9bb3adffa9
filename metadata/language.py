"""Languages: BCP 47 tags validated and named ("de" -> "German (de)"), per-script length
limits, and detection of the language of a short text.

Detection uses lingua (its models ship in the wheel; nothing is downloaded). The
detector is built once per process, on first use, for ``DETECTABLE`` only: each language
sharing a script with another loads its models (about 300 MB and 3 s for this set, once
per process; bench/quality.py measures it) and makes short texts more ambiguous, while a
language alone in its script (Greek, Hebrew, Korean) is told by its letters alone. A text whose
best guess is not clearly ahead of the second (``MIN_RELATIVE_DISTANCE``) is "unknown",
and "unknown" is never a finding.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import langcodes
import regex

from mediaopt.library.fields import ALT_TEXT_MAX, ALT_TEXT_TARGET

UNKNOWN = "unknown"
DETECTABLE: tuple[str, ...] = (
    "en", "de", "fr", "es", "it", "pt", "nl", "pl", "sv", "da", "tr", "ru", "ar", "fa", "he", "el",
    "hi", "ja", "zh", "ko",
)  # fmt: skip
MIN_RELATIVE_DISTANCE = 0.25
# Below this many letters even lingua guesses; a two-word title is not evidence.
MIN_LETTERS = 12
MIN_LETTERS_CJK = 4
CJK_LANGUAGES = frozenset({"zh", "ja", "ko"})
DETECT_CHARS = 200
_LETTER = regex.compile(r"\p{L}")
_CJK = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")


@dataclass(frozen=True)
class AltLimits:
    """Alt text lengths in user-perceived characters: over ``max`` is an error, over
    ``target`` a warning, under ``min`` a warning."""

    max: int
    target: int
    min: int


LATIN_LIMITS = AltLimits(max=ALT_TEXT_MAX, target=ALT_TEXT_TARGET, min=10)
# A Han or kana character carries about a word: the same description is about half as long.
CJK_LIMITS = AltLimits(max=80, target=60, min=4)


def normalize_tag(tag: str) -> str:
    """A valid BCP 47 tag in its standard form ("pt_br" -> "pt-BR"); ValueError if not."""
    cleaned = (tag or "").strip().replace("_", "-")
    if not cleaned:
        raise ValueError("A language tag is required (for example de or pt-BR).")
    try:
        standard = langcodes.standardize_tag(cleaned)
    except (ValueError, langcodes.LanguageTagError) as exc:
        raise ValueError(f"{tag!r} is not a language tag (for example de or pt-BR).") from exc
    if not langcodes.tag_is_valid(standard) or not langcodes.Language.get(standard).is_valid():
        raise ValueError(f"{tag!r} is not a language tag (for example de or pt-BR).")
    return standard


def base_language(tag: str) -> str:
    """The language subtag: "pt-BR" -> "pt", "zh-Hant" -> "zh"; "" for a bad tag."""
    try:
        return langcodes.Language.get(normalize_tag(tag)).language or ""
    except ValueError:
        return ""


def display_name(tag: str) -> str:
    """ "de" -> "German (de)", "pt-BR" -> "Portuguese (Brazil) (pt-BR)", in English."""
    standard = normalize_tag(tag)
    return f"{langcodes.Language.get(standard).display_name('en')} ({standard})"


def alt_limits(tag: str) -> AltLimits:
    return CJK_LIMITS if base_language(tag) in CJK_LANGUAGES else LATIN_LIMITS


@functools.lru_cache(maxsize=4096)
def detect(text: str) -> str:
    """The ISO 639-1 code of a short text's language, or ``UNKNOWN`` when unsure."""
    letters = len(_LETTER.findall(text))
    cjk = len(_CJK.findall(text))
    if letters < MIN_LETTERS and not (cjk and letters >= MIN_LETTERS_CJK):
        return UNKNOWN
    # The first sentences decide; the detector's time grows with the text.
    found = _detector().detect_language_of(text[:DETECT_CHARS])
    if found is None:
        return UNKNOWN
    return found.iso_code_639_1.name.lower()


def differs(text: str, *, language: str) -> str | None:
    """The detected language when it is clearly not ``language``, else None."""
    asked = base_language(language)
    if asked not in DETECTABLE:
        return None  # the detector would name the nearest language it knows
    found = detect(text)
    if found in (UNKNOWN, asked) or _same_family(found, asked):
        return None
    return found


def _same_family(found: str, asked: str) -> bool:
    # Norwegian and Danish share their written words; macrolanguage tags share their code.
    return {found, asked} <= {"da", "nb", "nn", "no"}


def warm_up() -> None:
    """Build the detector now (a few seconds and a few hundred MB, once per process), so
    the first check of an answer does not stall whoever holds leases meanwhile. The
    detector loads its language models on its first detection (seconds more): one now."""
    _detector().detect_language_of("A quiet harbour at dawn with boats")


@functools.cache
def _detector():
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = [getattr(IsoCode639_1, code.upper()) for code in DETECTABLE]
    return (
        LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
        .with_minimum_relative_distance(MIN_RELATIVE_DISTANCE)
        .build()
    )
