"""Everything Pillow: safe open, limits, previews for the model, thumbnails, embedded text.

Every image this project reads goes through :func:`_open`, which

* tries only the raster formats in ``ALLOWED_FORMATS`` (never EPS, so Ghostscript never
  runs, and never a PostScript file renamed ``.jpg``);
* refuses images over ``settings.MEDIAOPT_MAX_IMAGE_PIXELS`` before any pixel is decoded
  (a 236 KB PNG can otherwise claim 666 MB); ``DecompressionBombWarning`` is an error;
* only ever decodes the first frame: a 3,000-frame GIF costs what its first frame costs.

Pixels are decoded only through :func:`_decoded`, which refuses an image whose decoded
form would cost more than ``settings.MEDIAOPT_MAX_DECODE_BYTES`` in its colour mode and
holds the process's decoding budget while it is loaded (see ``decoding``). EXIF over
``MEDIAOPT_MAX_EXIF_BYTES`` is ignored and PNG text chunks are capped, so metadata
cannot cost more than the pixels.

Previews and thumbnails are *fresh* images built from pixels, so no EXIF, ICC profile,
COM comment, XMP or IPTC block of the upload travels to the model or the browser.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from PIL import Image, ImageFile, IptcImagePlugin, PngImagePlugin

from mediaopt.library import decoding

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")

_SUPPORTED = "upload JPEG, PNG, GIF, WebP, TIFF or BMP"
_DAMAGED = "the image file is damaged and cannot be read"
_PREVIEW_QUALITY = 85
_MAX_XMP_BYTES = 1024 * 1024
# Longer embedded text is not a title or a caption; the fields' own limits are far lower.
_MAX_TEXT_CHARS = 10_000
_MAX_KEYWORDS = 200
_TOO_MUCH_METADATA = (
    "the image carries more embedded data (text, XMP or colour profile) than is allowed"
)

Source = bytes | BinaryIO | str | Path


class ImageError(Exception):
    """The file is not an image we will process; ``reason`` is for a person to read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    """Format, upright size (EXIF orientation applied) and frame count (capped)."""

    format: str
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class EmbeddedText:
    title: str = ""
    description: str = ""
    keywords: tuple[str, ...] = ()
    camera: str = ""


# --------------------------------------------------------------------------- opening


def _max_pixels() -> int:
    return int(getattr(settings, "MEDIAOPT_MAX_IMAGE_PIXELS", 64_000_000))


def _max_frames() -> int:
    return max(1, int(getattr(settings, "MEDIAOPT_MAX_FRAMES", 1000)))


def _max_exif_bytes() -> int:
    return int(getattr(settings, "MEDIAOPT_MAX_EXIF_BYTES", 1024 * 1024))


def _max_text_bytes() -> int:
    return int(getattr(settings, "MEDIAOPT_MAX_TEXT_BYTES", 4 * 1024 * 1024))


@contextlib.contextmanager
def _stream(source: Source) -> Iterator[BinaryIO]:
    """A seekable binary stream at offset 0; closes only what it opened itself."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(bytes(source))
    elif isinstance(source, (str, Path)):
        try:
            handle = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ImageError(f"the file could not be read ({exc.strerror or exc})") from exc
        with handle:
            yield handle
    else:
        # A caller's file (Django File/FieldFile opened "rb"): rewind, leave it open.
        with contextlib.suppress(AttributeError, OSError, ValueError):
            source.seek(0)
        yield source


_SNIFF: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (
        re.compile(
            rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!DOCTYPE svg|<svg)",
            re.I | re.S,
        ),
        "SVG is not supported",
    ),
    (re.compile(rb"^(?:%!PS|\xc5\xd0\xd3\xc6)"), "PostScript/EPS is not supported"),
    (re.compile(rb"^%PDF-"), "PDF is not supported"),
    (
        re.compile(rb"^....ftyp(?:heic|heix|hevc|mif1|msf1|heim|heis)", re.S),
        "HEIC/HEIF is not supported",
    ),
    (re.compile(rb"^....ftypavi[fs]", re.S), "AVIF is not supported"),
    (re.compile(rb"^8BPS"), "Photoshop PSD is not supported"),
    (re.compile(rb"^\x00\x00\x01\x00"), "ICO is not supported"),
)


def _unsupported_reason(head: bytes) -> str:
    """Why Pillow (restricted to ALLOWED_FORMATS) could not identify these bytes."""
    if not head.strip():
        return "the file is empty"
    for pattern, what in _SNIFF:
        if pattern.search(head):
            return f"not a supported image ({what}; {_SUPPORTED})"
    return f"not a supported image (the file is damaged or not an image; {_SUPPORTED})"


def _head(stream: BinaryIO, size: int = 1024) -> bytes:
    try:
        stream.seek(0)
        head = stream.read(size)
        stream.seek(0)
    except (OSError, ValueError):
        return b""
    if not isinstance(head, bytes):
        raise TypeError("images: open files in binary mode ('rb')")
    return head


def _too_large_reason(pixels: int | None = None) -> str:
    limit = _max_pixels()
    size = f" ({pixels:,} pixels)" if pixels else ""
    return f"the image is too large{size}; the limit is {limit:,} pixels"


@contextlib.contextmanager
def _open(source: Source) -> Iterator[Image.Image]:
    """Open with the allow-list and pixel limit; raise ImageError, never Pillow's errors.

    Only headers are read here. Decoding happens in the caller, inside the same guard.
    """
    limit = _max_pixels()
    # Pillow's limits are module globals; every call writes the same values from settings,
    # so concurrent calls agree. Our own check below is the one that counts.
    Image.MAX_IMAGE_PIXELS = limit
    # PNG text, XMP and ICC chunks are inflated whole into memory at open (64 MB by
    # default in all); past these, Pillow raises and the file is refused.
    PngImagePlugin.MAX_TEXT_MEMORY = _max_text_bytes()
    PngImagePlugin.MAX_TEXT_CHUNK = min(ImageFile.SAFEBLOCK, _max_text_bytes())
    with _stream(source) as stream:
        head = _head(stream)
        if not head:
            raise ImageError("the file is empty")
        try:
            with warnings.catch_warnings():
                # Only this category: if another thread interleaves catch_warnings, the
                # worst that leaks is "bomb warnings are errors", which we want anyway.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(stream, formats=ALLOWED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(_too_large_reason(_pixels_in(exc))) from exc
        except Image.UnidentifiedImageError as exc:
            raise ImageError(_unsupported_reason(head)) from exc
        except ValueError as exc:
            raise ImageError(_value_error_reason(exc)) from exc
        except Exception as exc:  # Pillow raises many types on hostile headers.
            raise ImageError(_DAMAGED) from exc
        with img:
            width, height = img.size
            if width < 1 or height < 1:
                raise ImageError("the image has no pixels")
            if width * height > limit:
                raise ImageError(_too_large_reason(width * height))
            with _decoding_guard():
                yield img


@contextlib.contextmanager
def _decoding_guard() -> Iterator[None]:
    """Turn anything Pillow raises while decoding into an ImageError with a reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(_too_large_reason(_pixels_in(exc))) from exc
    except OSError as exc:
        if "truncated" in str(exc):
            raise ImageError("the image file is truncated (incomplete upload?)") from exc
        raise ImageError(_DAMAGED) from exc
    except ValueError as exc:
        raise ImageError(_value_error_reason(exc)) from exc
    except MemoryError as exc:
        raise ImageError("the image is too large to decode") from exc
    except Exception as exc:  # Pillow raises many types on hostile data.
        raise ImageError(_DAMAGED) from exc


def _value_error_reason(exc: ValueError) -> str:
    # PngImagePlugin's text, XMP and ICC limits name themselves in the message.
    return _TOO_MUCH_METADATA if "MAX_TEXT" in str(exc) else _DAMAGED


@contextlib.contextmanager
def _decoded(img: Image.Image, *, draft_side: int) -> Iterator[Image.Image]:
    """The opened image's first frame, decoded (a JPEG at the smallest scale that covers
    ``draft_side``), while its cost is held against the process's decoding budget.

    Refused before decoding when its decoded form would cost more memory than allowed.
    """
    img.seek(0)
    full_size = img.size
    if img.format == "JPEG":
        _draft(img, draft_side)
    cost = decoding.decode_cost(img, full_size=full_size)
    limit = decoding.max_decode_bytes()
    if cost > limit:
        raise ImageError(
            f"the image is too large to decode: {full_size[0]:,}x{full_size[1]:,} "
            f"{img.format} in colour mode {img.mode} needs {cost / decoding.MB:,.0f} MB "
            f"of memory; the limit is {limit / decoding.MB:,.0f} MB"
        )
    with decoding.reserve(cost):
        img.load()
        yield img


def _pixels_in(exc: BaseException) -> int | None:
    """The pixel count from Pillow's bomb message ("Image size (N pixels) exceeds ...")."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    return int(match.group(1)) if match else None


def _frame_count(img: Image.Image) -> int:
    """Frames, capped at MEDIAOPT_MAX_FRAMES. Counting reads headers only, never pixels."""
    try:
        frames = int(getattr(img, "n_frames", 1))
    except Exception:  # A broken later frame does not spoil the first one.
        frames = 1
    finally:
        with contextlib.suppress(Exception):
            img.seek(0)
    return max(1, min(frames, _max_frames()))


def _exif(img: Image.Image) -> Image.Exif:
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


def _orientation(img: Image.Image) -> int:
    try:
        orientation = int(_exif(img).get(0x0112, 1))
    except Exception:
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    width, height = size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


# --------------------------------------------------------------------------- public API


def inspect(source: Source) -> ImageInfo:
    """Validate an upload and describe it; the first frame is fully decoded.

    Raises ImageError for anything not allowed, too large, truncated or damaged.
    """
    return _examine(source, thumbnail_side=None).info


def preview(source: Source, *, max_side: int | None = None) -> bytes:
    """A fresh, upright, RGB JPEG of the first frame, long side at most ``max_side``.

    ``max_side`` defaults to ``settings.MEDIAOPT_PREVIEW_SIZE`` (512). Nothing but pixels
    travels: no EXIF, ICC, comment, XMP or IPTC.
    """
    side = max_side or int(getattr(settings, "MEDIAOPT_PREVIEW_SIZE", 512))
    return _render(source, max_side=side)


def thumbnail(source: Source, *, max_side: int = 240) -> bytes:
    """A small JPEG for the admin list, made exactly like :func:`preview`."""
    return _render(source, max_side=max_side)


@dataclass(frozen=True)
class Examined:
    """What an import needs from one file, read with a single decode."""

    info: ImageInfo
    thumbnail: bytes
    embedded: EmbeddedText


def examine(source: Source, *, thumbnail_side: int = 240) -> Examined:
    """:func:`inspect`, :func:`thumbnail` and :func:`embedded_text` from one decode.

    Raises ImageError like :func:`inspect`; broken metadata only leaves the text empty.
    """
    return _examine(source, thumbnail_side=thumbnail_side)


def _examine(source: Source, *, thumbnail_side: int | None) -> Examined:
    with _open(source) as img:
        fmt = img.format or ""
        frames = _frame_count(img)
        # Before any draft: draft() shrinks the size a JPEG reports.
        stored_size = img.size
        # Without a thumbnail, 1/8 scale is enough: decoding still walks the whole
        # entropy-coded stream (so truncation is caught) with 1/64 of the pixels.
        draft_side = thumbnail_side or max(1, max(stored_size) // 8)
        with _decoded(img, draft_side=draft_side) as loaded:
            orientation = _orientation(loaded)
            width, height = _upright_size(stored_size, orientation)
            small = b""
            embedded = EmbeddedText()
            if thumbnail_side:
                shrunk = decoding.shrink(loaded, max_side=thumbnail_side, orientation=orientation)
                small = _jpeg(shrunk)
                embedded = _embedded_from(loaded)
    return Examined(
        info=ImageInfo(format=fmt, width=width, height=height, frames=frames),
        thumbnail=small,
        embedded=embedded,
    )


def _render(source: Source, *, max_side: int) -> bytes:
    if max_side < 1:
        raise ValueError("max_side must be positive")
    with _open(source) as opened, _decoded(opened, draft_side=max_side) as img:
        orientation = _orientation(img)
        fresh = decoding.shrink(img, max_side=max_side, orientation=orientation)
    return _jpeg(fresh)


def _jpeg(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=_PREVIEW_QUALITY, optimize=True)
    return out.getvalue()


# A JPEG may be decoded at 1/2, 1/4 or 1/8 scale when the reduced image's long side is at
# least this share of max_side. A 4000x3000 photo at 1/8 is 500 px long, just under the
# 512-px preview: decoding at 1/4 (1000 px) and resizing down would cost about twice the
# time for 2% more pixels, which the model (detail "low" sees at most 512 px) cannot use.
# The preview is then 500 px long: still at most max_side, never less than 90% of it.
_DRAFT_MIN_SHARE = 0.9


def _draft(img: Image.Image, max_side: int) -> None:
    """Ask the JPEG decoder for the smallest DCT scale whose long side covers ~max_side."""
    width, height = img.size
    floor = _DRAFT_MIN_SHARE * max_side
    for scale in (8, 4, 2):
        if max(width, height) / scale >= floor and min(width, height) >= scale:
            # draft() picks the largest scale keeping both sides at least this box.
            img.draft(None, (width // scale, height // scale))
            return


# --------------------------------------------------------------------------- embedded text

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


def embedded_text(source: Source) -> EmbeddedText:
    """Title, description and keywords written into the file (XMP, IPTC, EXIF), if any.

    Never raises: an unreadable file or broken metadata yields empty fields.
    The order of preference is XMP, then IPTC, then EXIF (the Metadata Working Group's).
    """
    try:
        with _open(source) as img:
            return _embedded_from(img)
    except Exception:
        return EmbeddedText()


def _embedded_from(img: Image.Image) -> EmbeddedText:
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
        exif = _exif(img)
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
