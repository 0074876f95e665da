"""Retries and fallbacks after failed attempts (the rule of :mod:`proxy.routing.policy`): which failures
are retried or moved on from, how long between attempts (asserted on the times the fake received them,
as lower bounds), and that nothing is retried once the answer started."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Proxy, models_json
from tests.fakes.server import Action
from tests.test_routing_support import ResetServer, TimedOpenAI, config, error, fakes, providers

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def ups() -> Iterator[list[TimedOpenAI]]:
    yield from fakes(2)


def _start(
    start_proxy: Callable[..., Proxy], home: Path, ups: list[TimedOpenAI], targets: list[str], **settings: Any
) -> openai.OpenAI:
    providers(home, {f"p{i}": f for i, f in enumerate(ups)})
    return start_proxy(config=config(routes={"r": {"targets": targets}}, **settings)).client()


def _headers(client: openai.OpenAI, model: str = "r") -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    raw.parse()
    return raw.headers["x-switchboard-target"], raw.headers["x-switchboard-attempts"]


def _gaps(fake: TimedOpenAI) -> list[float]:
    return [b - a for a, b in zip(fake.times, fake.times[1:], strict=False)]


def test_retry_after_is_waited_for_before_retrying_the_same_target(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a = ups[0]
    client = _start(start_proxy, isolated_env, ups[:1], ["p0/m"], retries={"attempts": 2, "backoff": 0.01})
    a.push(error(429, "Rate limit reached", {"retry-after": "0.6"}))
    assert _headers(client) == ("p0/m", "2")
    assert len(a.times) == 2 and _gaps(a)[0] >= 0.6


def test_retry_after_ms_is_honoured_too(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a = ups[0]
    client = _start(start_proxy, isolated_env, ups[:1], ["p0/m"], retries={"attempts": 2, "backoff": 0.01})
    a.push(error(503, headers={"retry-after-ms": "450"}))
    assert _headers(client) == ("p0/m", "2")
    assert _gaps(a)[0] >= 0.45


def test_attempts_are_bounded_with_exponential_backoff(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a = ups[0]
    settings = {"retries": {"attempts": 3, "backoff": 0.2}, "cooldown": {"failures": 10}}
    client = _start(start_proxy, isolated_env, ups[:1], ["p0/m"], **settings)
    for _ in range(5):
        a.push(error(503))
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="r", messages=MESSAGES)
    assert err.value.status_code == 503
    assert err.value.response.headers["x-switchboard-attempts"] == "3"
    assert len(a.times) == 3  # never more than `attempts`
    first, second = _gaps(a)
    # backoff * 2^(n-1), times at least 50% (jitter): at least 0.1 s, then 0.2 s.
    assert first >= 0.1 and second >= 0.2


def test_a_retry_after_over_the_cap_moves_on_at_once_and_cools_the_target(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b = ups
    settings = {"retries": {"attempts": 3, "retry_after_cap": 1}}
    client = _start(start_proxy, isolated_env, ups, ["p0/m", "p1/m"], **settings)
    a.push(error(429, "Rate limit reached", {"retry-after": "30"}))
    assert _headers(client) == ("p1/m", "2")
    assert len(a.requests) == 1
    # p0 cools down for its retry-after: the next request goes straight to p1.
    assert _headers(client) == ("p1/m", "1")
    assert (len(a.requests), len(b.requests)) == (1, 2)


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_never_retried_nor_moved_on_from(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI], status: int
) -> None:
    a, b = ups
    client = _start(start_proxy, isolated_env, ups, ["p0/m", "p1/m"], retries={"attempts": 3})
    a.push(error(status, "bad request"))
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="r", messages=MESSAGES)
    assert err.value.status_code == status
    assert err.value.response.headers["x-switchboard-attempts"] == "1"
    assert (len(a.requests), len(b.requests)) == (1, 0)


def test_a_refused_key_moves_on_to_the_next_target_without_retrying(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b = ups
    client = _start(start_proxy, isolated_env, ups, ["p0/m", "p1/m"], retries={"attempts": 3})
    a.rejected_keys.add("key-p0")
    assert _headers(client) == ("p1/m", "2")
    assert (len(a.requests), len(b.requests)) == (1, 1)


def test_a_connection_reset_is_retried_then_falls_back(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    reset = ResetServer().start()
    try:
        models_json(
            isolated_env,
            {
                "broken": {
                    "baseUrl": reset.url + "/v1",
                    "api": "openai-completions",
                    "apiKey": "k",
                    "models": [{"id": "m"}],
                },
                "p1": {
                    "baseUrl": ups[1].url + "/v1",
                    "api": "openai-completions",
                    "apiKey": "k1",
                    "models": [{"id": "m"}],
                },
            },
        )
        settings = {"routes": {"r": {"targets": ["broken/m", "p1/m"]}}, "retries": {"attempts": 2, "backoff": 0.01}}
        client = start_proxy(config=config(**settings)).client()
        assert _headers(client) == ("p1/m", "3")
        assert reset.hits == 2
    finally:
        reset.stop()


def test_a_timeout_before_the_first_byte_falls_back(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b = ups
    client = _start(start_proxy, isolated_env, ups, ["p0/m", "p1/m"], timeouts={"read": 0.3})
    a.push(Action("hang", seconds=5.0))
    raw = client.chat.completions.with_raw_response.create(model="r", messages=MESSAGES, stream=True)
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Echo: hi")
    # The stream's headers name the target that answered, after the attempt that timed out.
    assert (raw.headers["x-switchboard-target"], raw.headers["x-switchboard-attempts"]) == ("p1/m", "2")
    assert len(b.requests) == 1


def test_nothing_is_retried_once_the_stream_started(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b = ups
    client = _start(start_proxy, isolated_env, ups, ["p0/m", "p1/m"], retries={"attempts": 3})
    a.push(Action("break", after_events=2))
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="r", messages=MESSAGES, stream=True):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert received  # the first events reached the client before the upstream broke off
    assert (len(a.requests), len(b.requests)) == (1, 0)


def test_a_plain_model_name_is_retried_only_when_retries_are_configured(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a = ups[0]
    providers(isolated_env, {"p0": a})
    client = start_proxy(config=config(retries={"attempts": 2, "backoff": 0.01})).client()
    a.push(error(529, "Overloaded"))
    assert _headers(client, "p0/m") == ("p0/m", "2")
    assert len(a.requests) == 2
