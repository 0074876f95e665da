"""The Responses surface's decode and encode on their own: request → canonical, canonical → items/events.

No server here (tests/test_responses_e2e.py drives the whole proxy); each mapping the issue names is
checked one by one, and every streamed event is parsed with the openai SDK's event types.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pydantic
import pytest
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent

from providers.canonical import (
    Finish,
    Image,
    Response,
    StreamError,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
    UsageEvent,
)
from providers.errors import InvalidRequest, UpstreamError
from proxy.responses import OpenAIResponses, _PassthroughLeg
from proxy.surfaces.responses_in import Sealed, Shape, seal, to_canonical, unseal
from proxy.surfaces.responses_out import encode_response, failure_code
from proxy.surfaces.responses_stream import ResponsesStreamEncoder
from proxy.surfaces.responses_types import decode_body, validate
from tests.fakes.responses_upstream import encode, stream_events

_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
SURFACE = OpenAIResponses()
NAMESPACE = {
    "type": "namespace",
    "name": "mcp__docs",
    "description": "docs server",
    "tools": [{"type": "function", "name": "search", "parameters": {"type": "object", "properties": {}}}],
}
CUSTOM = {
    "type": "custom",
    "name": "apply_patch",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: X"},
}


def canonical(body: dict[str, Any]) -> tuple[Any, Shape]:
    raw = decode_body(msgspec.json.encode({"model": "p/m", **body}))
    return to_canonical(validate(raw), raw, "m")


def stream(shape: Shape, *batches: list[Any]) -> list[dict[str, Any]]:
    enc = ResponsesStreamEncoder("m", shape)
    data = b"".join(enc.encode(b) for b in batches[:-1]) + enc.finish(batches[-1])
    events = [json.loads(line[6:]) for line in data.decode().splitlines() if line.startswith("data: ")]
    for ev in events:
        if ev["type"] != "response.failed":
            _EVENT.validate_python(ev)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


# --- decode -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"model": "m", "input": "x", "store": True}, "store"),
        ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation"),
        ({"model": "m", "input": []}, "input"),
        ({"input": "x"}, "model"),
        ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ],
)
def test_decode_refuses_with_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        decode_body(msgspec.json.encode(body))
    assert err.value.param == param and err.value.status == 400


def test_validation_names_the_path() -> None:
    raw = decode_body(b'{"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "detail": 3}]}]}')
    with pytest.raises(InvalidRequest) as err:
        validate(raw)
    assert err.value.param == "input[0].content[0].detail"


def test_codex_style_history_to_canonical() -> None:
    sealed = seal(Sealed(s="anthropic-messages:claude", t="hmm", g="sig_1"))
    creq, shape = canonical(
        {
            "instructions": "Be terse.",
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandboxed"}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "hi"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                    ],
                },
                {
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": "hmm"}],
                    "encrypted_content": sealed,
                },
                {
                    "type": "function_call",
                    "call_id": "c1",
                    "name": "search",
                    "namespace": "mcp__docs",
                    "arguments": "{}",
                },
                {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
                {
                    "type": "local_shell_call",
                    "call_id": "c3",
                    "status": "completed",
                    "action": {"type": "exec", "command": ["ls"], "env": {}},
                },
                {"type": "function_call_output", "call_id": "c1", "output": "found"},
                {"type": "custom_tool_call_output", "call_id": "c2", "output": "patched"},
                {"type": "function_call_output", "call_id": "c3", "output": "a.txt"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]},
                {"type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "x"}},
            ],
            "tools": [NAMESPACE, CUSTOM, {"type": "local_shell"}, {"type": "web_search"}],
            "tool_choice": {"type": "custom", "name": "apply_patch"},
            "reasoning": {"effort": "low", "summary": "auto"},
            "include": ["reasoning.encrypted_content"],
            "text": {
                "format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}},
                "verbosity": "low",
            },
            "prompt_cache_key": "thread-1",
            "max_output_tokens": 300,
            "stream": True,
            "store": False,
        }
    )
    assert [t.text for t in creq.system] == ["Be terse.", "sandboxed"]
    assert [m.role for m in creq.messages] == ["user", "assistant", "tool", "assistant"]
    user, assistant, tool, _ = creq.messages
    assert isinstance(user.content[1], Image) and user.content[1].media_type == "image/png"
    thinking, call1, call2, call3 = assistant.content
    assert thinking == Thinking("hmm", signature="sig_1", source="anthropic-messages:claude")
    assert isinstance(call1, ToolCall) and call1.name == "mcp__docs__search"
    assert isinstance(call2, ToolCall) and json.loads(call2.arguments) == {"input": "*** Begin Patch"}
    assert (
        isinstance(call3, ToolCall)
        and call3.name == "local_shell"
        and json.loads(call3.arguments) == {"command": ["ls"]}
    )
    assert [r.name for r in tool.content if isinstance(r, ToolResult)] == [
        "mcp__docs__search",
        "apply_patch",
        "local_shell",
    ]
    assert [t.name for t in creq.tools] == ["mcp__docs__search", "apply_patch", "local_shell"]  # web_search dropped
    assert "start: X" in (creq.tools[1].description or "")
    assert creq.tools[1].parameters["required"] == ["input"]
    assert creq.tool_choice is not None and creq.tool_choice.name == "apply_patch"
    assert creq.reasoning_effort == "low" and creq.max_tokens == 300 and creq.session_id == "thread-1"
    assert creq.response_format == {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}}
    assert creq.extra["verbosity"] == "low" and creq.stream and creq.include_usage
    assert shape.custom == {"apply_patch"} and shape.namespaced == {"mcp__docs__search": ("mcp__docs", "search")}
    assert shape.local_shell and shape.encrypted


def test_foreign_encrypted_reasoning_keeps_no_issuer() -> None:
    item = {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAAopenai"}
    creq, _ = canonical({"input": [{"role": "user", "content": "x"}, item]})
    assert creq.messages[1].content == [Thinking("", redacted="gAAAAAopenai")]


def test_a_damaged_seal_is_a_400() -> None:
    assert unseal("gAAAAA", "x") is None
    with pytest.raises(InvalidRequest) as err:
        canonical({"input": [{"type": "reasoning", "summary": [], "encrypted_content": "sb1.!!"}]})
    assert err.value.param == "input[0].encrypted_content"


# --- encode -----------------------------------------------------------------------------------


def test_answer_maps_calls_back_to_their_kinds() -> None:
    _, shape = canonical(
        {
            "input": "x",
            "tools": [NAMESPACE, CUSTOM, {"type": "local_shell"}],
            "include": ["reasoning.encrypted_content"],
        }
    )
    answer = Response(
        id="x",
        model="m",
        content=[
            Thinking("plan", signature="s1", source="anthropic-messages:claude"),
            Text("On it."),
            ToolCall(
                "c1", "mcp__docs__search", '{"q": 1}', signature="g1", signature_source="google-generative-ai:google"
            ),
            ToolCall("c2", "apply_patch", '{"input": "*** Begin Patch\\n"}'),
            ToolCall("c3", "local_shell", '{"command": ["ls", "-l"], "workdir": "/tmp"}'),
        ],
        finish_reason="tool_calls",
        usage=Usage(input_tokens=10, output_tokens=5, cache_read_tokens=4, reasoning_tokens=2),
    )
    body = encode_response(answer, "m", shape)
    parsed = SDKResponse.model_validate(body)
    kinds = [item.type for item in parsed.output]
    assert kinds == ["reasoning", "message", "reasoning", "function_call", "custom_tool_call", "local_shell_call"]
    out = body["output"]
    assert unseal(out[0]["encrypted_content"], "") == Sealed(s="anthropic-messages:claude", t="plan", g="s1")
    assert unseal(out[2]["encrypted_content"], "") == Sealed(s="google-generative-ai:google", g="g1", c="c1")
    assert out[3]["name"] == "search" and out[3]["namespace"] == "mcp__docs"
    assert out[4]["input"] == "*** Begin Patch\n" and out[4]["name"] == "apply_patch"
    assert out[5]["action"] == {"type": "exec", "command": ["ls", "-l"], "env": {}, "working_directory": "/tmp"}
    assert parsed.usage is not None and parsed.usage.input_tokens_details.cached_tokens == 4
    assert parsed.usage.output_tokens_details.reasoning_tokens == 2 and parsed.usage.total_tokens == 15


def test_without_include_no_encrypted_content() -> None:
    _, shape = canonical({"input": "x"})
    body = encode_response(Response(id="x", model="m", content=[Thinking("t", signature="s")]), "m", shape)
    assert "encrypted_content" not in body["output"][0]


def test_length_is_incomplete() -> None:
    _, shape = canonical({"input": "x", "max_output_tokens": 5})
    body = encode_response(Response(id="x", model="m", content=[Text("cut")], finish_reason="length"), "m", shape)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}


def test_stream_of_every_kind_of_item() -> None:
    _, shape = canonical(
        {"input": "x", "tools": [CUSTOM, {"type": "function", "name": "f"}], "include": ["reasoning.encrypted_content"]}
    )
    events = stream(
        shape,
        [
            ThinkingDelta("think", source="anthropic-messages:claude"),
            ThinkingDelta(" more"),
            ThinkingDelta(signature="s1"),
        ],
        [TextDelta("Hel"), TextDelta("lo")],
        [ToolCallStart(0, "c1", "f"), ToolCallDelta(0, '{"a"'), ToolCallDelta(0, ": 1}"), ToolCallEnd(0)],
        [ToolCallStart(1, "c2", "apply_patch"), ToolCallDelta(1, '{"input": "*** Be'), ToolCallDelta(1, 'gin"}')],
        [Finish("tool_calls"), UsageEvent(Usage(input_tokens=3, output_tokens=4, reasoning_tokens=1))],
    )
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = events[-1]["response"]
    SDKResponse.model_validate(final)
    reasoning, message, call, custom = final["output"]
    assert unseal(reasoning["encrypted_content"], "") == Sealed(s="anthropic-messages:claude", t="think more", g="s1")
    assert message["content"][0]["text"] == "Hello" and call["arguments"] == '{"a": 1}'
    assert custom["input"] == "*** Begin" and events[-2]["item"]["input"] == "*** Begin"
    assert final["usage"]["output_tokens_details"] == {"reasoning_tokens": 1}
    assert len({e["response"]["id"] for e in events if "response" in e}) == 1


def test_gemini_text_signature_becomes_its_own_item_after_the_text() -> None:
    _, shape = canonical({"input": "x", "include": ["reasoning.encrypted_content"]})
    events = stream(
        shape, [TextDelta("Hi"), ThinkingDelta("", signature="g", source="google-generative-ai:google")], []
    )
    output = events[-1]["response"]["output"]
    assert [i["type"] for i in output] == ["message", "reasoning"]
    assert unseal(output[1]["encrypted_content"], "") == Sealed(s="google-generative-ai:google", g="g")
    # ... and back in, after the text, where the Gemini wire module reattaches it.
    creq, _ = canonical(
        {"input": [{"role": "user", "content": "x"}, *output], "include": ["reasoning.encrypted_content"]}
    )
    assert creq.messages[1].content == [Text("Hi"), Thinking("", signature="g", source="google-generative-ai:google")]


def test_stream_error_is_response_failed_with_a_code() -> None:
    _, shape = canonical({"input": "x"})
    err = UpstreamError("claude: prompt is too long: 250000 tokens > 200000 maximum", status=400)
    events = stream(shape, [TextDelta("a"), StreamError(err)], [])
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "context_length_exceeded"
    assert events[-1]["response"]["status"] == "failed"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UpstreamError("x: Rate limit reached", status=429), "rate_limit_exceeded"),
        (UpstreamError("x: You exceeded your current quota", status=429), "insufficient_quota"),
        (UpstreamError("x: input is too long for requested model", status=400), "context_length_exceeded"),
        (UpstreamError("x: boom", status=500), "server_error"),
        (UpstreamError("x", status=400, code="context_length_exceeded"), "context_length_exceeded"),
    ],
)
def test_failure_codes(exc: UpstreamError, code: str) -> None:
    assert failure_code(exc) == code


def test_error_body_gives_the_code_codex_reads() -> None:
    body = json.loads(SURFACE.error_body(UpstreamError("x: prompt is too long", status=400)))
    assert body["error"]["code"] == "context_length_exceeded"
    body = json.loads(SURFACE.error_body(InvalidRequest("bad", param="input")))
    assert body["error"] == {"message": "bad", "type": "invalid_request_error", "param": "input", "code": None}


def test_max_output() -> None:
    assert SURFACE.max_output({"max_output_tokens": 128}) == 128
    assert SURFACE.max_output({"max_output_tokens": True}) is None and SURFACE.max_output({}) is None


# --- the passthrough leg's metering -----------------------------------------------------------


def _fake_response(usage: dict[str, Any]) -> dict[str, Any]:
    part = {"type": "output_text", "text": "hi there", "annotations": [], "logprobs": []}
    item: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed"}
    item["content"] = [part]
    head = {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "m"}
    return {**head, "output": [item], "usage": usage, "error": None, "incomplete_details": None}


USAGE = {
    "input_tokens": 20,
    "input_tokens_details": {"cached_tokens": 8},
    "output_tokens": 7,
    "output_tokens_details": {"reasoning_tokens": 3},
    "total_tokens": 27,
}


def test_passthrough_meters_a_stream_from_response_completed() -> None:
    leg = _PassthroughLeg("OpenAI", b'{"model":"m"}', True, None, meter=True)
    step, finish, _ = leg.stream_steps()
    data = b"".join(encode(ev) for ev in stream_events(_fake_response(USAGE)))
    relayed = b"".join(step(data[i : i + 50]) for i in range(0, len(data), 50)) + finish()
    assert relayed == data  # bytes as they came, nothing added
    assert leg.usage() == Usage(input_tokens=20, output_tokens=7, cache_read_tokens=8, reasoning_tokens=3)
    assert not leg.estimated


def test_passthrough_meters_an_answer_and_estimates_a_cut_stream() -> None:
    leg = _PassthroughLeg("OpenAI", b'{"model":"m"}', False, None, meter=True)
    leg.answer(200, msgspec.json.encode(_fake_response(USAGE)), {})
    assert leg.usage() == Usage(input_tokens=20, output_tokens=7, cache_read_tokens=8, reasoning_tokens=3)
    cut = _PassthroughLeg("OpenAI", b"x" * 400, True, None, meter=True)
    step, finish, _ = cut.stream_steps()
    events = stream_events(_fake_response(USAGE))
    step(b"".join(encode(ev) for ev in events[:4]))
    tail = finish()
    assert b"event: response.failed" in tail and b'"sequence_number":4' in tail
    usage = cut.usage()
    assert cut.estimated and usage is not None and usage.input_tokens == 100


def test_unmetered_passthrough_reads_no_usage() -> None:
    leg = _PassthroughLeg("OpenAI", b"{}", False, None)
    leg.answer(200, msgspec.json.encode(_fake_response(USAGE)), {})
    assert leg.usage() is None


def test_a_400_about_something_else_is_not_a_context_error() -> None:
    exc = UpstreamError("claude: context_management: Extra inputs are not permitted", status=400)
    assert failure_code(exc) == "server_error"
    body = json.loads(SURFACE.error_body(exc))
    assert body["error"]["code"] is None
