"""The openai-completions wire API through the canonical model: bodies, answers, streams, errors, end to end.

Built bodies are checked against the ``openai`` SDK's request types; the stream decoder is fed recorded
chunk streams (tests/fixtures/sse) split at every byte boundary. End to end, the ``anthropic`` SDK's
``messages.create`` / ``messages.stream`` and the ``openai`` SDK's ``responses.create`` reach the fake
OpenAI-compatible server through the proxy, with a tool call round trip.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import anthropic
import msgspec
import openai
import pydantic
import pytest
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming

from providers.canonical import (
    Event,
    Finish,
    Image,
    Message,
    Request,
    StreamError,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    Usage,
    UsageEvent,
    collect,
)
from providers.errors import UpstreamError, UpstreamUnreachable
from providers.registry import DEFAULT_COMPAT, Compat, Model
from providers.wire import translating_wire
from providers.wire.base import WireTarget
from providers.wire.openai_chat import API
from tests.conftest import local_provider
from tests.fakes.openai_upstream import Action, FakeOpenAI

FIXTURES = Path(__file__).parent / "fixtures" / "sse"
WEATHER = Tool("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
_PARAMS = pydantic.TypeAdapter(CompletionCreateParamsNonStreaming)


def target(*, compat: Compat = DEFAULT_COMPAT, reasoning: bool = False, known: bool = True) -> WireTarget:
    return WireTarget(
        provider_id="local",
        provider_name="Local",
        base_url="http://127.0.0.1:1/v1/",
        model_id="m-1",
        model=Model("m-1", "m-1", reasoning=reasoning) if known else None,
        compat=compat,
    )


def body_of(req: Request, tgt: WireTarget | None = None) -> dict[str, Any]:
    call = API.build(req, tgt or target())
    assert call.url == "http://127.0.0.1:1/v1/chat/completions"
    body: dict[str, Any] = json.loads(call.body)
    _PARAMS.validate_python({**body, "stream": False})  # the shape the OpenAI SDK itself would send
    return body


def req(*messages: Message, **kw: Any) -> Request:
    return Request(model="local/m-1", messages=list(messages), **kw)


# --- requests ---------------------------------------------------------------------------------


def test_conversation_with_tools_images_and_results() -> None:
    call = ToolCall("call_1", "get_weather", '{"city":"Paris"}')
    body = body_of(
        req(
            Message("user", [Text("Weather here?"), Image(media_type="image/jpeg", data=PNG)]),
            Message("assistant", [Thinking("hm", signature="s", source="anthropic-messages:x"), Text("Sure."), call]),
            Message(
                "tool",
                [ToolResult("call_1", [Text("20C"), Image(url="https://x/y.png", detail="low")]), Text("thanks")],
            ),
            Message("tool", [ToolResult("call_2", [Text("boom")], is_error=True)]),
            system=[Text("Be brief."), Text("Use metric.")],
            tools=[WEATHER],
            tool_choice=ToolChoice("tool", "get_weather"),
            parallel_tool_calls=False,
            max_tokens=300,
            temperature=0.2,
            stop=["END"],
            session_id="sess-1",
            extra={"verbosity": "low", "top_k": 5},
        )
    )
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Sure.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "20C"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Images from the tool results:"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
            ],
        },
        {"role": "user", "content": "thanks"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: boom"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather for a city", "parameters": WEATHER.parameters},
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False and body["max_completion_tokens"] == 300
    assert (body["temperature"], body["stop"], body["prompt_cache_key"]) == (0.2, ["END"], "sess-1")
    assert body["model"] == "m-1" and body["stream"] is False and "stream_options" not in body
    assert body["verbosity"] == "low" and "top_k" not in body


def test_compat_edits_apply_to_the_built_body() -> None:
    request = req(Message("user", [Text("hi")]), system=[Text("sys")], stream=True, max_tokens=10, tools=[WEATHER])
    request.tools[0] = Tool("t", None, {"type": "object"}, strict=True)
    default = body_of(request, target(reasoning=True))
    assert default["messages"][0]["role"] == "developer"  # a reasoning model on a server that has the role
    assert default["stream_options"] == {"include_usage": True} and default["max_completion_tokens"] == 10
    assert default["tools"][0]["function"]["strict"] is True
    old = Compat(
        max_tokens_field="max_tokens",
        supports_developer_role=False,
        supports_usage_in_streaming=False,
        supports_strict_mode=False,
    )
    edited = body_of(request, target(compat=DEFAULT_COMPAT.merged(old), reasoning=True))
    assert edited["messages"][0]["role"] == "system" and edited["max_tokens"] == 10
    assert "stream_options" not in edited and "max_completion_tokens" not in edited
    assert "strict" not in edited["tools"][0]["function"]


def test_reasoning_effort_and_thinking_replay_follow_the_thinking_format() -> None:
    own = Thinking("my reasons", source="openai-completions:local")
    foreign = Thinking("theirs", source="openai-completions:other")
    turn = Message("assistant", [own, foreign, Text("ok")])
    request = req(Message("user", [Text("q")]), turn, Message("user", [Text("more")]), reasoning_effort="high")
    openai_like = body_of(request, target(reasoning=True))
    assert openai_like["reasoning_effort"] == "high" and "reasoning_content" not in openai_like["messages"][1]
    assert "reasoning_effort" not in body_of(request, target(reasoning=False))  # OpenAI: 400 for gpt-4o
    deepseek = body_of(request, target(compat=DEFAULT_COMPAT.merged(Compat(thinking_format="deepseek")), known=False))
    assert deepseek["messages"][1] == {"role": "assistant", "content": "ok", "reasoning_content": "my reasons"}
    assert deepseek["thinking"] == {"type": "enabled"}
    # An assistant turn that is only thinking is left out (an empty assistant message is refused).
    assert len(body_of(req(Message("user", [Text("q")]), Message("assistant", [own])))["messages"]) == 1


def test_tool_choice_needs_tools() -> None:
    body = body_of(req(Message("user", [Text("q")]), tool_choice=ToolChoice("required"), parallel_tool_calls=True))
    assert "tool_choice" not in body and "parallel_tool_calls" not in body
    assert body_of(req(Message("user", [Text("q")]), tools=[WEATHER], tool_choice=ToolChoice("none")))[
        "tool_choice"
    ] == ("none")


# --- answers ----------------------------------------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1753800000,
    "model": "gpt-4.1-mini-2025-04-14",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {"id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": '{"c":1}'}},
                    {"id": "call_B", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 40,
        "total_tokens": 160,
        "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 16, "audio_tokens": 0},
    },
}


def test_completion_with_tool_calls_and_usage() -> None:
    resp = API.decode_response(json.dumps(COMPLETION).encode(), target())
    assert (resp.id, resp.model, resp.finish_reason) == ("chatcmpl-abc", "gpt-4.1-mini-2025-04-14", "tool_calls")
    assert resp.content == [ToolCall("call_A", "get_weather", '{"c":1}'), ToolCall("call_B", "get_time", "{}")]
    # prompt_tokens already includes the cached ones; completion_tokens already includes reasoning.
    assert resp.usage == Usage(input_tokens=120, output_tokens=40, cache_read_tokens=100, reasoning_tokens=16)


def test_reasoning_content_refusal_and_other_usage_shapes() -> None:
    deepseek = {
        "id": "x",
        "choices": [{"message": {"content": "42", "reasoning_content": "think"}, "finish_reason": "length"}],
        "usage": {"prompt_cache_hit_tokens": 30, "prompt_cache_miss_tokens": 10, "completion_tokens": 5},
    }
    resp = API.decode_response(json.dumps(deepseek).encode(), target())
    assert resp.content == [Thinking("think", source="openai-completions:local"), Text("42")]
    assert resp.finish_reason == "length" and resp.usage == Usage(40, 5, cache_read_tokens=30)
    refused = {"choices": [{"message": {"content": None, "refusal": "I can't."}, "finish_reason": "stop"}]}
    resp = API.decode_response(json.dumps(refused).encode(), target())
    assert resp.content == [Text("I can't.")] and resp.finish_reason == "content_filter" and resp.usage is None
    # xAI counts reasoning beside completion_tokens: total shows it, and it is added to the output.
    xai = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 35, "completion_tokens_details": {}}
    xai["completion_tokens_details"] = {"reasoning_tokens": 20}
    usage = API.decode_response(json.dumps({"choices": [{"message": {}}], "usage": xai}).encode(), target()).usage
    assert usage == Usage(10, 25, reasoning_tokens=20)


def test_bodies_that_are_not_completions() -> None:
    with pytest.raises(msgspec.DecodeError):
        API.decode_response(b"<html>bad gateway</html>", target())
    with pytest.raises(UpstreamError, match="Local: not today"):
        API.decode_response(b'{"error": {"message": "not today"}}', target())


def test_error_mapping_keeps_status_message_and_retry_hint() -> None:
    body = b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}'
    err = API.error(target(), 429, body, {"retry-after": "7"})
    assert err.status == 429 and "Local: Rate limit reached" in str(err) and err.headers == {"retry-after": "7"}


# --- streams ----------------------------------------------------------------------------------


def decode(data: bytes, *cuts: int) -> list[Event]:
    decoder = API.stream_decoder(target())
    events: list[Event] = []
    bounds = [0, *cuts, len(data)]
    for a, b in itertools.pairwise(bounds):
        events += decoder.feed(data[a:b])
    return events + decoder.close()


@pytest.mark.parametrize("name", ["openai_chat_tool_calls.sse", "openai_chat_tool_calls_crlf.sse"])
def test_recorded_stream_at_every_byte_boundary(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    whole = decode(data)
    assert whole[:2] == [TextDelta("Je "), TextDelta("vérifie ")]
    assert [e for e in whole if isinstance(e, ToolCallStart | ToolCallEnd)] == [
        ToolCallStart(0, "call_Q1w2E3r4T5y6U7i8", "get_weather"),
        ToolCallStart(1, "call_Z9x8C7v6B5n4M3l2", "get_time"),
        ToolCallEnd(0),
        ToolCallEnd(1),
    ]
    assert whole[-2:] == [Finish("tool_calls"), UsageEvent(Usage(87, 41))]
    resp = collect(whole, id="x", model="m")
    assert resp.content == [
        Text("Je vérifie la météo à Zürich 🌦️…"),
        ToolCall("call_Q1w2E3r4T5y6U7i8", "get_weather", '{"city":"Zürich","unit":"celsius"}'),
        ToolCall("call_Z9x8C7v6B5n4M3l2", "get_time", '{"tz":"Europe/Zurich"}'),
    ]
    expected = collect(whole, id="x", model="m")
    for cut in range(1, len(data)):
        assert collect(decode(data, cut), id="x", model="m") == expected, cut


def sse(*chunks: Any) -> bytes:
    return b"".join(b"data: " + (c if isinstance(c, bytes) else json.dumps(c).encode()) + b"\n\n" for c in chunks)


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_reasoning_stream_and_usage_on_the_last_choice_chunk() -> None:
    last = chunk({}, "stop")
    last["usage"] = {"prompt_tokens": 9, "completion_tokens": 7, "completion_tokens_details": {"reasoning_tokens": 4}}
    data = sse(
        chunk({"role": "assistant", "content": None, "reasoning_content": "Let me "}),
        chunk({"reasoning_content": "see."}),
        chunk({"content": "Yes."}),
        last,
        b"[DONE]",
    )
    src = "openai-completions:local"
    assert decode(data) == [
        ThinkingDelta("Let me ", source=src),
        ThinkingDelta("see.", source=src),
        TextDelta("Yes."),
        Finish("stop"),
        UsageEvent(Usage(9, 7, reasoning_tokens=4)),
    ]
    # OpenRouter and Ollama name it "reasoning"
    assert decode(sse(chunk({"reasoning": "r"}), b"[DONE]"))[0] == ThinkingDelta("r", source=src)


def test_calls_numbered_alike_by_the_server_stay_apart() -> None:
    first = {"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x":1}'}}
    second = {"index": 0, "id": "b", "function": {"name": "g", "arguments": {"y": 2}}}
    events = decode(sse(chunk({"tool_calls": [first]}), chunk({"tool_calls": [second]}, "stop"), b"[DONE]"))
    assert events == [
        ToolCallStart(0, "a", "f"),
        ToolCallDelta(0, '{"x":1}'),
        ToolCallStart(1, "b", "g"),
        ToolCallDelta(1, '{"y":2}'),
        ToolCallEnd(0),
        ToolCallEnd(1),
        Finish("tool_calls"),  # "stop" after tool calls is a tool-call turn
    ]


def test_stream_cut_short_or_failing_upstream() -> None:
    events = decode(sse(chunk({"content": "Hel"})) + b'data: {"choices":[{"delta":{"cont')
    assert events[0] == TextDelta("Hel") and len(events) == 2
    assert isinstance(events[-1], StreamError) and isinstance(events[-1].error, UpstreamUnreachable)
    error = {"error": {"message": "Rate limit reached", "type": "tokens", "code": "rate_limit_exceeded"}}
    events = decode(sse(chunk({"content": "Hi"}), error, b"[DONE]"))
    assert events[0] == TextDelta("Hi") and len(events) == 2
    assert isinstance(events[1], StreamError) and isinstance(events[1].error, UpstreamError)
    assert events[1].error.status == 429 and "Local: Rate limit reached" in str(events[1].error)
    events = decode(b"event: error\ndata: " + json.dumps({"error": "model overloaded"}).encode() + b"\n\n")
    assert len(events) == 1 and isinstance(events[0], StreamError) and "model overloaded" in str(events[0].error)


def test_registered_for_the_surfaces_that_translate() -> None:
    assert translating_wire("openai-completions") is API


# --- end to end -------------------------------------------------------------------------------

TOOL = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER.parameters}


def ask(client: anthropic.Anthropic, messages: list[dict[str, Any]], stream: bool) -> Any:
    kwargs: dict[str, Any] = {"model": "local/m", "max_tokens": 200, "tools": [TOOL], "messages": messages}
    if not stream:
        return client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as events:
        seen = [ev.type for ev in events]
        final = events.get_final_message()
    assert seen[0] == "message_start" and seen[-1] == "message_stop", seen
    return final


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_messages_sdk_tool_round_trip(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, stream: bool
) -> None:
    local_provider(isolated_env, fake_openai)
    client = anthropic.Anthropic(base_url=start_proxy().url, api_key="client-key", max_retries=0)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    first = ask(client, messages, stream)
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert [(u.id, u.name, u.input) for u in uses] == [
        ("call_0", "get_weather", {"city": "Paris"}),
        ("call_1", "get_weather", {"city": "Tokyo"}),
    ]
    assert (first.usage.input_tokens, first.usage.output_tokens) == (12, 9)
    sent = fake_openai.requests[-1].body
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["max_completion_tokens"] == 200
    assert sent.get("stream_options") == ({"include_usage": True} if stream else None)
    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]})
    results = [{"type": "tool_result", "tool_use_id": u.id, "content": f"{i}0C"} for i, u in enumerate(uses, 1)]
    messages.append({"role": "user", "content": results})
    second = ask(client, messages, stream)
    assert second.stop_reason == "end_turn"
    assert "".join(b.text for b in second.content if b.type == "text").strip() == "Tool results: 10C; 20C"
    sent = fake_openai.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_0", "call_1"]
    assert [(m["tool_call_id"], m["content"]) for m in sent[2:]] == [("call_0", "10C"), ("call_1", "20C")]


def test_messages_sdk_sees_upstream_errors_and_broken_streams(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    local_provider(isolated_env, fake_openai)
    client = anthropic.Anthropic(base_url=start_proxy().url, api_key="client-key", max_retries=0)
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    fake_openai.push(Action("error", status=429, body=body, headers={"retry-after": "3"}))
    with pytest.raises(anthropic.RateLimitError) as exc:
        client.messages.create(model="local/m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert "Rate limit reached" in str(exc.value) and exc.value.response.headers["retry-after"] == "3"
    # A stream that ends cleanly but without [DONE]: the decoder's own error, in Anthropic's envelope.
    fake_openai.push(Action("raw", chunks=[sse(chunk({"role": "assistant", "content": "Hel"}))]))
    hello: list[Any] = [{"role": "user", "content": "hello there"}]
    with (
        pytest.raises(anthropic.APIStatusError) as broken,
        client.messages.stream(model="local/m", max_tokens=5, messages=hello) as events,
    ):
        for _ in events:  # the error event arrives while iterating
            pass
    assert "local: stream ended early (no [DONE])" in str(broken.value)


def test_responses_sdk_reaches_an_openai_compatible_provider(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    local_provider(isolated_env, fake_openai)
    client = openai.OpenAI(base_url=start_proxy().url + "/v1", api_key="client-key", max_retries=0)
    out = client.responses.create(model="local/m", input="hello", instructions="Be brief.")
    assert out.output_text == "Echo: hello" and out.usage is not None and out.usage.input_tokens == 12
    sent = fake_openai.requests[-1].body["messages"]
    assert sent == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]


def test_chat_surface_keeps_its_passthrough(isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any) -> None:
    local_provider(isolated_env, fake_openai)
    client = openai.OpenAI(base_url=start_proxy().url + "/v1", api_key="client-key", max_retries=0)
    client.chat.completions.create(
        model="local/m", messages=[{"role": "user", "content": "hi"}], extra_body={"x_vendor_knob": 3}
    )
    assert fake_openai.requests[-1].body["x_vendor_knob"] == 3  # translated bodies never carry unknown fields
