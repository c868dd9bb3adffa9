"""A corpus of hostile image files, generated (and cached) for the memory tests and bench.

Small on disk, expensive to open: huge canvases of every colour mode, oversized EXIF, ICC
and text, thousands of frames, truncated and polyglot files. The big canvases are written
by hand where Pillow would need the full image in memory to save them: PNG rows after the
first use the "Up" filter, so their data is all zero bytes and compresses to almost
nothing, while a decoder still has to produce every pixel.

Each entry names what the import must do with it: ``imported``, or ``rejected`` with a
phrase its reason contains.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

SIDE = 7999
MB = 1024 * 1024


@dataclass(frozen=True)
class Hostile:
    name: str
    kind: str
    make: Callable[[], bytes]
    outcome: str  # "imported" or "rejected"
    reason: str = ""  # a phrase the rejection reason contains
    ordinary: bool = False  # an ordinary photo: the tighter bound applies


# --------------------------------------------------------------------------- PNG by hand


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_PNG_MODES = {  # colour type, bit depth, bytes per pixel
    "1": (0, 1, None),
    "L": (0, 8, 1),
    "I;16": (0, 16, 2),
    "P": (3, 8, 1),
    "LA": (4, 8, 2),
    "RGB": (2, 8, 3),
    "RGB;16": (2, 16, 6),
    "RGBA": (6, 8, 4),
}


def _idat(width: int, height: int, mode: str, *, rows: int | None = None) -> bytes:
    """Zlib data for ``rows`` rows (default all): a gradient first row, then all "Up"."""
    _type, depth, per_pixel = _PNG_MODES[mode]
    row_bytes = (width + 7) // 8 if per_pixel is None else width * per_pixel
    first = bytes((i * 7) % 251 for i in range(row_bytes))
    up_row = b"\x02" + bytes(row_bytes)
    compressor = zlib.compressobj(1)
    parts = [compressor.compress(b"\x00" + first)]
    block = up_row * max(1, (4 * MB) // len(up_row))
    left = (height if rows is None else rows) - 1
    per_block = len(block) // len(up_row)
    while left > 0:
        take = min(left, per_block)
        parts.append(compressor.compress(block[: take * len(up_row)]))
        left -= take
    parts.append(compressor.flush())
    return b"".join(parts)


def big_png(
    mode: str,
    width: int = SIDE,
    height: int = SIDE,
    *,
    transparency: bool = False,
    rows: int | None = None,
    extra: bytes = b"",
) -> bytes:
    colour_type, depth, _ = _PNG_MODES[mode]
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    chunks = [_chunk(b"IHDR", ihdr)]
    if colour_type == 3:
        chunks.append(_chunk(b"PLTE", bytes(range(256)) * 3))
        if transparency:
            chunks.append(_chunk(b"tRNS", bytes([0] * 16 + [255] * 240)))
    chunks.append(extra)
    chunks.append(_chunk(b"IDAT", _idat(width, height, mode, rows=rows)))
    chunks.append(_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def _png_small(**extra_chunks: bytes) -> bytes:
    return big_png("RGB", 64, 48, extra=b"".join(extra_chunks.values()))


def exif_blob(*, payload: int, orientation: int = 6) -> bytes:
    """EXIF (little-endian TIFF) with an orientation and one private tag of ``payload``
    SHORT values: Pillow turns such a tag into a tuple of Python ints when it is read."""
    count = payload // 2
    entries = [(0x0112, 3, 1, orientation), (0xC000, 3, count, 8 + 2 + 2 * 12 + 4)]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, number, value in entries:
        ifd += struct.pack("<HHII", tag, kind, number, value)
    ifd += struct.pack("<I", 0)
    values = struct.pack("<H", 4321) * count
    return b"II*\x00" + struct.pack("<I", 8) + ifd + values


def png_with_exif(payload: int) -> bytes:
    return _png_small(exif=_chunk(b"eXIf", exif_blob(payload=payload)))


def png_with_text(*, chunks: int, size: int, compressed: bool) -> bytes:
    parts = []
    for i in range(chunks):
        text = (b"lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
        if compressed:
            parts.append(_chunk(b"zTXt", b"Comment%d\x00\x00" % i + zlib.compress(text, 9)))
        else:
            parts.append(_chunk(b"tEXt", b"Comment%d\x00" % i + text))
    return big_png("RGB", 64, 48, extra=b"".join(parts))


def png_with_iccp_bomb() -> bytes:
    profile = zlib.compress(bytes(20 * MB), 9)
    return _png_small(icc=_chunk(b"iCCP", b"icc\x00\x00" + profile))


def png_with_big_xmp() -> bytes:
    packet = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + b" " * (20 * MB) + b"</x:xmpmeta>"
    return _png_small(
        xmp=_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(packet, 9))
    )


def apng(frames: int, width: int = 64, height: int = 64) -> bytes:
    """An animated PNG with ``frames`` frames (the first is the default image)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    out = [_chunk(b"IHDR", ihdr), _chunk(b"acTL", struct.pack(">II", frames, 0))]
    seq = 0
    data = _idat(width, height, "RGB")
    for i in range(frames):
        fctl = struct.pack(">IIIIIHHBB", seq, width, height, 0, 0, 1, 100, 0, 0)
        out.append(_chunk(b"fcTL", fctl))
        seq += 1
        if i == 0:
            out.append(_chunk(b"IDAT", data))
        else:
            out.append(_chunk(b"fdAT", struct.pack(">I", seq) + data))
            seq += 1
    out.append(_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(out)


# --------------------------------------------------------------------------- other formats


def _save(img: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def _canvas(mode: str, width: int = SIDE, height: int = SIDE) -> Image.Image:
    colour = {"F": 1.5, "I": 70000, "I;16": 40000, "L": 90, "1": 1}.get(mode)
    if colour is None:
        colour = tuple([90] * len(mode))
    return Image.new(mode, (width, height), colour)


def big_tiff(mode: str, **params) -> bytes:
    return _save(_canvas(mode), "TIFF", compression="tiff_deflate", **params)


def photo(width: int, height: int, fmt: str, **params) -> bytes:
    """Photo-like pixels: smooth noise, so it compresses (and decodes) like a photo."""
    from PIL import ImageFilter

    small = Image.effect_noise((max(1, width // 16), max(1, height // 16)), 60).convert("RGB")
    small = small.filter(ImageFilter.GaussianBlur(1))
    return _save(small.resize((width, height), Image.Resampling.BICUBIC), fmt, **params)


def jpeg_with_big_icc() -> bytes:
    return _save(Image.new("RGB", (64, 48), "red"), "JPEG", icc_profile=b"\x11" * (15 * MB))


def jpeg_with_many_comments() -> bytes:
    base = _save(Image.new("RGB", (64, 48), "red"), "JPEG")
    comment = b"\xff\xfe" + struct.pack(">H", 65535) + b"c" * 65533
    return base[:2] + comment * 300 + base[2:]


def webp_with_exif(payload: int) -> bytes:
    return _save(Image.new("RGB", (64, 48), "red"), "WEBP", exif=exif_blob(payload=payload))


def webp_animation(frames: int) -> bytes:
    first = Image.new("RGB", (16, 16), "red")
    rest = [Image.new("RGB", (16, 16), (i % 256, 0, 255 - i % 256)) for i in range(1, frames)]
    return _save(first, "WEBP", save_all=True, append_images=rest, lossless=True, method=0)


def tiff_pages(pages: int) -> bytes:
    first = Image.new("RGB", (16, 16), "red")
    rest = [Image.new("RGB", (16, 16), "blue") for _ in range(1, pages)]
    return _save(first, "TIFF", save_all=True, append_images=rest)


def bmp_rle8(width: int = SIDE, height: int = SIDE) -> bytes:
    """An 8-bit RLE BMP: every row is runs of 255 pixels, so a huge canvas is tiny."""
    row = bytearray()
    left = width
    while left:
        run = min(255, left)
        row += bytes((run, 7))
        left -= run
    row += b"\x00\x00"  # end of line
    pixels = bytes(row) * height + b"\x00\x01"  # end of bitmap
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    offset = 14 + 40 + len(palette)
    header = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0
    )
    file_header = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    return file_header + header + palette + pixels


def truncated(data: bytes, share: float = 0.5) -> bytes:
    return data[: max(64, int(len(data) * share))]


def zip_bytes() -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.html", "<script>alert(1)</script>")
    return out.getvalue()


def pdf_with_jpeg() -> bytes:
    jpeg = _save(Image.new("RGB", (32, 32), "red"), "JPEG")
    return b"%%PDF-1.4\n1 0 obj\n<< /Length %d >>\nstream\n" % len(jpeg) + jpeg + b"\nendstream\n"


# --------------------------------------------------------------------------- the corpus

_TOO_MUCH_MEMORY = "too large to decode"
_DAMAGED = "damaged"
_TRUNCATED = "truncated"

CORPUS: tuple[Hostile, ...] = (
    # Huge canvases in every PNG colour mode.
    Hostile(
        "p-trns-7999.png",
        "palette PNG + transparency 7999²",
        lambda: big_png("P", transparency=True),
        "imported",
    ),
    Hostile("p-7999.png", "palette PNG 7999²", lambda: big_png("P"), "imported"),
    Hostile("l-7999.png", "grey PNG 7999²", lambda: big_png("L"), "imported"),
    Hostile("bilevel-7999.png", "1-bit PNG 7999²", lambda: big_png("1"), "imported"),
    Hostile("i16-7999.png", "16-bit grey PNG 7999²", lambda: big_png("I;16"), "imported"),
    Hostile(
        "la-7999.png", "grey+alpha PNG 7999²", lambda: big_png("LA"), "rejected", _TOO_MUCH_MEMORY
    ),
    Hostile("rgb-7999.png", "RGB PNG 7999²", lambda: big_png("RGB"), "rejected", _TOO_MUCH_MEMORY),
    Hostile(
        "rgba-7999.png", "RGBA PNG 7999²", lambda: big_png("RGBA"), "rejected", _TOO_MUCH_MEMORY
    ),
    Hostile(
        "rgb16-7999.png",
        "48-bit RGB PNG 7999²",
        lambda: big_png("RGB;16"),
        "rejected",
        _TOO_MUCH_MEMORY,
    ),
    Hostile(
        "wide-l-16000x4000.png",
        "grey PNG 16000x4000",
        lambda: big_png("L", 16000, 4000),
        "imported",
    ),
    Hostile(
        "tall-p-1x60000000.png",
        "palette PNG 1x60,000,000",
        lambda: big_png("P", 1, 60_000_000),
        "rejected",
        _TOO_MUCH_MEMORY,
    ),
    Hostile(
        "tall-p-2x20000000.png",
        "palette PNG 2x20,000,000",
        lambda: big_png("P", 2, 20_000_000),
        "imported",
    ),
    # TIFFs: float, CMYK, 16-bit, and the ordinary modes.
    Hostile("f-7999.tif", "float TIFF 7999²", lambda: big_tiff("F"), "rejected", _TOO_MUCH_MEMORY),
    Hostile(
        "cmyk-7999.tif", "CMYK TIFF 7999²", lambda: big_tiff("CMYK"), "rejected", _TOO_MUCH_MEMORY
    ),
    Hostile("i16-7999.tif", "16-bit grey TIFF 7999²", lambda: big_tiff("I;16"), "imported"),
    Hostile(
        "i32-7999.tif", "32-bit int TIFF 7999²", lambda: big_tiff("I"), "rejected", _TOO_MUCH_MEMORY
    ),
    Hostile(
        "rgb-7999.tif", "RGB TIFF 7999²", lambda: big_tiff("RGB"), "rejected", _TOO_MUCH_MEMORY
    ),
    Hostile("l-7999.tif", "grey TIFF 7999²", lambda: big_tiff("L"), "imported"),
    Hostile(
        "l-lzw-7999.tif",
        "grey LZW TIFF 7999²",
        lambda: _save(_canvas("L"), "TIFF", compression="tiff_lzw"),
        "imported",
    ),
    Hostile("pages-500.tif", "TIFF with 500 pages", lambda: tiff_pages(500), "imported"),
    # Other formats at full size.
    Hostile("p-7999.gif", "GIF 7999²", lambda: _save(_canvas("P"), "GIF"), "imported"),
    Hostile("rle8-7999.bmp", "RLE8 BMP 7999²", bmp_rle8, "imported"),
    Hostile(
        "rgb-7999.jpg", "JPEG 7999²", lambda: _save(_canvas("RGB"), "JPEG", quality=50), "imported"
    ),
    Hostile(
        "cmyk-7999.jpg",
        "CMYK JPEG 7999²",
        lambda: _save(_canvas("CMYK"), "JPEG", quality=50),
        "imported",
    ),
    Hostile(
        "progressive-7999.jpg",
        "progressive JPEG 7999²",
        lambda: _save(_canvas("RGB"), "JPEG", quality=50, progressive=True),
        "imported",
    ),
    Hostile(
        "rgb-6000.webp",
        "WebP 6000²",
        lambda: _save(_canvas("RGB", 6000, 6000), "WEBP", quality=1, method=0),
        "rejected",
        _TOO_MUCH_MEMORY,
    ),
    Hostile(
        "rgb-4000.webp",
        "WebP 4000²",
        lambda: _save(_canvas("RGB", 4000, 4000), "WEBP", quality=1, method=0),
        "rejected",
        _TOO_MUCH_MEMORY,
    ),
    Hostile(
        "rgb-3000.webp",
        "WebP 3000² (9 MP)",
        lambda: photo(3000, 3000, "WEBP", quality=80),
        "imported",
    ),
    # Oversized metadata.
    Hostile("exif-30mb.png", "PNG with 30 MB of EXIF", lambda: png_with_exif(30 * MB), "imported"),
    Hostile(
        "exif-30mb.webp", "WebP with 30 MB of EXIF", lambda: webp_with_exif(30 * MB), "imported"
    ),
    Hostile("icc-15mb.jpg", "JPEG with a 15 MB ICC profile", jpeg_with_big_icc, "imported"),
    Hostile(
        "icc-15mb.tif",
        "TIFF with a 15 MB ICC profile",
        lambda: _save(Image.new("RGB", (64, 48)), "TIFF", icc_profile=b"\x11" * (15 * MB)),
        "imported",
    ),
    Hostile(
        "iccp-bomb.png",
        "PNG whose ICC profile inflates to 20 MB",
        png_with_iccp_bomb,
        "rejected",
        "embedded data",
    ),
    Hostile(
        "ztxt-bomb.png",
        "PNG with 60 zTXt chunks of 1 MB",
        lambda: png_with_text(chunks=60, size=MB - 64, compressed=True),
        "rejected",
        "embedded data",
    ),
    Hostile(
        "text-30mb.png",
        "PNG with 30 MB of tEXt",
        lambda: png_with_text(chunks=30, size=MB - 64, compressed=False),
        "rejected",
        "embedded data",
    ),
    Hostile(
        "xmp-20mb.png", "PNG with a 20 MB XMP packet", png_with_big_xmp, "rejected", "embedded data"
    ),
    Hostile("comments-20mb.jpg", "JPEG with 300 COM segments", jpeg_with_many_comments, "imported"),
    # Frames.
    Hostile("frames-5000.png", "APNG with 5,000 frames", lambda: apng(5000), "imported"),
    Hostile(
        "frames-2000.webp",
        "animated WebP with 2,000 frames",
        lambda: webp_animation(2000),
        "imported",
    ),
    Hostile("frames-3000.gif", "GIF with 3,000 frames", lambda: _gif_frames(3000), "imported"),
    # Truncated files: the header promises a canvas, the data ends early.
    # Its zlib stream ends cleanly after 3,000 rows: Pillow shows the rest as black.
    Hostile(
        "truncated-p-7999.png",
        "truncated palette PNG 7999²",
        lambda: big_png("P", rows=3000),
        "imported",
    ),
    Hostile(
        "truncated-rgba-7999.png",
        "truncated RGBA PNG 7999²",
        lambda: big_png("RGBA", rows=10),
        "rejected",
        _TOO_MUCH_MEMORY,
    ),
    Hostile(
        "truncated-7999.jpg",
        "truncated JPEG 7999²",
        lambda: truncated(_save(_canvas("RGB"), "JPEG", quality=50)),
        "rejected",
        _TRUNCATED,
    ),
    Hostile(
        "truncated-l-7999.tif",
        "truncated grey TIFF 7999²",
        lambda: truncated(big_tiff("L"), 0.3),
        "rejected",
        _DAMAGED,
    ),
    Hostile(
        "truncated.webp",
        "truncated WebP",
        lambda: truncated(_save(_canvas("RGB", 2000, 2000), "WEBP")),
        "rejected",
        "",
    ),
    Hostile(
        "header-only-l-7999.bmp",
        "BMP header without pixels",
        lambda: bmp_rle8()[:1200],
        "rejected",
        "",
    ),
    # Polyglots and impostors.
    Hostile(
        "polyglot-zip.jpg",
        "JPEG + ZIP",
        lambda: _save(Image.new("RGB", (64, 48), "red"), "JPEG") + zip_bytes(),
        "imported",
    ),
    Hostile(
        "polyglot-html.png",
        "PNG + HTML after IEND",
        lambda: _png_small() + b"<html><script>alert(1)</script>",
        "imported",
    ),
    Hostile(
        "polyglot-js.gif",
        "GIF + JavaScript",
        lambda: _save(Image.new("P", (8, 8)), "GIF") + b"*/=1;alert(1);//",
        "imported",
    ),
    Hostile("pdf-with-jpeg.jpg", "PDF holding a JPEG", pdf_with_jpeg, "rejected", "PDF"),
    Hostile(
        "svg-named.png",
        "SVG named .png",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        "rejected",
        "SVG",
    ),
    Hostile(
        "bomb-30000.png",
        "PNG header of 30000²",
        lambda: big_png("L", 30000, 30000, rows=2),
        "rejected",
        "too large",
    ),
    # Ordinary photos: the tighter bound.
    Hostile(
        "photo-12mp.jpg",
        "JPEG 12 MP",
        lambda: photo(4000, 3000, "JPEG", quality=90),
        "imported",
        ordinary=True,
    ),
    Hostile(
        "photo-50mp.jpg",
        "JPEG 50 MP",
        lambda: photo(8660, 5773, "JPEG", quality=90),
        "imported",
        ordinary=True,
    ),
    # Pillow decodes a PNG at full size (80 MB for 20 MP in RGB): the hostile bound applies.
    Hostile(
        "photo-20mp.png",
        "PNG 20 MP",
        lambda: photo(5477, 3651, "PNG", compress_level=1),
        "imported",
    ),
)


def _gif_frames(frames: int) -> bytes:
    from tests import factories

    return factories.gif_animation(frames=frames)


def write_corpus(folder: Path, entries: tuple[Hostile, ...] = CORPUS) -> dict[str, Path]:
    """Write each entry once into ``folder`` (kept between runs) and return name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for entry in entries:
        path = folder / entry.name
        if not path.exists():
            partial = path.with_suffix(path.suffix + ".part")
            partial.write_bytes(entry.make())
            partial.rename(path)
        paths[entry.name] = path
    return paths
