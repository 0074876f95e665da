"""Signed reasoning is replayed only to the provider (and account) that issued it.

A multi-turn conversation through the real proxy with the ``openai`` SDK: the assistant message of turn one
comes back unchanged (as clients send it) and goes to provider A, which issued its signature, or to
provider B, which speaks the same wire API but cannot verify it. The fakes record what they received.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import models_json
from tests.fakes.anthropic_upstream import FakeAnthropic, sign
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.responses_upstream import FakeResponses

QUESTION = {"role": "user", "content": "think first"}
FOLLOW_UP = {"role": "user", "content": "and again"}


def start_pair(factory: Callable[[], Any]) -> Iterator[tuple[Any, Any]]:
    a, b = factory().start(), factory().start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def claudes() -> Iterator[tuple[FakeAnthropic, FakeAnthropic]]:
    yield from start_pair(FakeAnthropic)


@pytest.fixture
def responses() -> Iterator[tuple[FakeResponses, FakeResponses]]:
    yield from start_pair(FakeResponses)


@pytest.fixture
def geminis() -> Iterator[tuple[FakeGemini, FakeGemini]]:
    yield from start_pair(FakeGemini)


def assistant_message(client: openai.OpenAI, model: str, stream: bool, **kw: Any) -> dict[str, Any]:
    """Turn one's assistant message as a client keeps it (a stream assembled the way clients do)."""
    if not stream:
        out = client.chat.completions.create(model=model, messages=[QUESTION], **kw)
        return out.choices[0].message.model_dump(exclude_none=True)
    message: dict[str, Any] = {"role": "assistant", "content": "", "reasoning_content": "", "thinking_blocks": []}
    for chunk in client.chat.completions.create(model=model, messages=[QUESTION], stream=True, **kw):
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            message["content"] += choice.delta.content or ""
            message["reasoning_content"] += extra.get("reasoning_content") or ""
            message["thinking_blocks"] += extra.get("thinking_blocks") or []
    return message


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_signatures_go_back_only_to_their_issuer(
    isolated_env: Path, claudes: tuple[FakeAnthropic, FakeAnthropic], start_proxy: Any, stream: bool
) -> None:
    issuer, other = claudes
    model = {"id": "claude-sonnet-4-5", "reasoning": True, "maxTokens": 64000}
    row = {"api": "anthropic-messages", "apiKey": "sk-ant-test", "models": [model]}
    models_json(isolated_env, {"a": {"baseUrl": issuer.url, **row}, "b": {"baseUrl": other.url, **row}})
    client = start_proxy().client()
    first = assistant_message(client, "a/claude-sonnet-4-5", stream, reasoning_effort="high")
    thought = first["reasoning_content"]
    assert [b["provider"] for b in first["thinking_blocks"]] == ["anthropic-messages:a"]

    messages = [QUESTION, first, FOLLOW_UP]
    client.chat.completions.create(model="b/claude-sonnet-4-5", messages=messages, reasoning_effort="high")
    assert [b["type"] for b in other.last.body["messages"][1]["content"]] == ["text"]

    client.chat.completions.create(model="a/claude-sonnet-4-5", messages=messages, reasoning_effort="high")
    replayed = issuer.last.body["messages"][1]["content"][0]
    assert replayed == {"type": "thinking", "thinking": thought, "signature": sign(thought)}


def test_a_claude_subscription_and_an_api_key_are_different_signers(
    isolated_env: Path, claudes: tuple[FakeAnthropic, FakeAnthropic], start_proxy: Any
) -> None:
    subscription, api = claudes
    subscription.api_key = "sk-ant-oat01-subscription"
    model = {"id": "claude-sonnet-4-5", "reasoning": True, "maxTokens": 64000}
    row = {"api": "anthropic-messages", "models": [model]}
    models_json(isolated_env, {"claude": {"baseUrl": subscription.url, "apiKey": subscription.api_key, **row}})
    first = assistant_message(start_proxy().client(), "claude/claude-sonnet-4-5", False, reasoning_effort="high")
    assert [b["provider"] for b in first["thinking_blocks"]] == ["anthropic-messages:claude+subscription"]

    # The same provider id, now with an API key: another account, so the signature stays behind.
    models_json(isolated_env, {"claude": {"baseUrl": api.url, "apiKey": "sk-ant-test", **row}})
    client = start_proxy().client()
    client.chat.completions.create(
        model="claude/claude-sonnet-4-5", messages=[QUESTION, first, FOLLOW_UP], reasoning_effort="high"
    )
    assert [b["type"] for b in api.last.body["messages"][1]["content"]] == ["text"]


@pytest.mark.parametrize("stream", [False, True])
def test_encrypted_reasoning_goes_back_only_to_its_issuer(
    isolated_env: Path, responses: tuple[FakeResponses, FakeResponses], start_proxy: Any, stream: bool
) -> None:
    issuer, other = responses
    row = {"api": "openai-responses", "apiKey": "sk-test", "models": [{"id": "gpt-5", "reasoning": True}]}
    models_json(isolated_env, {"a": {"baseUrl": issuer.url + "/v1", **row}, "b": {"baseUrl": other.url + "/v1", **row}})
    client = start_proxy().client()
    first = assistant_message(client, "a/gpt-5", stream, reasoning_effort="low")
    blocks = first["thinking_blocks"]
    assert [b["provider"] for b in blocks] == ["openai-responses:a"] and blocks[0]["data"]

    messages = [QUESTION, first, FOLLOW_UP]
    # B did not issue the encrypted content and would refuse it (400), as OpenAI-compatible services do.
    client.chat.completions.create(model="b/gpt-5", messages=messages, reasoning_effort="low")
    assert [item["type"] for item in other.last.body["input"] if item.get("type") == "reasoning"] == []

    client.chat.completions.create(model="a/gpt-5", messages=messages, reasoning_effort="low")
    reasoning = [item for item in issuer.last.body["input"] if item.get("type") == "reasoning"]
    assert [r["encrypted_content"] for r in reasoning] == [blocks[0]["data"]]


def test_gemini_thought_signatures_go_back_only_to_their_issuer(
    isolated_env: Path, geminis: tuple[FakeGemini, FakeGemini], start_proxy: Any
) -> None:
    issuer, other = geminis
    row = {"api": "google-generative-ai", "apiKey": "gm-test-key", "models": [{"id": "gemini-2.5-flash"}]}
    models_json(
        isolated_env,
        {"a": {"baseUrl": issuer.url + "/v1beta", **row}, "b": {"baseUrl": other.url + "/v1beta", **row}},
    )
    client = start_proxy().client()
    call = {
        "id": "fc_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        "thought_signature": "U0lHLWNhbGw=",
        "thought_signature_provider": "google-generative-ai:a",
    }
    text_signature = {
        "type": "thinking",
        "thinking": "",
        "signature": "U0lHLXRleHQ=",
        "provider": "google-generative-ai:a",
    }
    messages: list[Any] = [
        QUESTION,
        {"role": "assistant", "content": "Let me check.", "tool_calls": [call], "thinking_blocks": [text_signature]},
        {"role": "tool", "tool_call_id": "fc_1", "content": "20C"},
    ]
    client.chat.completions.create(model="b/gemini-2.5-flash", messages=messages)
    sent = other.last.body["contents"][1]["parts"]
    assert [p["functionCall"]["id"] for p in sent if "functionCall" in p] == ["fc_1"]
    assert [p["thoughtSignature"] for p in sent if "thoughtSignature" in p] == []

    client.chat.completions.create(model="a/gemini-2.5-flash", messages=messages)
    sent = issuer.last.body["contents"][1]["parts"]
    assert [p["thoughtSignature"] for p in sent if "thoughtSignature" in p] == ["U0lHLXRleHQ=", "U0lHLWNhbGw="]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_gemini_tool_call_signature_is_tagged_with_its_issuer(
    isolated_env: Path, geminis: tuple[FakeGemini, FakeGemini], start_proxy: Any, stream: bool
) -> None:
    """The tag comes from a real answer, so a client that sends the message back as received replays the
    signature only to the provider that signed it."""
    issuer, other = geminis
    model = {"id": "gemini-2.5-flash", "reasoning": True}
    row = {"api": "google-generative-ai", "apiKey": "gm-test-key", "models": [model]}
    models_json(
        isolated_env,
        {"a": {"baseUrl": issuer.url + "/v1beta", **row}, "b": {"baseUrl": other.url + "/v1beta", **row}},
    )
    client = start_proxy().client()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    ask: dict[str, Any] = {
        "model": "a/gemini-2.5-flash",
        "messages": [QUESTION],
        "tools": tools,
        "reasoning_effort": "low",
    }
    if stream:
        calls: dict[int, dict[str, Any]] = {}
        for chunk in client.chat.completions.create(stream=True, **ask):
            for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                calls.setdefault(tc.index, {}).update({k: v for k, v in tc.model_dump().items() if v is not None})
        first = calls[0]
    else:
        answer = client.chat.completions.create(**ask)
        first = answer.choices[0].message.model_dump()["tool_calls"][0]
    assert first["thought_signature"]
    assert first["thought_signature_provider"] == "google-generative-ai:a"
