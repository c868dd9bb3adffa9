"""Test images as bytes, made with Pillow (or by hand where Pillow will not write them).

Plain functions, no fixtures: every test suite may import them. Images are tiny so tests
stay fast. Colours are strings Pillow understands ("red") or RGB tuples.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from PIL import Image

Color = str | tuple[int, ...]

CANARY_COMMENT = b"CANARY-COMMENT-7f3a"
CANARY_XMP = "CANARY-XMP-91c2"
CANARY_EXIF = "CANARY-EXIF-5d0e"
CANARY_MAKE = "CanaryCam"
CANARY_MODEL = "CC-9000 Mark II"

# EXIF tags (IFD0) used below.
IMAGE_DESCRIPTION = 0x010E
MAKE = 0x010F
MODEL = 0x0110
ORIENTATION = 0x0112
XP_TITLE = 0x9C9B
XP_KEYWORDS = 0x9C9E
XP_SUBJECT = 0x9C9F


def _exif_bytes(exif: Mapping[int, Any] | Image.Exif | bytes | None, orientation: int | None):
    if isinstance(exif, bytes):
        return exif
    data = Image.Exif()
    for tag, value in (exif or {}).items():
        data[tag] = value
    if orientation is not None:
        data[ORIENTATION] = orientation
    return data.tobytes() if len(data) else b""


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def iptc_segment(records: Mapping[tuple[int, int], str | Iterable[str]]) -> bytes:
    """A JPEG APP13 segment: "Photoshop 3.0", one 8BIM 0x0404 (IPTC-NAA) resource.

    ``records`` maps (record, dataset), e.g. (2, 120) caption, to a value or a list of
    values (repeated datasets such as 2:25 keywords). The text is marked UTF-8 (1:90).
    """
    iptc = b"\x1c\x01\x5a" + struct.pack(">H", 3) + b"\x1b%G"  # 1:90 = UTF-8
    for (record, dataset), value in records.items():
        values = [value] if isinstance(value, str) else list(value)
        for item in values:
            raw = item.encode("utf-8")
            iptc += bytes([0x1C, record, dataset]) + struct.pack(">H", len(raw)) + raw
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iptc))
    resource += iptc + (b"\x00" if len(iptc) % 2 else b"")
    payload = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def xmp_packet(
    *,
    description: str = "",
    title: str = "",
    keywords: Iterable[str] = (),
    extra: str = "",
) -> bytes:
    """An XMP packet with dc:description, dc:title and dc:subject (only those given)."""

    def esc(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    parts = []
    if description:
        parts.append(
            "<dc:description><rdf:Alt>"
            f'<rdf:li xml:lang="x-default">{esc(description)}</rdf:li>'
            "</rdf:Alt></dc:description>"
        )
    if title:
        parts.append(
            "<dc:title><rdf:Alt>"
            f'<rdf:li xml:lang="x-default">{esc(title)}</rdf:li>'
            "</rdf:Alt></dc:title>"
        )
    words = list(keywords)
    if words:
        items = "".join(f"<rdf:li>{esc(word)}</rdf:li>" for word in words)
        parts.append(f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>")
    if extra:
        parts.append(f"<xmp:Label>{esc(extra)}</xmp:Label>")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
        + "".join(parts)
        + "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode("utf-8")


def _save_jpeg(
    img: Image.Image,
    *,
    exif: Mapping[int, Any] | Image.Exif | bytes | None = None,
    orientation: int | None = None,
    comment: str | bytes | None = None,
    xmp: str | bytes | None = None,
    iptc: Mapping[tuple[int, int], str | Iterable[str]] | None = None,
    quality: int = 95,
) -> bytes:
    params: dict[str, Any] = {"quality": quality}
    exif_data = _exif_bytes(exif, orientation)
    if exif_data:
        params["exif"] = exif_data
    if comment is not None:
        params["comment"] = _bytes(comment)
    if xmp is not None:
        params["xmp"] = _bytes(xmp)
    if iptc:
        # Pillow writes no IPTC, but inserts "extra" bytes verbatim among the APP segments.
        params["extra"] = iptc_segment(iptc)
    out = io.BytesIO()
    img.save(out, "JPEG", **params)
    return out.getvalue()


def jpeg(
    width: int = 64,
    height: int = 48,
    color: Color = "red",
    *,
    exif: Mapping[int, Any] | Image.Exif | bytes | None = None,
    orientation: int | None = None,
    comment: str | bytes | None = None,
    xmp: str | bytes | None = None,
    iptc: Mapping[tuple[int, int], str | Iterable[str]] | None = None,
) -> bytes:
    """A plain RGB JPEG, optionally with EXIF (tag -> value), orientation, COM, XMP, IPTC."""
    img = Image.new("RGB", (width, height), color)
    return _save_jpeg(img, exif=exif, orientation=orientation, comment=comment, xmp=xmp, iptc=iptc)


def png(
    width: int = 64,
    height: int = 48,
    color: Color = "red",
    *,
    mode: str = "RGB",
    text: Mapping[str, str] | None = None,
    xmp: str | bytes | None = None,
    exif: Mapping[int, Any] | None = None,
) -> bytes:
    """A PNG in ``mode`` (RGB, RGBA, L, LA, ...), optionally with tEXt chunks, XMP, EXIF."""
    from PIL import PngImagePlugin

    img = Image.new(mode, (width, height), color)
    params: dict[str, Any] = {}
    if text or xmp is not None:
        info = PngImagePlugin.PngInfo()
        for key, value in (text or {}).items():
            info.add_text(key, value)
        if xmp is not None:
            info.add_itxt("XML:com.adobe.xmp", _bytes(xmp).decode("utf-8"))
        params["pnginfo"] = info
    if exif:
        params["exif"] = _exif_bytes(exif, None)
    out = io.BytesIO()
    img.save(out, "PNG", **params)
    return out.getvalue()


def gif_animation(frames: int = 3000, *, width: int = 8, height: int = 8) -> bytes:
    """An animated GIF: a red first frame, then ``frames - 1`` one-pixel blue frames.

    Written by hand (Pillow would merge identical frames, and writing thousands of frames
    through it is slow). Small on disk, slow to process if every frame were decoded.
    """
    first = Image.new("P", (width, height), 0)
    first.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0, 255, 255, 255])
    out = io.BytesIO()
    first.save(out, "GIF", optimize=False)
    data = out.getvalue()
    assert data.endswith(b";")
    body = bytearray(data[:-1])
    for i in range(1, frames):
        x, y = i % width, (i // width) % height
        # Graphic control extension: 1/100 s, no disposal.
        body += b"\x21\xf9\x04\x00\x01\x00\x00\x00"
        # Image descriptor: a 1x1 frame at (x, y), no local palette.
        body += b"\x2c" + struct.pack("<HHHH", x, y, 1, 1) + b"\x00"
        # LZW, minimum code size 2: clear (4), pixel index 1 (blue), end (5).
        body += b"\x02\x02\x4c\x01\x00"
    body += b";"
    return bytes(body)


def cmyk_jpeg(width: int = 32, height: int = 24) -> bytes:
    """A CMYK JPEG that shows pure red (C=0, M=255, Y=255, K=0)."""
    img = Image.new("CMYK", (width, height), (0, 255, 255, 0))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=95)
    return out.getvalue()


def png16(width: int = 32, height: int = 24, value: int = 32768) -> bytes:
    """A 16-bit greyscale PNG (mode I;16); the default value is mid grey."""
    img = Image.new("I;16", (width, height), value)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def palette_png_with_transparency(width: int = 32, height: int = 24) -> bytes:
    """A palette PNG: left half transparent (palette index 0 is black), right half red."""
    img = Image.new("P", (width, height), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    img.paste(1, (width // 2, 0, width, height))
    out = io.BytesIO()
    img.save(out, "PNG", transparency=0)
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A PNG header claiming width x height 8-bit grey pixels, a few hundred bytes on disk.

    Decoding it would allocate width * height bytes (900 MB by default).
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    # A little real image data (the first rows); the rest is missing, never reached.
    idat = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def truncated_jpeg() -> bytes:
    """A JPEG cut off in the middle of its scan data (header intact, pixels missing)."""
    img = Image.effect_noise((64, 64), 64).convert("RGB")
    out = io.BytesIO()
    img.save(out, "JPEG", quality=95)
    data = out.getvalue()
    return data[: len(data) // 2]


def corrupt_bytes() -> bytes:
    """Bytes that start like a JPEG (SOI marker) and then are garbage."""
    return b"\xff\xd8\xff\xe0" + bytes(range(7, 250)) * 4


def svg() -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<rect width="10" height="10" fill="red"/></svg>\n'
    )


def postscript_named_jpg() -> bytes:
    """Encapsulated PostScript, as if uploaded as photo.jpg.

    Pillow identifies it as EPS and, on load, would run Ghostscript on it.
    """
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n"
        b"%%BoundingBox: 0 0 10 10\n"
        b"%%EndComments\n"
        b"1 0 0 setrgbcolor 0 0 10 10 rectfill\n"
        b"showpage\n"
        b"%%EOF\n"
    )


def red_top_band_jpeg_with_orientation_6(width: int = 64, height: int = 32) -> bytes:
    """Upright (after EXIF orientation 6) ``width`` x ``height``: a red band on top, blue below.

    Stored rotated: orientation 6 means "rotate 90 degrees clockwise to display", so the
    stored pixels are ``height`` x ``width`` with the red band on the left. It also carries
    a COM comment (CANARY_COMMENT), an XMP packet (CANARY_XMP) and EXIF (CANARY_EXIF,
    CANARY_MAKE, CANARY_MODEL), none of which may survive into a preview.
    """
    band = height // 3
    stored = Image.new("RGB", (height, width), "blue")
    stored.paste((255, 0, 0), (0, 0, band, width))
    return _save_jpeg(
        stored,
        exif={IMAGE_DESCRIPTION: CANARY_EXIF, MAKE: CANARY_MAKE, MODEL: CANARY_MODEL},
        orientation=6,
        comment=CANARY_COMMENT,
        xmp=xmp_packet(description=CANARY_XMP),
    )


def jpeg_with_embedded_text(
    *,
    description: str = "",
    keywords: Iterable[str] = (),
    title: str = "",
    make: str = "",
    model: str = "",
    sources: Iterable[str] = ("exif", "iptc", "xmp"),
    width: int = 32,
    height: int = 24,
) -> bytes:
    """A JPEG whose text is written in EXIF (ImageDescription, Make, Model, XP tags), IPTC
    (2:120 caption, 2:25 keywords, 2:05 object name) and XMP (dc:*), as chosen by
    ``sources``. Make and Model are always EXIF (they exist nowhere else).
    """
    sources = set(sources)
    words = list(keywords)
    exif: dict[int, Any] = {}
    if make:
        exif[MAKE] = make
    if model:
        exif[MODEL] = model
    if "exif" in sources and description:
        exif[IMAGE_DESCRIPTION] = description
    if "xp" in sources:
        # Windows Explorer's tags: UTF-16LE bytes with a terminating NUL.
        if title:
            exif[XP_TITLE] = (title + "\0").encode("utf-16-le")
        if description:
            exif[XP_SUBJECT] = (description + "\0").encode("utf-16-le")
        if words:
            exif[XP_KEYWORDS] = (";".join(words) + "\0").encode("utf-16-le")
    iptc: dict[tuple[int, int], str | list[str]] = {}
    if "iptc" in sources:
        if title:
            iptc[(2, 5)] = title
        if words:
            iptc[(2, 25)] = words
        if description:
            iptc[(2, 120)] = description
    xmp = None
    if "xmp" in sources and (description or title or words):
        xmp = xmp_packet(description=description, title=title, keywords=words)
    img = Image.new("RGB", (width, height), "green")
    return _save_jpeg(img, exif=exif or None, xmp=xmp, iptc=iptc or None)


def bare_assets(n: int, *, start: int = 0, **fields):
    """MediaAsset rows without files: enough for scopes, states and query counts, and fast.

    Needs the database; the file names and sha256 values are unique per ``start`` range.
    """
    from mediaopt.library.models import MediaAsset

    return MediaAsset.objects.bulk_create(
        [
            MediaAsset(
                file=f"bare/{i}.jpg",
                original_name=f"photo-{i}.jpg",
                sha256=f"{i:064x}",
                format="JPEG",
                width=1,
                height=1,
                bytes=1,
                **fields,
            )
            for i in range(start, start + n)
        ],
        batch_size=500,
    )


def recount_jobs(*jobs) -> None:
    """Set the job rows' counts (items_total, items_succeeded, ...) from their items, as
    migration 0017 does: for tests that write item states or rows directly instead of
    through the one writer (the job invariants then hold again). No jobs: every job."""
    from django.db.models import Count

    from metadata.models import COUNT_COLUMNS, JobItem, RegenerationJob

    chosen = RegenerationJob.objects.all()
    if jobs:
        chosen = chosen.filter(pk__in=[job.pk for job in jobs])
    for job in chosen:
        by_state = dict(
            JobItem.objects.filter(job=job)
            .order_by()
            .values("state")
            .annotate(n=Count("id"))
            .values_list("state", "n")
        )
        RegenerationJob.objects.filter(pk=job.pk).update(
            items_total=sum(by_state.values()),
            **{column: by_state.get(state, 0) for state, column in COUNT_COLUMNS.items()},
        )
    for job in jobs:
        job.refresh_from_db()


def bulk_items(job, assets, *, state: str = "pending", **fields) -> None:
    """Items of ``job`` for ``assets`` made with one bulk_create, counted on the job row
    (fast, for query counts at 10,000 items; not the creation path)."""
    from metadata.models import JobItem

    JobItem.objects.bulk_create(
        [JobItem(job=job, asset=asset, state=state, **fields) for asset in assets],
        batch_size=1000,
    )
    recount_jobs(job)
