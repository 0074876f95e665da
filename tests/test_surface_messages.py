"""The Anthropic Messages surface's pieces without a server: types, decode, encode, betas, estimates.

Streams are checked against the ``anthropic`` SDK's own event types and its own accumulator, so what
Switchboard writes is what the SDK (and Claude Code, which uses the same types) reads.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pydantic
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as SDKMessage
from anthropic.types import RawMessageStreamEvent

from providers.betas import allowed_betas, policy_for
from providers.canonical import (
    Finish,
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
from providers.errors import InvalidRequest, NotFound, UpstreamError
from proxy.messages import anthropic_model_list
from proxy.surfaces.messages_count import estimate_tokens
from proxy.surfaces.messages_in import to_canonical
from proxy.surfaces.messages_out import (
    MessageStreamEncoder,
    Wrapped,
    encode_response,
    error_envelope,
    unwrap_signature,
    wrap_signature,
)
from proxy.surfaces.messages_types import decode_body, validate

_EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RawMessageStreamEvent)


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def sdk_final(raw: bytes) -> SDKMessage:
    """Every event validated by the SDK's types and folded by the SDK's own accumulator."""
    snapshot = None
    bufs: dict[int, bytes] = {}
    for name, data in parse_sse(raw):
        assert data["type"] == name
        if name in ("ping", "error"):
            continue
        event = _EVENTS.validate_python(data)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=bufs)
    assert snapshot is not None
    return SDKMessage.model_validate(snapshot.model_dump())


def canonical(body: dict[str, Any]) -> Any:
    return to_canonical(validate(body), "up-model", None, "Test")


# --- decode -----------------------------------------------------------------------------------


def test_decode_requires_max_tokens_on_messages_only() -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    with pytest.raises(InvalidRequest) as exc:
        decode_body(bytearray(body), need_max_tokens=True)
    assert exc.value.param == "max_tokens"
    assert decode_body(bytearray(body), need_max_tokens=False)["model"] == "m"


def test_a_wrong_block_names_its_path() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "txt", "text": "x"}]}]}
    with pytest.raises(InvalidRequest) as exc:
        validate(body)
    assert exc.value.param == "messages[0].content[0].type"
    assert "'text', 'image'" in exc.value.message
    bad_source = {"type": "image", "source": {"type": "base64", "media_type": 3, "data": "x"}}
    with pytest.raises(InvalidRequest) as exc:
        validate({**body, "messages": [{"role": "user", "content": [bad_source]}]})
    assert exc.value.param == "messages[0].content[0].source.media_type"


def test_request_to_canonical() -> None:
    creq = canonical(
        {
            "model": "m",
            "max_tokens": 32000,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u1"},
            "top_k": 5,
            "thinking": {"type": "enabled", "budget_tokens": 4000},
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "tools": [
                {"name": "f", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
            ],
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hm", "signature": "anthropic-sig"},
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "r1"},
                        {"type": "document", "source": {"type": "text", "data": "doc body"}, "title": "T"},
                    ],
                },
            ],
        }
    )
    assert [t.text for t in creq.system] == ["Be brief."] and creq.system[0].cache_control == {"type": "ephemeral"}
    assert creq.stop == ["END"] and creq.user == "u1" and creq.extra == {"top_k": 5}
    assert creq.thinking_budget == 4000 and creq.reasoning_effort == "medium"
    assert creq.tool_choice is not None and creq.tool_choice.mode == "required" and creq.parallel_tool_calls is False
    assert [t.name for t in creq.tools] == ["f"]  # the hosted tool is Anthropic's alone
    assert [m.role for m in creq.messages] == ["user", "assistant", "tool", "user"]
    thinking, call = creq.messages[1].content
    assert isinstance(thinking, Thinking) and thinking.signature == "anthropic-sig" and thinking.source is None
    assert isinstance(call, ToolCall) and json.loads(call.arguments) == {"a": 1}
    result = creq.messages[2].content[0]
    assert isinstance(result, ToolResult) and result.name == "f" and result.content == [Text("r1")]
    assert creq.messages[3].content == [Text("T\n\ndoc body")]


def test_wrapped_signatures_come_back_with_their_issuer() -> None:
    sig = wrap_signature(Wrapped("google-generative-ai:google", "Z2VtaW5p", tool_call="call_1"))
    think = wrap_signature(Wrapped("openai-responses:openai", None, "ENCRYPTED", "rs_1"))
    creq = canonical(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "redacted_thinking", "data": think},
                        {"type": "thinking", "thinking": "", "signature": sig},
                        {"type": "tool_use", "id": "call_1", "name": "f", "input": {}},
                    ],
                },
            ],
        }
    )
    reasoning, call = creq.messages[1].content
    assert reasoning == Thinking("", None, "ENCRYPTED", "openai-responses:openai", "rs_1")
    assert isinstance(call, ToolCall)
    assert (call.signature, call.signature_source) == ("Z2VtaW5p", "google-generative-ai:google")
    assert unwrap_signature("sig_plain") is None and unwrap_signature("sbx1.!!!") is None


# --- encode -----------------------------------------------------------------------------------


def test_stream_is_anthropics_event_sequence_and_the_sdk_accumulates_it() -> None:
    enc = MessageStreamEncoder("gemini-x")
    raw = enc.encode([ThinkingDelta("let me see", source="google-generative-ai:google")])
    raw += enc.encode([ThinkingDelta(signature="SIG", source="google-generative-ai:google"), TextDelta("Hello ")])
    raw += enc.encode([TextDelta("world"), ToolCallStart(0, "call_1", "get", signature="TS", signature_source="g")])
    raw += enc.encode([ToolCallDelta(0, '{"city":'), ToolCallDelta(0, '"Paris"}'), ToolCallEnd(0)])
    raw += enc.finish([Finish("tool_calls"), UsageEvent(Usage(120, 30, cache_read_tokens=100))])
    names = [n for n, _ in parse_sse(raw)]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 4
    final = sdk_final(raw)
    kinds = [b.type for b in final.content]
    assert kinds == ["thinking", "text", "thinking", "tool_use"]
    assert final.content[0].thinking == "let me see"  # type: ignore[union-attr]
    back = unwrap_signature(final.content[0].signature)  # type: ignore[union-attr]
    assert back is not None and back.signature == "SIG" and back.source == "google-generative-ai:google"
    assert final.content[1].text == "Hello world"  # type: ignore[union-attr]
    assert final.content[3].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (20, 100, 30)


def test_stream_error_is_an_error_event() -> None:
    enc = MessageStreamEncoder("m")
    raw = enc.encode([TextDelta("a"), StreamError(UpstreamError("p: Overloaded", status=503))])
    assert parse_sse(raw)[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "p: Overloaded"}},
    )
    assert enc.finish([]) == b"" and enc.error(RuntimeError()) == b""


def test_redacted_reasoning_is_a_redacted_block() -> None:
    enc = MessageStreamEncoder("m")
    raw = enc.encode([ThinkingDelta(redacted="ENC", source="openai-responses:resp", item_id="rs_9")])
    raw += enc.finish([TextDelta("ok")])
    final = sdk_final(raw)
    assert final.content[0].type == "redacted_thinking"
    back = unwrap_signature(final.content[0].data)
    assert back == Wrapped("openai-responses:resp", None, "ENC", "rs_9")


def test_whole_answer() -> None:
    resp = Response(
        "r1",
        "",
        [Thinking("t", signature="S", source="x"), Text("hi"), ToolCall("c1", "f", '{"a": 1}')],
        "stop",
        Usage(10, 4, cache_write_tokens=3),
    )
    msg = SDKMessage.model_validate(encode_response(resp, "model-x"))
    assert msg.model == "model-x" and msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.usage.input_tokens == 7 and msg.usage.cache_creation_input_tokens == 3


def test_error_envelope_uses_anthropics_types() -> None:
    assert error_envelope(InvalidRequest("bad"))["error"]["type"] == "invalid_request_error"
    assert error_envelope(NotFound("no model"))["error"]["type"] == "not_found_error"
    assert error_envelope(UpstreamError("x", status=429))["error"]["type"] == "rate_limit_error"
    assert error_envelope(UpstreamError("x", status=502))["error"]["type"] == "api_error"
    assert error_envelope(UpstreamError("x", status=403, type_="permission_error"))["error"]["type"] == (
        "permission_error"
    )


# --- betas, estimates, models ------------------------------------------------------------------


def test_betas_per_upstream() -> None:
    header = "claude-code-20250219, interleaved-thinking-2025-05-14,context-management-2025-06-27"
    assert allowed_betas("anthropic", header) == (
        "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"
    )
    assert allowed_betas("google-vertex", header) == "interleaved-thinking-2025-05-14"
    assert allowed_betas("minimax", header) == "" and allowed_betas("some-models-json-id", header) == ""
    assert "context_management" in policy_for("minimax").drop_fields
    assert policy_for("anthropic").drop_fields == ()


def test_estimate_is_documented_heuristic() -> None:
    req = validate(
        {
            "model": "m",
            "system": "x" * 700,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "y" * 350}]}],
        }
    )
    assert estimate_tokens(req) == 300 + 4  # 1050 characters / 3.5, plus one message


def test_anthropic_model_list() -> None:
    out = anthropic_model_list(
        [{"id": "anthropic/claude-x", "name": "Claude X", "created": 1759104000}, {"id": "alias", "created": 0}]
    )
    assert out["data"][0] == {
        "type": "model",
        "id": "anthropic/claude-x",
        "display_name": "Claude X",
        "created_at": "2025-09-29T00:00:00Z",
    }
    assert (out["first_id"], out["last_id"], out["has_more"]) == ("anthropic/claude-x", "alias", False)
    assert msgspec.json.encode(anthropic_model_list([]))  # empty: ids are null


# --- the passthrough leg: edits and metering ---------------------------------------------------


def _leg(provider_id: str, body: dict[str, Any], beta: str = "", key: str = "sk-ant-k", meter: bool = True) -> Any:
    from providers.credentials import ResolvedAuth
    from providers.registry import load_builtin_providers
    from proxy.router import Target
    from proxy.surfaces.messages_pass import ClientHeaders, PassthroughLeg

    provider = next(p for p in load_builtin_providers() if p.id == provider_id)
    target = Target(
        provider, "claude-haiku-4-5", provider.model("claude-haiku-4-5"), "anthropic-messages", provider.compat
    )
    auth = ResolvedAuth("http://up.test", {"x-api-key": key, "content-type": "application/json"}, "test")
    leg = PassthroughLeg(body, target, auth, ClientHeaders("2026-01-01", beta, "sess"), count=False, meter=meter)
    return leg, leg.call(auth)


def test_passthrough_edits_per_upstream() -> None:
    body = {
        "model": "alias",
        "max_tokens": 5,
        "context_management": {"edits": []},
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": wrap_signature(Wrapped("google-x", "S"))},
                    {"type": "text", "text": "a"},
                ],
            },
        ],
    }
    beta = "claude-code-20250219,context-management-2025-06-27"
    _, to_anthropic = _leg("anthropic", json.loads(json.dumps(body)), beta)
    sent = json.loads(to_anthropic.body)
    assert to_anthropic.url == "http://up.test/v1/messages" and sent["model"] == "claude-haiku-4-5"
    assert to_anthropic.headers["anthropic-beta"] == beta and to_anthropic.headers["anthropic-version"] == "2026-01-01"
    assert "context_management" in sent
    assert sent["messages"][1]["content"] == [{"type": "text", "text": "a"}]  # another API's signature is dropped
    _, to_minimax = _leg("minimax", json.loads(json.dumps(body)), beta)
    sent = json.loads(to_minimax.body)
    assert "context_management" not in sent and to_minimax.headers["anthropic-beta"] == ""
    assert to_minimax.headers["anthropic-version"] == "2023-06-01"


def test_passthrough_with_a_subscription_token() -> None:
    _, call = _leg(
        "anthropic", {"model": "x", "max_tokens": 5, "system": "Be kind.", "messages": []}, key="sk-ant-oat01-x"
    )
    assert call.headers["authorization"] == "Bearer sk-ant-oat01-x" and call.headers["x-api-key"] == ""
    assert "oauth-2025-04-20" in call.headers["anthropic-beta"]
    system = json.loads(call.body)["system"]
    assert system[0]["text"].startswith("You are Claude Code") and system[1]["text"] == "Be kind."


def test_passthrough_reads_usage_from_the_stream_split_anywhere() -> None:
    from tests.fakes.anthropic_upstream import sse_frames

    message = {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": [{"type": "text", "text": "one two three"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 21,
            "cache_read_input_tokens": 1500,
            "cache_creation_input_tokens": 7,
            "output_tokens": 9,
        },
    }
    raw = b"".join(sse_frames(message))
    for size in (1, 7, 64, len(raw)):
        leg, _ = _leg("anthropic", {"model": "x", "max_tokens": 5, "stream": True, "messages": []})
        step, finish, _fail = leg.stream_steps()
        out = b"".join(step(raw[i : i + size]) for i in range(0, len(raw), size)) + finish()
        assert out == raw  # relayed as it came
        assert leg.usage() == Usage(21 + 1500 + 7, 9, cache_read_tokens=1500, cache_write_tokens=7)
        assert leg.estimated is False


def test_passthrough_cut_stream_ends_with_an_error_event_and_an_estimate() -> None:
    leg, _ = _leg("anthropic", {"model": "x", "max_tokens": 5, "stream": True, "messages": []})
    step, finish, _fail = leg.stream_steps()
    out = step(b'event: ping\ndata: {"type": "ping"}\n\n') + finish()
    assert parse_sse(out)[-1][0] == "error"
    usage = leg.usage()
    assert usage is not None and leg.estimated and usage.input_tokens > 0


def test_passthrough_answer_usage() -> None:
    leg, _ = _leg("anthropic", {"model": "x", "max_tokens": 5, "messages": []})
    body = b'{"type":"message","usage":{"input_tokens":3,"output_tokens":4,"cache_read_input_tokens":10}}'
    assert leg.answer(200, body, {})[1] == body
    assert leg.usage() == Usage(13, 4, cache_read_tokens=10)
    unmetered, _ = _leg("anthropic", {"model": "x", "max_tokens": 5, "messages": []}, meter=False)
    unmetered.answer(200, body, {})
    assert unmetered.usage() is None
