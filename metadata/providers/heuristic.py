"""The heuristic provider: metadata from what the file already says, and nothing else.

Sources, in order: text embedded in the file (``request.embedded``: "title",
"description", "keywords" comma-joined, optionally "camera", and optionally
"descriptions", a mapping of language tag to description from XMP's language
alternatives) and a telling file name ("golden-retriever_on-beach.jpg").

It works in every script and keeps the case it was given ("Katze auf dem Sofa", "CEO John
Smith"). It never copies noise: camera and phone file codes, design-tool frame names
("Artboard 1"), stock-photo sites, image-technical and generic words ("rgba", "hero",
"placeholder"), camera firmware strings ("SAMSUNG CSC"), credit and copyright lines,
"Made with ..." and instructions. With nothing telling, the field stays absent.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from pathlib import PurePosixPath, PureWindowsPath

import regex

from metadata import phrases, quality, text
from metadata.providers.base import DescribeRequest, DescribeResult

_CAMERA_NAME = regex.compile(
    r"""^(?:
        (?:img|dsc[nf]?|dcim|pxl|mvimg|vid|pano|burst|gopr|gp|dji|imag|sam|wp|cimg|pict|
           photo|image|scan|scanned|snapshot|snap|mov|dscf|_dsc|_mg|mg)[\s_-]*\d
      | p\d{7}                         # Panasonic/Olympus P1010001
      | \d{8}[\s_-]?\d{6}              # 20230101_120000
    )[\d\s_.~()-]*(?:[\s_-]*(?:mp|hdr|pano|burst|cover|edited|portrait|night|bokeh|\d+))*$""",
    regex.IGNORECASE | regex.VERBOSE,
)
# Screenshot tools and messengers name files by date, not by subject.
_SCREENSHOT = regex.compile(
    r"^(?:screen[\s_-]?shot|screenshot|capture|bildschirmfoto|captura|schermata|"
    r"whats[\s_-]?app[\s_-]|signal-\d|telegram|photo_\d|fb_img|received_\d)",
    regex.I,
)
_UUID = regex.compile(
    r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", regex.I
)
_HEX = regex.compile(r"^[0-9a-f]{12,}$", regex.I)
_SEPARATORS = regex.compile(r"[\s_\-.+,()\[\]{}~@#&=!;]+")
_WORD = regex.compile(r"^[\p{L}\p{M}\u200c\u200d'’]+$")
_CJK = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")
# Sentence ends, but not after an abbreviation ("LEAD Technologies Inc. V1.01").
_SENTENCE = regex.compile(
    r"(?<!\b(?:inc|ltd|co|corp|dr|st|mr|mrs|ms|nr|no|ca|vs|etc|z\.b|e\.g|i\.e)\.)"
    r"(?<=[.!?])\s+|(?<=[。！？])",
    regex.I,
)
_FIRMWARE = regex.compile(
    r"digital\s+(?:still\s+)?camera|^exif[_\s]?jpeg|lead\s+technologies|^dcim\b|"
    r"^(?:samsung|olympus|sony|kodak|minolta|konica|sanyo|casio|huawei|lg|motorola|nokia)"
    r"(?:\s+[A-Z0-9-]{2,})+$|^(?:default|none|null|untitled)$",
    regex.I,
)


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_EXTENSIONS = _word_set(
    "jpg jpeg jpe png gif webp tif tiff bmp heic heif avif svg nef cr2 cr3 arw dng orf rw2 raf"
)
# File-name words that say nothing about the picture, compared casefolded.
_NOISE = (
    _word_set(
        """
    img image images pic pics picture pictures photo photos photograph foto fotos bild bilder
    imagen imagenes immagine immagini imagem afbeelding untitled unnamed unbenannt scan scanned
    screenshot bildschirmfoto captura schermata screen shot capture snapshot copy kopie final
    edit edited version draft
    resized resize scaled large small medium tiny big mini thumb thumbnail preview web min
    full hd uhd fhd qhd retina original orig export exported crop cropped compressed optimized
    file dsc dscn pxl mp hdr pano burst vid cover bokeh raw rgb rgba srgb cmyk grayscale
    greyscale bw transparent alpha animated animation sample test example demo dummy temp tmp
    placeholder default download downloaded upload uploaded attachment asset assets media
    artboard frame group layer rectangle ellipse vector shape component instance mockup
    slide page screen desktop mobile tablet layout template banner hero header footer spacer
    divider separator icons ico favicon sprite bg wallpaper product stock
    canva figma sketch photoshop psd
    lightroom snapseed vsco instagram facebook fb twitter midjourney dalle generated
    """
    )
    | _EXTENSIONS
)
# Stock sites name files "pexels-jane-doe-123.jpg": what is left is a credit, not a subject.
_STOCK_SITES = _word_set(
    """
    shutterstock pexels unsplash pixabay istock istockphoto getty gettyimages adobestock
    depositphotos dreamstime alamy freepik stocksy
    """
)
# Words that fit in a phrase ("Acme logo", "apple on white background") but tell nothing
# alone, so they neither make a name telling nor become keywords.
_GENERIC = _word_set("logo icon background portrait design closeup detail view")
_CAMERA_MAKERS = _word_set(
    """
    canon nikon sony olympus fujifilm fuji panasonic lumix samsung apple iphone pentax
    leica kodak minolta konica ricoh gopro dji huawei xiaomi google pixel lg motorola
    oneplus hasselblad sigma casio nokia oppo vivo realme
    """
)
_CAMERA_WORDS = _word_set(
    """
    eos digital camera dsc dslr mirrorless corporation corp inc co ltd imaging optical pro
    max plus mini ultra mark ii iii iv powershot coolpix cyber shot cybershot alpha ilce csc
    still galaxy note
    """
)


class HeuristicProvider:
    """Writes only what it knows; with nothing telling, a field stays absent."""

    name = "heuristic"

    def describe(self, request: DescribeRequest) -> DescribeResult:
        embedded = request.embedded
        camera = str(embedded.get("camera") or "").strip()
        description = telling_text(_description_for(embedded, request.language), camera=camera)
        title = telling_text(str(embedded.get("title") or ""), camera=camera)
        keywords = telling_keywords(str(embedded.get("keywords") or ""), camera=camera)
        name_words = file_name_words(request.original_name)
        phrase = file_name_phrase(name_words)

        candidates: dict[str, str] = {
            "alt_text": description or title or phrase,
            "title": title or phrase,
            "caption": description,
            "description": description,
            "keywords": ", ".join(keywords or keywords_from_words(name_words)),
        }
        output = {
            field: value for field, value in candidates.items() if value and field in request.fields
        }
        return DescribeResult(output=output, provider=self.name, model="")


def telling_text(value: str, *, camera: str = "") -> str:
    """Embedded text without its junk sentences (credits, "Made with ...", instructions,
    firmware strings, camera names, placeholders); "" when nothing telling is left."""
    value = _one_line(value)
    kept: list[str] = []
    for sentence in _SENTENCE.split(value):
        sentence = sentence.strip()
        if regex.search(r"\p{L}{2}", sentence) and not _is_junk(sentence, camera=camera):
            kept.append(sentence)
    return " ".join(kept)


def telling_keywords(value: str, *, camera: str = "") -> list[str]:
    """Embedded keywords in their own case, without hashtags, noise or camera names."""
    seen: set[str] = set()
    keywords: list[str] = []
    for part in regex.split(r"[,;、，；]", value):
        keyword = _one_line(part).strip(" .").lstrip("#").strip()
        folded = text.fold(keyword)
        if (
            not keyword
            or folded in seen
            or keyword.casefold() in _NOISE
            or keyword.casefold() in _STOCK_SITES
            or quality.is_generic_keyword(keyword)
            or _is_junk(keyword, camera=camera)
        ):
            continue
        seen.add(folded)
        keywords.append(keyword)
    return keywords


def looks_like_camera(text: str) -> bool:
    """ "Canon EOS 5D Mark IV", "NIKON D750", "iPhone 12 Pro": a camera, not a subject."""
    text = regex.sub(
        r"^(?:shot|taken|captured|photographed)\s+(?:on|with|by)\s+", "", text, flags=regex.I
    )
    words = regex.findall(r"[\w-]+", text.strip().casefold())
    if not words or words[0] not in _CAMERA_MAKERS:
        return False
    return all(
        word in _CAMERA_MAKERS or word in _CAMERA_WORDS or any(ch.isdigit() for ch in word)
        for word in words[1:]
    )


def file_name_words(original_name: str) -> list[str]:
    """The telling words of a file name, in order and in their case, stop words kept
    between them; [] if it says nothing.

    "golden-retriever_on-beach.JPG" -> ["golden", "retriever", "on", "beach"].
    """
    name = PureWindowsPath(PurePosixPath(original_name or "").name).name
    stem = unicodedata.normalize("NFC", name).strip()
    # "DSC_0042.NEF.jpg", "photo.jpg.png": extensions inside the name are noise too.
    stem = regex.sub(r"(?:\.[A-Za-z0-9]{1,5})+$", _keep_non_extensions, stem).strip()
    if not stem or _CAMERA_NAME.match(stem) or _SCREENSHOT.match(stem):
        return []
    if _UUID.match(stem) or _HEX.match(regex.sub(r"[-_]", "", stem)):
        return []
    # camelCase and separators become spaces: "GoldenRetriever_on-beach" -> 4 words.
    spaced = regex.sub(r"(?<=\p{Ll})(?=\p{Lu})|(?<=\p{Lu})(?=\p{Lu}\p{Ll})", " ", stem)
    tokens = [t for t in _SEPARATORS.split(spaced) if t]
    if any(t.casefold() in _STOCK_SITES for t in tokens):
        return []
    words = [t for t in tokens if _is_word(t)]
    words = [w for w in words if w.casefold() not in _NOISE]
    if not any(_is_telling(w) for w in words):
        return []
    if regex.search(r"\p{Lu}", stem) and not regex.search(r"\p{Ll}", stem):
        words = [w.lower() for w in words]  # "SUNSET_BEACH.JPG": caps lock, not emphasis
    # Stop words at either end carry nothing ("the", "of") once noise is gone.
    while words and words[0].casefold() in phrases.ALL_STOP_WORDS:
        words.pop(0)
    while words and words[-1].casefold() in phrases.ALL_STOP_WORDS:
        words.pop()
    return words


def file_name_phrase(words: list[str]) -> str:
    """The words as a phrase with a capital first letter; "" for a camera name."""
    if not words:
        return ""
    phrase = " ".join(words)
    if looks_like_camera(phrase):
        return ""
    first = phrase[0].upper()
    return (first if len(first) == 1 else phrase[0]) + phrase[1:]


def keywords_from_words(words: list[str]) -> list[str]:
    seen: set[str] = set()
    keywords: list[str] = []
    for word in words:
        if _is_telling(word) and text.fold(word) not in seen:
            seen.add(text.fold(word))
            keywords.append(word)
    return keywords if not looks_like_camera(" ".join(words)) else []


def _description_for(embedded: Mapping, language: str) -> str:
    """The embedded description in the asked language, else the default one.

    With per-language descriptions and none in the asked language (nor "x-default"),
    nothing: a description in another language is not one the site can use.
    """
    descriptions = embedded.get("descriptions")
    if isinstance(descriptions, Mapping) and descriptions:
        by_tag = {str(tag).casefold(): str(body) for tag, body in descriptions.items()}
        asked = (language or "").casefold().replace("_", "-")
        for tag in (asked, asked.split("-")[0], "x-default"):
            if by_tag.get(tag):
                return by_tag[tag]
        base = asked.split("-")[0]
        for tag, body in by_tag.items():
            if tag.split("-")[0] == base and body:
                return body
        return ""
    return str(embedded.get("description") or "")


def _is_junk(text: str, *, camera: str) -> bool:
    folded = text.casefold()
    if camera and (folded in camera.casefold() or camera.casefold() in folded):
        return True
    if _FIRMWARE.search(text) or looks_like_camera(text) or phrases.MADE_WITH.search(text):
        return True
    if quality.is_noise(text):
        return True
    words = [w for w in _SEPARATORS.split(text) if w]
    return bool(words) and all(w.casefold() in _NOISE for w in words)


def _is_word(token: str) -> bool:
    """A real word: letters only, not a hash or a vowel-less code such as "xkcdq"."""
    if not _WORD.match(token):
        return False  # "1024x768", "v2", "4k", "e1600000000", "a1b2c3"
    if _CJK.search(token):
        return True
    if len(token) == 1:
        return token.casefold() == "a"
    low = token.casefold()
    if low.isascii() and len(low) >= 4 and not regex.search(r"[aeiouy]", low):
        return False
    return not (len(low) >= 12 and _HEX.match(low))


def _is_telling(word: str) -> bool:
    folded = word.casefold()
    if folded in phrases.ALL_STOP_WORDS or folded in _NOISE or folded in _GENERIC:
        return False
    if _CJK.search(word):
        return True
    size = len(regex.findall(r"\X", word))
    return size >= 3 if word.isascii() else size >= 2


def _keep_non_extensions(match: regex.Match[str]) -> str:
    parts = match.group(0).split(".")[1:]
    kept = [p for p in parts if p.casefold() not in _EXTENSIONS]
    return "".join(f".{p}" for p in kept)


def _one_line(value: str) -> str:
    return " ".join(unicodedata.normalize("NFC", value.replace("\x00", " ")).split())
