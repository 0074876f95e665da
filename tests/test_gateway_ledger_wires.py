"""The usage ledger against what each wire API's upstream reported, streamed and not.

Every upstream fake reports its own usage in its own shape (OpenAI ``prompt_tokens``, Anthropic
``input_tokens`` + cache fields, Gemini ``usageMetadata``, Bedrock ``inputTokens``, Responses
``input_tokens_details``); the ledger must hold the same counts and the cost they make at the model's
prices, cache reads and writes at their own prices, and never zero for a stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Proxy, models_json
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.responses_upstream import FakeResponses

MASTER = "sk-sb-master-wires-0123456789abcdef"
#: $ per million tokens; distinct, so a count priced at the wrong rate shows.
PRICES = {"input": 3.0, "output": 15.0, "cacheRead": 0.3, "cacheWrite": 3.75}


@dataclass
class Reported:
    """What the fake upstream reported, in canonical terms: input includes cache reads and writes."""

    input: int
    output: int
    cached: int = 0
    cache_write: int = 0

    def cost(self) -> float:
        uncached = self.input - self.cached - self.cache_write
        return (
            uncached * PRICES["input"]
            + self.cached * PRICES["cacheRead"]
            + self.cache_write * PRICES["cacheWrite"]
            + self.output * PRICES["output"]
        ) / 1e6


@dataclass
class Upstream:
    model: str
    #: The client-visible answer text → what the upstream reported for it.
    reported: Callable[[str], Reported]


def _setup(kind: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Upstream, Any]:
    if kind == "openai":
        fake: Any = FakeOpenAI().start()
        provider = {"baseUrl": fake.url + "/v1", "api": "openai-completions", "apiKey": "k"}
        models_json(home, {"up": {**provider, "models": [{"id": "m", "cost": PRICES}]}})
        return Upstream("up/m", lambda _: Reported(12, 9)), fake
    if kind == "anthropic":
        fake = FakeAnthropic().start()
        provider = {"baseUrl": fake.url, "api": "anthropic-messages", "apiKey": "sk-ant-test"}
        models_json(home, {"up": {**provider, "models": [{"id": "claude-sonnet-4-5", "cost": PRICES}]}})
        # Switchboard marks the prompt for caching, so the fake reports a 1,500-token cache write besides
        # its 21 uncached input tokens; one text block is 5 + 3 output tokens (tests/fakes/anthropic_upstream.py).
        return Upstream("up/claude-sonnet-4-5", lambda _: Reported(1521, 8, cache_write=1500)), fake
    if kind == "gemini":
        fake = FakeGemini().start()
        provider = {"baseUrl": fake.url + "/v1beta", "api": "google-generative-ai", "apiKey": "gm-test-key"}
        models_json(home, {"up": {**provider, "models": [{"id": "gemini-2.5-flash", "cost": PRICES}]}})
        return Upstream("up/gemini-2.5-flash", lambda _: Reported(12, 9)), fake
    if kind == "bedrock":
        fake = FakeBedrock({"AKIDSTATIC0000000XYZ": ("static-secret", None)}).start()
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTATIC0000000XYZ")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "static-secret")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
        models_json(home, {"amazon-bedrock": {"models": [{"id": model, "cost": PRICES}]}})
        # With Switchboard's cache point the fake reports 5 cache reads and 3 cache writes beside 21 input.
        return Upstream(f"amazon-bedrock/{model}", lambda _: Reported(29, 9, cached=5, cache_write=3)), fake
    assert kind == "responses"
    fake = FakeResponses().start()
    provider = {"baseUrl": fake.url + "/v1", "api": "openai-responses", "apiKey": "sk-test"}
    models_json(home, {"up": {**provider, "models": [{"id": "gpt-4.1", "cost": PRICES}]}})
    # 20 input of which 8 cached and 4 written to the cache; one output token per word of the answer.
    return Upstream("up/gpt-4.1", lambda text: Reported(20, len(text.split(" ")), cached=8, cache_write=4)), fake


@pytest.fixture(params=["openai", "anthropic", "gemini", "bedrock", "responses"])
def upstream(request: pytest.FixtureRequest, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)
    up, fake = _setup(request.param, isolated_env, monkeypatch)
    yield up
    fake.stop()


def _key(proxy: Proxy) -> tuple[str, str]:
    r = httpx.post(proxy.url + "/admin/v1/keys", json={"name": "wires"}, headers={"Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 201, r.text
    return r.json()["key"], r.json()["id"]


def _records(proxy: Proxy, key_id: str, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        r = httpx.get(
            proxy.url + "/admin/v1/requests",
            params={"key": key_id, "limit": 10},
            headers={"Authorization": f"Bearer {MASTER}"},
        )
        data: list[dict[str, Any]] = r.json()["data"]
        if len(data) >= n or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


@pytest.mark.parametrize("stream", [False, True])
def test_the_ledger_holds_what_the_upstream_reported(
    upstream: Upstream, start_proxy: Callable[..., Proxy], stream: bool
) -> None:
    from proxy.config import ServerConfig

    proxy = start_proxy(config=ServerConfig(discovery=ServerConfig().discovery.__class__(enabled=False)))
    key, key_id = _key(proxy)
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0)
    messages: Any = [{"role": "user", "content": "hello there"}]
    if stream:
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model=upstream.model, messages=messages, stream=True)
            if c.choices
        )
    else:
        text = client.chat.completions.create(model=upstream.model, messages=messages).choices[0].message.content or ""
    client.close()
    (rec,) = _records(proxy, key_id, 1)
    want = upstream.reported(text)
    assert rec["stream"] is stream
    assert rec["status"] == 200
    assert rec["estimated"] is False
    assert (rec["input_tokens"], rec["output_tokens"]) == (want.input, want.output)
    assert (rec["cached_tokens"], rec["cache_write_tokens"]) == (want.cached, want.cache_write)
    assert rec["cost"] == pytest.approx(want.cost())
    assert rec["cost"] > 0


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_stream_cut_by_the_upstream_is_recorded_estimated(
    kind: str, isolated_env: Path, monkeypatch: pytest.MonkeyPatch, start_proxy: Callable[..., Proxy]
) -> None:
    from proxy.config import ServerConfig
    from tests.fakes.server import Action

    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)
    up, fake = _setup(kind, isolated_env, monkeypatch)
    try:
        # Cut before the upstream's final usage (OpenAI's usage chunk, Anthropic's message_delta).
        fake.push(Action("break", after_events=4))
        proxy = start_proxy(config=ServerConfig(discovery=ServerConfig().discovery.__class__(enabled=False)))
        key, key_id = _key(proxy)
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0)
        messages: Any = [{"role": "user", "content": "hello there, tell me a long story"}]
        with pytest.raises(openai.APIError):
            for _ in client.chat.completions.create(model=up.model, messages=messages, stream=True):
                pass
        client.close()
        (rec,) = _records(proxy, key_id, 1)
    finally:
        fake.stop()
    assert rec["stream"] is True
    assert rec["estimated"] is True
    assert rec["input_tokens"] > 0 and rec["output_tokens"] > 0
    assert rec["cost"] > 0
