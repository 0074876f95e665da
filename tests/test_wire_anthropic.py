"""The anthropic-messages wire API: request encoding, message/stream decoding, errors.

Every built body is checked against the ``anthropic`` SDK's request types (``validate_request``), and the
stream decoder is fed the committed fixtures split at every byte boundary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic.types
import msgspec
import pydantic
import pytest
from anthropic.types.raw_message_stream_event import RawMessageStreamEvent

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
from providers.sse import SSEParser
from providers.wire.anthropic_messages import API, CLAUDE_CODE_IDENTITY, JSON_OBJECT_INSTRUCTION
from providers.wire.base import UpstreamCall, WireTarget
from tests.fakes.anthropic_upstream import validate_request

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = Tool("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})
#: Who issued reasoning that came from the ``anthropic`` provider (providers/wire/replay.py).
SIGNER = "anthropic-messages:anthropic"
SIGNED = Thinking("I considered it.", signature="sig-abc", source=SIGNER)


def target(
    model_id: str = "claude-sonnet-4-5",
    *,
    max_tokens: int = 64000,
    known: bool = True,
    reasoning: bool = True,
    auth: dict[str, str] | None = None,
    base_url: str = "https://api.anthropic.com",
) -> WireTarget:
    model = Model(model_id, model_id, max_tokens=max_tokens, reasoning=reasoning) if known else None
    return WireTarget(
        provider_id="anthropic",
        provider_name="Anthropic",
        base_url=base_url,
        model_id=model_id,
        model=model,
        compat=DEFAULT_COMPAT,
        auth_headers={"x-api-key": "sk-ant-api03-test"} if auth is None else auth,
    )


def user(*blocks: Any) -> Message:
    return Message("user", [Text(b) if isinstance(b, str) else b for b in blocks])


def req(*messages: Message, **kw: Any) -> Request:
    return Request(model="anthropic/claude-sonnet-4-5", messages=list(messages) or [user("hi")], **kw)


def built(request: Request, tgt: WireTarget | None = None) -> tuple[dict[str, Any], UpstreamCall]:
    """Build and check the body against the SDK's request types, as every build test must."""
    call = API.build(request, tgt or target())
    body = json.loads(call.body)
    assert validate_request(body) == []
    return body, call


def body_of(request: Request, tgt: WireTarget | None = None) -> dict[str, Any]:
    return built(request, tgt)[0]


# --- the validation helper itself -------------------------------------------------------------


def test_validate_request_catches_what_anthropic_refuses() -> None:
    good = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}
    assert validate_request(good) == []
    bad_block = {**good, "messages": [{"role": "user", "content": [{"type": "picture", "url": "x"}]}]}
    assert validate_request(bad_block)  # inside a lazily validated iterable
    unknown = {**good, "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "color": 1}]}]}
    assert validate_request(unknown) == ["messages.0.content.0.color: Extra inputs are not permitted"]
    assert validate_request({**good, "tools": [{"name": "t"}]})
    assert validate_request({**good, "temperature": 1.5}) == ["temperature: out of range"]
    assert validate_request({**good, "frequency_penalty": 1}) == ["frequency_penalty: Extra inputs are not permitted"]


# --- build: URL, headers, credentials ----------------------------------------------------------


def test_url_version_header_and_model() -> None:
    body, call = built(req(), target(base_url="https://api.anthropic.com/"))
    assert call.url == "https://api.anthropic.com/v1/messages"
    assert call.headers == {"anthropic-version": "2023-06-01"}
    assert body["model"] == "claude-sonnet-4-5"
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
    ]
    assert "stream" not in body


@pytest.mark.parametrize(
    "auth",
    [{"x-api-key": "sk-ant-oat01-secret"}, {"authorization": "Bearer sk-ant-oat01-secret"}],
    ids=["as-x-api-key", "already-bearer"],
)
def test_oauth_token_switches_to_bearer_with_claude_code_identity(auth: dict[str, str]) -> None:
    body, call = built(req(system=[Text("Be terse.")]), target(auth=auth))
    assert call.headers["authorization"] == "Bearer sk-ant-oat01-secret"
    assert call.headers["x-api-key"] == ""
    assert call.headers["anthropic-beta"] == "claude-code-20250219,oauth-2025-04-20"
    assert call.headers["user-agent"].startswith("claude-cli/")
    assert [b["text"] for b in body["system"]] == [CLAUDE_CODE_IDENTITY, "Be terse."]


def test_api_key_is_left_to_the_credential_and_betas_merge_with_configured_ones() -> None:
    _, call = built(req(tools=[WEATHER], reasoning_effort="low"), target(auth={"x-api-key": "sk-ant-api03-k"}))
    assert "authorization" not in call.headers and "x-api-key" not in call.headers
    assert call.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    configured = {"x-api-key": "k", "Anthropic-Beta": "context-1m-2025-08-07"}
    _, call = built(req(tools=[WEATHER], reasoning_effort="low"), target(auth=configured))
    assert call.headers["anthropic-beta"] == "context-1m-2025-08-07,interleaved-thinking-2025-05-14"


# --- build: messages ---------------------------------------------------------------------------


def test_consecutive_roles_merge_and_tool_results_form_one_user_turn() -> None:
    calls = [ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'), ToolCall("toolu_2", "get_weather", "{}")]
    request = req(
        user("first"),
        user("second"),
        Message("assistant", [Text("Checking."), *calls]),
        Message("tool", [ToolResult("toolu_1", [Text("sunny")])]),
        Message("tool", [ToolResult("toolu_2", [Text("rain")])]),
        user("and tomorrow?"),
        tools=[WEATHER],
    )
    turns = body_of(request)["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["text"] for b in turns[0]["content"]] == ["first", "second"]
    assert turns[1]["content"][1:] == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
    ]
    assert [b["type"] for b in turns[2]["content"]] == ["tool_result", "tool_result", "text"]
    assert turns[2]["content"][1]["content"] == [{"type": "text", "text": "rain"}]


def test_tool_results_lead_their_user_turn_and_empty_blocks_are_dropped() -> None:
    request = req(
        user("q"),
        Message("assistant", [ToolCall("c1", "get_weather", "{}")]),
        user("", "note first"),
        Message("tool", [ToolResult("c1", [Text("")])]),
        tools=[WEATHER],
    )
    last = body_of(request)["messages"][-1]["content"]
    assert [b["type"] for b in last] == ["tool_result", "text"]
    assert "content" not in last[0]


def test_tool_result_with_text_image_and_error() -> None:
    result = ToolResult("toolu_9", [Text("screenshot:"), Image("image/png", PNG_B64)], is_error=True)
    request = req(user("q"), Message("assistant", [ToolCall("toolu_9", "shot")]), Message("tool", [result]))
    block = body_of(request)["messages"][-1]["content"][0]
    assert block["is_error"] is True
    assert block["content"][0] == {"type": "text", "text": "screenshot:"}
    assert block["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
    }


@pytest.mark.parametrize(
    ("image", "source"),
    [
        (Image("image/png", PNG_B64), {"type": "base64", "media_type": "image/png", "data": PNG_B64}),
        (Image(url="https://example.com/cat.jpg"), {"type": "url", "url": "https://example.com/cat.jpg"}),
        (Image(url=f"data:image/png;base64,{PNG_B64}"), {"type": "base64", "media_type": "image/png", "data": PNG_B64}),
    ],
    ids=["base64", "url", "data-url"],
)
def test_images(image: Image, source: dict[str, Any]) -> None:
    content = body_of(req(user("what is this?", image)))["messages"][0]["content"]
    assert content[1]["type"] == "image" and content[1]["source"] == source


@pytest.mark.parametrize(
    "image",
    [Image("image/bmp", "Qk0="), Image(url="ftp://example.com/x.png"), Image(url="data:image/png,rawbytes")],
    ids=["bmp", "ftp", "data-not-base64"],
)
def test_images_anthropic_cannot_take(image: Image) -> None:
    with pytest.raises(InvalidRequest) as exc:
        API.build(req(user("x", image)), target())
    assert exc.value.param == "messages[0]" and "Anthropic" in exc.value.message


def test_tool_call_ids_from_other_providers_are_sanitized_consistently() -> None:
    request = req(
        user("q"),
        Message("assistant", [ToolCall("functions.get_weather:0", "get_weather", "{}")]),
        Message("tool", [ToolResult("functions.get_weather:0", [Text("ok")])]),
    )
    turns = body_of(request)["messages"]
    assert turns[1]["content"][0]["id"] == "functions_get_weather_0"
    assert turns[2]["content"][0]["tool_use_id"] == "functions_get_weather_0"


def test_tool_call_arguments_must_be_a_json_object() -> None:
    request = req(user("q"), Message("assistant", [ToolCall("c1", "f", '{"a": ')]))
    with pytest.raises(InvalidRequest) as exc:
        API.build(request, target())
    assert exc.value.param == "messages[1].tool_calls"


# --- build: thinking replay --------------------------------------------------------------------


def test_anthropic_thinking_is_replayed_and_foreign_thinking_dropped() -> None:
    redacted = Thinking(redacted="opaque==", source=SIGNER)
    foreign = [
        Thinking("openai reasoning", redacted="enc", source="openai-responses"),
        Thinking("no signature", source=SIGNER),
        Thinking("from a chat client"),
    ]
    request = req(user("q"), Message("assistant", [SIGNED, redacted, *foreign, Text("answer")]), user("more"))
    assistant = body_of(request)["messages"][1]["content"]
    assert assistant == [
        {"type": "thinking", "thinking": "I considered it.", "signature": "sig-abc"},
        {"type": "redacted_thinking", "data": "opaque=="},
        {"type": "text", "text": "answer"},
    ]


def test_assistant_turn_with_only_foreign_thinking_disappears() -> None:
    request = req(user("a"), Message("assistant", [Thinking("x", source="google-generative-ai")]), user("b"))
    turns = body_of(request)["messages"]
    assert [t["role"] for t in turns] == ["user"]
    assert [b["text"] for b in turns[0]["content"]] == ["a", "b"]


# --- build: tools ------------------------------------------------------------------------------


def test_tools_convert_with_schema_and_cache_control() -> None:
    tools = [WEATHER, Tool("noop", None, {}, strict=True, cache_control={"type": "ephemeral", "ttl": "1h"})]
    body = body_of(req(tools=tools))
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER.parameters},
        {"name": "noop", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("none"), None, {"type": "none"}),
        (ToolChoice("required"), None, {"type": "any"}),
        (ToolChoice("tool", "get_weather"), None, {"type": "tool", "name": "get_weather"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice("required"), False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, True, None),
    ],
)
def test_tool_choice(choice: ToolChoice | None, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    body = body_of(req(tools=[WEATHER], tool_choice=choice, parallel_tool_calls=parallel))
    assert body.get("tool_choice") == expected


# --- build: sampling, limits, thinking ---------------------------------------------------------


def test_stop_temperature_top_p_and_user() -> None:
    body = body_of(req(stop=["END", "###"], temperature=1.7, user="alice"))
    assert body["stop_sequences"] == ["END", "###"]
    assert body["temperature"] == 1.0  # Anthropic's range ends at 1
    assert body["metadata"] == {"user_id": "alice"}
    both = body_of(req(temperature=0.2, top_p=0.9))
    assert both["temperature"] == 0.2 and "top_p" not in both  # recent models refuse both at once
    assert body_of(req(top_p=0.9))["top_p"] == 0.9
    assert body_of(req(extra={"top_k": 40}))["top_k"] == 40


def test_sampling_is_dropped_for_models_that_refuse_it() -> None:
    body = body_of(req(temperature=0.3, top_p=0.5), target("claude-opus-4-7"))
    assert "temperature" not in body and "top_p" not in body


@pytest.mark.parametrize(
    ("request_max", "tgt", "expected"),
    [(123, target(), 123), (None, target(max_tokens=64000), 64000), (None, target(known=False), 8192)],
    ids=["explicit", "catalog", "unknown-model"],
)
def test_max_tokens(request_max: int | None, tgt: WireTarget, expected: int) -> None:
    assert body_of(req(max_tokens=request_max), tgt)["max_tokens"] == expected


@pytest.mark.parametrize(
    ("effort", "budget"),
    [("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 16384), ("xhigh", 16384), ("max", 16384)],
)
def test_budget_thinking_per_effort_drops_sampling(effort: str, budget: int) -> None:
    body, call = built(req(reasoning_effort=effort, temperature=0.5, top_p=0.5))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == 64000
    assert "temperature" not in body and "top_p" not in body
    assert "anthropic-beta" not in call.headers  # interleaved thinking only matters with tools


def test_budget_raises_a_small_max_tokens_and_explicit_budget_wins() -> None:
    body = body_of(req(reasoning_effort="high", max_tokens=500))
    assert body["thinking"]["budget_tokens"] == 16384 and body["max_tokens"] == 16884
    capped = body_of(req(reasoning_effort="high", max_tokens=500), target(max_tokens=8000))
    assert capped["max_tokens"] == 8000 and capped["thinking"]["budget_tokens"] == 8000 - 1024
    body = body_of(req(reasoning_effort="low", thinking_budget=3000))
    assert body["thinking"]["budget_tokens"] == 3000


@pytest.mark.parametrize(
    ("canonical", "tgt"),
    [
        (req(reasoning_effort="none"), target()),
        (req(), target()),
        (req(reasoning_effort="high"), target(reasoning=False)),
        (req(reasoning_effort="high", max_tokens=100), target(max_tokens=1500)),
    ],
    ids=["effort-none", "not-asked", "non-reasoning-model", "no-room-for-a-budget"],
)
def test_no_thinking(canonical: Request, tgt: WireTarget) -> None:
    assert "thinking" not in body_of(canonical, tgt)


@pytest.mark.parametrize(
    ("model_id", "effort", "sent"),
    [
        ("claude-opus-4-6", "high", "high"),
        ("claude-sonnet-4-6", "minimal", "low"),
        ("claude-sonnet-4-6", "xhigh", "high"),
        ("claude-opus-4-7", "xhigh", "xhigh"),
        ("claude-opus-4-8", "max", "max"),
        ("claude-sonnet-4-6", "max", "high"),
        ("claude-sonnet-5", "medium", "medium"),
    ],
)
def test_adaptive_thinking_models(model_id: str, effort: str, sent: str) -> None:
    body, call = built(req(reasoning_effort=effort, tools=[WEATHER]), target(model_id))
    assert body["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert body["output_config"] == {"effort": sent}
    assert "anthropic-beta" not in call.headers


def test_interleaved_thinking_beta_with_tools() -> None:
    _, call = built(req(reasoning_effort="medium", tools=[WEATHER]))
    assert call.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


def test_forced_tool_choice_turns_thinking_off() -> None:
    body = body_of(req(reasoning_effort="high", tools=[WEATHER], tool_choice=ToolChoice("required")))
    assert "thinking" not in body and body["tool_choice"] == {"type": "any"}


def test_continuing_a_tool_turn_without_signed_thinking_turns_thinking_off() -> None:
    def conversation(first: list[Any]) -> Request:
        call = ToolCall("toolu_1", "get_weather", "{}")
        return req(
            user("weather?"),
            Message("assistant", [*first, call]),
            Message("tool", [ToolResult("toolu_1", [Text("sunny")])]),
            tools=[WEATHER],
            reasoning_effort="medium",
        )

    assert "thinking" not in body_of(conversation([Thinking("from elsewhere")]))
    assert body_of(conversation([SIGNED]))["thinking"]["type"] == "enabled"


# --- build: structured output, caching, refusals -----------------------------------------------


def test_json_schema_response_format_becomes_output_config_format() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "count", "schema": schema, "strict": True}}
    assert body_of(req(response_format=fmt))["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    adaptive = body_of(req(response_format=fmt, reasoning_effort="low"), target("claude-opus-4-6"))
    assert adaptive["output_config"] == {"effort": "low", "format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in body_of(req(response_format={"type": "text"}))


def test_json_object_response_format_becomes_a_last_system_block() -> None:
    body = body_of(req(response_format={"type": "json_object"}, system=[Text("Be brief.")]))
    assert [b["text"] for b in body["system"]] == ["Be brief.", JSON_OBJECT_INSTRUCTION]
    assert "output_config" not in body
    assert validate_request(body) == []


def test_json_schema_without_a_schema_is_refused_with_a_fix() -> None:
    with pytest.raises(InvalidRequest) as exc:
        API.build(req(response_format={"type": "json_schema", "json_schema": {"name": "x"}}), target())
    assert exc.value.param == "response_format" and "json_schema.schema" in exc.value.message


def test_automatic_cache_breakpoints_on_last_system_block_and_last_user_block() -> None:
    request = req(
        user("old question"),
        Message("assistant", [Text("old answer")]),
        user("new question", Image("image/png", PNG_B64)),
        system=[Text("You are helpful."), Text("Project notes.")],
    )
    body = body_of(request)
    assert [b.get("cache_control") for b in body["system"]] == [None, {"type": "ephemeral"}]
    turns = body["messages"]
    assert "cache_control" not in turns[0]["content"][0] and "cache_control" not in turns[2]["content"][0]
    assert turns[2]["content"][1]["cache_control"] == {"type": "ephemeral"}


def test_cache_breakpoint_on_a_trailing_tool_result() -> None:
    request = req(
        user("q"), Message("assistant", [ToolCall("t1", "f")]), Message("tool", [ToolResult("t1", [Text("r")])])
    )
    assert body_of(request)["messages"][-1]["content"][0]["cache_control"] == {"type": "ephemeral"}


def test_client_cache_control_passes_through_and_counts_toward_four() -> None:
    mark = {"type": "ephemeral", "ttl": "1h"}
    tools = [Tool("a", cache_control=mark), Tool("b", cache_control=mark)]
    request = req(user(Text("doc", cache_control=mark), "q"), system=[Text("sys")], tools=tools)
    body = body_of(request)
    assert body["tools"][0]["cache_control"] == mark
    assert body["messages"][0]["content"][0]["cache_control"] == mark
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}  # the 4th and last breakpoint
    assert "cache_control" not in body["messages"][0]["content"][1]
    request.tools.append(Tool("c", cache_control=mark))
    body = body_of(request)
    assert "cache_control" not in body["system"][0] and "cache_control" not in body["messages"][0]["content"][1]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "audio"),
        ({"logprobs": True}, "logprobs"),
    ],
)
def test_unsupported_parameters_are_refused_naming_param_and_provider(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        API.build(req(extra=extra), target())
    assert exc.value.param == param and "Anthropic" in exc.value.message and exc.value.status == 400


def test_stream_flag_validates_as_streaming_request() -> None:
    body = body_of(req(stream=True, include_usage=True))
    assert body["stream"] is True


# --- decode_response ---------------------------------------------------------------------------


def test_fixtures_are_what_anthropic_sends() -> None:
    anthropic.types.Message.model_validate_json((FIXTURES / "tool_use_message.json").read_bytes())
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RawMessageStreamEvent)
    for path in FIXTURES.glob("*.sse"):
        parser = SSEParser()
        events = parser.feed(path.read_bytes()) + parser.close()
        assert events, path
        for ev in events:
            assert json.loads(ev.data)["type"] == ev.event
            if ev.event not in ("ping", "error"):
                adapter.validate_json(ev.data)


def test_decode_message_with_thinking_redacted_and_tool_use() -> None:
    resp = API.decode_response((FIXTURES / "tool_use_message.json").read_bytes(), target())
    assert resp.id == "msg_01Aq9w938a90dw8q" and resp.model == "claude-sonnet-4-5-20250929"
    thinking, redacted, text, call1, call2 = resp.content
    assert thinking == Thinking(
        "I should look up the weather in both cities at once.",
        signature="EuYBCkQYAiJAgCs1le6/Pol5Z4/JMomVOouGrWdhYNsH3ukzUECbB6iWrSQtsQuRHJID6lWV5Rd2ht0w0SsDU3evHUKA0cC8AkSDDkQ1NjU5NmY1MjQ3OWE",
        source=SIGNER,
    )
    assert isinstance(redacted, Thinking) and redacted.redacted and redacted.redacted.startswith("EmwKAhgB")
    assert text == Text("Checking the weather for you.")
    assert call1 == ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather", '{"city":"Paris","unit":"celsius"}')
    assert isinstance(call2, ToolCall) and json.loads(call2.arguments) == {"city": "Tōkyō", "unit": "celsius"}
    assert resp.finish_reason == "tool_calls"
    assert resp.usage == Usage(
        input_tokens=97 + 512 + 2048, output_tokens=143, cache_read_tokens=2048, cache_write_tokens=512
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    msg = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "x"}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    resp = API.decode_response(json.dumps(msg).encode(), target())
    assert resp.finish_reason == finish
    assert resp.usage == Usage(input_tokens=3, output_tokens=1)


def test_decode_garbage_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError) as exc:
        API.decode_response(b"<html>bad gateway</html>", target())
    assert exc.value.status == 502 and exc.value.message.startswith("Anthropic: ")


# --- stream decoding ---------------------------------------------------------------------------


def comparable(events: list[Event]) -> list[Any]:
    """Events with errors as (class, status, message): exceptions compare by identity."""
    return [
        (type(e.error).__name__, getattr(e.error, "status", None), str(e.error)) if isinstance(e, StreamError) else e
        for e in events
    ]


def decode(data: bytes, chunks: list[bytes] | None = None) -> list[Event]:
    decoder = API.stream_decoder(target())
    events: list[Event] = []
    for chunk in chunks if chunks is not None else [data]:
        events += decoder.feed(chunk)
    return events + decoder.close()


@pytest.mark.parametrize("name", ["text_with_pings.sse", "thinking_tool_use.sse", "error_mid_stream.sse"])
def test_stream_decoding_is_independent_of_chunk_boundaries(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    whole = comparable(decode(data))
    assert whole
    for cut in range(1, len(data)):
        assert comparable(decode(data, [data[:cut], data[cut:]])) == whole, f"split at byte {cut}"
    assert comparable(decode(data, [data[i : i + 1] for i in range(len(data))])) == whole


def test_text_stream_events() -> None:
    events = decode((FIXTURES / "text_with_pings.sse").read_bytes())
    usage = Usage(input_tokens=18 + 1204 + 3010, output_tokens=21, cache_read_tokens=3010, cache_write_tokens=1204)
    assert events == [
        TextDelta("Bonjour! "),
        TextDelta("Ça va très bien — merci 🙂"),
        TextDelta("\nEt toi?"),
        Finish("stop"),
        UsageEvent(usage),
    ]


def test_thinking_and_parallel_tool_use_stream_events() -> None:
    events = decode((FIXTURES / "thinking_tool_use.sse").read_bytes())
    src = SIGNER
    assert events[:3] == [
        ThinkingDelta("The user wants the weather in two cities.", source=src),
        ThinkingDelta(" I can call get_weather for both in parallel.", source=src),
        ThinkingDelta(signature=events[2].signature, source=src),  # type: ignore[union-attr]
    ]
    assert events[3:] == [
        TextDelta("Let me check both cities."),
        ToolCallStart(0, "toolu_01A09q90qw90lq917835lq9", "get_weather"),
        ToolCallDelta(0, '{"city": "Pa'),
        ToolCallDelta(0, 'ris"}'),
        ToolCallEnd(0),
        ToolCallStart(1, "toolu_01B7Hc2UqzQmEn8Lw4sRt6Vd", "get_weather"),
        ToolCallDelta(1, '{"city": "Tōkyō"}'),
        ToolCallEnd(1),
        Finish("tool_calls"),
        UsageEvent(Usage(input_tokens=412, output_tokens=187)),
    ]
    resp = collect(events, id="x", model="m")
    assert [type(b).__name__ for b in resp.content] == ["Thinking", "Text", "ToolCall", "ToolCall"]
    assert resp.content[0].signature.startswith("EqQBCkgIARAB")  # type: ignore[union-attr]


def test_error_event_mid_stream_becomes_stream_error() -> None:
    events = decode((FIXTURES / "error_mid_stream.sse").read_bytes())
    assert events[0] == TextDelta("Once upon a")
    assert len(events) == 2 and isinstance(events[1], StreamError)
    err = events[1].error
    assert isinstance(err, UpstreamError) and err.status == 503 and err.type == "overloaded_error"
    assert err.message == "Anthropic: Overloaded"


@pytest.mark.parametrize("inside_event", [False, True], ids=["between-events", "inside-an-event"])
def test_stream_cut_short_is_an_error_at_close(inside_event: bool) -> None:
    data = (FIXTURES / "text_with_pings.sse").read_bytes()
    cut = data[: data.index(b"event: message_delta") + (40 if inside_event else 0)]
    events = decode(cut)
    assert events[:-1] == [TextDelta("Bonjour! "), TextDelta("Ça va très bien — merci 🙂"), TextDelta("\nEt toi?")]
    assert isinstance(events[-1], StreamError) and isinstance(events[-1].error, UpstreamUnreachable)
    assert "stream ended early" in events[-1].error.message


def test_redacted_thinking_and_whole_input_on_block_start() -> None:
    lines = [
        {
            "type": "message_start",
            "message": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 7, "output_tokens": 1}},
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "redacted_thinking", "data": "xyz"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
        },
        {"type": "content_block_stop", "index": 1},
        # Newer API versions repeat the input counts in message_delta; null there means unchanged.
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 9, "input_tokens": None, "cache_read_input_tokens": None},
        },
        {"type": "message_stop"},
    ]
    data = b"".join(
        b"event: " + line["type"].encode() + b"\ndata: " + msgspec.json.encode(line) + b"\n\n" for line in lines
    )
    events = decode(data)
    assert events == [
        ThinkingDelta(redacted="xyz", source=SIGNER),
        ToolCallStart(0, "t", "f"),
        ToolCallDelta(0, '{"a":1}'),
        ToolCallEnd(0),
        Finish("tool_calls"),
        UsageEvent(Usage(input_tokens=5 + 7, output_tokens=9, cache_read_tokens=7)),
    ]


# --- errors ------------------------------------------------------------------------------------


def err_body(type_: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_1"}).encode()


def test_overloaded_529_becomes_503() -> None:
    err = API.error(target(), 529, err_body("overloaded_error", "Overloaded"), {})
    assert err.status == 503 and err.type == "overloaded_error" and err.message == "Anthropic: Overloaded"


def test_rate_limit_keeps_retry_after() -> None:
    headers = {"retry-after": "17", "anthropic-ratelimit-requests-remaining": "0"}
    err = API.error(
        target(), 429, err_body("rate_limit_error", "Number of requests has exceeded your rate limit"), headers
    )
    assert err.status == 429 and err.type == "rate_limit_error"
    assert err.headers == {"retry-after": "17"}


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_say_to_check_the_key(status: int) -> None:
    err = API.error(target(), status, err_body("authentication_error", "invalid x-api-key"), {})
    assert err.status == status and "invalid x-api-key" in err.message and "API key" in err.message


def test_non_json_error_body() -> None:
    err = API.error(target(), 502, b"upstream connect error", {})
    assert err.status == 502 and err.message == "Anthropic: upstream connect error"


# --- multi-turn round trip ---------------------------------------------------------------------


@pytest.mark.parametrize("source", ["json", "stream"])
def test_thinking_signature_and_tool_ids_survive_a_round_trip(source: str) -> None:
    if source == "json":
        resp = API.decode_response((FIXTURES / "tool_use_message.json").read_bytes(), target())
    else:
        resp = collect(decode((FIXTURES / "thinking_tool_use.sse").read_bytes()), id="x", model="m")
    calls = [b for b in resp.content if isinstance(b, ToolCall)]
    thinking = [b for b in resp.content if isinstance(b, Thinking)]
    second = req(
        user("Weather in Paris and Tokyo?"),
        Message("assistant", list(resp.content)),
        Message("tool", [ToolResult(c.id, [Text(f"sunny for {c.id}")]) for c in calls]),
        tools=[WEATHER],
        reasoning_effort="medium",
    )
    body, call = built(second)
    assistant, results = body["messages"][1]["content"], body["messages"][2]["content"]
    replayed = [b for b in assistant if b["type"] in ("thinking", "redacted_thinking")]
    assert [b.get("signature") or b.get("data") for b in replayed] == [t.signature or t.redacted for t in thinking]
    assert assistant[0]["type"] in ("thinking", "redacted_thinking")
    assert [b["id"] for b in assistant if b["type"] == "tool_use"] == [c.id for c in calls]
    assert [b["tool_use_id"] for b in results] == [c.id for c in calls]
    assert [b["input"] for b in assistant if b["type"] == "tool_use"] == [json.loads(c.arguments) for c in calls]
    assert body["thinking"]["type"] == "enabled"  # signed thinking leads the turn: thinking stays on
    assert call.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
