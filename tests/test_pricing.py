"""Cost of an exchange from real catalog prices (providers/data/models) and canonical usage."""

from __future__ import annotations

import msgspec
import pytest

from providers.canonical import Usage
from providers.pricing import cost_of, prices_for
from providers.registry import Cost, CostTier, load_builtin_models


def _cost(provider: str, model_id: str) -> Cost:
    (model,) = [m for m in load_builtin_models(provider) if m.id == model_id]
    return model.cost


def test_openai_cached_input_and_reasoning_counted_once() -> None:
    cost = _cost("openai", "gpt-4.1")  # $2 in, $8 out, $0.50 cached
    assert (cost.input, cost.output, cost.cache_read) == (2.0, 8.0, 0.5)
    usage = Usage(input_tokens=10_000, output_tokens=1_000, cache_read_tokens=8_000, reasoning_tokens=400)
    # 2,000 fresh at $2 + 8,000 cached at $0.50 + 1,000 out (reasoning inside) at $8
    assert cost_of(cost, usage) == pytest.approx((2_000 * 2.0 + 8_000 * 0.5 + 1_000 * 8.0) / 1e6)


def test_anthropic_cache_write_and_read() -> None:
    cost = _cost("anthropic", "claude-sonnet-4-5")  # $3 in, $15 out, $0.30 read, $3.75 write
    assert (cost.input, cost.output, cost.cache_read, cost.cache_write) == (3.0, 15.0, 0.3, 3.75)
    # Canonical counts: input 3,012 includes the 2,000 read and 1,000 written (Anthropic's input_tokens 12).
    usage = Usage(input_tokens=3_012, output_tokens=500, cache_read_tokens=2_000, cache_write_tokens=1_000)
    want = (12 * 3.0 + 2_000 * 0.3 + 1_000 * 3.75 + 500 * 15.0) / 1e6
    assert cost_of(cost, usage) == pytest.approx(want)


def test_no_cache_price_bills_cached_tokens_as_input() -> None:
    cost = _cost("openai", "gpt-5-pro")  # no cache price in the catalog: cacheRead 0
    assert cost.cache_read == 0.0 and cost.cache_write == 0.0
    usage = Usage(input_tokens=1_000, output_tokens=10, cache_read_tokens=600, cache_write_tokens=100)
    assert cost_of(cost, usage) == pytest.approx((1_000 * 15.0 + 10 * 120.0) / 1e6)


def test_gemini_long_context_tier_prices_the_whole_request() -> None:
    # The catalog keeps only the base tier; Google's published >200k prices for 2.5 Pro, as models.json
    # would declare them (camelCase, the catalog's own format).
    base = _cost("google", "gemini-2.5-pro")  # $1.25 in, $10 out, $0.125 cached (≤ 200k)
    tier = msgspec.json.decode(
        b'{"inputTokensAbove": 200000, "input": 2.5, "output": 15.0, "cacheRead": 0.25}', type=CostTier
    )
    cost = msgspec.structs.replace(base, tiers=(tier,))
    at_limit = Usage(input_tokens=200_000, output_tokens=1_000, cache_read_tokens=50_000, reasoning_tokens=800)
    assert prices_for(cost, 200_000) is cost  # "above" is strict
    assert cost_of(cost, at_limit) == pytest.approx((150_000 * 1.25 + 50_000 * 0.125 + 1_000 * 10.0) / 1e6)
    above = Usage(input_tokens=200_001, output_tokens=1_000, cache_read_tokens=50_000)
    # Every token of the request at the tier's prices, not only those past 200k.
    assert cost_of(cost, above) == pytest.approx((150_001 * 2.5 + 50_000 * 0.25 + 1_000 * 15.0) / 1e6)


def test_highest_exceeded_tier_wins_whatever_the_order() -> None:
    cost = Cost(
        input=1.0,
        output=2.0,
        tiers=(CostTier(input_tokens_above=500, input=5.0, output=6.0), CostTier(input_tokens_above=100, input=3.0)),
    )
    assert prices_for(cost, 50) is cost
    assert prices_for(cost, 101).input == 3.0
    assert prices_for(cost, 501).input == 5.0
    # A tier without a cache price bills cached tokens at its own input price.
    assert cost_of(cost, Usage(input_tokens=1_000, cache_read_tokens=1_000)) == pytest.approx(1_000 * 5.0 / 1e6)


def test_free_model_and_odd_counts() -> None:
    assert cost_of(Cost(), Usage(input_tokens=10**6, output_tokens=10**6)) == 0.0
    # Cache counts beyond the prompt never make fresh input negative.
    cost = Cost(input=1.0, output=1.0, cache_read=0.5)
    assert cost_of(cost, Usage(input_tokens=10, cache_read_tokens=20)) == pytest.approx(20 * 0.5 / 1e6)
