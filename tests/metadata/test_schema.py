from mediaopt.library.fields import ALT_TEXT_MAX
from metadata import schema


def test_markup_and_control_characters_are_stripped():
    assert schema.clean_text("<b>Red</b>\x00 kite\u202e <script>x</script>", max_length=60) == (
        "Red kite x"
    )


def test_image_of_openers_are_dropped_and_sentence_recapitalised():
    assert schema.clean_alt_text("image of a dog on a beach") == "A dog on a beach"
    assert schema.clean_alt_text("A photo of the harbour") == "The harbour"


def test_alt_text_is_cut_at_a_word_boundary_within_the_hard_limit():
    alt = schema.clean_alt_text("word " * 60)
    assert len(alt) <= ALT_TEXT_MAX
    assert alt.endswith("word")


def test_keywords_are_deduplicated_lowercased_and_capped_at_ten():
    raw = ["Beach", "beach", "#Sea", *[f"k{i}" for i in range(20)]]
    assert schema.clean_keywords(raw) == "beach, sea, k0, k1, k2, k3, k4, k5, k6, k7"


def test_decorative_verdict_yields_an_intentionally_empty_alt_text():
    cleaned = schema.clean({"alt_text": "A flourish", "title": "Divider", "is_decorative": True})
    assert cleaned.is_decorative is True
    assert cleaned.values["alt_text"] == ""
    assert cleaned.values["title"] == "Divider"


def test_fields_the_provider_did_not_return_stay_absent():
    assert schema.clean({"title": "Harbour"}).values == {"title": "Harbour"}
