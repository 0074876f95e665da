"""Wire API ``openai-responses`` in both directions, without a network.

Every request body built here is validated against the ``openai`` SDK's own request types (with unknown
fields rejected, as the API rejects them). Committed recorded-style streams are decoded whole, cut in two
at every byte, and fed byte by byte, and must always give the same events.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pydantic
import pytest
from openai.types.responses import response_create_params as params

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
from providers.errors import InvalidRequest, UpstreamError, UpstreamUnreachable
from providers.registry import DEFAULT_COMPAT, Model
from providers.wire.base import WireAPI, WireTarget
from providers.wire.openai_responses import API, build_body
from tests.fakes.responses_upstream import stream_events, strict_request_model

#: Who issued reasoning that came from the ``openai`` provider (providers/wire/replay.py).
SIGNER = "openai-responses:openai"
FIXTURES = Path(__file__).parent / "fixtures" / "responses"
STREAMS = ["text_stream.sse", "reasoning_tool_calls_stream.sse", "failed_stream.sse"]
GPT5 = Model(id="gpt-5", name="GPT-5", reasoning=True, input=("text", "image"))
GPT41 = Model(id="gpt-4.1", name="GPT-4.1", reasoning=False, input=("text", "image"))
WEATHER = Tool("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})


def target(model: Model | None = GPT41, base_url: str = "https://api.openai.com/v1/") -> WireTarget:
    model_id = model.id if model is not None else "my-model"
    return WireTarget("openai", "OpenAI", base_url, model_id, model, DEFAULT_COMPAT)


def build(req: Request, model: Model | None = GPT41) -> dict[str, Any]:
    """The body, validated by the SDK's request type (plain, then with unknown fields forbidden)."""
    call = API.build(req, target(model))
    assert call.url == "https://api.openai.com/v1/responses"
    body = json.loads(call.body)
    plain = params.ResponseCreateParamsStreaming if req.stream else params.ResponseCreateParamsNonStreaming
    pydantic.TypeAdapter(plain).validate_python(body)
    strict_request_model(req.stream).model_validate({"body": body})
    return body


def user(*blocks: Any) -> Message:
    return Message("user", list(blocks))


def test_api_satisfies_the_wire_contract() -> None:
    api: WireAPI = API
    assert api.name == "openai-responses"


def test_minimal_body() -> None:
    body = build(Request("gpt-4.1", [user(Text("hi"))], system=[Text("Be brief."), Text("Be kind.")]))
    assert body == {
        "model": "gpt-4.1",
        "instructions": "Be brief.\n\nBe kind.",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "store": False,
        "stream": False,
    }
    assert API.build(Request("gpt-4.1", [user(Text("hi"))]), target()).headers == {}


def test_user_images_inline_and_by_url() -> None:
    msg = user(Text("what?"), Image("image/jpeg", data="QUJD"), Image(url="https://x.test/a.png", detail="high"))
    body = build(Request("gpt-4.1", [msg]))
    assert body["input"][0]["content"] == [
        {"type": "input_text", "text": "what?"},
        {"type": "input_image", "image_url": "data:image/jpeg;base64,QUJD", "detail": "auto"},
        {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "high"},
    ]


def test_images_refused_for_a_text_only_model() -> None:
    text_only = Model(id="o3-mini", name="o3-mini", reasoning=True, input=("text",))
    with pytest.raises(InvalidRequest) as err:
        API.build(Request("o3-mini", [user(Image("image/png", data="QUJD"))]), target(text_only))
    assert err.value.status == 400 and "o3-mini" in err.value.message and "OpenAI" in err.value.message


def test_conversation_with_tool_calls_and_results() -> None:
    messages = [
        user(Text("weather?")),
        Message("assistant", [Text("Checking."), ToolCall("call_a", "get_weather", '{"city":"Paris"}')]),
        Message("tool", [ToolResult("call_a", [Text("sunny"), Text("21C")])]),
        Message("assistant", [Text("Sunny.")]),
        user(Text("thanks")),
    ]
    body = build(Request("gpt-4.1", messages, tools=[WEATHER]))
    assert body["input"][1:4] + body["input"][4:5] == [
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_0",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
        },
        {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny\n21C"},
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_1",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}],
        },
    ]


def test_tool_result_with_an_image_is_a_content_list() -> None:
    messages = [
        user(Text("draw")),
        Message("assistant", [ToolCall("c1", "render", "{}")]),
        Message("tool", [ToolResult("c1", [Text("done"), Image("image/png", data="QUJD")])]),
    ]
    body = build(Request("gpt-4.1", messages))
    assert body["input"][-1] == {
        "type": "function_call_output",
        "call_id": "c1",
        "output": [
            {"type": "input_text", "text": "done"},
            {"type": "input_image", "image_url": "data:image/png;base64,QUJD", "detail": "auto"},
        ],
    }


def test_only_replayable_reasoning_is_sent_back() -> None:
    thinking = [
        Thinking("plan", redacted="ENC1", source=SIGNER, item_id="rs_1"),
        Thinking("", redacted="ENC2", source=SIGNER, item_id="rs_2"),
        Thinking("no encrypted content", source=SIGNER, item_id="rs_3"),
        Thinking("from claude", signature="sig", source="anthropic-messages"),
    ]
    body = build(Request("gpt-5", [user(Text("q")), Message("assistant", [*thinking, Text("a")])]), GPT5)
    assert body["input"][1:3] == [
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "plan"}],
            "encrypted_content": "ENC1",
        },
        {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "ENC2"},
    ]
    assert [it["type"] for it in body["input"]] == ["message", "reasoning", "reasoning", "message"]


def test_reasoning_is_bound_to_the_provider_that_issued_it() -> None:
    """Azure reuses this module; OpenAI's encrypted content is not Azure's, and the other way round."""
    azure = dataclasses.replace(target(GPT5), provider_id="azure-openai-responses", provider_name="Azure")
    ours = Thinking("a", redacted="E1", source="openai-responses:azure-openai-responses", item_id="rs_a")
    theirs = Thinking("b", redacted="E2", source=SIGNER, item_id="rs_b")
    req = Request("gpt-5", [user(Text("q")), Message("assistant", [ours, theirs, Text("x")])])
    body = build_body(req, azure)
    assert [it.get("id") for it in body["input"] if it["type"] == "reasoning"] == ["rs_a"]
    decoder = API.stream_decoder(azure)
    event = {"type": "response.reasoning_summary_text.delta", "item_id": "rs_c", "summary_index": 0, "delta": "t"}
    assert decoder.feed(f"data: {json.dumps(event)}\n\n".encode()) == [
        ThinkingDelta("t", source="openai-responses:azure-openai-responses", item_id="rs_c")
    ]


def test_tools_strict_only_when_asked() -> None:
    tools = [WEATHER, Tool("exact", None, {"type": "object", "properties": {}}, strict=True)]
    body = build(Request("gpt-4.1", [user(Text("q"))], tools=tools))
    assert body["tools"] == [
        {"type": "function", "name": "get_weather", "description": "Weather for a city",
         "parameters": WEATHER.parameters, "strict": False},
        {"type": "function", "name": "exact", "parameters": {"type": "object", "properties": {}}, "strict": True},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice("auto"), "auto"),
        (ToolChoice("none"), "none"),
        (ToolChoice("required"), "required"),
        (ToolChoice("tool", "get_weather"), {"type": "function", "name": "get_weather"}),
    ],
)
def test_tool_choice(choice: ToolChoice, expected: Any) -> None:
    body = build(Request("gpt-4.1", [user(Text("q"))], tools=[WEATHER], tool_choice=choice, parallel_tool_calls=False))
    assert body["tool_choice"] == expected and body["parallel_tool_calls"] is False


@pytest.mark.parametrize(("asked", "sent"), [(1, 16), (16, 16), (500, 500)])
def test_max_output_tokens_has_a_floor(asked: int, sent: int) -> None:
    assert build(Request("gpt-4.1", [user(Text("q"))], max_tokens=asked))["max_output_tokens"] == sent


@pytest.mark.parametrize(
    ("model", "effort", "reasoning", "include", "sampling"),
    [
        (GPT5, "high", {"effort": "high", "summary": "auto"}, True, False),
        (GPT5, None, None, True, False),  # reasons by default: still ask for the encrypted content
        (GPT5, "none", {"effort": "none"}, True, True),  # reasoning off: sampling parameters are allowed
        (GPT41, "high", None, False, True),
        (None, "low", {"effort": "low", "summary": "auto"}, True, True),
        (None, None, None, False, True),
    ],
)
def test_reasoning_and_sampling(
    model: Model | None, effort: str | None, reasoning: Any, include: bool, sampling: bool
) -> None:
    req = Request("m", [user(Text("q"))], reasoning_effort=effort, temperature=0.2, top_p=0.9)
    body = build(req, model)
    assert body.get("reasoning") == reasoning
    assert body.get("include") == (["reasoning.encrypted_content"] if include else None)
    assert (body.get("temperature"), body.get("top_p")) == ((0.2, 0.9) if sampling else (None, None))


def test_thinking_level_map_applies() -> None:
    mapped = Model(id="gpt-x", name="x", reasoning=True, thinking_level_map={"max": "xhigh", "minimal": None})
    assert build(Request("gpt-x", [user(Text("q"))], reasoning_effort="max"), mapped)["reasoning"]["effort"] == "xhigh"
    assert "reasoning" not in build(Request("gpt-x", [user(Text("q"))], reasoning_effort="minimal"), mapped)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (
            {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True}},
            {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True},
        ),
        ({"type": "json_object"}, {"type": "json_object"}),
        ({"type": "text"}, {"type": "text"}),
    ],
)
def test_response_format(fmt: dict[str, Any], expected: dict[str, Any]) -> None:
    assert build(Request("gpt-4.1", [user(Text("q"))], response_format=fmt))["text"] == {"format": expected}


def test_session_and_user() -> None:
    req = Request("gpt-4.1", [user(Text("q"))], session_id="s" * 80, user="alice", stream=True)
    body = build(req)
    assert body["prompt_cache_key"] == "s" * 64 and body["safety_identifier"] == "alice" and body["stream"] is True
    assert API.build(req, target()).headers == {"session_id": "s" * 80, "x-client-request-id": "s" * 80}
    long_user = build(Request("gpt-4.1", [user(Text("q"))], user="u" * 200))["safety_identifier"]
    assert len(long_user) == 64 and long_user != "u" * 64


def test_stop_is_refused_with_the_parameter_and_provider() -> None:
    with pytest.raises(InvalidRequest) as err:
        API.build(Request("gpt-4.1", [user(Text("q"))], stop=["END"]), target())
    assert err.value.status == 400 and err.value.param == "stop"
    assert "OpenAI" in err.value.message and "stop" in err.value.message


def test_extra_fields(caplog: pytest.LogCaptureFixture) -> None:
    request = Request("gpt-4.1", [user(Text("q"))], seed=7, service_tier="flex", metadata={"k": "v"})
    request.extra = {"verbosity": "low"}
    with caplog.at_level(logging.WARNING, logger="switchboard"):
        body = build(request)
    assert body["service_tier"] == "flex" and body["metadata"] == {"k": "v"}
    assert body["text"] == {"verbosity": "low"} and "seed" not in body and "n" not in body
    assert any("seed" in r.getMessage() for r in caplog.records)


def test_error_reuses_the_openai_envelope() -> None:
    body = b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}'
    err = API.error(target(), 429, body, {"retry-after": "3"})
    assert isinstance(err, UpstreamError) and err.status == 429 and err.code == "rate_limit_exceeded"
    assert err.message == "OpenAI: Rate limit reached" and err.headers == {"retry-after": "3"}


# --- non-streaming responses ---------------------------------------------------------------------


def test_decode_response_with_reasoning_text_and_calls() -> None:
    resp = API.decode_response((FIXTURES / "function_calls_response.json").read_bytes(), target(GPT5))
    assert resp.id.startswith("resp_68af2f0e") and resp.model == "o4-mini-2025-04-16"
    reasoning, text, call1, call2 = resp.content
    assert reasoning == Thinking(
        "**Planning**\n\nNeed both cities.\n\nCalling the tool twice.",
        redacted="gAAAAABor_8" + "cXV1eA==" * 8,
        source=SIGNER,
        item_id="rs_68af2f0f1e0c81a29c4d7e2b5a8f3c61",
    )
    assert text == Text("Let me look both up.")
    assert call1 == ToolCall("call_pQ4rS7tU0vW3xY6zA9bC2dE5", "get_weather", '{"city":"Paris"}')
    assert call2 == ToolCall("call_fG8hI1jK4lM7nO0pQ3rS6tU9", "get_weather", '{"city":"Tokyo"}')
    assert resp.finish_reason == "tool_calls"
    assert resp.usage == Usage(
        input_tokens=702, output_tokens=288, cache_read_tokens=512, cache_write_tokens=128, reasoning_tokens=192
    )


def _message(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": list(parts)}


@pytest.mark.parametrize(
    ("extra", "output", "finish"),
    [
        ({"status": "completed"}, [_message({"type": "output_text", "text": "ok", "annotations": []})], "stop"),
        ({"status": "completed"}, [_message({"type": "refusal", "refusal": "I can't."})], "content_filter"),
        ({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}, [], "length"),
        ({"status": "incomplete", "incomplete_details": {"reason": "content_filter"}}, [], "content_filter"),
        ({"status": "failed", "error": {"code": "server_error", "message": "boom"}}, [], "error"),
    ],
)
def test_decode_finish_reasons(extra: dict[str, Any], output: list[Any], finish: str) -> None:
    body = {"id": "resp_1", "object": "response", "model": "gpt-4.1", "output": output, "usage": None, **extra}
    resp = API.decode_response(json.dumps(body).encode(), target())
    assert resp.finish_reason == finish and resp.usage is None
    if output:
        assert resp.content == [Text(output[0]["content"][0].get("text") or output[0]["content"][0]["refusal"])]


def test_decode_rejects_non_json() -> None:
    with pytest.raises(UpstreamError) as err:
        API.decode_response(b"<html>bad gateway</html>", target())
    assert err.value.status == 502


# --- streams -------------------------------------------------------------------------------------


def _norm(events: list[Event]) -> list[Any]:
    """Events as comparable values (exceptions compare by identity)."""
    return [
        (type(e.error).__name__, e.error.status, e.error.code, e.error.message) if isinstance(e, StreamError) else e
        for e in events
    ]


def _decode(chunks: list[bytes]) -> list[Event]:
    decoder = API.stream_decoder(target())
    out: list[Event] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.close()


def test_text_stream() -> None:
    events = _decode([(FIXTURES / "text_stream.sse").read_bytes()])
    deltas = ["Bonjour", " !", " Ça", " va", " très", " bien", " 🙂"]
    assert events == [
        *(TextDelta(d) for d in deltas),
        Finish("stop"),
        UsageEvent(Usage(input_tokens=19, output_tokens=9, cache_write_tokens=0)),
    ]


def test_reasoning_and_tool_call_stream() -> None:
    events = _decode([(FIXTURES / "reasoning_tool_calls_stream.sse").read_bytes()])
    kinds = [type(e).__name__ for e in events]
    first_call = kinds.index("ToolCallStart")
    assert set(kinds[:first_call]) == {"ThinkingDelta"}
    assert events[first_call - 1] == ThinkingDelta(
        redacted="gAAAAABor9EX" + "Zm9vYmFyYmF6cXV4" * 12 + "==",
        source=SIGNER,
        item_id="rs_0b4f1e5d7c2a9e3b0068af2d12a8e48195b7c3e1f0a9d26b4e",
    )
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert starts == [
        ToolCallStart(0, "call_Xk3nR8vQ2mT5pL9wY1zB4cD6", "get_weather"),
        ToolCallStart(1, "call_Hj7sF2gK9aQ4eW6rT1yU3iO8", "get_weather"),
    ]
    assert [e for e in events if isinstance(e, ToolCallEnd)] == [ToolCallEnd(0), ToolCallEnd(1)]
    assert events[-2:] == [
        Finish("tool_calls"),
        UsageEvent(
            Usage(
                input_tokens=1840,
                output_tokens=412,
                cache_read_tokens=1536,
                cache_write_tokens=304,
                reasoning_tokens=320,
            )
        ),
    ]
    resp = collect(events, id="r", model="m")
    assert resp.content[0] == Thinking(
        "**Checking the weather**\n\nThe user wants two cities.\n\n"
        "**Calling tools**\n\nI'll call get_weather twice in parallel.",
        redacted="gAAAAABor9EX" + "Zm9vYmFyYmF6cXV4" * 12 + "==",
        source=SIGNER,
        item_id="rs_0b4f1e5d7c2a9e3b0068af2d12a8e48195b7c3e1f0a9d26b4e",
    )
    assert [(c.id, c.arguments) for c in resp.content[1:] if isinstance(c, ToolCall)] == [
        ("call_Xk3nR8vQ2mT5pL9wY1zB4cD6", '{"city":"Paris"}'),
        ("call_Hj7sF2gK9aQ4eW6rT1yU3iO8", '{"city":"Tokyo"}'),
    ]


def test_failed_stream_becomes_a_stream_error() -> None:
    events = _decode([(FIXTURES / "failed_stream.sse").read_bytes()])
    assert events[0] == TextDelta("Partial") and len(events) == 2
    err = events[1]
    assert isinstance(err, StreamError) and isinstance(err.error, UpstreamError)
    assert err.error.status == 500 and err.error.code == "server_error"
    assert err.error.message.startswith("OpenAI: The model produced invalid content.")


@pytest.mark.parametrize("name", STREAMS)
def test_every_split_gives_the_same_events(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    whole = _norm(_decode([data]))
    for cut in range(len(data) + 1):
        assert _norm(_decode([data[:cut], data[cut:]])) == whole, cut
    assert _norm(_decode([data[i : i + 1] for i in range(len(data))])) == whole


def _failed(code: str) -> dict[str, Any]:
    return {"type": "response.failed", "response": {"status": "failed", "error": {"code": code, "message": "no"}}}


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ({"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "param": None}, 429),
        ({"type": "error", "code": "server_error", "message": "oops", "param": None}, 500),
        ({"type": "error", "code": "context_length_exceeded", "message": "too long", "param": "input"}, 400),
        ({"type": "error", "code": None, "message": "?", "param": None}, 500),
        (_failed("invalid_prompt"), 400),
        (_failed("rate_limit_exceeded"), 429),
        (_failed("image_too_large"), 400),
    ],
)
def test_error_events_keep_their_status(event: dict[str, Any], status: int) -> None:
    events = _decode([f"event: {event['type']}\ndata: {json.dumps({**event, 'sequence_number': 0})}\n\n".encode()])
    assert len(events) == 1 and isinstance(events[0], StreamError)
    error = events[0].error
    assert isinstance(error, UpstreamError) and error.status == status and error.message.startswith("OpenAI: ")


def test_stream_cut_short_is_an_error_and_nothing_follows_a_terminal_event() -> None:
    data = (FIXTURES / "text_stream.sse").read_bytes()
    cut = _decode([data[: data.index(b"event: response.completed")]])
    assert isinstance(cut[-1], StreamError) and isinstance(cut[-1].error, UpstreamUnreachable)
    assert "stream ended early" in cut[-1].error.message
    decoder = API.stream_decoder(target())
    decoder.feed(data)
    assert decoder.feed(data) == [] and decoder.close() == []


def test_arguments_sent_only_in_done_events() -> None:
    call = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"a":1}'}
    events = [
        {"type": "response.output_item.added", "output_index": 0, "item": {**call, "arguments": ""}},
        {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 0, "arguments": '{"a":1}'},
        {"type": "response.output_item.done", "output_index": 0, "item": call},
        {"type": "response.output_item.done", "output_index": 1, "item": {**call, "id": "fc_2", "call_id": "call_2"}},
        {"type": "response.completed", "response": {"status": "completed", "usage": None}},
    ]
    data = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)  # no "event:" lines: type is in the JSON
    assert _decode([data]) == [
        ToolCallStart(0, "call_1", "f"),
        ToolCallDelta(0, '{"a":1}'),
        ToolCallEnd(0),
        ToolCallStart(1, "call_2", "f"),
        ToolCallDelta(1, '{"a":1}'),
        ToolCallEnd(1),
        Finish("tool_calls"),
    ]


def test_streamed_refusal_finishes_as_content_filter() -> None:
    events = [
        {"type": "response.refusal.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "No."},
        {"type": "response.completed", "response": {"status": "completed", "usage": None}},
    ]
    data = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    assert _decode([data]) == [TextDelta("No."), Finish("content_filter")]


def test_odd_payloads_are_skipped_not_fatal() -> None:
    odd = [
        "[DONE]",
        "not json",
        json.dumps([1, 2]),
        json.dumps({"type": "response.output_item.added", "item": [1]}),
        json.dumps({"type": "response.reasoning_summary_part.added", "summary_index": None}),
        json.dumps({"type": "response.output_text.delta", "delta": "ok"}),
        json.dumps({"type": "response.completed", "response": None}),
    ]
    assert _decode([b"".join(f"data: {d}\n\n".encode() for d in odd)]) == [TextDelta("ok"), Finish("stop")]


@pytest.mark.parametrize("reasoning", [True, False])
def test_stream_and_non_stream_agree(reasoning: bool) -> None:
    """The fake's response object, streamed as OpenAI streams it, collects to what decode_response gives."""
    fixture = json.loads((FIXTURES / "function_calls_response.json").read_text())
    if not reasoning:
        fixture["output"] = fixture["output"][1:]
    whole = API.decode_response(json.dumps(fixture).encode(), target())
    data = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in stream_events(fixture))
    streamed = collect(_decode([data]), id=whole.id, model=whole.model)
    assert streamed == whole


def test_multi_turn_round_trip_keeps_reasoning_and_call_ids() -> None:
    turn1 = collect(_decode([(FIXTURES / "reasoning_tool_calls_stream.sse").read_bytes()]), id="r1", model="gpt-5")
    calls = [b for b in turn1.content if isinstance(b, ToolCall)]
    messages = [
        user(Text("Weather in Paris and Tokyo?")),
        Message("assistant", list(turn1.content)),
        Message("tool", [ToolResult(c.id, [Text(f"sunny in {i}")]) for i, c in enumerate(calls)]),
    ]
    body = build(Request("gpt-5", messages, tools=[WEATHER], reasoning_effort="medium"), GPT5)
    reasoning, fc1, fc2, out1, out2 = body["input"][1:]
    assert reasoning["id"] == "rs_0b4f1e5d7c2a9e3b0068af2d12a8e48195b7c3e1f0a9d26b4e"
    assert reasoning["encrypted_content"] == "gAAAAABor9EX" + "Zm9vYmFyYmF6cXV4" * 12 + "=="
    assert [fc1["call_id"], fc2["call_id"]] == ["call_Xk3nR8vQ2mT5pL9wY1zB4cD6", "call_Hj7sF2gK9aQ4eW6rT1yU3iO8"]
    assert [fc1["arguments"], fc2["arguments"]] == ['{"city":"Paris"}', '{"city":"Tokyo"}']
    assert [out1["call_id"], out2["call_id"]] == [fc1["call_id"], fc2["call_id"]]
