"""A route's strategy: the order in which one request tries the route's targets.

The first target is the one the strategy picks; the others follow as fallbacks in the route's order.

* ``fallback``: the configured order.
* ``weighted``: one target drawn with the configured weights.
* ``least-busy``: the fewest requests in flight from this process (ties: the configured order).
* ``latency``: the lowest moving average of time to first byte; every target within ``tolerance`` of the
  fastest is drawn from at random, so close ones share the load and keep being measured. A target never
  measured goes first (it has to be measured once).
* ``cost``: the cheapest for this request (its estimated input and allowed output at the model's
  prices); a target without prices goes last.

Cooling targets and those too small for the prompt are skipped afterwards, by the caller.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from providers.registry import Model

from ..router import Target
from .config import RouteConfig
from .health import Health

__all__ = ["order"]


def order(
    route: RouteConfig,
    targets: Sequence[Target],
    health: Health,
    rng: random.Random,
    input_tokens: int,
    max_output: int,
) -> list[Target]:
    strategy = route.strategy
    if strategy == "fallback" or len(targets) == 1:
        return list(targets)
    if strategy == "weighted":
        assert route.weights is not None  # checked at start
        first = rng.choices(range(len(targets)), weights=route.weights)[0]
        return _first(targets, first)
    if strategy == "least-busy":
        busy = [health.of(t.public_id).in_flight for t in targets]
        return _first(targets, busy.index(min(busy)))
    if strategy == "latency":
        return _first(targets, _fastest(targets, health, route.tolerance, rng))
    prices = [_price(t.model, input_tokens, max_output) for t in targets]
    return [targets[i] for i in sorted(range(len(targets)), key=lambda i: prices[i])]


def _first(targets: Sequence[Target], index: int) -> list[Target]:
    return [targets[index], *targets[:index], *targets[index + 1 :]]


def _fastest(targets: Sequence[Target], health: Health, tolerance: float, rng: random.Random) -> int:
    measured: list[tuple[int, float]] = []
    for i, t in enumerate(targets):
        ttfb = health.of(t.public_id).ttfb
        if ttfb is None:
            return i
        measured.append((i, ttfb))
    best = min(s for _, s in measured)
    close = [i for i, s in measured if s <= best * (1.0 + tolerance)]
    return close[0] if len(close) == 1 else rng.choice(close)


def _price(model: Model | None, input_tokens: int, max_output: int) -> float:
    if model is None or (model.cost.input == 0 and model.cost.output == 0):
        return float("inf")
    return model.cost.input * input_tokens + model.cost.output * max_output
