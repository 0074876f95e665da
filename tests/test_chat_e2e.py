"""End to end with the real openai SDK: proxy → fake OpenAI-compatible upstream, streamed and not."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from proxy.config import ServerConfig
from tests.conftest import models_json
from tests.fakes.openai_upstream import FakeOpenAI

TINY_PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="  # noqa: E501
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}


@pytest.fixture
def local(isolated_env: Path, fake_openai: FakeOpenAI) -> FakeOpenAI:
    models_json(
        isolated_env,
        {
            "local": {
                "baseUrl": fake_openai.url + "/v1",
                "api": "openai-completions",
                "apiKey": "sk-local-123",
                "models": [
                    {
                        "id": "gpt-fake",
                        "name": "Fake GPT",
                        "contextWindow": 32000,
                        "maxTokens": 4000,
                        "input": ["text", "image"],
                    }
                ],
            },
        },
    )
    return fake_openai


def test_non_streaming_roundtrip(local: FakeOpenAI, start_proxy) -> None:
    proxy = start_proxy()
    out = proxy.client().chat.completions.create(
        model="local/gpt-fake", messages=[{"role": "user", "content": "hello there"}], max_tokens=50
    )
    assert out.choices[0].message.content == "Echo: hello there"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.total_tokens == 21
    sent = local.last
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "gpt-fake"
    assert sent.headers["Authorization"] == "Bearer sk-local-123"
    # Default compat: the OpenAI-style max_completion_tokens.
    assert sent.body["max_completion_tokens"] == 50 and "max_tokens" not in sent.body


def test_streaming_with_usage(local: FakeOpenAI, start_proxy) -> None:
    proxy = start_proxy()
    stream = proxy.client().chat.completions.create(
        model="local/gpt-fake",
        messages=[{"role": "user", "content": "count to three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "Echo: count to three"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 12


def test_parallel_tool_calls_roundtrip(local: FakeOpenAI, start_proxy) -> None:
    client = start_proxy().client()
    messages: list[dict] = [{"role": "user", "content": "weather in Paris and Tokyo?"}]
    first = client.chat.completions.create(model="local/gpt-fake", messages=messages, tools=[WEATHER_TOOL])
    calls = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls"
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Paris", "Tokyo"]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": f"sunny in {call.id}"})
    second = client.chat.completions.create(model="local/gpt-fake", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Tool results: sunny in call_0; sunny in call_1"
    sent = local.last.body
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "tool"]
    assert sent["messages"][1]["tool_calls"][1]["id"] == "call_1"
    assert sent["tools"][0]["function"]["strict"] is True  # default compat keeps strict


def test_streamed_tool_calls_reassemble(local: FakeOpenAI, start_proxy) -> None:
    client = start_proxy().client()
    stream = client.chat.completions.create(
        model="local/gpt-fake",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    args: dict[int, str] = {}
    ids: dict[int, str] = {}
    for chunk in stream:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if tc.id:
                ids[tc.index] = tc.id
            args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")
    assert ids == {0: "call_0", 1: "call_1"}
    assert {i: json.loads(a)["city"] for i, a in args.items()} == {0: "Paris", 1: "Tokyo"}


def test_image_and_unknown_fields_pass_through(local: FakeOpenAI, start_proxy) -> None:
    client = start_proxy().client()
    out = client.chat.completions.create(
        model="local/gpt-fake",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": TINY_PNG, "detail": "low"}},
                ],
            }
        ],
        extra_body={"vendor_knob": {"keep": [1, 2]}, "seed": 7},
    )
    assert out.choices[0].message.content == "I received parts: text, image_url"
    sent = local.last.body
    assert sent["messages"][0]["content"][1]["image_url"]["url"] == TINY_PNG
    assert sent["vendor_knob"] == {"keep": [1, 2]} and sent["seed"] == 7


def test_builtin_provider_through_override_gets_its_compat(isolated_env, fake_openai, start_proxy, monkeypatch):
    """groq keeps its catalog and env credentials when models.json only moves its base URL."""
    models_json(isolated_env, {"groq": {"baseUrl": fake_openai.url + "/openai/v1"}})
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test-key")
    client = start_proxy().client()
    client.chat.completions.create(
        model="groq/llama-3.3-70b-versatile",
        messages=[{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}],
        max_completion_tokens=10,
    )
    sent = fake_openai.last
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer gsk-test-key"
    assert sent.body["max_tokens"] == 10 and "max_completion_tokens" not in sent.body


def test_nonstandard_provider_compat_edits(isolated_env, fake_openai, start_proxy, monkeypatch):
    models_json(isolated_env, {"together": {"baseUrl": fake_openai.url + "/v1"}})
    monkeypatch.setenv("TOGETHER_API_KEY", "tg-key")
    client = start_proxy().client()
    client.chat.completions.create(
        model="together/some/new-model:free",
        messages=[{"role": "developer", "content": "rules"}, {"role": "user", "content": "hi"}],
        tools=[WEATHER_TOOL],
        store=True,
        reasoning_effort="high",
    )
    body = fake_openai.last.body
    assert body["model"] == "some/new-model:free"  # an id the catalog does not know passes through
    assert body["messages"][0]["role"] == "system"
    assert "store" not in body
    assert "strict" not in body["tools"][0]["function"]
    assert body["reasoning"] == {"enabled": True} and "reasoning_effort" not in body


@pytest.mark.parametrize(
    ("provider", "effort", "expected"),
    [
        ("openrouter", "high", {"reasoning": {"effort": "high"}}),
        ("deepseek", "high", {"thinking": {"type": "enabled"}, "reasoning_effort": "high"}),
        ("zai", "low", {"thinking": {"type": "enabled", "clear_thinking": False}}),
        ("xai", "high", {}),
    ],
)
def test_reasoning_effort_per_thinking_format(
    isolated_env, fake_openai, start_proxy, monkeypatch, provider, effort, expected
):
    models_json(isolated_env, {provider: {"baseUrl": fake_openai.url + "/v1"}})
    monkeypatch.setenv(
        {
            "openrouter": "OPENROUTER_API_KEY",
            "deepseek": "DEEPSEEK_API_KEY",
            "zai": "ZAI_API_KEY",
            "xai": "XAI_API_KEY",
        }[provider],
        "k-123456",
    )
    start_proxy().client().chat.completions.create(
        model=f"{provider}/m", messages=[{"role": "user", "content": "x"}], reasoning_effort=effort
    )
    body = fake_openai.last.body
    got = {k: body[k] for k in ("reasoning", "thinking", "reasoning_effort") if k in body}
    assert got == expected


def test_models_list_and_retrieve(local: FakeOpenAI, start_proxy, monkeypatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "or-key")
    client = start_proxy().client()
    ids = [m.id for m in client.models.list()]
    assert "local/gpt-fake" in ids
    assert any(i.startswith("openrouter/") and i.count("/") >= 2 for i in ids)
    assert not any(i.startswith("groq/") for i in ids)  # no credentials, not listed
    m = client.models.retrieve("local/gpt-fake")
    assert m.id == "local/gpt-fake" and m.owned_by == "local"
    extra = m.model_extra or {}
    assert extra["context_window"] == 32000 and extra["input"] == ["text", "image"]
    body = client.models.list().model_dump_json()
    assert "or-key" not in body and "sk-local-123" not in body


def test_model_ids_with_slashes_and_colons(isolated_env, fake_openai, start_proxy, monkeypatch):
    models_json(
        isolated_env,
        {
            "openrouter": {"baseUrl": fake_openai.url + "/api/v1"},
            "cloudflare-workers-ai": {"baseUrl": fake_openai.url + "/client/v4/accounts/{CLOUDFLARE_ACCOUNT_ID}/ai/v1"},
        },
    )
    monkeypatch.setenv("OPENROUTER_API_KEY", "or-key")
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "cf-key")
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acct42")
    client = start_proxy().client()
    client.chat.completions.create(
        model="openrouter/anthropic/claude-sonnet-4.5:beta", messages=[{"role": "user", "content": "x"}]
    )
    assert fake_openai.last.body["model"] == "anthropic/claude-sonnet-4.5:beta"
    client.chat.completions.create(
        model="cloudflare-workers-ai/@cf/meta/llama-3.1-8b-instruct",
        messages=[{"role": "user", "content": "x"}],
    )
    assert fake_openai.last.path == "/client/v4/accounts/acct42/ai/v1/chat/completions"
    assert fake_openai.last.body["model"] == "@cf/meta/llama-3.1-8b-instruct"
    assert fake_openai.last.headers["Authorization"] == "Bearer cf-key"
    m = client.models.retrieve("openrouter/anthropic/claude-sonnet-4.5:beta")
    assert m.id == "openrouter/anthropic/claude-sonnet-4.5:beta"


def test_alias_and_bare_model_resolution(local: FakeOpenAI, start_proxy) -> None:
    proxy = start_proxy(ServerConfig(aliases={"fast": "local/gpt-fake"}))
    client = proxy.client()
    client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "a"}])
    assert local.last.body["model"] == "gpt-fake"
    client.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "b"}])
    assert local.last.body["messages"][0]["content"] == "b"
    assert "fast" in [m.id for m in client.models.list()]


def test_ambiguous_bare_model_names_the_choices(isolated_env, fake_openai, start_proxy) -> None:
    spec = {"baseUrl": fake_openai.url + "/v1", "api": "openai-completions", "models": [{"id": "same"}]}
    models_json(isolated_env, {"one": spec, "two": spec})
    with pytest.raises(openai.BadRequestError) as err:
        start_proxy().client().chat.completions.create(model="same", messages=[{"role": "user", "content": "x"}])
    assert "one/same" in err.value.message and "two/same" in err.value.message
