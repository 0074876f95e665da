"""Each route strategy picks the right target, through the real server and the openai SDK.

The upstreams are OpenAI-compatible fakes ``p0``, ``p1``... (model ``m``); which one answered is read
from ``x-switchboard-target`` and from the requests each fake received.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Proxy
from tests.fakes.server import Action
from tests.test_routing_support import TimedOpenAI, config, error, fakes, poll, providers

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def ups() -> Iterator[list[TimedOpenAI]]:
    yield from fakes(3)


def _start(
    start_proxy: Callable[..., Proxy],
    home: Path,
    ups: list[TimedOpenAI],
    route: dict[str, Any],
    models: dict[str, list[dict[str, Any]]] | None = None,
    **settings: Any,
) -> openai.OpenAI:
    providers(home, {f"p{i}": f for i, f in enumerate(ups)}, models)
    return start_proxy(config=config(routes={"r": route}, **settings)).client()


def _ask(client: openai.OpenAI, model: str = "r", **kw: Any) -> tuple[str, str]:
    """(x-switchboard-target, x-switchboard-attempts) of one chat completion."""
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, **kw)
    raw.parse()
    return raw.headers["x-switchboard-target"], raw.headers["x-switchboard-attempts"]


def test_fallback_tries_the_targets_in_order(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b, c = ups
    client = _start(start_proxy, isolated_env, ups, {"targets": ["p0/m", "p1/m", "p2/m"]})
    a.push(error(529, "Overloaded"))
    b.push(error(503))
    assert _ask(client) == ("p2/m", "3")
    assert (len(a.requests), len(b.requests), len(c.requests)) == (1, 1, 1)
    # Healthy again (two failures are under the cooldown's threshold): the first target answers.
    assert _ask(client) == ("p0/m", "1")
    # Each target got its own key, and the route name never went upstream.
    assert a.keys == ["key-p0", "key-p0"] and c.keys == ["key-p2"]
    assert all(r.body["model"] == "m" for f in ups for r in f.requests)


def test_weighted_splits_traffic_by_the_weights(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b, _ = ups
    client = _start(
        start_proxy, isolated_env, ups[:2], {"targets": ["p0/m", "p1/m"], "strategy": "weighted", "weights": [3, 1]}
    )
    for _ in range(1000):
        client.chat.completions.create(model="r", messages=MESSAGES)
    assert len(a.requests) + len(b.requests) == 1000
    assert 0.71 <= len(a.requests) / 1000 <= 0.79, len(a.requests)


def test_least_busy_picks_the_target_with_fewest_requests_in_flight(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b, _ = ups
    client = _start(start_proxy, isolated_env, ups[:2], {"targets": ["p0/m", "p1/m"], "strategy": "least-busy"})
    a.push(Action("hang", seconds=5.0))  # the first request stays in flight at p0
    results: list[tuple[str, str]] = []
    slow = threading.Thread(target=lambda: results.append(_ask(client)))
    slow.start()
    poll(lambda: len(a.requests) == 1, "the first request to reach p0")
    # p0 has one request in flight, p1 none: both of these go to p1.
    assert _ask(client) == ("p1/m", "1")
    assert _ask(client) == ("p1/m", "1")
    slow.join(30)
    assert results == [("p0/m", "1")]
    assert len(b.requests) == 2
    # Nothing in flight anywhere: ties go to the configured order.
    assert _ask(client) == ("p0/m", "1")


def test_latency_prefers_the_fastest_first_byte(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b, _ = ups
    client = _start(
        start_proxy, isolated_env, ups[:2], {"targets": ["p0/m", "p1/m"], "strategy": "latency", "tolerance": 0.2}
    )
    a.push(Action("hang", seconds=0.4))  # p0's first byte is slow
    # Never-measured targets are tried first, each once: p0 (slow), then p1 (fast).
    assert _ask(client) == ("p0/m", "1")
    assert _ask(client) == ("p1/m", "1")
    for _ in range(20):
        assert _ask(client) == ("p1/m", "1")
    assert (len(a.requests), len(b.requests)) == (1, 21)


def test_latency_shares_the_load_between_targets_within_the_tolerance(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b, _ = ups
    # Equally fast fakes: with a wide band both stay within it and both get traffic.
    client = _start(
        start_proxy, isolated_env, ups[:2], {"targets": ["p0/m", "p1/m"], "strategy": "latency", "tolerance": 100}
    )
    for _ in range(60):
        _ask(client)
    assert len(a.requests) > 5 and len(b.requests) > 5


def test_cost_picks_the_cheapest_target_whose_context_window_fits(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b, c = ups
    models = {
        "p0": [{"id": "m", "cost": {"input": 10, "output": 30}}],
        "p1": [{"id": "m", "cost": {"input": 0.1, "output": 0.4}, "contextWindow": 2000}],
        "p2": [{"id": "m", "cost": {"input": 1, "output": 4}}],
    }
    client = _start(start_proxy, isolated_env, ups, {"targets": ["p0/m", "p1/m", "p2/m"], "strategy": "cost"}, models)
    assert _ask(client, max_tokens=100) == ("p1/m", "1")
    # A prompt of ~12,000 bytes (some 3,000 tokens) does not fit p1's 2,000: the next cheapest answers.
    long = [{"role": "user", "content": "word " * 2400}]
    raw = client.chat.completions.with_raw_response.create(model="r", messages=long, max_tokens=100)
    assert raw.headers["x-switchboard-target"] == "p2/m"
    assert (len(a.requests), len(b.requests), len(c.requests)) == (0, 1, 1)


def test_a_plain_model_name_is_not_routed(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b, _ = ups
    client = _start(start_proxy, isolated_env, ups[:2], {"targets": ["p0/m", "p1/m"]})
    a.push(error(503))
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="p0/m", messages=MESSAGES)
    assert err.value.response.headers["x-switchboard-target"] == "p0/m"
    assert err.value.response.headers["x-switchboard-attempts"] == "1"
    assert len(b.requests) == 0


def test_a_route_follows_a_models_json_change(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    # A route's targets are resolved once per router generation: a reloaded models.json (p0 moved to
    # another server) must reach the route too, not only plain model names.
    client = _start(start_proxy, isolated_env, ups, {"targets": ["p0/m"]})
    assert _ask(client) == ("p0/m", "1")
    assert len(ups[0].requests) == 1
    providers(isolated_env, {"p0": ups[2], "p1": ups[1]})

    def moved() -> bool:
        _ask(client)
        return len(ups[2].requests) > 0

    poll(moved, "the route to reach p0's new baseUrl after the reload", seconds=15)
