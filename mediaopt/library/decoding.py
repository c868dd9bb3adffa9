"""What decoding an image costs in memory, a per-process budget for it, and shrinking a
decoded image to a preview without ever making a second full-size copy.

Pillow decodes PNG, TIFF, GIF, BMP and WebP at full size (only JPEG can decode at 1/2,
1/4 or 1/8 scale), and keeps most modes at four bytes a pixel: a 7999x7999 RGBA PNG of
261 KB is 256 MB once decoded, and every ``convert`` of it is another 256 MB. So the
cost of an image is judged by its mode, not by its pixel count alone; an image that would
cost more than the budget is refused before any pixel is decoded; and the decoded image
is shrunk in horizontal bands, so each conversion touches a few megabytes at a time.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Callable, Iterator

from django.conf import settings
from PIL import Image

MB = 1024 * 1024
_BAND_BYTES = 8 * MB

# Bytes per pixel of Pillow's own storage; every other mode takes four.
_NARROW = {"1": 1, "L": 1, "P": 1}

# EXIF orientation -> the transpose that shows the picture upright (as ImageOps does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def max_decode_bytes() -> int:
    return int(getattr(settings, "MEDIAOPT_MAX_DECODE_BYTES", 192 * MB))


def bytes_per_pixel(mode: str) -> int:
    if mode.startswith("I;16"):
        return 2
    return _NARROW.get(mode, 4)


def decode_cost(img: Image.Image, *, full_size: tuple[int, int]) -> int:
    """Bytes that decoding ``img`` at its current (possibly drafted) size will hold.

    ``full_size`` is the size before any JPEG draft: a progressive JPEG keeps the DCT
    coefficients of the whole image (two bytes per sample) whatever scale it outputs.
    """
    width, height = img.size
    # Pillow keeps a pointer per row besides the pixels: a 1-pixel-wide, 60-million-row
    # image costs 480 MB in pointers alone.
    cost = width * height * bytes_per_pixel(img.mode) + height * 8
    if img.format == "WEBP":
        # Measured: libwebp's two canvases and the frame's bytes, then Pillow's copy.
        cost += 3 * width * height * 4
    elif img.format == "BMP" and any(tile.codec_name == "bmp_rle" for tile in img.tile):
        # Pillow's RLE decoder is Python: a bytearray of the pixels, then bytes of it.
        cost += 2 * width * height
    elif img.format == "JPEG" and (img.info.get("progressive") or img.info.get("progression")):
        cost += _coefficient_bytes(img, full_size)
    return cost


def _coefficient_bytes(img: Image.Image, full_size: tuple[int, int]) -> int:
    layers = getattr(img, "layer", None) or [("", 1, 1, 0)] * 3
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    width, height = (-(-side // 8) * 8 for side in full_size)
    share = sum(layer[1] * layer[2] for layer in layers) / (h_max * v_max)
    return int(2 * width * height * share)


class _Budget:
    """Decoded bytes in flight in this process: threads wait for room rather than all
    decoding their large images at once (a gthread worker serving several uploads).
    A thread never reserves twice at once: it would wait for itself."""

    def __init__(self) -> None:
        self._used = 0
        self._room = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int, *, capacity: int) -> Iterator[None]:
        nbytes = min(nbytes, capacity)
        with self._room:
            self._room.wait_for(lambda: self._used == 0 or self._used + nbytes <= capacity)
            self._used += nbytes
        try:
            yield
        finally:
            if nbytes >= _TRIM_AFTER_BYTES:
                _return_freed_memory()
            with self._room:
                self._used -= nbytes
                self._room.notify_all()


_BUDGET = _Budget()
_TRIM_AFTER_BYTES = 16 * MB


_M_MMAP_THRESHOLD = -3


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:  # not glibc: nothing to tune, nothing lost
        return None


_LIBC = _glibc()
_MALLOC_TRIM = _LIBC.malloc_trim if _LIBC is not None else None
if _LIBC is not None:
    # glibc raises its mmap threshold to the size of each large block freed, so after
    # the first big image Pillow's 16 MB blocks come from per-thread heaps that are not
    # given back: three large uploads in one gthread worker peaked at 480 to 650 MB.
    # A fixed threshold keeps large blocks in mmap, returned the moment they are freed
    # (measured: 337 MB, every run).
    _LIBC.mallopt(_M_MMAP_THRESHOLD, 1 * MB)


def _return_freed_memory() -> None:
    """Give freed pages back to the system. glibc keeps what a thread freed in that
    thread's arena for reuse, so a worker whose threads each decoded one large image
    would otherwise hold the sum of them, long after the images are gone."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def reserve(nbytes: int) -> contextlib.AbstractContextManager[None]:
    """Hold ``nbytes`` of this process's decoding budget while the block runs."""
    capacity = max(max_decode_bytes(), int(getattr(settings, "MEDIAOPT_DECODE_BYTES_IN_FLIGHT", 0)))
    return _BUDGET.reserve(nbytes, capacity=capacity)


def shrink(
    img: Image.Image, *, max_side: int, orientation: int = 1, reducing_gap: float = 3.0
) -> Image.Image:
    """A fresh upright RGB image, long side at most ``max_side``, from a decoded image.

    The full-size image is read band by band: each band is brought to RGB (transparency
    on white) and box-reduced by an integer factor, so no full-size RGB, RGBA or rotated
    copy is ever made. LANCZOS then takes the small image to its final size, as
    ``Image.thumbnail(reducing_gap=...)`` does.
    """
    width, height = img.size
    upright = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    scale = min(1.0, max_side / max(upright))
    final = (max(1, round(upright[0] * scale)), max(1, round(upright[1] * scale)))
    stored_final = (final[1], final[0]) if orientation in (5, 6, 7, 8) else final
    # Per axis: a 1-pixel-wide strip still has to shrink along its length.
    fx = max(1, int(width / stored_final[0] / reducing_gap))
    fy = max(1, int(height / stored_final[1] / reducing_gap))

    to_rgb = _band_converter(img)
    if img.mode in ("RGB", "L") and "transparency" not in img.info:
        # Nothing to convert at full size: one reduction in C, no bands to copy.
        small = to_rgb(img.reduce((fx, fy)) if fx * fy > 1 else img)
    elif fx == fy == 1 and width * height * 4 <= _BAND_BYTES:
        small = to_rgb(img)
    else:
        # Each row of each band copy also costs Pillow a pointer or two.
        rows = max(fy, (_BAND_BYTES // (width * 4 + 32)) // fy * fy)
        small = Image.new("RGB", (-(-width // fx), -(-height // fy)))
        for top in range(0, height, rows):
            band = to_rgb(img.crop((0, top, width, min(top + rows, height))))
            small.paste(band.reduce((fx, fy)) if fx * fy > 1 else band, (0, top // fy))
    if orientation in _UPRIGHT:
        small = small.transpose(_UPRIGHT[orientation])
    if small.size != final:
        small = small.resize(final, Image.Resampling.LANCZOS)
    # A fresh image from raw pixels: info (comment, exif, icc_profile, xmp...) is empty.
    return Image.frombytes("RGB", small.size, small.tobytes())


def _band_converter(img: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """A function taking a band of ``img`` to RGB; scales are read once from the whole."""
    mode = img.mode
    if mode.startswith("I;16"):
        # 16-bit grey: keep the brightness (convert("L") would clip everything to white).
        return lambda band: band.convert("I").point(lambda v: v * (1 / 256)).convert("RGB")
    if mode in ("I", "F"):
        _low, high = img.getextrema()
        scale = 255 / high if high and high > 255 else 1
        return lambda band: band.point(lambda v: v * scale).convert("L").convert("RGB")
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    ):
        return _on_white
    if mode == "RGB":
        return lambda band: band
    return lambda band: band.convert("RGB")


def _on_white(band: Image.Image) -> Image.Image:
    rgba = band.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
