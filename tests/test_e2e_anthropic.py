"""anthropic-messages end to end over real HTTP.

Two layers:

* the fake itself, checked with the real ``anthropic`` SDK, and the wire module driving the fake over
  httpx (build → send → decode), so the translation meets a server that refuses what Anthropic refuses;
* the whole proxy: the real ``openai`` SDK → Switchboard → the fake Anthropic upstream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from providers.canonical import Event, Message, Request, Response, Text, Thinking, Tool, ToolCall, ToolResult, collect
from providers.errors import SwitchboardError
from providers.registry import DEFAULT_COMPAT, Model
from providers.wire.anthropic_messages import API, CLAUDE_CODE_IDENTITY
from providers.wire.base import WireTarget
from tests.conftest import models_json
from tests.fakes.anthropic_upstream import Action, FakeAnthropic, error_body, sign

TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
MODEL = "claude/claude-sonnet-4-5"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    yield server
    server.stop()


# --- the fake speaks Anthropic (checked with the anthropic SDK) --------------------------------


@pytest.fixture
def sdk(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(
        base_url=fake.url, api_key="sk-ant-test", max_retries=0, default_headers={"anthropic-version": "2023-06-01"}
    )
    with client:
        yield client


def test_fake_answers_the_anthropic_sdk(sdk: anthropic.Anthropic) -> None:
    msg = sdk.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].type == "text" and msg.content[0].text == "Echo: hi"
    assert msg.stop_reason == "end_turn" and msg.usage.input_tokens == 21


def test_fake_streams_to_the_anthropic_sdk(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=4000,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        thinking={"type": "enabled", "budget_tokens": 1024},
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "tool_use", "tool_use"]
    assert final.content[0].signature == sign(final.content[0].thinking)  # type: ignore[union-attr]
    assert final.content[2].input == {"city": "Tokyo"}  # type: ignore[union-attr]


def test_fake_refuses_what_anthropic_refuses(sdk: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as exc:
        sdk.messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": [{"type": "txt", "text": "x"}]}]
        )
    assert exc.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError, match="tool_result"):
        sdk.messages.create(
            model="m",
            max_tokens=10,
            messages=[
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": "no result"},
            ],
        )
    with httpx.Client() as http:
        body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        assert http.post(fake.url + "/v1/messages", json=body, headers={"x-api-key": "sk-ant-test"}).status_code == 400
        wrong = {"x-api-key": "nope", "anthropic-version": "2023-06-01"}
        assert http.post(fake.url + "/v1/messages", json=body, headers=wrong).status_code == 401


# --- the wire module against the fake, no proxy ------------------------------------------------


def wire_target(fake: FakeAnthropic, key: str = "sk-ant-test") -> WireTarget:
    model = Model("claude-sonnet-4-5", "Claude Sonnet 4.5", max_tokens=64000, reasoning=True)
    return WireTarget("claude", "Claude", fake.url, "claude-sonnet-4-5", model, DEFAULT_COMPAT, {"x-api-key": key})


def exchange(req: Request, tgt: WireTarget) -> Response:
    """What the dispatcher does: build, merge headers ("" removes one), send, decode or raise."""
    call = API.build(req, tgt)
    headers = {k: v for k, v in {**tgt.auth_headers, **call.headers}.items() if v}
    with httpx.Client(timeout=10) as http:
        if not req.stream:
            resp = http.post(call.url, content=call.body, headers=headers)
            if resp.status_code >= 400:
                raise API.error(tgt, resp.status_code, resp.content, resp.headers)
            return API.decode_response(resp.content, tgt)
        events: list[Event] = []
        with http.stream("POST", call.url, content=call.body, headers=headers) as resp:
            if resp.status_code >= 400:
                raise API.error(tgt, resp.status_code, resp.read(), resp.headers)
            decoder = API.stream_decoder(tgt)
            try:
                for chunk in resp.iter_raw():
                    events += decoder.feed(chunk)
            except httpx.RemoteProtocolError:
                pass  # the connection dropped: close() tells what that means
            events += decoder.close()
        return collect(events, id="stream", model=tgt.model_id)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_wire_tool_loop_with_thinking_against_the_fake(fake: FakeAnthropic, stream: bool) -> None:
    tgt = wire_target(fake)
    tools = [Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})]
    conversation = [Message("user", [Text("Weather in Paris and Tokyo?")])]
    first = exchange(Request("m", list(conversation), tools=tools, reasoning_effort="low", stream=stream), tgt)
    assert first.finish_reason == "tool_calls"
    thinking, *calls = first.content
    assert isinstance(thinking, Thinking) and thinking.signature == sign(thinking.text)
    assert [json.loads(c.arguments) for c in calls if isinstance(c, ToolCall)] == [{"city": "Paris"}, {"city": "Tokyo"}]
    conversation.append(Message("assistant", list(first.content)))
    conversation += [Message("tool", [ToolResult(c.id, [Text(f"sunny in {c.id}")])]) for c in calls]  # type: ignore[union-attr]
    second = exchange(Request("m", conversation, tools=tools, reasoning_effort="low", stream=stream), tgt)
    # The fake checks the replayed signature and the tool_use/tool_result pairing, or answers 400.
    assert second.content[-1] == Text("Tool results: sunny in toolu_fake0; sunny in toolu_fake1")
    assert second.usage is not None and second.usage.cache_read_tokens == 1500


def test_wire_oauth_token_reaches_upstream_as_bearer(fake: FakeAnthropic) -> None:
    fake.api_key = "sk-ant-oat01-fake"
    exchange(Request("m", [Message("user", [Text("hi")])], system=[Text("Be brief.")]), wire_target(fake, fake.api_key))
    sent = fake.last
    assert sent.headers["authorization"] == "Bearer sk-ant-oat01-fake" and "x-api-key" not in sent.headers
    assert sent.headers["anthropic-beta"] == "claude-code-20250219,oauth-2025-04-20"
    assert [b["text"] for b in sent.body["system"]] == [CLAUDE_CODE_IDENTITY, "Be brief."]


def test_wire_errors_from_the_fake(fake: FakeAnthropic) -> None:
    fake.push(Action("error", status=529, body=error_body("overloaded_error", "Overloaded")))
    with pytest.raises(SwitchboardError) as exc:
        exchange(Request("m", [Message("user", [Text("hi")])]), wire_target(fake))
    assert exc.value.status == 503
    with pytest.raises(SwitchboardError) as exc:
        exchange(Request("m", [Message("user", [Text("hi")])]), wire_target(fake, "wrong"))
    assert exc.value.status == 401 and "invalid x-api-key" in exc.value.message


def test_wire_stream_broken_off(fake: FakeAnthropic) -> None:
    fake.push(Action("break", after_events=3))
    with pytest.raises(SwitchboardError, match="stream ended early"):
        exchange(Request("m", [Message("user", [Text("a long story")])], stream=True), wire_target(fake))


# --- through the proxy with the openai SDK -----------------------------------------------------


@pytest.fixture
def claude(isolated_env: Path, fake: FakeAnthropic) -> FakeAnthropic:
    models_json(
        isolated_env,
        {
            "claude": {
                "baseUrl": fake.url,
                "api": "anthropic-messages",
                "apiKey": "sk-ant-test",
                "models": [
                    {"id": "claude-sonnet-4-5", "reasoning": True, "maxTokens": 64000, "input": ["text", "image"]}
                ],
            }
        },
    )
    return fake


@pytest.fixture
def client(claude: FakeAnthropic, start_proxy: Any) -> openai.OpenAI:
    return start_proxy().client()  # type: ignore[no-any-return]


def test_plain_chat(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    out = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello there"}])
    assert out.choices[0].message.content == "Echo: hello there"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.prompt_tokens == 21 + 1500 and out.usage.completion_tokens == 8
    sent = claude.last
    assert sent.path == "/v1/messages" and sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body["model"] == "claude-sonnet-4-5" and sent.body["max_tokens"] == 64000
    # An Anthropic API key travels as x-api-key (facts §2), also for a models.json provider.
    assert sent.headers.get("x-api-key") == "sk-ant-test", sent.headers.get("authorization")
    assert "authorization" not in sent.headers


def test_system_message_and_stop(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        stop=["END"],
        max_tokens=300,
        temperature=0.4,
    )
    body = claude.last.body
    assert body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert body["stop_sequences"] == ["END"] and body["max_tokens"] == 300 and body["temperature"] == 0.4


def test_streaming_with_usage(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "count to three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: count to three"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 1521 and chunks[-1].usage.completion_tokens == 8
    assert claude.last.body["stream"] is True


def test_stream_ends_with_done(claude: FakeAnthropic, start_proxy: Any) -> None:
    http = start_proxy().http()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        raw = resp.read()
    assert resp.status_code == 200
    assert raw.rstrip().endswith(b"data: [DONE]")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_parallel_tool_calls_round_trip(client: openai.OpenAI, claude: FakeAnthropic, stream: bool) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris and Tokyo?"}]
    calls = _tool_calls(client, messages, stream)
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {"city": "Tokyo"}]
    assert [c["id"] for c in calls] == ["toolu_fake0", "toolu_fake1"]
    messages.append({"role": "assistant", "content": None, "tool_calls": calls})
    messages += [{"role": "tool", "tool_call_id": c["id"], "content": f"sunny in {c['id']}"} for c in calls]
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    assert second.choices[0].message.content == "Tool results: sunny in toolu_fake0; sunny in toolu_fake1"
    turns = claude.last.body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["tool_use_id"] for b in turns[2]["content"]] == ["toolu_fake0", "toolu_fake1"]
    assert claude.last.body["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]  # type: ignore[index]


def _tool_calls(client: openai.OpenAI, messages: list[dict[str, Any]], stream: bool) -> list[dict[str, Any]]:
    if not stream:
        first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
        assert first.choices[0].finish_reason == "tool_calls"
        return [c.model_dump(include={"id", "type", "function"}) for c in first.choices[0].message.tool_calls or []]
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for chunk in client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL], stream=True):  # type: ignore[call-overload]
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for tc in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(tc.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
            call["id"] = tc.id or call["id"]
            if tc.function is not None:
                call["function"]["name"] += tc.function.name or ""
                call["function"]["arguments"] += tc.function.arguments or ""
    assert finish == "tool_calls"
    return [calls[i] for i in sorted(calls)]


def test_image(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    out = client.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{TINY_PNG}"}},
                ],
            }
        ],
    )
    assert out.choices[0].message.content == "I see an image (image/png)"
    image = claude.last.body["messages"][0]["content"][1]
    assert image["source"] == {"type": "base64", "media_type": "image/png", "data": TINY_PNG}


def test_reasoning_and_signature_survive_a_second_turn(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "think first"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, reasoning_effort="high")  # type: ignore[arg-type]
    message = first.choices[0].message
    thought = getattr(message, "reasoning_content", None)
    assert thought == "The user sent 1 turn(s); I will answer plainly."
    assert claude.last.body["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    messages.append(message.model_dump(exclude_none=True))
    messages.append({"role": "user", "content": "and again"})
    client.chat.completions.create(model=MODEL, messages=messages, reasoning_effort="high")  # type: ignore[arg-type]
    replayed = claude.last.body["messages"][1]["content"][0]
    assert replayed == {"type": "thinking", "thinking": thought, "signature": sign(thought)}


def test_reasoning_streams_as_reasoning_content(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "think"}],
        reasoning_effort="low",  # type: ignore[arg-type]
        stream=True,
    )
    reasoning = text = ""
    for chunk in stream:
        if chunk.choices:
            reasoning += getattr(chunk.choices[0].delta, "reasoning_content", None) or ""
            text += chunk.choices[0].delta.content or ""
    assert reasoning == "The user sent 1 turn(s); I will answer plainly."
    assert text == "Echo: think"


def test_cached_tokens_are_reported(client: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "A long shared prefix."}, {"role": "user", "content": "q"}]
    first = client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    second = client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens == second.usage.prompt_tokens == 1521
    details = second.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens == 1500


def test_overloaded_becomes_503(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    claude.push(Action("error", status=529, body=error_body("overloaded_error", "Overloaded")))
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 503
    assert "Overloaded" in exc.value.message


def test_rate_limit_keeps_retry_after(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    body = error_body("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit")
    claude.push(Action("error", status=429, body=body, headers={"retry-after": "7"}))
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 429
    assert exc.value.response.headers["retry-after"] == "7"


def test_error_mid_stream_reaches_the_client(client: openai.OpenAI, claude: FakeAnthropic) -> None:
    overloaded = json.dumps(error_body("overloaded_error", "Overloaded"))
    start = {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "c"}}
    claude.push(
        Action(
            "raw",
            chunks=[
                f"event: message_start\ndata: {json.dumps(start)}\n\n".encode(),
                f"event: error\ndata: {overloaded}\n\n".encode(),
            ],
        )
    )
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIError, match="Overloaded"):
        list(stream)


@pytest.mark.parametrize(("provider", "env"), [("minimax", "MINIMAX_API_KEY"), ("kimi-coding", "KIMI_API_KEY")])
def test_builtin_anthropic_messages_providers(
    isolated_env: Path, fake: FakeAnthropic, start_proxy, monkeypatch: pytest.MonkeyPatch, provider: str, env: str
) -> None:
    """Built-in providers that speak Anthropic Messages keep their catalog, env key and headers."""
    models_json(isolated_env, {provider: {"baseUrl": fake.url}})
    monkeypatch.setenv(env, "sk-ant-test")
    client = start_proxy().client()
    model_id = next(m.id for m in client.models.list() if m.id.startswith(provider + "/"))
    out = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "ping"}])
    assert out.choices[0].message.content
    sent = fake.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test" and "authorization" not in sent.headers
    assert sent.body["model"] == model_id.split("/", 1)[1]
    if provider == "kimi-coding":
        assert sent.headers["user-agent"] == "KimiCLI/1.5"
