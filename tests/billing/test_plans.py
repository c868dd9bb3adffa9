"""Prices per model from tokens: estimates and spend in the dollars of the provider's bill."""

from decimal import Decimal

from billing import plans


def test_a_calls_usage_is_priced_per_token():
    # gpt-4.1-mini: $0.40 per million in, $1.60 per million out.
    cost = plans.usd_for(model="gpt-4.1-mini", prompt_tokens=1_000_000, completion_tokens=500_000)
    assert cost == Decimal("1.20")
    assert plans.usd_for(model="my-local-model", prompt_tokens=10, completion_tokens=10) is None


def test_an_image_costs_its_image_tokens_the_prompt_and_a_short_answer():
    per_thousand = {model: plans.price_per_image(model) * 1000 for model in plans.TOKEN_PRICES}
    assert Decimal("0.55") < per_thousand["gpt-4o-mini"] < Decimal("0.65")
    # The 4.1 models bill the preview by patches: far fewer tokens than gpt-4o-mini.
    assert Decimal("0.60") < per_thousand["gpt-4.1-mini"] < Decimal("0.75")
    assert per_thousand["gpt-4.1-nano"] < per_thousand["gpt-4o-mini"]


def test_the_operators_table_overrides(settings):
    settings.MEDIAOPT_PRICES = {"gpt-4o-mini": "0.001", "my-local-model": 0}
    assert plans.price_per_image("gpt-4o-mini") == Decimal("0.001")
    assert plans.price_per_image("my-local-model") == 0
    assert plans.price_per_image("unknown") is None
