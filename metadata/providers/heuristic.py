"""The heuristic provider: metadata from what the file already says, and nothing else.

Sources, in order: text embedded in the file (``request.embedded``: "title",
"description", "keywords" comma-joined, optionally "camera") and a telling file name
("golden-retriever_on-beach.jpg"). Camera-style or meaningless names (IMG_1234,
PXL_2023..., screenshot-2024-..., hashes) say nothing, and then the field stays absent.
It never writes file facts ("JPEG, 1024x768") or camera names.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath

from mediaopt.library.images import is_placeholder_text
from metadata.providers.base import DescribeRequest, DescribeResult

# Whole names that come from cameras, phones, scanners and screenshot tools.
_CAMERA_NAME = re.compile(
    r"""^(?:
        (?:img|dsc[nf]?|dcim|pxl|mvimg|vid|pano|burst|gopr|gp|dji|imag|sam|wp|cimg|pict|
           photo|image|scan|scanned|snapshot|snap)[\s_-]*\d
      | p\d{7}                         # Panasonic/Olympus P1010001
      | \d{8}[\s_-]?\d{6}              # 20230101_120000
    )[\d\s_.~()-]*(?:[\s_-]*(?:mp|hdr|pano|burst|cover|edited|portrait|night|bokeh|\d+))*$""",
    re.IGNORECASE | re.VERBOSE,
)
# Screenshot tools and messengers name files by date, not by subject.
_SCREENSHOT = re.compile(
    r"^(?:screen[\s_-]?shot|screenshot|capture|bildschirmfoto|whats[\s_-]?app[\s_-]|"
    r"signal-\d|telegram|photo_\d|fb_img|received_\d)",
    re.I,
)
_SHOT_ON = re.compile(r"^(?:shot|taken|captured|photographed)\s+(?:on|with|by)\s+", re.I)
_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)
_HEX = re.compile(r"^[0-9a-f]{12,}$", re.I)


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


_EXTENSIONS = _word_set(
    "jpg jpeg jpe png gif webp tif tiff bmp heic heif avif nef cr2 cr3 arw dng orf rw2 raf"
)
# Words that say nothing about the picture (file-name noise).
_NOISE = (
    _word_set(
        """
    img image images pic pics picture pictures photo photos photograph foto fotos untitled
    unnamed scan scanned screenshot screen shot capture snapshot copy final edit edited
    new old version draft resized resize scaled large small medium thumb thumbnail
    preview web min full hd uhd original orig export exported crop cropped file dsc dscn
    pxl mp hdr pano burst vid cover bokeh raw
    """
    )
    | _EXTENSIONS
)
_STOP = _word_set(
    """
    a an the and or of on in at to for from by with without over under near into onto
    is are was were be this that these those my our your his her its their it as up
    """
)
# Makers whose names, alone or with a model code, are a camera and not a subject.
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
    max plus mini ultra mark ii iii iv powershot coolpix cyber shot cybershot alpha ilce
    """
)


class HeuristicProvider:
    """Writes only what it knows; with nothing telling, a field stays absent."""

    name = "heuristic"

    def describe(self, request: DescribeRequest) -> DescribeResult:
        camera = (request.embedded.get("camera") or "").strip()

        def usable(text: str) -> str:
            text = " ".join((text or "").split())
            if not text or is_placeholder_text(text, camera=camera) or looks_like_camera(text):
                return ""
            if camera and camera.casefold() in text.casefold():
                return ""  # "Shot on Canon EOS 5D": the camera is not the subject
            return text

        description = usable(request.embedded.get("description", ""))
        title = usable(request.embedded.get("title", ""))
        keywords = [
            word
            for word in (usable(k) for k in (request.embedded.get("keywords") or "").split(","))
            if word
        ]
        name_words = file_name_words(request.original_name)
        phrase = _sentence(name_words) if name_words else ""
        if phrase and looks_like_camera(phrase):
            name_words, phrase = [], ""

        candidates: dict[str, str] = {
            "alt_text": description or title or phrase,
            "title": title or phrase,
            "caption": description,
            "description": description,
            "keywords": ", ".join(keywords or _keywords_from(name_words)),
        }
        output = {
            field: value for field, value in candidates.items() if value and field in request.fields
        }
        return DescribeResult(output=output, provider=self.name, model="")


def looks_like_camera(text: str) -> bool:
    """ "Canon EOS 5D Mark IV", "NIKON D750", "iPhone 12 Pro": a camera, not a subject."""
    text = _SHOT_ON.sub("", text.strip())
    words = re.findall(r"[\w-]+", text.casefold())
    if not words or words[0] not in _CAMERA_MAKERS:
        return False
    return all(
        word in _CAMERA_MAKERS or word in _CAMERA_WORDS or any(ch.isdigit() for ch in word)
        for word in words[1:]
    )


def file_name_words(original_name: str) -> list[str]:
    """The telling words of a file name, in order, stop words kept; [] if it says nothing.

    "golden-retriever_on-beach.JPG" -> ["golden", "retriever", "on", "beach"].
    """
    name = PureWindowsPath(PurePosixPath(original_name or "").name).name
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", name).strip()
    # "DSC_0042.NEF.jpg", "photo.jpg.png": extensions inside the name are noise too.
    stem = re.sub(rf"(?:\.(?:{'|'.join(sorted(_EXTENSIONS))}))+$", "", stem, flags=re.I).strip()
    if not stem or _CAMERA_NAME.match(stem) or _SCREENSHOT.match(stem):
        return []
    if _UUID.match(stem) or _HEX.match(stem.replace("-", "").replace("_", "")):
        return []
    letters = sum(ch.isalpha() for ch in stem)
    if letters < 3:  # digits and a letter or two: a code, not a name
        return []
    # camelCase and separators become spaces: "GoldenRetriever_on-beach" -> 4 words.
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)
    tokens = [t for t in re.split(r"[\s_\-.+,()\[\]~]+", spaced) if t]
    words = [t.casefold() for t in tokens if _is_word(t)]
    telling = [w for w in words if w not in _STOP and w not in _NOISE and len(w) >= 3]
    if not telling:
        return []
    digits = sum(ch.isdigit() for ch in stem)
    if digits > letters and max(len(w) for w in telling) < 4:
        return []  # mostly digits, with only a scrap of letters ("ab_2023_0412")
    words = [w for w in words if w not in _NOISE]
    # Stop words at either end carry nothing ("the", "of") once noise is gone.
    while words and words[0] in _STOP:
        words.pop(0)
    while words and words[-1] in _STOP:
        words.pop()
    return words


def _is_word(token: str) -> bool:
    """A real word: letters only, and not a hash or a vowel-less code such as "xkcdq"."""
    if not token.isalpha():
        return False  # "1024x768", "v2", "4k", "e1600000000", "a1b2c3"
    low = token.casefold()
    if len(low) == 1:
        return low in {"a"}
    if len(low) >= 4 and not re.search(r"[aeiouy]", low):
        return False
    return not (len(low) >= 12 and _HEX.match(low))


def _sentence(words: list[str]) -> str:
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _keywords_from(words: list[str]) -> list[str]:
    seen: list[str] = []
    for word in words:
        if word not in _STOP and len(word) > 2 and word not in seen:
            seen.append(word)
    return seen
