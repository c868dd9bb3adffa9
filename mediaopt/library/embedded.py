"""Text that files carry about themselves: EXIF, IPTC, XMP and PNG text, read with size
caps and never trusted (a placeholder, a camera's default or its own name is no text).

Works on an image Pillow has already opened (images.py opens it safely).
"""

from __future__ import annotations

import contextlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from django.conf import settings
from PIL import Image, IptcImagePlugin

_MAX_XMP_BYTES = 1024 * 1024
# Longer embedded text is not a title or a caption; the fields' own limits are far lower.
_MAX_TEXT_CHARS = 10_000
_MAX_KEYWORDS = 200


@dataclass(frozen=True)
class EmbeddedText:
    title: str = ""
    description: str = ""
    keywords: tuple[str, ...] = ()
    camera: str = ""


def _max_exif_bytes() -> int:
    return int(getattr(settings, "MEDIAOPT_MAX_EXIF_BYTES", 1024 * 1024))


def exif_of(img: Image.Image) -> Image.Exif:
    """The image's EXIF, or an empty one when it is over MEDIAOPT_MAX_EXIF_BYTES.

    Parsing is what costs: Pillow turns a tag of N numbers into a tuple of N ints, so
    30 MB of EXIF took over 3 GB. A TIFF's tags are its own header, already read.
    """
    if img.format == "TIFF":
        return img.getexif()
    raw = img.info.get("exif")
    exif = Image.Exif()
    if isinstance(raw, (bytes, bytearray)) and 0 < len(raw) <= _max_exif_bytes():
        exif.load(bytes(raw))
    return exif


# Descriptions cameras and software write by default: not a description of the picture.
_JUNK_TEXT = {
    "",
    "default",
    "description",
    "image description",
    "imagedescription",
    "untitled",
    "no title",
    "title",
    "image",
    "photo",
    "picture",
    "none",
    "null",
    "n/a",
    "na",
    "-",
    "camera",
    "digital camera",
    "olympus digital camera",
    "sony dsc",
    "kodak digital still camera",
    "minolta digital camera",
    "konica minolta digital camera",
    "samsung digital camera",
    "samsung",
    "digimax",
    "sanyo digital camera",
    "exif_jpeg_picture",
    "exif jpeg picture",
    "lead technologies inc. v1.01",
    "created with gimp",
    "screenshot",
    "dcim",
}
_JUNK_PATTERNS = (
    # Camera file-name codes used as a description: IMG_1234, DSC00012, PXL_2023..., P1010001.
    re.compile(r"^(?:img|dsc[nf]?|pxl|mvimg|p|dji|gopr|imag)[_\- ]?\d+[\w\-]*$", re.I),
    re.compile(r"^[\W\d_]*$"),  # digits, punctuation, spaces only
    re.compile(r"digital (?:still )?camera$", re.I),
    re.compile(r"^(?:created|edited|processed) (?:with|by) ", re.I),
)


def is_placeholder_text(text: str, *, camera: str = "") -> bool:
    """True for text that says nothing about the picture: camera defaults, blanks,
    file-name-like codes, or the camera's own make/model."""
    cleaned = " ".join(text.replace("\x00", " ").split()).strip()
    folded = cleaned.casefold()
    if folded in _JUNK_TEXT or any(p.search(cleaned) for p in _JUNK_PATTERNS):
        return True
    # The camera's name, or a part of it ("Canon", "EOS 5D"), is not a description.
    return bool(camera) and folded in camera.casefold()


def from_image(img: Image.Image) -> EmbeddedText:
    """Embedded text of an opened image; never raises (broken metadata reads as none)."""
    try:
        exif = _exif_text(img)
        iptc = _iptc_text(img)
        xmp = _xmp_text(img)
        png = _png_text(img)
    except Exception:
        return EmbeddedText()

    camera = exif.get("camera", "")

    def first(*values: str) -> str:
        for value in values:
            text = _one_line(value[:_MAX_TEXT_CHARS])
            if text and not is_placeholder_text(text, camera=camera):
                return text
        return ""

    title = first(
        xmp.get("title", ""), iptc.get("title", ""), exif.get("title", ""), png.get("title", "")
    )
    description = first(
        xmp.get("description", ""),
        iptc.get("description", ""),
        exif.get("description", ""),
        png.get("description", ""),
    )
    keywords: tuple[str, ...] = ()
    for candidate in (
        xmp.get("keywords"),
        iptc.get("keywords"),
        exif.get("keywords"),
        png.get("keywords"),
    ):
        words = _keywords(candidate or [], camera=camera)
        if words:
            keywords = words
            break
    return EmbeddedText(title=title, description=description, keywords=keywords, camera=camera)


def _one_line(value: str) -> str:
    return " ".join(value.replace("\x00", " ").split())


def _keywords(values: list[str], *, camera: str) -> tuple[str, ...]:
    seen: set[str] = set()
    words: list[str] = []
    for value in values[:_MAX_KEYWORDS]:
        for part in re.split(r"[;,]", value[:_MAX_TEXT_CHARS]):
            word = _one_line(part)
            if (
                word
                and word.casefold() not in seen
                and not is_placeholder_text(word, camera=camera)
            ):
                seen.add(word.casefold())
                words.append(word)
    return tuple(words)


def _decode(value: object) -> str:
    """Text from a metadata value that may be str, bytes (UTF-8 or Latin-1) or ints."""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        value = bytes(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(value).decode("latin-1")
    return ""


def _decode_xp(value: object) -> str:
    """Windows XP* tags: UTF-16LE, as bytes or a tuple of byte values."""
    if isinstance(value, tuple):
        value = bytes(v for v in value if isinstance(v, int) and 0 <= v < 256)
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-16-le", errors="ignore").rstrip("\x00")
    return ""


def _exif_text(img: Image.Image) -> dict:
    try:
        exif = exif_of(img)
    except Exception:
        return {}
    out: dict = {}
    with contextlib.suppress(Exception):
        make = _one_line(_decode(exif.get(0x010F, "")))
        model = _one_line(_decode(exif.get(0x0110, "")))
        # Models often repeat the make ("Canon" + "Canon EOS 5D").
        if make and model.casefold().startswith(make.casefold()):
            camera = model
        else:
            camera = " ".join(part for part in (make, model) if part)
        out["camera"] = camera
    with contextlib.suppress(Exception):
        out["description"] = _decode(exif.get(0x010E, "")) or _decode_xp(exif.get(0x9C9F, ""))
    with contextlib.suppress(Exception):
        out["title"] = _decode_xp(exif.get(0x9C9B, ""))
    with contextlib.suppress(Exception):
        xp_keywords = _decode_xp(exif.get(0x9C9E, ""))
        if xp_keywords:
            out["keywords"] = [xp_keywords]
    return out


def _iptc_text(img: Image.Image) -> dict:
    try:
        info = IptcImagePlugin.getiptcinfo(img) or {}  # type: ignore[arg-type]
    except Exception:
        return {}

    def values(key: tuple[int, int]) -> list[str]:
        raw = info.get(key)
        items = raw if isinstance(raw, list) else ([raw] if raw is not None else [])
        return [_decode(item) for item in items]

    out: dict = {}
    caption = values((2, 120))
    if caption:
        out["description"] = caption[0]
    title = values((2, 5)) or values((2, 105))
    if title:
        out["title"] = title[0]
    keywords = values((2, 25))
    if keywords:
        out["keywords"] = keywords
    return out


_NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
}
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def _xmp_text(img: Image.Image) -> dict:
    packet = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
    if not packet:
        return {}
    try:
        return _parse_xmp(packet if isinstance(packet, bytes) else str(packet).encode("utf-8"))
    except Exception:
        return {}


def _parse_xmp(packet: bytes) -> dict:
    """dc:title, dc:description (x-default first) and dc:subject from an XMP packet.

    The standard library parser is used on purpose (no defusedxml dependency); entity
    declarations are refused outright, so no expansion or external fetch can happen.
    """
    if len(packet) > _MAX_XMP_BYTES or b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        return {}
    start = packet.find(b"<x:xmpmeta")
    if start < 0:
        start = packet.find(b"<rdf:RDF")
    end_tag = b"</x:xmpmeta>" if packet[start:].startswith(b"<x:xmpmeta") else b"</rdf:RDF>"
    end = packet.find(end_tag, start)
    if start < 0 or end < 0:
        return {}
    root = ET.fromstring(packet[start : end + len(end_tag)])

    def alt(name: str) -> str:
        for element in root.iter(f"{{{_NS['dc']}}}{name}"):
            items = element.findall(".//rdf:li", _NS)
            chosen = next((i for i in items if i.get(_XML_LANG) == "x-default"), None)
            chosen = chosen if chosen is not None else (items[0] if items else element)
            text = "".join(chosen.itertext()).strip()
            if text:
                return text
        # The short form: dc:title="..." as an attribute of rdf:Description.
        for description in root.iter(f"{{{_NS['rdf']}}}Description"):
            value = description.get(f"{{{_NS['dc']}}}{name}")
            if value:
                return value
        return ""

    out: dict = {"title": alt("title"), "description": alt("description")}
    keywords = [
        "".join(li.itertext()).strip()
        for subject in root.iter(f"{{{_NS['dc']}}}subject")
        for li in subject.findall(".//rdf:li", _NS)
    ]
    if keywords:
        out["keywords"] = keywords
    return out


def _png_text(img: Image.Image) -> dict:
    """PNG tEXt/iTXt "Title", "Description" and "Keywords" (as written by many tools)."""
    if img.format != "PNG":
        return {}
    info = {str(k).casefold(): v for k, v in img.info.items() if isinstance(v, str)}
    out: dict = {"title": info.get("title", ""), "description": info.get("description", "")}
    if info.get("keywords"):
        out["keywords"] = [info["keywords"]]
    return out
