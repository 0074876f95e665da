"""google-generative-ai end to end over real HTTP.

Two layers:

* the wire module driving the fake Gemini over httpx (build → send → decode), so the translation meets
  a server that refuses what Gemini refuses (unknown schema keywords, unsigned Gemini 3 calls);
* the whole proxy: the real ``openai`` SDK → Switchboard → the fake Gemini API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from providers.canonical import Event, Message, Request, Response, Text, Thinking, Tool, ToolCall, ToolResult, collect
from providers.errors import SwitchboardError
from providers.registry import DEFAULT_COMPAT
from providers.wire.base import WireTarget
from providers.wire.google_generative_ai import API
from tests.conftest import models_json
from tests.fakes.gemini_upstream import Action, FakeGemini

KEY = "gm-test-key"
SIGNATURE = "c2lnLTE="  # the fake's first thought signature, base64 of "sig-1"
TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"], "enum": ["c", "f", None]}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
BLOCKED = {
    "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
    "usageMetadata": {"promptTokenCount": 14, "totalTokenCount": 14},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "blocked-1",
}
QUOTA = {
    "error": {
        "code": 429,
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36s"}],
    }
}


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    server = FakeGemini(api_key=KEY).start()
    yield server
    server.stop()


# --- the wire module against the fake, without the proxy ---------------------------------------


def wire_target(fake: FakeGemini, model_id: str) -> WireTarget:
    return WireTarget("google", "Google Gemini", fake.url + "/v1beta", model_id, None, DEFAULT_COMPAT)


def call(fake: FakeGemini, req: Request) -> Response:
    target = wire_target(fake, req.model)
    upstream = API.build(req, target)
    headers = {"x-goog-api-key": KEY, "content-type": "application/json", **upstream.headers}
    with httpx.Client(timeout=10) as client:
        resp = client.post(upstream.url, content=upstream.body, headers=headers)
    if resp.status_code >= 400:
        raise API.error(target, resp.status_code, resp.content, resp.headers)
    if not req.stream:
        return API.decode_response(resp.content, target)
    decoder = API.stream_decoder(target)
    events: list[Event] = []
    for i in range(0, len(resp.content), 7):  # small, awkward pieces
        events += decoder.feed(resp.content[i : i + 7])
    return collect([*events, *decoder.close()], id="r", model=req.model)


@pytest.mark.parametrize("stream", [False, True])
def test_wire_tool_round_trip_with_signatures_against_the_fake(fake: FakeGemini, stream: bool) -> None:
    fn = WEATHER_TOOL["function"]
    assert isinstance(fn, dict)
    tools = [Tool(fn["name"], fn["description"], fn["parameters"], strict=True)]
    question = Message("user", [Text("Weather in Paris and Tokyo?")])
    req = Request("gemini-3-pro-preview", [question], tools=tools, reasoning_effort="low", stream=stream)
    first = call(fake, req)
    assert first.finish_reason == "tool_calls"
    calls = [b for b in first.content if isinstance(b, ToolCall)]
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Tokyo"}]
    assert [c.signature for c in calls] == [SIGNATURE, None]
    assert isinstance(first.content[0], Thinking) and first.content[0].text.startswith("**Considering**")
    results = Message("tool", [ToolResult(c.id, [Text(f"{json.loads(c.arguments)['city']}: 20C")]) for c in calls])
    req.messages = [question, Message("assistant", first.content), results]
    second = call(fake, req)  # the fake refuses a Gemini 3 call replayed without its signature
    assert second.finish_reason == "stop"
    assert second.content[-1] == Text(
        'Tool results: get_weather={"output": "Paris: 20C"}; get_weather={"output": "Tokyo: 20C"}'
    )
    # The thought summary (no signature of its own) is not replayed; the call's signature is, unchanged.
    assert fake.last.body["contents"][1]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIGNATURE},
        {"functionCall": {"name": "get_weather", "args": {"city": "Tokyo"}}},
    ]


def test_wire_errors_from_the_fake(fake: FakeGemini) -> None:
    bad = Tool("t", None, {"type": "object", "properties": {"a": {"type": "string"}}})
    with pytest.raises(SwitchboardError) as info:
        call(fake, Request("gemini-2.5-flash", [], tools=[bad]))
    assert info.value.status == 400 and "contents is not specified" in info.value.message


# --- the whole proxy, with the openai SDK as the client ----------------------------------------


@pytest.fixture
def gemini(isolated_env: Path, fake: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> FakeGemini:
    models_json(isolated_env, {"google": {"baseUrl": fake.url + "/v1beta"}})
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    return fake


def extra(obj: Any, name: str) -> Any:
    """A field the OpenAI schema does not declare (reasoning_content, thought_signature, ...)."""
    return (obj.model_extra or {}).get(name)


def stream_message(stream: Any) -> tuple[dict[str, Any], list[Any]]:
    """Assemble a streamed answer the way OpenAI clients do; returns (message, chunks)."""
    chunks = list(stream)
    message: dict[str, Any] = {"role": "assistant", "content": "", "reasoning_content": ""}
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            message["content"] += delta.content or ""
            message["reasoning_content"] += extra(delta, "reasoning_content") or ""
            for tc in delta.tool_calls or ():
                call = calls.setdefault(
                    tc.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                call["id"] = tc.id or call["id"]
                if tc.function is not None:
                    call["function"]["name"] += tc.function.name or ""
                    call["function"]["arguments"] += tc.function.arguments or ""
                if extra(tc, "thought_signature"):
                    call["thought_signature"] = extra(tc, "thought_signature")
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message, chunks


def test_plain_chat(gemini: FakeGemini, start_proxy: Any) -> None:
    out = (
        start_proxy()
        .client()
        .chat.completions.create(
            model="google/gemini-2.5-flash",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
            max_tokens=50,
            temperature=0.3,
        )
    )
    assert out.choices[0].message.content == "Echo: hello there"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and (out.usage.prompt_tokens, out.usage.completion_tokens) == (12, 9)
    sent = gemini.last
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY and "Authorization" not in sent.headers
    assert sent.body == {
        "contents": [{"role": "user", "parts": [{"text": "hello there"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.3, "maxOutputTokens": 50},
    }


def test_streaming_with_usage(gemini: FakeGemini, start_proxy: Any) -> None:
    stream = (
        start_proxy()
        .client()
        .chat.completions.create(
            model="google/gemini-2.5-flash",
            messages=[{"role": "user", "content": "count to three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    message, chunks = stream_message(stream)
    assert gemini.last.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert message["content"] == "Echo: count to three"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (12, 9)


@pytest.mark.parametrize("stream", [False, True])
def test_two_parallel_tool_calls_round_trip(gemini: FakeGemini, start_proxy: Any, stream: bool) -> None:
    client = start_proxy().client()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    kwargs: dict[str, Any] = {"model": "google/gemini-2.5-flash", "tools": [WEATHER_TOOL], "stream": stream}
    if stream:
        assistant, chunks = stream_message(client.chat.completions.create(messages=messages, **kwargs))
        finish = next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)
    else:
        out = client.chat.completions.create(messages=messages, **kwargs)
        assistant, finish = out.choices[0].message.model_dump(exclude_none=True), out.choices[0].finish_reason
    assert finish == "tool_calls"
    calls = assistant["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Tokyo"}),
    ]
    assert len({c["id"] for c in calls}) == 2
    # The schema reached Gemini cleaned: the fake refuses additionalProperties, $schema and type arrays.
    declared = gemini.last.body["tools"][0]["functionDeclarations"][0]["parameters"]
    assert declared["properties"]["unit"] == {"type": "STRING", "nullable": True, "enum": ["c", "f"]}

    messages.append(assistant)
    messages += [{"role": "tool", "tool_call_id": c["id"], "content": f"{c['id']}: 20C"} for c in calls]
    if stream:
        answer, _ = stream_message(client.chat.completions.create(messages=messages, **kwargs))
        text = answer["content"]
    else:
        text = client.chat.completions.create(messages=messages, **kwargs).choices[0].message.content
    assert text is not None and text.startswith("Tool results: get_weather=")
    assert f"{calls[0]['id']}: 20C" in text and f"{calls[1]['id']}: 20C" in text
    responses = [p["functionResponse"] for p in gemini.last.body["contents"][2]["parts"]]
    assert [r["name"] for r in responses] == ["get_weather", "get_weather"]


def test_image_input(gemini: FakeGemini, start_proxy: Any) -> None:
    out = (
        start_proxy()
        .client()
        .chat.completions.create(
            model="google/gemini-2.5-flash",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{TINY_PNG}"}},
                    ],
                }
            ],
        )
    )
    assert out.choices[0].message.content == "I see an image among: text, image/png"
    assert gemini.last.body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": TINY_PNG}}


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_effort_gives_reasoning_content(gemini: FakeGemini, start_proxy: Any, stream: bool) -> None:
    client = start_proxy().client()
    kwargs: dict[str, Any] = {
        "model": "google/gemini-2.5-flash",
        "messages": [{"role": "user", "content": "think first"}],
        "reasoning_effort": "high",
    }
    if stream:
        message, chunks = stream_message(
            client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
        )
        reasoning, content, usage = message["reasoning_content"], message["content"], chunks[-1].usage
    else:
        out = client.chat.completions.create(**kwargs)
        msg = out.choices[0].message
        reasoning, content, usage = extra(msg, "reasoning_content"), msg.content, out.usage
    assert reasoning == "**Considering** the request (1 turns)."
    assert content == "Echo: think first"
    assert gemini.last.body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 24576}
    assert usage is not None and usage.completion_tokens == 14  # 9 answer + 5 thinking
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 5


@pytest.mark.parametrize("stream", [False, True])
def test_thought_signatures_survive_the_client_round_trip(gemini: FakeGemini, start_proxy: Any, stream: bool) -> None:
    """Gemini 3 refuses (400) a replayed function call without its signature; the fake does too."""
    client = start_proxy().client()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    kwargs: dict[str, Any] = {
        "model": "google/gemini-3-pro-preview",
        "tools": [WEATHER_TOOL],
        "reasoning_effort": "low",
        "stream": stream,
    }
    if stream:
        assistant, _ = stream_message(client.chat.completions.create(messages=messages, **kwargs))
    else:
        first = client.chat.completions.create(messages=messages, **kwargs)
        assistant = first.choices[0].message.model_dump(exclude_none=True)
    calls = assistant["tool_calls"]
    assert [c.get("thought_signature") for c in calls] == [SIGNATURE, None]
    assert gemini.last.body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingLevel": "LOW"}

    messages.append(assistant)
    messages += [{"role": "tool", "tool_call_id": c["id"], "content": "20C"} for c in calls]
    if stream:
        answer, _ = stream_message(client.chat.completions.create(messages=messages, **kwargs))
        text = answer["content"]
    else:
        text = client.chat.completions.create(messages=messages, **kwargs).choices[0].message.content
    assert text is not None and text.startswith("Tool results:")
    replayed = gemini.last.body["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in replayed if "functionCall" in p] == [SIGNATURE, None]
    assert not any(p.get("thought") for p in replayed)  # thinking is not sent back as text


@pytest.mark.parametrize("stream", [False, True])
def test_safety_blocked_prompt_is_a_clear_answer(gemini: FakeGemini, start_proxy: Any, stream: bool) -> None:
    gemini.push(Action("reply", body=BLOCKED))
    client = start_proxy().client()
    kwargs: dict[str, Any] = {"model": "google/gemini-2.5-flash", "messages": [{"role": "user", "content": "..."}]}
    if stream:
        message, chunks = stream_message(client.chat.completions.create(stream=True, **kwargs))
        content = message["content"]
        finish = next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)
    else:
        out = client.chat.completions.create(**kwargs)
        content, finish = out.choices[0].message.content, out.choices[0].finish_reason
    assert finish == "content_filter"
    assert content == "The request was blocked by Gemini safety filters: PROHIBITED_CONTENT"


def test_upstream_429_is_a_429_with_retry_after(gemini: FakeGemini, start_proxy: Any) -> None:
    gemini.push(Action("error", status=429, body=QUOTA))
    with pytest.raises(openai.RateLimitError) as info:
        start_proxy().client().chat.completions.create(
            model="google/gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 429
    assert info.value.response.headers.get("retry-after") == "36"
    assert "Google Gemini: You exceeded your current quota" in info.value.message


def test_a_wrong_key_says_which_variable_to_fix(
    gemini: FakeGemini, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "wrong-key")
    with pytest.raises(openai.BadRequestError) as info:
        start_proxy().client().chat.completions.create(
            model="google/gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )
    assert "API key not valid" in info.value.message and "GEMINI_API_KEY" in info.value.message
    assert "wrong-key" not in info.value.message


def test_a_stream_cut_short_ends_in_an_error_the_sdk_raises(gemini: FakeGemini, start_proxy: Any) -> None:
    gemini.push(Action("break", after_events=2))
    stream = (
        start_proxy()
        .client()
        .chat.completions.create(
            model="google/gemini-2.5-flash", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
    )
    got: list[Any] = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            got.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "Echo: one "


def test_a_stream_that_ends_without_a_finish_reason_is_an_error(gemini: FakeGemini, start_proxy: Any) -> None:
    unfinished = {"candidates": [{"content": {"parts": [{"text": "Half"}], "role": "model"}}], "responseId": "u1"}
    gemini.push(Action("reply", body=unfinished))
    stream = (
        start_proxy()
        .client()
        .chat.completions.create(
            model="google/gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    got: list[Any] = []
    with pytest.raises(openai.APIError, match="stream ended early"):
        for chunk in stream:
            got.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "Half"
