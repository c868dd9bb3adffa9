"""The heuristic provider writes only what it knows: embedded text and telling file names."""

from __future__ import annotations

import pytest

from mediaopt.library.fields import FIELDS
from metadata.providers.base import DescribeRequest, DescribeResult, Provider
from metadata.providers.heuristic import HeuristicProvider, file_name_words


def describe(
    name: str = "IMG_1234.JPG",
    *,
    embedded: dict[str, str] | None = None,
    fields: tuple[str, ...] = FIELDS,
) -> dict:
    request = DescribeRequest(
        preview_jpeg=None, original_name=name, fields=fields, embedded=embedded or {}
    )
    result = HeuristicProvider().describe(request)
    assert result.provider == "heuristic" and result.model == ""
    return result.output


def test_it_is_a_provider_named_heuristic():
    provider: Provider = HeuristicProvider()
    assert provider.name == "heuristic"
    request = DescribeRequest(preview_jpeg=None, original_name="x.jpg", fields=FIELDS)
    assert isinstance(provider.describe(request), DescribeResult)


def test_telling_file_name_becomes_alt_text_title_and_keywords():
    assert describe("golden-retriever_on-beach.JPG") == {
        "alt_text": "Golden retriever on beach",
        "title": "Golden retriever on beach",
        "keywords": "golden, retriever, beach",
    }


def test_camel_case_and_path_are_handled():
    assert describe("C:\\Users\\me\\RedBarnInSnow.png")["alt_text"] == "Red barn in snow"
    assert describe("/uploads/2024/red-barn.jpg")["title"] == "Red barn"


def test_noise_words_and_sizes_are_dropped_from_a_telling_name():
    assert describe("hero-lighthouse_1920x1080-scaled-final.jpg")["alt_text"] == ("Hero lighthouse")
    assert describe("IMG_1234 beach sunset.jpg")["alt_text"] == "Beach sunset"


@pytest.mark.parametrize(
    "name",
    [
        "IMG_1234.JPG",
        "IMG-20230101-WA0001.jpg",
        "DSC00012.JPG",
        "DSC_0042.NEF.jpg",
        "DSCN0001.jpg",
        "P1010001.JPG",
        "PXL_20230101_123456789.jpg",
        "PXL_20230101_123456789.MP.jpg",
        "20230101_120000.jpg",
        "screenshot-2024-01-05.png",
        "Screen Shot 2024-01-05 at 10.00.00.png",
        "Screenshot_20240105-101010.png",
        "WhatsApp Image 2023-01-01 at 10.00.00.jpeg",
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301.png",
        "d41d8cd98f00b204e9800998ecf8427e.jpg",
        "deadbeefcafebabe.jpg",
        "image.png",
        "image (2).png",
        "photo.jpg",
        "untitled.png",
        "Untitled-1.png",
        "scan0001.tif",
        "0012345_a.jpg",
        "123456.jpg",
        "xkcdqwrtz.png",
        ".jpg",
        "",
    ],
)
def test_meaningless_file_names_give_nothing(name):
    assert describe(name) == {}
    assert file_name_words(name) == []


def test_camera_model_as_file_name_gives_nothing():
    assert describe("Canon-EOS-5D-Mark-IV.jpg") == {}
    assert describe("iphone_12_pro.jpg") == {}


def test_embedded_text_fills_every_field():
    output = describe(
        "IMG_0001.jpg",
        embedded={
            "title": "Lisbon ferry",
            "description": "A ferry leaving Lisbon at dusk",
            "keywords": "ferry, Lisbon, dusk",
        },
    )
    assert output == {
        "alt_text": "A ferry leaving Lisbon at dusk",
        "title": "Lisbon ferry",
        "caption": "A ferry leaving Lisbon at dusk",
        "description": "A ferry leaving Lisbon at dusk",
        "keywords": "ferry, Lisbon, dusk",
    }


def test_embedded_text_wins_over_the_file_name():
    output = describe("golden-retriever.jpg", embedded={"description": "A dog asleep"})
    assert output["alt_text"] == "A dog asleep"
    assert output["title"] == "Golden retriever"  # no embedded title: the name says it
    assert output["keywords"] == "golden, retriever"


def test_embedded_title_alone_is_used_for_alt_text_but_not_caption():
    output = describe("IMG_0001.jpg", embedded={"title": "Harbour at dawn"})
    assert output == {"alt_text": "Harbour at dawn", "title": "Harbour at dawn"}


def test_only_requested_fields_are_produced():
    output = describe(
        "golden-retriever_on-beach.jpg",
        embedded={"description": "A dog", "keywords": "dog"},
        fields=("alt_text", "keywords"),
    )
    assert output == {"alt_text": "A dog", "keywords": "dog"}


def test_fields_with_nothing_telling_are_absent():
    output = describe("DSC00012.JPG", embedded={"keywords": "beach"})
    assert output == {"keywords": "beach"}


def test_junk_embedded_description_is_ignored():
    assert describe("IMG_1.jpg", embedded={"description": "OLYMPUS DIGITAL CAMERA"}) == {}
    assert describe("IMG_1.jpg", embedded={"description": "  ", "title": "default"}) == {}


@pytest.mark.parametrize(
    "embedded",
    [
        {"description": "Canon EOS 5D Mark IV"},
        {"description": "NIKON D750"},
        {"description": "Shot on iPhone 12 Pro"},
        {"description": "Taken with a CanaryCam CC-9000", "camera": "CanaryCam CC-9000"},
        {"title": "CC-9000", "camera": "CanaryCam CC-9000"},
    ],
)
def test_camera_names_never_reach_the_output(embedded):
    output = describe("IMG_1234.JPG", embedded=embedded)
    assert output == {}


def test_camera_name_in_keywords_is_dropped():
    output = describe(
        "IMG_1234.JPG", embedded={"keywords": "beach, Canon EOS R5, sunset", "camera": "Canon"}
    )
    assert output == {"keywords": "beach, sunset"}


def test_file_facts_never_appear():
    output = describe("lighthouse-1024x768.jpeg")
    assert output == {"alt_text": "Lighthouse", "title": "Lighthouse", "keywords": "lighthouse"}
    for value in output.values():
        assert "1024" not in value and "jpeg" not in value.lower()


def test_keywords_drop_stop_words_and_duplicates():
    assert describe("the-cat-and-the-cat-on-a-mat.png")["keywords"] == "cat, mat"
