"""Language tags are validated and named; short texts are detected, "unknown" when unsure."""

from __future__ import annotations

import pytest

from metadata import language


@pytest.mark.parametrize(
    ("tag", "standard", "name"),
    [
        ("de", "de", "German (de)"),
        ("fr", "fr", "French (fr)"),
        ("ja", "ja", "Japanese (ja)"),
        ("ar", "ar", "Arabic (ar)"),
        ("pt_br", "pt-BR", "Portuguese (Brazil) (pt-BR)"),
        ("EN-gb", "en-GB", "English (United Kingdom) (en-GB)"),
        ("zh-Hant", "zh-Hant", "Chinese (Traditional) (zh-Hant)"),
        ("iw", "he", "Hebrew (he)"),
    ],
)
def test_a_valid_tag_is_standardised_and_named(tag, standard, name):
    assert language.normalize_tag(tag) == standard
    assert language.display_name(tag) == name


@pytest.mark.parametrize("tag", ["", "  ", "xx", "english", "German", "de.", "12", "en-"])
def test_an_invalid_tag_is_refused_with_an_example(tag):
    with pytest.raises(ValueError, match="for example de or pt-BR"):
        language.normalize_tag(tag)


@pytest.mark.parametrize(
    ("tag", "limits"),
    [
        ("en", language.LATIN_LIMITS),
        ("de-AT", language.LATIN_LIMITS),
        ("ja", language.CJK_LIMITS),
        ("zh-Hant", language.CJK_LIMITS),
        ("ko", language.CJK_LIMITS),
    ],
)
def test_cjk_languages_have_shorter_alt_limits(tag, limits):
    assert language.alt_limits(tag) == limits


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("A golden retriever running along a sandy beach at sunset", "en"),
        ("Ein Hund läuft am Strand entlang", "de"),
        ("Un chien court sur la plage au coucher du soleil", "fr"),
        ("Un perro corre por la playa al atardecer", "es"),
        ("Un cane corre sulla spiaggia al tramonto", "it"),
        ("Um cão corre na praia ao pôr do sol", "pt"),
        ("Een hond rent over het strand", "nl"),
        ("浜辺を走る犬", "ja"),
        ("一只狗在海滩上奔跑", "zh"),
        ("해변을 달리는 개", "ko"),
        ("كلب يجري على الشاطئ", "ar"),
        ("Собака бежит по пляжу", "ru"),
        ("کتاب\u200cخانه ملی ایران در تهران", "fa"),
        ("Η Ακρόπολη την αυγή από τον λόφο", "el"),
        ("כלב רץ על החוף בשקיעה", "he"),
        ("समुद्र तट पर दौड़ता हुआ कुत्ता", "hi"),
    ],
)
def test_short_texts_are_detected(text, code):
    assert language.detect(text) == code


@pytest.mark.parametrize("text", ["Red kite", "Lisbon", "OK", "", "1920 x 1080", "猫"])
def test_too_short_or_ambiguous_text_is_unknown(text):
    assert language.detect(text) == language.UNKNOWN


@pytest.mark.parametrize(
    ("text", "asked", "found"),
    [
        ("A dog runs along the beach at sunset", "de", "en"),
        ("Ein Hund läuft am Strand entlang", "en", "de"),
        ("Un chien court sur la plage au coucher du soleil", "de-CH", "fr"),
        ("A dog runs along the beach at sunset", "ja", "en"),
        ("浜辺を走る犬", "en", "ja"),
        ("كلب يجري على الشاطئ", "fr", "ar"),
    ],
)
def test_a_text_in_another_language_is_named(text, asked, found):
    assert language.differs(text, language=asked) == found


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("Ein Hund läuft am Strand entlang", "de"),
        ("Ein Hund läuft am Strand entlang", "de-AT"),
        ("Um cão corre na praia ao pôr do sol", "pt-BR"),
        ("浜辺を走る犬", "ja"),
        ("Red kite", "de"),  # too short to say
        ("کتاب\u200cخانه ملی ایران در تهران", "fa"),
        ("Mbwa anakimbia ufukweni jioni", "sw"),  # not a detectable language: no guess
    ],
)
def test_no_mismatch_when_the_language_matches_or_is_unknown(text, asked):
    assert language.differs(text, language=asked) is None


def test_the_detector_is_built_once_per_process():
    language.detect("Ein Hund läuft am Strand entlang")
    assert language._detector() is language._detector()
