"""The lint: every metadata value checked before it is written, with stable rule codes.

``lint(values, language=..., is_decorative=...)`` returns ``Findings``, one per rule and
field that fired. An "error" must not be written unseen (the caller asks again once, then
keeps the value for review); a "warning" is written and shown; an "info" is a note. A
finding may carry ``fix``: the whole value with the problem removed.

Rule codes (stable: stored with revisions, counted per rule, filtered on):

    alt.empty          error    non-decorative image with an empty alt text
    alt.opener         warning  "Image of", "Dieses Bild zeigt", "Photo:" ... (auto-fixed)
    alt.length         error    alt over 150 characters (CJK 80); warning over 125 (CJK 60)
    alt.short          warning  alt under 10 characters (CJK 4)
    alt.duplicate      warning  the same alt text on five or more images (needs the count)
    caption.same_as_alt warning caption repeats the alt text, so a reader hears it twice
    text.length        error    title, caption or description over its field's limit
    text.overflow      error    the answer did not fit and was shortened at a boundary
    text.filename      error    a file name or camera file code ("IMG_1234.jpg")
    text.file_facts    error    dimensions, formats, sizes ("1920x1080 JPEG", "72 dpi")
    text.camera        error    "Shot on iPhone 12"; warning for a model name ("Canon EOS 5D")
    text.placeholder   error    placeholder or generic text ("Alt text here", "Image")
    text.refusal       error    the model refused ("I'm sorry, I can't…", "As an AI…")
    text.meta          error    text about the text ("Here is the alt text:", "(95 chars)")
    text.instruction   error    instructions copied from the image or file
    text.truncated     warning  looks cut: ends in "…", a comma or "and the"
    text.stuffing      warning  one word three times (four in caption, description) or
                                a bare list of words
    text.markup        error    HTML tags or markdown
    text.entity        error    HTML entities ("&amp;")
    text.emoji         warning  emoji
    text.shouting      warning  mostly capital letters
    text.url           error    a web address
    text.email         error    an e-mail address
    text.phone         error    a phone number
    text.promo         error    promotion ("Buy now", "cheap pills at", "50% off")
    text.credit        error in alt text and title, warning in caption and description:
                                copyright, credit lines, stock-photo sites
    text.language      error    the text is clearly in another language than asked
    keywords.count     warning  fewer than 3 or more than 10 keywords
    keywords.generic   warning  keywords that say nothing ("stock photo", "jpg", a URL)
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Literal

import regex

from mediaopt.library.fields import KEYWORDS_MAX, KEYWORDS_MIN, MAX_LENGTHS
from metadata import language as languages
from metadata import phrases, text

Level = Literal["error", "warning", "info"]
PROSE_FIELDS = ("alt_text", "title", "caption", "description")
# The fields' limits (schema.MAX_LENGTHS), repeated because schema imports this module.
FIELD_MAX = {name: MAX_LENGTHS[name] for name in ("title", "caption", "description")}
DUPLICATE_ALT_THRESHOLD = 5


# {code: what it means}, read from the table above: one list of the rules, for pages.
def _rules(doc: str) -> dict[str, str]:
    rules: dict[str, str] = {}
    code = ""
    for line in doc.splitlines():
        found = regex.match(r"^    ([a-z_]+\.[a-z_]+)\s+(?:error|warning|info)\b\s*(.*)$", line)
        if found:
            code = found.group(1)
            rules[code] = found.group(2).strip()
        elif code and line.startswith(" " * 12) and line.strip():
            rules[code] = f"{rules[code]} {line.strip()}"
        else:
            code = ""
    return rules


RULES: dict[str, str] = _rules(__doc__ or "")
_MAX_INPUT = 4000

_FILENAME = regex.compile(
    r"\b[\w\-]+\.(?:jpe?g|png|gif|webp|tiff?|bmp|heic|heif|avif|svg|nef|cr2|cr3|arw|dng)\b"
    r"|\b(?:IMG|DSC[NF]?|PXL|MVIMG|DCIM|GOPR|DJI|SAM|WP)[_-]?\d{3,}",
    regex.I,
)
_FILE_FACTS = regex.compile(
    r"\b\d{2,5}\s*[x×]\s*\d{2,5}(?!\s*(?:cm|mm|m|in|inch|inches|ft|\"|″))(?:\s*px)?\b"
    r"|\b\d+\s?(?:dpi|ppi|px|pixels?|megapixels?|kb|mb)\b"
    r"|\b(?:jpe?g|png|gif|webp|tiff|heic|avif|bmp|srgb|cmyk|exif)\b",
    regex.I,
)
_MAKERS = (
    r"(?:canon|nikon|sony|olympus|fujifilm|fuji|panasonic|lumix|leica|pentax|hasselblad|"
    r"iphone|pixel|samsung|galaxy|gopro|dji|huawei|xiaomi)"
)
# "Shot on iPhone 12": about the camera, never the picture. A model name elsewhere may be
# the subject (a product photo of a phone), so it is only a warning.
_SHOT_ON = regex.compile(
    rf"\b(?:shot|taken|captured|photographed)\s+(?:on|with)\s+(?:an?\s+)?{_MAKERS}\b", regex.I
)
_CAMERA = regex.compile(rf"\b{_MAKERS}\s+(?:[\w-]+\s+)?[\w-]*\d[\w-]*\b", regex.I)
_URL = regex.compile(
    r"\bhttps?://\S+|\bwww\.\S+|\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
    r"(?:com|net|org|info|biz|io|co|app|dev|shop|store|online|site|xyz|top|example|"
    r"de|fr|es|it|nl|pt|uk|eu|ru|cn|jp|us|ca|au|ch|at|be|pl|se|no|dk|fi)\b",
    regex.I,
)
_EMAIL = regex.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# International numbers with "+", "(0xx) xxx-xxxx", "555-123-4567"; digits separated by
# spaces alone are counts ("10 000 000 visitors"), not phone numbers.
_PHONE = regex.compile(
    r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}(?!\w)"
    r"|\(\d{2,5}\)\s?\d{3,4}[\s.-]?\d{3,4}\b"
    r"|\b\d{3}[.-]\d{3}[.-]\d{4}\b"
)
_WORD = regex.compile(r"[\p{L}\p{M}\u200c\u200d'’-]+")
_GENERIC_KEYWORDS = frozenset(
    str.split(
        "image, images, photo, photos, picture, pictures, stock, stock photo, stock image, "
        "stock photography, jpg, jpeg, png, gif, webp, file, img, pic, foto, fotos, bild, "
        "bilder, imagen, immagine, imagem, afbeelding, illustration, graphic, hd, 4k, "
        "wallpaper, royalty free, high resolution, untitled",
        ", ",
    )
)


@dataclass(frozen=True)
class Finding:
    """One problem with one field's value, for a person to read and a machine to count."""

    field: str
    code: str
    level: Level
    message: str
    fix: str | None = None


class Findings:
    """The findings of one lint run, in rule order; serialises to a JSON list."""

    def __init__(self, items: Iterable[Finding] = ()) -> None:
        self._items = tuple(items)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Findings) and self._items == other._items

    def __add__(self, other: Iterable[Finding]) -> Findings:
        """These findings and more, e.g. ``findings + [duplicate_alt(count)]``."""
        return Findings((*self._items, *(f for f in other if f is not None)))

    def __repr__(self) -> str:
        return f"Findings({list(self._items)!r})"

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self._items if f.level == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self._items if f.level == "warning")

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(f.code for f in self._items)

    def for_field(self, name: str) -> Findings:
        return Findings(f for f in self._items if f.field == name)

    def fixed_values(self, values: Mapping[str, str]) -> dict[str, str]:
        """The values with every available fix applied (the first fix per field wins)."""
        fixed = dict(values)
        seen: set[str] = set()
        for finding in self._items:
            if finding.fix is not None and finding.field not in seen:
                fixed[finding.field] = finding.fix
                seen.add(finding.field)
        return fixed

    def as_json(self) -> list[dict]:
        return [{k: v for k, v in asdict(f).items() if v is not None} for f in self._items]

    def dumps(self) -> str:
        return json.dumps(self.as_json(), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: list[dict] | str | None) -> Findings:
        if isinstance(data, str):
            data = json.loads(data)
        return cls(
            Finding(
                field=item["field"],
                code=item["code"],
                level=item["level"],
                message=item["message"],
                fix=item.get("fix"),
            )
            for item in data or []
        )


def lint(
    values: Mapping[str, str],
    *,
    language: str,
    is_decorative: bool,
    image_type: str | None = None,
    overflow: Mapping[str, str] | None = None,
) -> Findings:
    """Check each value present in ``values`` (absent fields are not checked).

    ``image_type``: a logo's or icon's alt text may be a short name, so "alt.short" does
    not apply to them. ``overflow`` is ``schema.clean``'s text that did not fit: a value
    fitted at a boundary is complete but shorter than the answer, so it is asked again.
    """
    found: list[Finding] = []
    for name, rest in (overflow or {}).items():
        if rest:
            found.append(
                _f(
                    name,
                    "text.overflow",
                    "error",
                    f"The answer was too long; {text.length(rest)} characters did not fit.",
                )
            )
    limits = languages.alt_limits(language)
    alt = _nfc(values.get("alt_text", ""))
    if "alt_text" in values:
        if not alt and not is_decorative:
            found.append(_f("alt_text", "alt.empty", "error", "The image needs an alt text."))
        if alt:
            found += _alt_rules(alt, limits=limits, image_type=image_type)
    for name in PROSE_FIELDS:
        value = _nfc(values.get(name, ""))
        if value:
            found += _text_rules(name, value, language=language)
    caption = _nfc(values.get("caption", ""))
    if alt and caption and alt.casefold().strip(" .") == caption.casefold().strip(" ."):
        found.append(
            _f("caption", "caption.same_as_alt", "warning", "The caption repeats the alt text.")
        )
    if values.get("keywords"):
        found += _keyword_rules(_nfc(values["keywords"]))
    return Findings(found)


def duplicate_alt(count: int, *, threshold: int = DUPLICATE_ALT_THRESHOLD) -> Finding | None:
    """A finding when ``count`` images (this one included) share one alt text."""
    if count < threshold:
        return None
    return _f(
        "alt_text",
        "alt.duplicate",
        "warning",
        f"The same alt text is on {count} images; each image needs its own.",
    )


def strip_opener(value: str) -> str:
    """The value without an "image of"-type opener, recapitalised; unchanged if none."""
    result = value
    for _ in range(2):
        for pattern, replacement in phrases.OPENERS:
            stripped = pattern.sub(replacement, result, count=1)
            if stripped != result:
                result = stripped
                break
        else:
            break
    if result == value or not result.strip():
        return value
    return _capitalise(result.strip())


def _alt_rules(alt: str, *, limits: languages.AltLimits, image_type: str | None) -> list[Finding]:
    found: list[Finding] = []
    fixed = strip_opener(alt)
    if fixed != alt:
        found.append(
            _f(
                "alt_text",
                "alt.opener",
                "warning",
                "Screen readers already say it is an image: drop the opener.",
                fix=fixed,
            )
        )
    size = text.length(alt)
    if size > limits.max:
        found.append(
            _f("alt_text", "alt.length", "error", f"{size} characters; at most {limits.max}.")
        )
    elif size > limits.target:
        found.append(
            _f(
                "alt_text",
                "alt.length",
                "warning",
                f"{size} characters; about {limits.target} reads best.",
            )
        )
    elif size < limits.min and image_type not in {"logo", "icon"}:
        found.append(_f("alt_text", "alt.short", "warning", f"Only {size} characters."))
    return found


def _text_rules(name: str, value: str, *, language: str) -> list[Finding]:
    found: list[Finding] = []

    def add(code: str, level: Level, message: str) -> None:
        found.append(_f(name, code, level, message))

    if name in FIELD_MAX and text.length(value) > FIELD_MAX[name]:
        add("text.length", "error", f"{text.length(value)} characters; at most {FIELD_MAX[name]}.")
    if _is_placeholder(value):
        add("text.placeholder", "error", "Placeholder or generic text says nothing.")
    if any(p.search(value) for p in phrases.REFUSALS):
        add("text.refusal", "error", "The model refused or spoke about itself.")
    if any(p.search(value) for p in phrases.META):
        add("text.meta", "error", "Text about the text, not about the image.")
    if any(p.search(value) for p in phrases.INSTRUCTIONS):
        add("text.instruction", "error", "Instructions copied from the image or the file.")
    if _FILENAME.search(value):
        add("text.filename", "error", "A file name says nothing about the picture.")
    if _FILE_FACTS.search(value):
        add("text.file_facts", "error", "Sizes and formats say nothing about the picture.")
    if _SHOT_ON.search(value):
        add("text.camera", "error", "A camera name is not a description.")
    elif _CAMERA.search(value):
        add("text.camera", "warning", "A camera model: say it only if it is the subject.")
    if _looks_truncated(value):
        add("text.truncated", "warning", "The text looks cut off.")
    if _is_stuffed(value, repeats=4 if name in {"caption", "description"} else 3):
        add("text.stuffing", "warning", "Repeated words or a bare list of keywords.")
    if text.has_tags(value) or text.has_markdown(value):
        add("text.markup", "error", "HTML or markdown would be read out literally.")
    if text.has_entities(value):
        add("text.entity", "error", "HTML entities such as &amp; would be read out literally.")
    if text.has_emoji(value):
        add("text.emoji", "warning", "Emoji are read out by name.")
    if _is_shouting(value):
        add("text.shouting", "warning", "Mostly capital letters: read as shouting or spelled.")
    if _EMAIL.search(value):
        add("text.email", "error", "An e-mail address.")
    elif _URL.search(value):
        add("text.url", "error", "A web address.")
    if _PHONE.search(value):
        add("text.phone", "error", "A phone number.")
    if any(p.search(value) for p in phrases.PROMOTION):
        add("text.promo", "error", "Promotional text.")
    if any(p.search(value) for p in phrases.CREDITS):
        level: Level = "warning" if name in {"caption", "description"} else "error"
        add("text.credit", level, "Credit or copyright lines belong in their own field.")
    other = languages.differs(value, language=language)
    if other is not None:
        add(
            "text.language",
            "error",
            f"Written in {_language_name(other)}, not {_language_name(language)}.",
        )
    return found


def _keyword_rules(value: str) -> list[Finding]:
    found: list[Finding] = []
    keywords = [k.strip() for k in value.split(",") if k.strip()]
    if not KEYWORDS_MIN <= len(keywords) <= KEYWORDS_MAX:
        found.append(
            _f(
                "keywords",
                "keywords.count",
                "warning",
                f"{len(keywords)} keywords; {KEYWORDS_MIN} to {KEYWORDS_MAX} work best.",
            )
        )
    generic = [k for k in keywords if is_generic_keyword(k) or is_noise(k)]
    if generic:
        kept = ", ".join(k for k in keywords if k not in generic)
        found.append(
            _f(
                "keywords",
                "keywords.generic",
                "warning",
                f"Generic keywords: {', '.join(generic)}.",
                fix=kept,
            )
        )
    return found


def is_noise(value: str) -> bool:
    """Text never to copy into metadata: placeholders, refusals, meta text, instructions,
    file names and facts, camera names, addresses, promotion and credit lines."""
    value = _nfc(value)
    if not value:
        return False
    groups = (phrases.REFUSALS, phrases.META, phrases.INSTRUCTIONS, phrases.PROMOTION)
    return (
        _is_placeholder(value)
        or any(p.search(value) for group in (*groups, phrases.CREDITS) for p in group)
        or any(p.search(value) for p in (_FILENAME, _FILE_FACTS, _CAMERA, _URL, _EMAIL, _PHONE))
    )


def is_generic_keyword(keyword: str) -> bool:
    """ "stock photo", "jpg", "Shutterstock": a keyword no one searches a library for."""
    folded = keyword.casefold().lstrip("#").strip()
    return folded in _GENERIC_KEYWORDS or bool(
        regex.fullmatch(rf"(?:{phrases.STOCK_SITES})(?:\.com)?", folded, regex.I)
    )


def _is_placeholder(value: str) -> bool:
    folded = value.casefold().strip(" .!?:;…\"'“”")
    return folded in phrases.PLACEHOLDERS or bool(phrases.LOREM.match(value))


def _looks_truncated(value: str) -> bool:
    if value.endswith(("...", "…", ",", ";", ":", "-", "–", "(", "/", "&")):
        return True
    words = _WORD.findall(value)
    if len(words) >= 3 and words[-1].casefold() in phrases.DANGLING_WORDS:
        return value[-1].isalpha()
    return value.count("(") > value.count(")") or value.count("“") > value.count("”")


def _is_stuffed(value: str, *, repeats: int) -> bool:
    words = [w.casefold() for w in _WORD.findall(value)]
    telling = [w for w in words if len(w) >= 3 and w not in phrases.ALL_STOP_WORDS]
    if any(telling.count(w) >= repeats for w in set(telling)):
        return True
    parts = [p.strip() for p in value.split(",")]
    return len(parts) >= 5 and all(0 < len(p.split()) <= 2 for p in parts)


def _is_shouting(value: str) -> bool:
    cased = [ch for ch in value if ch.isupper() or ch.islower()]
    if len(cased) < 8:
        return False
    caps_words = [w for w in _WORD.findall(value) if len(w) >= 3 and w.isupper()]
    upper = sum(ch.isupper() for ch in cased)
    return len(caps_words) >= 2 and upper / len(cased) >= 0.7


def _language_name(tag: str) -> str:
    try:
        return languages.display_name(tag)
    except ValueError:
        return tag


def _capitalise(value: str) -> str:
    first = value[:1]
    upper = first.upper()
    return (upper if len(upper) == 1 else first) + value[1:]


def _nfc(value: object) -> str:
    # Stored values are short; an old library's odd 1 MB value must not make a rule slow.
    return unicodedata.normalize("NFC", str(value or "")[:_MAX_INPUT]).strip()


def _f(field: str, code: str, level: Level, message: str, fix: str | None = None) -> Finding:
    return Finding(field=field, code=code, level=level, message=message, fix=fix)
