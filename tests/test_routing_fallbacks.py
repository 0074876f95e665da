"""Per-request ``fallbacks`` (``extra_body={"fallbacks": [...]}``) on the chat completions, Responses and
Messages surfaces (and embeddings); context-window fallback (estimated, and the upstream's context-length error in
OpenAI's and Anthropic's words); the gateway's allow-list over every target a request may reach; the
ledger's record of each attempt."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Proxy, models_json
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.embeddings_upstream import FakeEmbeddings
from tests.fakes.server import Action
from tests.test_routing_support import (
    ANTHROPIC_CONTEXT_ERROR,
    OPENAI_CONTEXT_ERROR,
    TimedOpenAI,
    config,
    error,
    fakes,
    providers,
)

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
MASTER = "sk-sb-master-routing-0123456789abcdef"


@pytest.fixture
def ups() -> Iterator[list[TimedOpenAI]]:
    yield from fakes(2)


@pytest.fixture
def two(isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]) -> Proxy:
    providers(isolated_env, {"p0": ups[0], "p1": ups[1]})
    return start_proxy(config=config())


def test_chat_fallbacks_are_tried_and_never_sent_upstream(two: Proxy, ups: list[TimedOpenAI]) -> None:
    a, b = ups
    a.push(error(529, "Overloaded"))
    raw = two.client().chat.completions.with_raw_response.create(
        model="p0/m", messages=MESSAGES, extra_body={"fallbacks": ["p1/m"]}
    )
    assert raw.parse().choices[0].message.content == "Echo: hi"
    assert (raw.headers["x-switchboard-target"], raw.headers["x-switchboard-attempts"]) == ("p1/m", "2")
    assert all("fallbacks" not in r.body for r in a.requests + b.requests)


def test_responses_fallbacks(two: Proxy, ups: list[TimedOpenAI]) -> None:
    a, b = ups
    a.push(error(503))
    raw = two.client().responses.with_raw_response.create(model="p0/m", input="hi", extra_body={"fallbacks": ["p1/m"]})
    assert raw.parse().output_text == "Echo: hi"
    assert raw.headers["x-switchboard-target"] == "p1/m"
    assert "fallbacks" not in b.last.body


def test_messages_fallbacks(two: Proxy, ups: list[TimedOpenAI]) -> None:
    a, b = ups
    a.push(error(429, "Rate limit reached"))
    claude = anthropic.Anthropic(base_url=two.url, api_key="unused", max_retries=0)
    try:
        raw = claude.messages.with_raw_response.create(
            model="p0/m",
            max_tokens=50,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"fallbacks": ["p1/m"]},
        )
    finally:
        claude.close()
    assert raw.parse().content[0].text == "Echo: hi"  # type: ignore[union-attr]
    assert raw.headers["x-switchboard-target"] == "p1/m"
    assert "fallbacks" not in b.last.body


def test_embeddings_fallbacks_past_a_refused_key(isolated_env: Path, start_proxy: Callable[..., Proxy]) -> None:
    fake = FakeEmbeddings().start()  # accepts the key sk-openai only
    try:
        models_json(
            isolated_env,
            {
                "e0": {"extends": "openai", "baseUrl": fake.url + "/v1", "apiKey": "sk-revoked"},
                "e1": {"extends": "openai", "baseUrl": fake.url + "/v1", "apiKey": "sk-openai"},
            },
        )
        client = start_proxy(config=config()).client()
        raw = client.embeddings.with_raw_response.create(
            model="e0/text-embedding-3-small", input="hi", extra_body={"fallbacks": ["e1/text-embedding-3-small"]}
        )
        assert len(raw.parse().data) == 1
        assert (raw.headers["x-switchboard-target"], raw.headers["x-switchboard-attempts"]) == (
            "e1/text-embedding-3-small",
            "2",
        )
        assert [r.headers["Authorization"] for r in fake.requests] == ["Bearer sk-revoked", "Bearer sk-openai"]
        assert all("fallbacks" not in r.body for r in fake.requests)
    finally:
        fake.stop()


@pytest.mark.parametrize(
    "fallbacks",
    ["p1/m", [1], ["p1/m"] * 6, [""]],
    ids=["not-a-list", "not-strings", "too-many", "empty-name"],
)
def test_malformed_fallbacks_are_a_400_naming_them(two: Proxy, ups: list[TimedOpenAI], fallbacks: Any) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        two.client().chat.completions.create(model="p0/m", messages=MESSAGES, extra_body={"fallbacks": fallbacks})
    assert err.value.body["param"] == "fallbacks"  # type: ignore[index]
    assert not ups[0].requests


def test_an_unknown_fallback_is_a_404_naming_it(two: Proxy, ups: list[TimedOpenAI]) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        two.client().chat.completions.create(model="p0/m", messages=MESSAGES, extra_body={"fallbacks": ["p9/x"]})
    assert err.value.body["param"] == "fallbacks"  # type: ignore[index]
    assert "fallbacks[0]" in err.value.message


def test_the_upstream_context_length_error_moves_to_a_larger_window(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b = ups
    sizes = {"p0": [{"id": "m", "contextWindow": 8192}], "p1": [{"id": "m", "contextWindow": 128000}]}
    providers(isolated_env, {"p0": a, "p1": b}, sizes)
    client = start_proxy(config=config(routes={"r": {"targets": ["p0/m", "p1/m"]}})).client()
    a.push(Action("error", status=400, body=OPENAI_CONTEXT_ERROR))
    raw = client.chat.completions.with_raw_response.create(model="r", messages=MESSAGES)
    assert (raw.headers["x-switchboard-target"], raw.headers["x-switchboard-attempts"]) == ("p1/m", "2")


def test_context_window_fallback_can_be_switched_off(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b = ups
    providers(isolated_env, {"p0": a, "p1": b})
    settings = {"routes": {"r": {"targets": ["p0/m", "p1/m"]}}, "context_window_fallback": False}
    client = start_proxy(config=config(**settings)).client()
    a.push(Action("error", status=400, body=OPENAI_CONTEXT_ERROR))
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="r", messages=MESSAGES)
    assert "maximum context length" in err.value.message
    assert not b.requests


def test_anthropic_context_error_moves_on_and_a_prompt_too_large_skips_small_targets(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    b = ups[1]
    claude = FakeAnthropic().start()
    try:
        models_json(
            isolated_env,
            {
                "small": {"baseUrl": b.url + "/v1", "api": "openai-completions", "apiKey": "k",
                          "models": [{"id": "m", "contextWindow": 1000}]},
                "claude": {"baseUrl": claude.url, "api": "anthropic-messages", "apiKey": "sk-ant-test",
                           "models": [{"id": "claude-x", "contextWindow": 200000}]},
                "big": {"baseUrl": b.url + "/v1", "api": "openai-completions", "apiKey": "k",
                        "models": [{"id": "m", "contextWindow": 1000000}]},
            },
        )  # fmt: skip
        route = {"targets": ["small/m", "claude/claude-x", "big/m"]}
        client = start_proxy(config=config(routes={"r": route})).client()
        claude.push(Action("error", status=400, body=ANTHROPIC_CONTEXT_ERROR))
        long = [{"role": "user", "content": "word " * 2000}]  # ~2,500 tokens by the estimate: not for "small"
        raw = client.chat.completions.with_raw_response.create(model="r", messages=long)
        assert (raw.headers["x-switchboard-target"], raw.headers["x-switchboard-attempts"]) == ("big/m", "2")
        assert len(claude.requests) == 1 and len(b.requests) == 1  # "small" was never asked
        assert claude.requests[0].headers["x-api-key"] == "sk-ant-test"  # refused for its length, not its key
    finally:
        claude.stop()


# --- the gateway: allow-lists and the ledger -------------------------------------------------------------


@pytest.fixture
def gateway(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> Proxy:
    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)
    providers(isolated_env, {"p0": ups[0], "p1": ups[1]})
    return start_proxy(config=config(routes={"r": {"targets": ["p0/m", "p1/m"]}}))


def _key(proxy: Proxy, models: list[str]) -> tuple[str, str]:
    with httpx.Client(base_url=proxy.url + "/admin/v1", headers={"Authorization": f"Bearer {MASTER}"}) as http:
        r = http.post("/keys", json={"name": "t", "models": models})
    assert r.status_code == 201, r.text
    return r.json()["key"], r.json()["id"]


def _sdk(proxy: Proxy, key: str) -> openai.OpenAI:
    client = proxy.client()
    client.api_key = key
    return client


def test_the_allow_list_covers_every_fallback(gateway: Proxy, ups: list[TimedOpenAI]) -> None:
    key, _ = _key(gateway, ["p0/*"])
    client = _sdk(gateway, key)
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.chat.completions.create(model="p0/m", messages=MESSAGES, extra_body={"fallbacks": ["p1/m"]})
    assert err.value.body["param"] == "fallbacks"  # type: ignore[index]
    assert "p1/m" in err.value.message
    # Nor through a route whose targets it may not all use.
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="r", messages=MESSAGES)
    assert not ups[0].requests and not ups[1].requests
    # A route allowed by its name is allowed whole.
    key, _ = _key(gateway, ["r"])
    assert _sdk(gateway, key).chat.completions.create(model="r", messages=MESSAGES).choices


def test_the_ledger_records_the_route_and_each_attempt(gateway: Proxy, ups: list[TimedOpenAI]) -> None:
    key, key_id = _key(gateway, [])
    ups[0].push(error(529, "Overloaded"))
    _sdk(gateway, key).chat.completions.create(model="r", messages=MESSAGES)
    deadline = time.monotonic() + 10
    with httpx.Client(base_url=gateway.url + "/admin/v1", headers={"Authorization": f"Bearer {MASTER}"}) as http:
        while not (records := http.get("/requests", params={"key": key_id}).json()["data"]):
            assert time.monotonic() < deadline, "no ledger record"
            time.sleep(0.05)
    [record] = records
    assert (record["route"], record["provider"], record["attempts"], record["status"]) == ("r", "p1", 2, 200)
    log = json.loads(record["attempt_log"])
    assert [(a["target"], a["status"]) for a in log] == [("p0/m", 529), ("p1/m", 200)]
    assert all(a["ms"] is not None and a["ms"] >= 0 for a in log)
    # One attempt: the row itself says it all.
    _sdk(gateway, key).chat.completions.create(model="r", messages=MESSAGES)
    with httpx.Client(base_url=gateway.url + "/admin/v1", headers={"Authorization": f"Bearer {MASTER}"}) as http:
        while len(records := http.get("/requests", params={"key": key_id}).json()["data"]) < 2:
            assert time.monotonic() < deadline + 10, "no second ledger record"
            time.sleep(0.05)
    single = next(r for r in records if r["attempts"] == 1)
    assert (single["status"], single["attempt_log"]) == (200, None)


def test_a_budget_reservation_covers_the_dearest_fallback(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)
    prices = {
        "p0": [{"id": "m", "cost": {"input": 1, "output": 1}}],
        "p1": [{"id": "m", "cost": {"input": 1000000, "output": 1000000}}],  # a dollar a token
    }
    providers(isolated_env, {"p0": ups[0], "p1": ups[1]}, prices)
    proxy = start_proxy(config=config())
    with httpx.Client(base_url=proxy.url + "/admin/v1", headers={"Authorization": f"Bearer {MASTER}"}) as http:
        key = http.post("/keys", json={"name": "t", "budget": 1.0}).json()["key"]
    client = _sdk(proxy, key)
    assert client.chat.completions.create(model="p0/m", messages=MESSAGES, max_tokens=10).choices
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(
            model="p0/m", messages=MESSAGES, max_tokens=10, extra_body={"fallbacks": ["p1/m"]}
        )
    assert err.value.code == "budget_exceeded"
    assert (len(ups[0].requests), len(ups[1].requests)) == (1, 0)
