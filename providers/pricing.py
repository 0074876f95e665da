"""What an exchange cost in US dollars, from a model's :class:`~providers.registry.Cost` and its usage.

Prices are dollars per million tokens. Token counts follow the canonical convention
(:class:`providers.canonical.Usage`: ``input_tokens`` includes the cache reads and writes,
``output_tokens`` includes reasoning), so one exchange costs::

    (input - cache_read - cache_write) * input
  + cache_read  * cache_read   (the input price when the model lists none)
  + cache_write * cache_write  (the input price when the model lists none)
  + output      * output       (reasoning is inside output: counted once)

A price of 0 for cache reads or writes is read as "not listed" rather than "free": the catalogs write 0
for a model without a cache price, and a provider that reports cached tokens for such a model bills them
as ordinary input; charging them at 0 would let a prompt cache make a virtual key's spend vanish.

Tiers (long-context prices, ``Cost.tiers``): the tier with the highest ``input_tokens_above`` that the
request's total input tokens exceed applies to the *whole* request, every token type at that tier's
prices (the rule of the model catalogs and of Google's and OpenAI's long-context pricing).
"""

from __future__ import annotations

from .canonical import Usage
from .registry import Cost, CostTier, Model

__all__ = ["cost_for", "cost_of", "prices_for"]

_PER_MILLION = 1e-6


def cost_for(model: Model | None, usage: Usage | None) -> float:
    """``usage`` priced with ``model``'s prices: 0.0 without usage, or for a model the catalog does not list
    (a name a client sent to ``provider/anything``)."""
    return cost_of(model.cost, usage) if usage is not None and model is not None else 0.0


def cost_of(cost: Cost, usage: Usage) -> float:
    """The exchange's cost in US dollars (0.0 for a model without prices, such as a local one)."""
    # On every request the gateway or metrics meter: conditionals rather than max() calls (a third of the time).
    prices = prices_for(cost, usage.input_tokens) if cost.tiers else cost
    cache_read = usage.cache_read_tokens if usage.cache_read_tokens > 0 else 0
    cache_write = usage.cache_write_tokens if usage.cache_write_tokens > 0 else 0
    # A provider may report cache counts beyond its prompt count; never bill negative fresh input.
    uncached = usage.input_tokens - cache_read - cache_write
    output = usage.output_tokens
    input_price = prices.input
    total = (uncached if uncached > 0 else 0) * input_price + (output if output > 0 else 0) * prices.output
    if cache_read:
        total += cache_read * (prices.cache_read or input_price)
    if cache_write:
        total += cache_write * (prices.cache_write or input_price)
    return total * _PER_MILLION


def prices_for(cost: Cost, input_tokens: int) -> Cost | CostTier:
    """The prices that apply to a request with ``input_tokens`` of input (cache included): the base
    prices, or the highest tier whose threshold the input exceeds."""
    best: CostTier | None = None
    for tier in cost.tiers:
        if input_tokens > tier.input_tokens_above and (
            best is None or tier.input_tokens_above > best.input_tokens_above
        ):
            best = tier
    return cost if best is None else best
