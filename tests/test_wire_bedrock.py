"""bedrock-converse-stream translation, both directions, and event-stream decoding from committed fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    UsageEvent,
    collect,
)
from providers.errors import InvalidRequest, UpstreamError, UpstreamUnreachable
from providers.registry import DEFAULT_COMPAT, Model, load_builtin_providers
from providers.wire.anthropic_messages import JSON_OBJECT_INSTRUCTION
from providers.wire.base import WireTarget
from providers.wire.bedrock_converse import API, model_path, supports_prompt_caching
from providers.wire.bedrock_stream import ConverseStreamDecoder
from tests.fakes.bedrock_upstream import encode_frame, event_frame, exception_frame, fixture_streams

FIXTURES = Path(__file__).parent / "fixtures" / "bedrock"
CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
BASE = "https://bedrock-runtime.us-east-1.amazonaws.com"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
NAME = "bedrock-converse-stream"
#: Who issued reasoning that came from the Bedrock provider (providers/wire/replay.py).
SIGNER = f"{NAME}:amazon-bedrock"


def catalog_model(model_id: str) -> Model | None:
    provider = next(p for p in load_builtin_providers() if p.id == "amazon-bedrock")
    return provider.model(model_id)


def target(model_id: str = CLAUDE, model: Model | None = None, *, known: bool = True) -> WireTarget:
    if model is None and known:
        model = catalog_model(model_id)
    return WireTarget("amazon-bedrock", "Amazon Bedrock", BASE, model_id, model, DEFAULT_COMPAT)


def build(req: Request, tgt: WireTarget | None = None) -> tuple[str, dict[str, Any]]:
    call = API.build(req, tgt or target())
    return call.url, json.loads(call.body)


def user(text: str) -> Message:
    return Message("user", [Text(text)])


# --- request translation --------------------------------------------------------------------------


def test_plain_request_url_system_and_inference_config() -> None:
    req = Request(CLAUDE, [user("hi")], system=[Text("be brief")], max_tokens=100, temperature=1.5, stop=["X"])
    url, body = build(req)
    assert url == f"{BASE}/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    assert body["system"] == [{"text": "be brief"}, {"cachePoint": {"type": "default"}}]
    assert body["messages"] == [{"role": "user", "content": [{"text": "hi"}, {"cachePoint": {"type": "default"}}]}]
    assert body["inferenceConfig"] == {"maxTokens": 100, "temperature": 1.0, "stopSequences": ["X"]}
    assert "modelId" not in body and "toolConfig" not in body


def test_stream_url_and_arn_path_encoding() -> None:
    arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/abc123"
    url, _ = build(Request(arn, [user("hi")], stream=True), target(arn))
    assert url == (
        f"{BASE}/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Aapplication-inference-profile%2Fabc123"
        "/converse-stream"
    )
    assert model_path("a b") == "/model/a%20b"


def test_claude_max_tokens_default_from_catalog_and_non_claude_omits_it() -> None:
    _, body = build(Request(CLAUDE, [user("hi")]))
    model = catalog_model(CLAUDE)
    assert model is not None and body["inferenceConfig"] == {"maxTokens": model.max_tokens}
    _, body = build(Request("amazon.nova-lite-v1:0", [user("hi")], top_p=0.5), target("amazon.nova-lite-v1:0"))
    assert body["inferenceConfig"] == {"topP": 0.5}


def test_tools_choice_calls_and_merged_results_with_sanitized_ids() -> None:
    tool = Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})
    messages = [
        user("weather?"),
        Message(
            "assistant",
            [Text(""), ToolCall("call.1/x", "get_weather", '{"city":"Tokyo"}'), ToolCall("c2", "get_weather", "")],
        ),
        Message("tool", [ToolResult("call.1/x", [Text("sunny")])]),
        Message("tool", [ToolResult("c2", [], is_error=True)]),
        user("thanks"),
    ]
    _, body = build(Request(CLAUDE, messages, tools=[tool], tool_choice=ToolChoice("required")))
    assert body["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
                    "description": "Weather",
                }
            }
        ],
        "toolChoice": {"any": {}},
    }
    assistant, results = body["messages"][1], body["messages"][2]
    assert assistant["content"] == [
        {"toolUse": {"toolUseId": "call_1_x", "name": "get_weather", "input": {"city": "Tokyo"}}},
        {"toolUse": {"toolUseId": "c2", "name": "get_weather", "input": {}}},
    ]
    assert len(body["messages"]) == 3  # both tool messages and the user text merged into one user turn
    assert results["content"][:3] == [
        {"toolResult": {"toolUseId": "call_1_x", "content": [{"text": "sunny"}], "status": "success"}},
        {"toolResult": {"toolUseId": "c2", "content": [{"text": "<empty>"}], "status": "error"}},
        {"text": "thanks"},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [(None, {"auto": {}}), (ToolChoice("auto"), {"auto": {}}), (ToolChoice("tool", "f"), {"tool": {"name": "f"}})],
)
def test_tool_choice(choice: ToolChoice | None, expected: dict[str, Any]) -> None:
    _, body = build(Request(CLAUDE, [user("x")], tools=[Tool("f")], tool_choice=choice))
    assert body["toolConfig"]["toolChoice"] == expected


def test_tool_choice_none_omits_tool_config_unless_history_uses_tools() -> None:
    _, body = build(Request(CLAUDE, [user("x")], tools=[Tool("f")], tool_choice=ToolChoice("none")))
    assert "toolConfig" not in body
    history = [user("x"), Message("assistant", [ToolCall("a", "f")]), Message("tool", [ToolResult("a", [Text("1")])])]
    _, body = build(Request(CLAUDE, history, tools=[Tool("f")], tool_choice=ToolChoice("none")))
    assert body["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]
    }


def test_bad_tool_arguments_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        build(Request(CLAUDE, [user("x"), Message("assistant", [ToolCall("a", "f", "[1]")])]))


def test_images_inline_and_data_url_and_refusals() -> None:
    msg = Message("user", [Text("what?"), Image("image/png", PNG), Image(url=f"data:image/jpeg;base64,{PNG}")])
    _, body = build(Request(CLAUDE, [msg]))
    assert body["messages"][0]["content"][1:3] == [
        {"image": {"format": "png", "source": {"bytes": PNG}}},
        {"image": {"format": "jpeg", "source": {"bytes": PNG}}},
    ]
    with pytest.raises(InvalidRequest, match="cannot fetch image URLs"):
        build(Request(CLAUDE, [Message("user", [Image(url="https://x/y.png")])]))
    with pytest.raises(InvalidRequest, match="not image/bmp"):
        build(Request(CLAUDE, [Message("user", [Image("image/bmp", PNG)])]))


def test_empty_text_becomes_placeholder() -> None:
    _, body = build(Request("amazon.nova-lite-v1:0", [user("")]), target("amazon.nova-lite-v1:0"))
    assert body["messages"][0]["content"] == [{"text": "<empty>"}]


def test_thinking_replay_signed_unsigned_foreign_redacted() -> None:
    assistant = Message(
        "assistant",
        [
            Thinking("signed", signature="sig", source=SIGNER),
            Thinking("", redacted="b3BhcXVl", source=SIGNER),
            Thinking("unsigned", source=SIGNER),
            Thinking("foreign", signature="s", source="anthropic-messages"),
            Text("answer"),
        ],
    )
    _, body = build(Request(CLAUDE, [user("a"), assistant, user("b")]))
    assert body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "signed", "signature": "sig"}}},
        {"reasoningContent": {"redactedContent": "b3BhcXVl"}},
        {"text": "unsigned"},
        {"text": "foreign"},
        {"text": "answer"},
    ]
    nova = "amazon.nova-lite-v1:0"
    _, body = build(Request(nova, [user("a"), assistant, user("b")]), target(nova))
    assert body["messages"][1]["content"][0] == {"reasoningContent": {"reasoningText": {"text": "signed"}}}


def test_budget_thinking_for_claude_4_5() -> None:
    _, body = build(Request(CLAUDE, [user("x")], reasoning_effort="low", max_tokens=1000, temperature=0.3))
    assert body["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048, "display": "summarized"},
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],
    }
    assert body["inferenceConfig"] == {"maxTokens": 3048}  # room for the answer; no temperature with thinking


def test_adaptive_thinking_and_govcloud_display() -> None:
    model = "us.anthropic.claude-opus-4-6-v1"
    _, body = build(Request(model, [user("x")], reasoning_effort="xhigh"), target(model))
    assert body["additionalModelRequestFields"] == {
        "thinking": {"type": "adaptive", "display": "summarized"},
        "output_config": {"effort": "high"},  # xhigh is not native on opus-4-6
    }
    gov = "us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0"
    _, body = build(Request(gov, [user("x")], reasoning_effort="medium"), target(gov, catalog_model(CLAUDE)))
    assert body["additionalModelRequestFields"]["thinking"] == {"type": "enabled", "budget_tokens": 8192}


def test_no_thinking_for_non_claude_or_forced_tool_or_unsigned_tool_turn() -> None:
    nova = "amazon.nova-lite-v1:0"
    _, body = build(Request(nova, [user("x")], reasoning_effort="high"), target(nova))
    assert "additionalModelRequestFields" not in body
    forced = Request(
        CLAUDE, [user("x")], tools=[Tool("f")], tool_choice=ToolChoice("required"), reasoning_effort="high"
    )
    assert "additionalModelRequestFields" not in build(forced)[1]
    history = [user("x"), Message("assistant", [ToolCall("a", "f")]), Message("tool", [ToolResult("a", [Text("1")])])]
    unsigned = Request(CLAUDE, history, tools=[Tool("f")], reasoning_effort="high")
    assert "additionalModelRequestFields" not in build(unsigned)[1]


@pytest.mark.parametrize(
    ("model_id", "force", "expected"),
    [
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", False, True),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", False, True),
        ("global.anthropic.claude-opus-4-6-v1", False, True),
        ("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", False, True),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", False, True),
        ("anthropic.claude-3-haiku-20240307-v1:0", False, False),
        ("amazon.nova-lite-v1:0", False, False),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc", False, False),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc", True, True),
        ("amazon.nova-lite-v1:0", True, True),
    ],
)
def test_prompt_caching_rule(model_id: str, force: bool, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if force:
        monkeypatch.setenv("AWS_BEDROCK_FORCE_CACHE", "1")
    assert supports_prompt_caching(target(model_id, known=False)) is expected
    _, body = build(Request(model_id, [user("a"), Message("assistant", [Text("b")]), user("c")]), target(model_id))
    points = [b for m in body["messages"] for b in m["content"] if "cachePoint" in b]
    assert len(points) == (1 if expected else 0)
    if expected:
        assert body["messages"][-1]["content"][-1] == {"cachePoint": {"type": "default"}}


def test_json_object_becomes_a_last_system_block_and_json_schema_is_refused() -> None:
    fmt: dict[str, Any] = {"type": "json_object"}
    _, body = build(Request(CLAUDE, [user("x")], system=[Text("Be brief.")], response_format=fmt))
    assert [b["text"] for b in body["system"] if "text" in b] == ["Be brief.", JSON_OBJECT_INSTRUCTION]
    assert "outputConfig" not in body
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    with pytest.raises(InvalidRequest, match="json_object"):
        build(Request(CLAUDE, [user("x")], response_format=fmt))


# --- answers --------------------------------------------------------------------------------------


def test_decode_converse_json() -> None:
    answer = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s1"}}},
                    {"reasoningContent": {"redactedContent": "b3A="}},
                    {"text": "hello"},
                    {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {
            "inputTokens": 10,
            "outputTokens": 4,
            "totalTokens": 21,
            "cacheReadInputTokens": 5,
            "cacheWriteInputTokens": 2,
        },
        "metrics": {"latencyMs": 3},
    }
    resp = API.decode_response(json.dumps(answer).encode(), target())
    assert resp.content == [
        Thinking("hmm", signature="s1", source=SIGNER),
        Thinking(redacted="b3A=", source=SIGNER),
        Text("hello"),
        ToolCall("t1", "f", '{"a":1}'),
    ]
    assert resp.finish_reason == "tool_calls" and resp.model == CLAUDE
    assert resp.usage is not None and (resp.usage.input_tokens, resp.usage.cache_read_tokens) == (17, 5)
    assert resp.usage.cache_write_tokens == 2 and resp.usage.output_tokens == 4


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
    ],
)
def test_stop_reasons(reason: str, finish: str) -> None:
    body = {"output": {"message": {"content": []}}, "stopReason": reason, "usage": {}}
    assert API.decode_response(json.dumps(body).encode(), target()).finish_reason == finish


@pytest.mark.parametrize(
    ("kind", "http", "status"),
    [
        ("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", 400, 429),
        ("ValidationException", 400, 400),
        ("AccessDeniedException", 403, 403),
        ("ModelNotReadyException", 429, 503),
        ("ServiceUnavailableException", 503, 503),
        ("InternalServerException", 500, 500),
        ("SomethingNew", 418, 418),
    ],
)
def test_http_errors(kind: str, http: int, status: int) -> None:
    err = API.error(target(), http, b'{"message": "nope"}', {"X-Amzn-ErrorType": kind, "retry-after": "3"})
    assert isinstance(err, UpstreamError) and err.status == status
    assert "nope" in err.message and err.type == kind.split(":")[0] and err.headers == {"retry-after": "3"}


# --- stream decoding --------------------------------------------------------------------------------


def decode(chunks: list[bytes]) -> list[Event]:
    decoder = ConverseStreamDecoder("Amazon Bedrock")
    events: list[Event] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def test_fixtures_are_what_the_fake_encodes() -> None:
    for name, data in fixture_streams().items():
        assert (FIXTURES / name).read_bytes() == data, name


@pytest.mark.parametrize("name", sorted(fixture_streams()))
def test_fixture_split_everywhere_decodes_the_same(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    whole = decode([data])
    assert decode([bytes([b]) for b in data]) == _same(whole)
    for cut in range(1, len(data)):
        assert decode([data[:cut], data[cut:]]) == _same(whole), cut


def _same(events: list[Event]) -> list[Any]:
    return [_Eq(e) for e in events]


class _Eq:
    """StreamError wraps an exception (compared by type, status and message)."""

    def __init__(self, event: Event) -> None:
        self.event = event

    def __eq__(self, other: object) -> bool:
        if isinstance(self.event, StreamError) and isinstance(other, StreamError):
            a, b = self.event.error, other.error
            return type(a) is type(b) and str(a) == str(b) and getattr(a, "status", 0) == getattr(b, "status", 0)
        return self.event == other


def test_text_stream_events() -> None:
    events = decode([(FIXTURES / "text_stream.bin").read_bytes()])
    assert events[:3] == [TextDelta("Echo: he"), TextDelta("llo there"), Finish("stop")]
    assert isinstance(events[3], UsageEvent) and events[3].usage.input_tokens == 21 and len(events) == 4


def test_tool_reasoning_stream_collects() -> None:
    events = decode([(FIXTURES / "tool_reasoning_stream.bin").read_bytes()])
    resp = collect(events, id="x", model="m")
    thought = "The user sent 1 message(s); I answer plainly."
    assert resp.content[0] == Thinking(thought, signature=resp.content[0].signature, source=NAME)  # type: ignore[union-attr]
    assert resp.content[1:] == [
        ToolCall("tooluse_0abc", "get_weather", '{"city": "Tokyo"}'),
        ToolCall("tooluse_1abc", "get_weather", '{"city": "Paris"}'),
    ]
    assert resp.finish_reason == "tool_calls"
    assert resp.usage is not None and (resp.usage.cache_read_tokens, resp.usage.cache_write_tokens) == (5, 3)
    assert resp.usage.input_tokens == 29


def test_redacted_reasoning_stream() -> None:
    resp = collect(decode([(FIXTURES / "redacted_stream.bin").read_bytes()]), id="x", model="m")
    assert resp.content == [Thinking(redacted="b3BhcXVl", source=NAME), Text("ok")]
    assert resp.finish_reason == "length"


def test_throttling_exception_frame_is_a_429_stream_error() -> None:
    events = decode([(FIXTURES / "throttled_stream.bin").read_bytes()])
    assert events[0] == TextDelta("Echo: he")
    err = events[-1]
    assert isinstance(err, StreamError) and isinstance(err.error, UpstreamError)
    assert err.error.status == 429 and "Too many requests" in err.error.message and len(events) == 2


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("validationException", 400),
        ("accessDeniedException", 403),
        ("modelNotReadyException", 503),
        ("serviceUnavailableException", 503),
        ("modelStreamErrorException", 500),
        ("internalServerException", 500),
    ],
)
def test_exception_frames_statuses(kind: str, status: int) -> None:
    events = decode([event_frame("messageStart", {"role": "assistant"}), exception_frame(kind, "bad")])
    assert len(events) == 1 and isinstance(events[0], StreamError)
    assert getattr(events[0].error, "status", None) == status


def test_error_message_frame_and_events_after_it_are_ignored() -> None:
    frame = encode_frame(
        {":message-type": "error", ":error-code": "ThrottlingException", ":error-message": "slow"}, b""
    )
    events = decode([frame, event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "late"}})])
    assert len(events) == 1 and isinstance(events[0], StreamError)
    assert getattr(events[0].error, "status", None) == 429


def test_stream_cut_short_and_corrupt_stream() -> None:
    data = (FIXTURES / "text_stream.bin").read_bytes()
    events = decode([data[:400]])
    assert isinstance(events[-1], StreamError) and isinstance(events[-1].error, UpstreamUnreachable)
    corrupt = bytearray(data)
    corrupt[20] ^= 0xFF
    events = decode([bytes(corrupt)])
    assert len(events) == 1 and isinstance(events[0], StreamError) and "corrupt" in str(events[0].error)
