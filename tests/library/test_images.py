"""library.images: what Pillow may open, what it refuses and why, and what previews hold."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from PIL import EpsImagePlugin, Image, ImageFile

from mediaopt.library import decoding, images
from mediaopt.library.embedded import EmbeddedText
from mediaopt.library.images import ImageError, ImageInfo
from tests import factories

SUPPORTED = "upload JPEG, PNG, GIF, WebP, TIFF or BMP"


def open_jpeg(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data), formats=["JPEG"])
    img.load()
    return img


def jpeg_markers(data: bytes) -> list[int]:
    """The markers of a JPEG's header segments, up to the start of scan."""
    assert data[:2] == b"\xff\xd8"
    markers, offset = [], 2
    while offset < len(data):
        assert data[offset] == 0xFF
        marker = data[offset + 1]
        markers.append(0xFF00 | marker)
        if marker == 0xDA:  # SOS: entropy-coded data follows
            break
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        offset += 2 + length
    return markers


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def png_of(width: int, height: int) -> bytes:
    return factories.png(width, height)


# ------------------------------------------------------------------ inspect: what passes


def test_inspect_reports_format_size_and_one_frame_for_a_jpeg():
    assert images.inspect(factories.jpeg(64, 48)) == ImageInfo("JPEG", 64, 48, 1)


def test_inspect_reports_png_format():
    assert images.inspect(factories.png(30, 20)) == ImageInfo("PNG", 30, 20, 1)


def test_inspect_reports_the_upright_size_when_exif_orientation_rotates():
    # Stored 32 x 64, displayed (orientation 6) 64 x 32.
    info = images.inspect(factories.red_top_band_jpeg_with_orientation_6(64, 32))
    assert (info.width, info.height) == (64, 32)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "TIFF", "BMP"])
def test_inspect_accepts_every_allowed_format(fmt):
    out = io.BytesIO()
    Image.new("RGB", (10, 7), "red").save(out, fmt)
    assert images.inspect(out.getvalue()) == ImageInfo(fmt, 10, 7, 1)


def test_inspect_reads_a_path(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(factories.png(12, 9))
    assert images.inspect(path) == ImageInfo("PNG", 12, 9, 1)
    assert images.inspect(str(path)) == ImageInfo("PNG", 12, 9, 1)


def test_inspect_rewinds_a_file_object_that_was_already_read():
    handle = io.BytesIO(factories.jpeg(20, 10))
    handle.read(100)
    assert images.inspect(handle) == ImageInfo("JPEG", 20, 10, 1)
    assert not handle.closed  # the caller's file stays the caller's


def test_inspect_reads_a_django_file():
    upload = ContentFile(factories.png(8, 6), name="upload.png")
    assert images.inspect(upload) == ImageInfo("PNG", 8, 6, 1)


# ------------------------------------------------------------------ refusals and reasons


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        (b"   \n", "the file is empty"),
        (factories.svg(), f"not a supported image (SVG is not supported; {SUPPORTED})"),
        (
            factories.postscript_named_jpg(),
            f"not a supported image (PostScript/EPS is not supported; {SUPPORTED})",
        ),
        (b"%PDF-1.7\n1 0 obj\n", f"not a supported image (PDF is not supported; {SUPPORTED})"),
        (
            b"hello, this is a text file\n",
            f"not a supported image (the file is damaged or not an image; {SUPPORTED})",
        ),
        (factories.truncated_jpeg(), "the image file is truncated (incomplete upload?)"),
        (factories.corrupt_bytes(), "the image file is damaged and cannot be read"),
    ],
    ids=["empty", "blank", "svg", "eps", "pdf", "text", "truncated", "corrupt"],
)
def test_bad_input_is_refused_with_a_reason_a_person_can_read(data, reason):
    for call in (images.inspect, images.preview, images.thumbnail):
        with pytest.raises(ImageError) as caught:
            call(data)
        assert caught.value.reason == reason
        assert str(caught.value) == reason


def test_svg_without_xml_declaration_is_named_as_svg():
    with pytest.raises(ImageError, match=r"SVG is not supported"):
        images.inspect(b'<svg xmlns="http://www.w3.org/2000/svg"/>')


def test_formats_pillow_reads_but_we_do_not_allow_are_refused():
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, "PCX")
    assert Image.open(io.BytesIO(out.getvalue())).format == "PCX"  # Pillow would read it
    with pytest.raises(ImageError) as caught:
        images.inspect(out.getvalue())
    assert caught.value.reason.startswith("not a supported image")


def test_a_missing_path_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match=r"^the file could not be read"):
        images.inspect(tmp_path / "nope.jpg")


@pytest.mark.timeout(10)
def test_postscript_named_jpg_never_runs_ghostscript(tmp_path, monkeypatch):
    data = factories.postscript_named_jpg()
    # Without the allow-list Pillow takes it for EPS, whose load() runs Ghostscript.
    assert Image.open(io.BytesIO(data)).format == "EPS"

    calls: list[object] = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("Ghostscript must never run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", forbidden)
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", forbidden)
    monkeypatch.setattr(subprocess, "check_call", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)

    for call in (images.inspect, images.preview, images.thumbnail):
        with pytest.raises(ImageError, match=r"PostScript/EPS is not supported"):
            call(path)
    assert images.embedded_text(path) == EmbeddedText()
    assert calls == []


# ------------------------------------------------------------------ limits


@pytest.mark.timeout(10)
def test_decompression_bomb_is_refused_before_any_pixel_is_decoded(monkeypatch):
    data = factories.decompression_bomb_png(30_000, 30_000)
    assert len(data) < 2_000  # tiny on disk, 900 MB once decoded
    loads: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: loads.append(self) or real_load(self)
    )

    for call in (images.inspect, images.preview, images.thumbnail):
        with pytest.raises(ImageError) as caught:
            call(data)
        assert caught.value.reason == (
            "the image is too large (900,000,000 pixels); the limit is 64,000,000 pixels"
        )
    assert loads == []


def test_pixel_limit_comes_from_settings(settings):
    settings.MEDIAOPT_MAX_IMAGE_PIXELS = 1_000
    assert images.inspect(png_of(40, 25)).width == 40  # exactly 1,000 pixels
    with pytest.raises(ImageError) as caught:
        images.preview(png_of(41, 25))
    assert caught.value.reason == (
        "the image is too large (1,025 pixels); the limit is 1,000 pixels"
    )


def test_pillow_bomb_warning_range_is_an_error_too(settings):
    # Between 1x and 2x the limit Pillow only warns; the warning must not let it through.
    settings.MEDIAOPT_MAX_IMAGE_PIXELS = 1_000
    with pytest.raises(ImageError, match=r"^the image is too large \(1,600 pixels\)"):
        images.inspect(png_of(40, 40))


@pytest.mark.timeout(10)
def test_gif_with_3000_frames_is_previewed_fast_from_its_first_frame():
    data = factories.gif_animation(frames=3000)
    started = time.perf_counter()
    preview = images.preview(data)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    img = open_jpeg(preview)
    assert img.size == (8, 8)
    assert close_to(img.getpixel((4, 4)), (255, 0, 0))  # the first frame is red


@pytest.mark.timeout(10)
def test_inspect_counts_frames_up_to_the_cap(settings):
    data = factories.gif_animation(frames=3000)
    assert images.inspect(data).frames == 1000
    settings.MEDIAOPT_MAX_FRAMES = 5000
    assert images.inspect(data).frames == 3000


# ------------------------------------------------------------------ modes to RGB


def test_cmyk_jpeg_becomes_rgb_with_its_colours():
    img = open_jpeg(images.preview(factories.cmyk_jpeg()))
    assert img.mode == "RGB"
    assert close_to(img.getpixel((10, 10)), (255, 0, 0))


def test_16_bit_greyscale_keeps_its_brightness():
    img = open_jpeg(images.preview(factories.png16(value=32768)))
    assert img.mode == "RGB"
    assert close_to(img.getpixel((10, 10)), (128, 128, 128), tolerance=3)


def test_palette_transparency_is_composited_on_white():
    img = open_jpeg(images.preview(factories.palette_png_with_transparency(32, 24)))
    assert img.mode == "RGB"
    assert close_to(img.getpixel((3, 12)), (255, 255, 255))  # transparent half
    assert close_to(img.getpixel((28, 12)), (255, 0, 0))


def test_rgba_is_composited_on_white():
    data = factories.png(16, 16, (0, 0, 0, 0), mode="RGBA")
    img = open_jpeg(images.preview(data))
    assert close_to(img.getpixel((8, 8)), (255, 255, 255))


def test_greyscale_with_alpha_becomes_rgb():
    img = open_jpeg(images.preview(factories.png(16, 16, (0, 255), mode="LA")))
    assert img.mode == "RGB"
    assert close_to(img.getpixel((8, 8)), (0, 0, 0))


# ------------------------------------------------------------------ preview contents


def test_preview_is_upright_after_exif_orientation_6():
    img = open_jpeg(images.preview(factories.red_top_band_jpeg_with_orientation_6(64, 32)))
    assert img.size == (64, 32)
    assert close_to(img.getpixel((32, 4)), (255, 0, 0))  # red band on top
    assert close_to(img.getpixel((32, 28)), (0, 0, 255))  # blue below
    assert close_to(img.getpixel((4, 28)), (0, 0, 255))


def test_preview_carries_no_exif_comment_xmp_or_icc():
    data = images.preview(factories.red_top_band_jpeg_with_orientation_6())
    markers = jpeg_markers(data)
    assert 0xFFE1 not in markers  # APP1: EXIF or XMP
    assert 0xFFFE not in markers  # COM
    assert 0xFFED not in markers  # APP13: IPTC
    assert 0xFFE2 not in markers  # APP2: ICC
    for canary in (
        factories.CANARY_COMMENT,
        factories.CANARY_XMP.encode(),
        factories.CANARY_EXIF.encode(),
        factories.CANARY_MAKE.encode(),
        b"Exif",
        b"http://ns.adobe.com/xap",
    ):
        assert canary not in data
    img = open_jpeg(data)
    assert len(img.getexif()) == 0
    assert "comment" not in img.info and "xmp" not in img.info


def test_preview_drops_iptc_and_icc_profiles():
    source = io.BytesIO()
    Image.new("RGB", (20, 20), "red").save(
        source, "JPEG", icc_profile=b"ICC-CANARY" * 10, comment=b"keep-out"
    )
    data = images.preview(source.getvalue())
    assert b"ICC-CANARY" not in data and b"keep-out" not in data
    iptc = factories.jpeg(iptc={(2, 120): "IPTC-CANARY"})
    assert b"IPTC-CANARY" not in images.preview(iptc)


def test_preview_long_side_is_512_by_default():
    img = open_jpeg(images.preview(factories.jpeg(1024, 768)))
    assert img.size == (512, 384)
    assert img.format == "JPEG"


def test_preview_long_side_follows_a_portrait_image():
    assert open_jpeg(images.preview(factories.png(300, 600))).size == (256, 512)


def test_preview_size_comes_from_settings_or_argument(settings):
    settings.MEDIAOPT_PREVIEW_SIZE = 100
    assert open_jpeg(images.preview(factories.jpeg(400, 200))).size == (100, 50)
    assert open_jpeg(images.preview(factories.jpeg(400, 200), max_side=40)).size == (40, 20)


def test_preview_never_upscales():
    assert open_jpeg(images.preview(factories.jpeg(30, 20))).size == (30, 20)


def test_thumbnail_long_side_is_240():
    img = open_jpeg(images.thumbnail(factories.jpeg(1024, 768)))
    assert img.size == (240, 180)
    assert open_jpeg(images.thumbnail(factories.jpeg(1024, 768), max_side=64)).size == (64, 48)


def test_thumbnail_is_upright_and_clean():
    data = images.thumbnail(factories.red_top_band_jpeg_with_orientation_6(64, 32), max_side=32)
    img = open_jpeg(data)
    assert img.size == (32, 16)
    assert close_to(img.getpixel((16, 2)), (255, 0, 0))
    assert factories.CANARY_COMMENT not in data and 0xFFE1 not in jpeg_markers(data)


def test_preview_reads_a_path(tmp_path: Path):
    path = tmp_path / "x.gif"
    path.write_bytes(factories.gif_animation(frames=3))
    assert open_jpeg(images.preview(path)).size == (8, 8)


# ------------------------------------------------------------------ embedded text


def test_embedded_text_reads_exif_image_description_and_camera():
    data = factories.jpeg_with_embedded_text(
        description="A red barn in snow", make="Canon", model="Canon EOS 5D", sources=["exif"]
    )
    assert images.embedded_text(data) == EmbeddedText(
        description="A red barn in snow", camera="Canon EOS 5D"
    )


def test_embedded_text_joins_make_and_model_when_model_lacks_the_make():
    data = factories.jpeg_with_embedded_text(make="NIKON CORPORATION", model="D750", sources=[])
    assert images.embedded_text(data).camera == "NIKON CORPORATION D750"


def test_embedded_text_reads_iptc():
    data = factories.jpeg_with_embedded_text(
        description="Ferry leaving Lisbon at dusk",
        title="Lisbon ferry",
        keywords=["ferry", "Lisbon", "Tagus"],
        sources=["iptc"],
    )
    assert images.embedded_text(data) == EmbeddedText(
        title="Lisbon ferry",
        description="Ferry leaving Lisbon at dusk",
        keywords=("ferry", "Lisbon", "Tagus"),
    )


def test_embedded_text_reads_iptc_headline_when_there_is_no_object_name():
    data = factories.jpeg(iptc={(2, 105): "Storm over the bay"})
    assert images.embedded_text(data).title == "Storm over the bay"


def test_embedded_text_reads_utf8_iptc():
    data = factories.jpeg(iptc={(2, 120): "Café in Zürich", (2, 25): ["café", "Zürich"]})
    text = images.embedded_text(data)
    assert text.description == "Café in Zürich"
    assert text.keywords == ("café", "Zürich")


def test_embedded_text_reads_xmp():
    data = factories.jpeg_with_embedded_text(
        description="Two kayaks on a lake",
        title="Kayaks",
        keywords=["kayak", "lake"],
        sources=["xmp"],
    )
    assert images.embedded_text(data) == EmbeddedText(
        title="Kayaks", description="Two kayaks on a lake", keywords=("kayak", "lake")
    )


def test_embedded_text_reads_windows_xp_tags():
    data = factories.jpeg_with_embedded_text(
        description="Tulips in a vase", title="Tulips", keywords=["tulip", "vase"], sources=["xp"]
    )
    assert images.embedded_text(data) == EmbeddedText(
        title="Tulips", description="Tulips in a vase", keywords=("tulip", "vase")
    )


def test_embedded_text_prefers_xmp_over_iptc_over_exif():
    data = factories.jpeg(
        exif={factories.IMAGE_DESCRIPTION: "from exif"},
        iptc={(2, 120): "from iptc"},
        xmp=factories.xmp_packet(description="from xmp"),
    )
    assert images.embedded_text(data).description == "from xmp"
    data = factories.jpeg(
        exif={factories.IMAGE_DESCRIPTION: "from exif"}, iptc={(2, 120): "from iptc"}
    )
    assert images.embedded_text(data).description == "from iptc"


def test_embedded_text_reads_png_xmp():
    data = factories.png(xmp=factories.xmp_packet(title="Harbour", keywords=["boats"]))
    assert images.embedded_text(data) == EmbeddedText(title="Harbour", keywords=("boats",))


@pytest.mark.parametrize(
    "junk",
    [
        "OLYMPUS DIGITAL CAMERA",
        "SONY DSC",
        "default",
        "   ",
        "KODAK Digital Still Camera",
        "IMG_1234",
        "DSC00012",
        "0000",
        "Created with GIMP",
    ],
)
def test_embedded_text_drops_camera_default_descriptions(junk):
    data = factories.jpeg_with_embedded_text(description=junk, sources=["exif", "iptc", "xmp"])
    assert images.embedded_text(data).description == ""


def test_embedded_text_drops_a_description_that_is_the_camera_name():
    data = factories.jpeg_with_embedded_text(
        description="Canon EOS R5", make="Canon", model="Canon EOS R5", sources=["exif"]
    )
    assert images.embedded_text(data) == EmbeddedText(camera="Canon EOS R5")


def test_embedded_text_falls_back_past_junk_to_the_next_source():
    data = factories.jpeg(
        exif={factories.IMAGE_DESCRIPTION: "A swan on a canal"},
        xmp=factories.xmp_packet(description="OLYMPUS DIGITAL CAMERA"),
    )
    assert images.embedded_text(data).description == "A swan on a canal"


@pytest.mark.parametrize(
    "packet",
    [
        b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF",  # cut off
        b"<<<not xml>>>",
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&b;</x:xmpmeta>'
        ),
        (
            b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&e;</x:xmpmeta>'
        ),
    ],
    ids=["truncated", "garbage", "entity-expansion", "external-entity"],
)
def test_embedded_text_ignores_bad_xmp(packet):
    data = factories.jpeg(exif={factories.IMAGE_DESCRIPTION: "Kept"}, xmp=packet)
    assert images.embedded_text(data) == EmbeddedText(description="Kept")


def test_embedded_text_never_raises_for_a_file_that_is_not_an_image():
    for data in (b"", factories.svg(), factories.truncated_jpeg(), factories.corrupt_bytes()):
        assert images.embedded_text(data) == EmbeddedText()


def test_embedded_text_is_empty_for_a_plain_image():
    assert images.embedded_text(factories.jpeg()) == EmbeddedText()


def test_embedded_text_reads_png_text_chunks():
    data = factories.png(text={"Title": "Old mill", "Description": "A mill by a stream"})
    assert images.embedded_text(data) == EmbeddedText(
        title="Old mill", description="A mill by a stream"
    )


def test_svg_with_a_byte_order_mark_is_named_as_svg():
    with pytest.raises(ImageError, match=r"SVG is not supported"):
        images.preview(b"\xef\xbb\xbf" + factories.svg())


def test_a_large_jpeg_is_decoded_at_the_smallest_scale_close_to_the_preview_size():
    """4000x3000 decodes at 1/8 (500 px): within 10% of 512 is close enough for the model,
    and it costs a quarter of decoding at 1/4 and shrinking."""
    picture = Image.new("RGB", (4000, 3000), (30, 160, 40))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=70)

    with Image.open(io.BytesIO(images.preview(buffer.getvalue()))) as preview:
        long_side = max(preview.size)
    assert 0.9 * 512 <= long_side <= 512
    assert preview.size[0] > preview.size[1]


# ------------------------------------------------------------------ memory: the decode budget


def test_the_decode_budget_counts_bytes_per_mode_not_pixels(settings, monkeypatch):
    # 200 x 200: 40 KB in grey, 160 KB in RGBA (Pillow keeps four bytes a pixel).
    settings.MEDIAOPT_MAX_DECODE_BYTES = 100_000
    assert images.inspect(factories.png(200, 200, 90, mode="L")).width == 200
    loads: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: loads.append(self) or real_load(self)
    )
    rgba = factories.png(200, 200, (1, 2, 3, 4), mode="RGBA")
    for call in (images.inspect, images.preview, images.thumbnail):
        with pytest.raises(ImageError) as caught:
            call(rgba)
        assert caught.value.reason == (
            "the image is too large to decode: 200x200 PNG in colour mode RGBA needs 0 MB "
            "of memory; the limit is 0 MB"
        )
    assert loads == []


def test_a_jpeg_is_judged_at_its_draft_size(settings):
    # 4000 x 3000 RGB is 48 MB at full size, 0.75 MB at the 1/8 scale a preview decodes.
    settings.MEDIAOPT_MAX_DECODE_BYTES = 2 * 1024 * 1024
    picture = io.BytesIO()
    Image.new("RGB", (4000, 3000), "green").save(picture, "JPEG")
    assert open_jpeg(images.preview(picture.getvalue())).size == (500, 375)


def test_a_progressive_jpeg_counts_its_full_size_coefficients(settings):
    picture = io.BytesIO()
    Image.new("RGB", (2000, 1000), "green").save(picture, "JPEG", progressive=True)
    settings.MEDIAOPT_MAX_DECODE_BYTES = 2 * 1024 * 1024  # 2000x1000 4:2:0 needs 6 MB
    with pytest.raises(ImageError, match=r"^the image is too large to decode: 2,000x1,000 JPEG"):
        images.preview(picture.getvalue())
    settings.MEDIAOPT_MAX_DECODE_BYTES = 8 * 1024 * 1024
    assert open_jpeg(images.preview(picture.getvalue())).size == (500, 250)  # 1/4 scale


@pytest.fixture
def small_bands(monkeypatch):
    """Bands of a few rows, so shrinking a small test image crosses many of them."""
    monkeypatch.setattr(decoding, "_BAND_BYTES", 4096)


def test_shrinking_in_bands_composites_palette_transparency_on_white(small_bands):
    img = open_jpeg(images.preview(factories.palette_png_with_transparency(640, 480)))
    assert img.size == (512, 384)
    assert close_to(img.getpixel((40, 200)), (255, 255, 255))
    assert close_to(img.getpixel((470, 200)), (255, 0, 0))
    assert close_to(img.getpixel((470, 380)), (255, 0, 0))  # the last, partial band


def test_shrinking_in_bands_turns_an_orientation_6_jpeg_upright(small_bands):
    data = factories.red_top_band_jpeg_with_orientation_6(1200, 600)
    img = open_jpeg(images.preview(data))
    assert img.size == (512, 256)
    assert close_to(img.getpixel((256, 20)), (255, 0, 0))
    assert close_to(img.getpixel((256, 240)), (0, 0, 255))
    assert close_to(img.getpixel((10, 240)), (0, 0, 255))


def test_shrinking_in_bands_keeps_16_bit_and_float_brightness(small_bands):
    img = open_jpeg(images.preview(factories.png16(900, 700, value=32768)))
    assert close_to(img.getpixel((200, 200)), (128, 128, 128), tolerance=3)
    tiff = io.BytesIO()
    Image.new("F", (900, 700), 1000.0).save(tiff, "TIFF")  # scaled so the brightest is 255
    img = open_jpeg(images.preview(tiff.getvalue()))
    assert close_to(img.getpixel((200, 200)), (255, 255, 255), tolerance=3)


def test_a_long_thin_strip_shrinks_along_its_length():
    img = open_jpeg(images.preview(factories.png(2, 20_000, "red")))
    assert img.size == (1, 512)


def test_exif_over_its_cap_is_ignored_orientation_included(settings):
    from tests import hostile_corpus

    data = factories.png(60, 30, "red", exif=None)
    blob = hostile_corpus.exif_blob(payload=20_000, orientation=6)
    with_exif = io.BytesIO()
    Image.open(io.BytesIO(data)).save(with_exif, "PNG", exif=blob)
    assert images.inspect(with_exif.getvalue()).width == 30  # upright: rotated
    settings.MEDIAOPT_MAX_EXIF_BYTES = 10_000
    assert images.inspect(with_exif.getvalue()).width == 60  # too big to read: as stored
    assert open_jpeg(images.preview(with_exif.getvalue())).size == (60, 30)


def test_png_text_over_the_limit_refuses_the_file_with_a_reason(settings):
    settings.MEDIAOPT_MAX_TEXT_BYTES = 10_000
    data = factories.png(text={"Description": "a lighthouse " * 2000})
    with pytest.raises(ImageError) as caught:
        images.inspect(data)
    assert caught.value.reason == (
        "the image carries more embedded data (text, XMP or colour profile) than is allowed"
    )
    assert images.embedded_text(data) == EmbeddedText()
    settings.MEDIAOPT_MAX_TEXT_BYTES = 100_000
    assert images.embedded_text(data).description.startswith("a lighthouse a lighthouse")


def test_embedded_text_is_capped_in_length():
    data = factories.png(text={"Title": "word " * 5000})
    assert len(images.embedded_text(data).title) <= 10_000


def test_examine_reads_info_thumbnail_and_text_from_one_decode(monkeypatch):
    data = factories.jpeg_with_embedded_text(description="A red barn in snow", sources=["exif"])
    decodes: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(  # a load() with tiles left is a decode; later calls are no-ops
        ImageFile.ImageFile,
        "load",
        lambda self: (self.tile and decodes.append(self)) or real_load(self),
    )
    examined = images.examine(data)
    assert len(decodes) == 1
    assert examined.info == images.inspect(data)
    assert examined.embedded == images.embedded_text(data)
    assert open_jpeg(examined.thumbnail).size == open_jpeg(images.thumbnail(data)).size


def test_a_second_large_decode_waits_for_the_first_to_finish(settings):
    import threading

    settings.MEDIAOPT_MAX_DECODE_BYTES = 1000
    settings.MEDIAOPT_DECODE_BYTES_IN_FLIGHT = 1000
    order: list[str] = []
    first_in, second_tried = threading.Event(), threading.Event()

    def second() -> None:
        second_tried.set()
        with decoding.reserve(800):
            order.append("second")

    with decoding.reserve(800):
        first_in.set()
        waiter = threading.Thread(target=second)
        waiter.start()
        second_tried.wait(5)
        waiter.join(0.3)
        assert waiter.is_alive()  # no room while the first holds its bytes
        order.append("first")
    waiter.join(5)
    assert order == ["first", "second"]
    with decoding.reserve(5000):  # larger than the budget: runs alone, never blocks forever
        pass
