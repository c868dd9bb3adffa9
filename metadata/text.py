"""Unicode text primitives for metadata: user-perceived length, fitting at a boundary,
real tags, markdown, emoji and quotes.

Lengths are counted in grapheme clusters (``\\X``) after NFC, the characters a reader
sees: "e" + a combining accent is one, a flag or a family emoji is one, and the joiners
ZWJ (U+200D) and ZWNJ (U+200C) stay, since Persian and Indic words and emoji sequences
need them.
"""

from __future__ import annotations

import html
import unicodedata
from dataclasses import dataclass

import regex

ZWNJ = "\u200c"
ZWJ = "\u200d"

# A real tag starts with a letter, "/" or "!" right after "<": a lone "<" in
# "speed < 30 km/h" is text, not markup.
_TAG = regex.compile(
    r"<(?:/?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?|!--.*?--|![A-Za-z][^<>]*)>", regex.S
)
_HIDDEN_CONTENT = regex.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", regex.S | regex.I)
_ENTITY = regex.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_WS = regex.compile(r"\s+")
_MD_LINK = regex.compile(r"!?\[([^\]\n]*)\]\([^)\s]*\)")
_MD_EMPHASIS = regex.compile(
    r"(\*\*|__|\*|`+)(?=\S)(.{1,300}?)(?<=\S)\1|(?<!\w)(_)(?=\S)(.{1,300}?)(?<=\S)_(?!\w)"
)
_MD_STRONG_OR_CODE = regex.compile(r"(\*\*|__)(?=\S).{1,300}?(?<=\S)\1|`[^`\n]{1,300}`")
_MD_LINE_START = regex.compile(r"^(?:#{1,6}\s+|>\s+|[-*+•]\s+)")
_SENTENCE_END = regex.compile(r"[.!?…](?=[\s\"'”’»)]|$)|[。！？]")
_CUT_PUNCTUATION = " ,;:-–—、，；："
_CJK_CLAUSE = regex.compile(r"[，、；：,;:]")
_CJK = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")
_EMOJI_GRAPHEME = regex.compile(
    r"\p{Emoji_Presentation}|\p{Extended_Pictographic}\uFE0F|\p{Regional_Indicator}|\u20E3"
)

_QUOTE_PAIRS = {
    '"': '"',
    "'": "'",
    "“": "”",
    "„": "“",
    "‚": "‘",
    "‘": "’",
    "«": "»",
    "»": "«",
    "‹": "›",
    "「": "」",
    "『": "』",
    "`": "`",
}


@dataclass(frozen=True)
class Fitted:
    """Text fitted to a limit, and what had to be left out (empty when nothing)."""

    text: str
    overflow: str = ""


def graphemes(text: str) -> list[str]:
    return regex.findall(r"\X", text)


def length(text: str) -> int:
    """User-perceived characters after NFC."""
    return len(graphemes(unicodedata.normalize("NFC", text)))


def fold(value: str) -> str:
    """A key for comparing words regardless of case: "İstanbul" and "istanbul" match
    (casefold alone leaves a combining dot on the Turkish capital I)."""
    return unicodedata.normalize("NFC", value.casefold().replace("i\u0307", "i"))


def is_cjk_text(text: str) -> bool:
    """Mostly Han, kana or Hangul: such text has no spaces between words."""
    letters = [ch for ch in text if ch.isalpha()]
    return bool(letters) and sum(bool(_CJK.match(ch)) for ch in letters) * 2 >= len(letters)


def unescape(text: str) -> str:
    # Twice: models and CMS exports double-escape ("&amp;amp;").
    return html.unescape(html.unescape(text))


def has_tags(text: str) -> bool:
    return bool(_TAG.search(text))


def has_entities(text: str) -> bool:
    return bool(_ENTITY.search(text))


def strip_tags(text: str) -> str:
    """Remove real tags (and script/style content), keep a lone "<" or ">"."""
    return _TAG.sub(" ", _HIDDEN_CONTENT.sub(" ", text))


def has_markdown(text: str) -> bool:
    if _MD_LINK.search(text) or _MD_STRONG_OR_CODE.search(text):
        return True
    return bool(regex.match(r"^(?:#{1,6}\s|[-*+•]\s|>\s)", text))


def strip_markdown(text: str) -> str:
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_EMPHASIS.sub(lambda m: m.group(2) or m.group(4), text)
    return _MD_LINE_START.sub("", text)


def is_emoji(grapheme: str) -> bool:
    return bool(_EMOJI_GRAPHEME.search(grapheme))


def has_emoji(text: str) -> bool:
    return any(is_emoji(g) for g in graphemes(text))


def strip_emoji(text: str) -> str:
    return "".join(" " if is_emoji(g) else g for g in graphemes(text))


def strip_controls(text: str) -> str:
    """Control characters become spaces; invisible format characters go, joiners stay."""
    out: list[str] = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in {"Cc", "Zl", "Zp"}:
            out.append(" ")
        elif category == "Cf" and ch not in {ZWJ, ZWNJ}:
            continue  # bidi overrides, soft hyphens, zero-width spaces
        else:
            out.append(ch)
    return "".join(out)


def collapse_spaces(text: str) -> str:
    return _WS.sub(" ", text).strip()


def strip_wrapping_quotes(text: str) -> str:
    """'"A dog on a beach"' -> 'A dog on a beach' when the quotes wrap the whole text."""
    for _ in range(2):
        if len(text) < 2:
            return text
        closing = _QUOTE_PAIRS.get(text[0])
        inner = text[1:-1]
        if closing is None or text[-1] != closing or text[0] in inner or closing in inner:
            return text
        text = inner.strip()
    return text


def fit(text: str, *, limit: int) -> Fitted:
    """Fit text into ``limit`` user-perceived characters without cutting a word.

    Prefers the end of a sentence, then (for CJK) the end of a clause, then a space; only
    a single word longer than the limit is cut, at a grapheme boundary. The rest comes
    back as ``overflow`` so the caller can ask again instead of storing a cut value.
    """
    text = unicodedata.normalize("NFC", text)
    clusters = graphemes(text)
    if len(clusters) <= limit:
        return Fitted(text)
    head = "".join(clusters[:limit])
    following = clusters[limit]
    floor = len("".join(clusters[: limit // 2]))
    cut = _boundary(head, following=following, floor=floor, cjk=is_cjk_text(text))
    kept = head[:cut].rstrip(_CUT_PUNCTUATION)
    return Fitted(kept, text[len(kept) :].strip().lstrip(_CUT_PUNCTUATION))


def _boundary(head: str, *, following: str, floor: int, cjk: bool) -> int:
    ends = [m.end() for m in _SENTENCE_END.finditer(head) if m.end() >= floor]
    if ends:
        return ends[-1]
    if following.isspace():
        return len(head)
    if cjk:
        clauses = [m.start() for m in _CJK_CLAUSE.finditer(head) if m.start() >= floor]
        if clauses:
            return clauses[-1]
    # A short value is better than a cut word: the overflow makes the caller ask again.
    space = head.rfind(" ")
    return space if space > 0 else len(head)
