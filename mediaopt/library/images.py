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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from PIL import Image, ImageFile, PngImagePlugin

from mediaopt.library import decoding, embedded

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")

_SUPPORTED = "upload JPEG, PNG, GIF, WebP, TIFF or BMP"
_DAMAGED = "the image file is damaged and cannot be read"
_PREVIEW_QUALITY = 85
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


# --------------------------------------------------------------------------- opening


def _max_pixels() -> int:
    return int(getattr(settings, "MEDIAOPT_MAX_IMAGE_PIXELS", 64_000_000))


def _max_frames() -> int:
    return max(1, int(getattr(settings, "MEDIAOPT_MAX_FRAMES", 1000)))


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


def _orientation(img: Image.Image) -> int:
    try:
        orientation = int(embedded.exif_of(img).get(0x0112, 1))
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
    embedded: embedded.EmbeddedText


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
            text = embedded.EmbeddedText()
            if thumbnail_side:
                shrunk = decoding.shrink(loaded, max_side=thumbnail_side, orientation=orientation)
                small = _jpeg(shrunk)
                text = embedded.from_image(loaded)
    return Examined(
        info=ImageInfo(format=fmt, width=width, height=height, frames=frames),
        thumbnail=small,
        embedded=text,
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


def embedded_text(source: Source) -> embedded.EmbeddedText:
    """Title, description and keywords written into the file (XMP, IPTC, EXIF), if any.

    Never raises: an unreadable file or broken metadata yields empty fields.
    The order of preference is XMP, then IPTC, then EXIF (the Metadata Working Group's).
    """
    try:
        with _open(source) as img:
            return embedded.from_image(img)
    except Exception:
        return embedded.EmbeddedText()
