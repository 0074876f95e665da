"""The OpenAI chat surface of the translated path: request decoding and chunk/response encoding.

Encoded output is validated with the openai SDK's own response types."""

from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

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
from proxy.surfaces.openai_chat_in import decode_request
from proxy.surfaces.openai_chat_out import ChunkEncoder, encode_response

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def _body(**kw):
    return {"model": "p/m", "messages": [{"role": "user", "content": "hi"}], **kw}


def test_decode_full_conversation() -> None:
    body = {
        "model": "p/m",
        "messages": [
            {"role": "system", "content": "sys one"},
            {"role": "developer", "content": [{"type": "text", "text": "dev two"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "calling",
                "reasoning_content": "hmm",
                "thinking_blocks": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig1", "provider": "anthropic-messages"}
                ],
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a":1}'},
                        "thought_signature": "ts1",
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "result one"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "max_completion_tokens": 99,
        "temperature": 0.2,
        "stop": "END",
        "reasoning_effort": "low",
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 1,
        "vendor_x": 5,
        "thinking": {"type": "enabled", "budget_tokens": 3000},
        "prompt_cache_key": "sess-1",
    }
    req = decode_request(body, "m", "Prov")
    assert [t.text for t in req.system] == ["sys one", "dev two"]
    assert [m.role for m in req.messages] == ["user", "assistant", "tool"]
    user = req.messages[0].content
    assert user[0] == Text("look", {"type": "ephemeral"})
    assert user[1] == Image(media_type="image/png", data=PNG, detail="low")
    assert user[2] == Image(url="https://example.com/cat.jpg")
    assistant = req.messages[1].content
    assert assistant[0] == Thinking("hmm", signature="sig1", source="anthropic-messages")
    assert assistant[1] == Text("calling")
    assert assistant[2] == ToolCall("c1", "f", '{"a":1}', "ts1")
    assert req.messages[2].content == [ToolResult("c1", [Text("result one")], name="f")]
    assert req.tools[0].strict is True and req.tool_choice is not None and req.tool_choice.name == "f"
    assert (req.max_tokens, req.temperature, req.stop, req.reasoning_effort) == (99, 0.2, ["END"], "low")
    assert req.stream and req.include_usage and req.thinking_budget == 3000 and req.session_id == "sess-1"
    assert req.extra == {"vendor_x": 5}  # seed dropped: it tunes sampling, it does not change meaning


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_body(n=2), "n"),
        (_body(logprobs=True), "logprobs"),
        (_body(audio={"voice": "x"}), "audio"),
        (
            _body(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
            "messages[0].content[0]",
        ),
        (_body(messages=[{"role": "function", "content": "x"}]), "messages[0].role"),
        (_body(messages=[{"role": "tool", "content": "x"}]), "messages[0]"),
        (
            _body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]),
            "messages[0].content[0]",
        ),
        (_body(tools=[{"type": "code_interpreter"}]), "tools[0].type"),
        (_body(tool_choice="sometimes"), "tool_choice"),
        (_body(stop=[1]), "stop[0]"),
    ],
)
def test_decode_rejects_what_cannot_be_honoured(body, param) -> None:
    with pytest.raises(InvalidRequest) as err:
        decode_request(body, "m", "Prov")
    assert err.value.param == param and err.value.status == 400


def test_n_equals_one_is_fine() -> None:
    assert decode_request(_body(n=1), "m", "Prov").messages[0].content == [Text("hi")]


def test_encode_response_validates_as_chat_completion() -> None:
    resp = Response(
        id="msg_1",
        model="claude-x",
        content=[
            Thinking("let me think", signature="sig", source="anthropic-messages"),
            Text("Hello"),
            ToolCall("t1", "get", '{"q":1}'),
            ToolCall("t2", "get", '{"q":2}', signature="gsig"),
        ],
        finish_reason="tool_calls",
        usage=Usage(input_tokens=100, output_tokens=20, cache_read_tokens=80, cache_write_tokens=5, reasoning_tokens=7),
    )
    out = encode_response(resp, "claude-x")
    cc = ChatCompletion.model_validate(out)
    msg = cc.choices[0].message
    assert msg.content == "Hello" and cc.choices[0].finish_reason == "tool_calls"
    assert [c.id for c in msg.tool_calls or []] == ["t1", "t2"]
    assert out["choices"][0]["message"]["tool_calls"][1]["thought_signature"] == "gsig"
    extra = msg.model_extra or {}
    assert extra["reasoning_content"] == "let me think"
    assert extra["thinking_blocks"] == [
        {"type": "thinking", "thinking": "let me think", "signature": "sig", "provider": "anthropic-messages"}
    ]
    assert cc.usage is not None and cc.usage.prompt_tokens_details is not None
    assert cc.usage.prompt_tokens_details.cached_tokens == 80 and cc.usage.total_tokens == 120


def test_encoded_message_decodes_back_to_the_same_blocks() -> None:
    """What a client sends back (the message as returned) reproduces the canonical blocks."""
    resp = Response(
        id="r",
        model="m",
        content=[
            Thinking("t", redacted="enc==", source="openai-responses", item_id="rs_1"),
            Text("x"),
            ToolCall("c9", "f", '{"z":true}', "sig9"),
        ],
        finish_reason="tool_calls",
    )
    message = ChatCompletion.model_validate(encode_response(resp, "m")).choices[0].message
    replay = message.model_dump(exclude_none=True)
    req = decode_request({"model": "p/m", "messages": [{"role": "user", "content": "q"}, replay]}, "m", "P")
    assert req.messages[1].content == resp.content


def _parse(sse: bytes) -> list[str]:
    return [block.removeprefix(b"data: ").decode() for block in sse.split(b"\n\n") if block]


def test_chunk_stream_shape() -> None:
    enc = ChunkEncoder("m", include_usage=True)
    out = enc.encode([ThinkingDelta("plan"), ThinkingDelta(signature="S", source="anthropic-messages")])
    out += enc.encode([TextDelta("Hel"), TextDelta("lo")])
    out += enc.encode(
        [
            ToolCallStart(0, "c0", "f"),
            ToolCallDelta(0, '{"a"'),
            ToolCallDelta(0, ":1}"),
            ToolCallEnd(0),
            ToolCallStart(1, "c1", "g", "gs"),
            ToolCallDelta(1, "{}"),
            ToolCallEnd(1),
        ]
    )
    out += enc.finish([Finish("tool_calls"), UsageEvent(Usage(10, 5, 2))])
    events = _parse(out)
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(e)) for e in events[:-1]]
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    raw = [json.loads(e) for e in events[:-1]]
    assert raw[0]["choices"][0]["delta"]["reasoning_content"] == "plan"
    assert raw[1]["choices"][0]["delta"]["thinking_blocks"][0] == {
        "type": "thinking",
        "thinking": "plan",
        "signature": "S",
        "provider": "anthropic-messages",
    }
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello"
    starts = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or [] if tc.id]
    assert [(t.index, t.id, t.function and t.function.name) for t in starts] == [(0, "c0", "f"), (1, "c1", "g")]
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in c.choices[0].delta.tool_calls or []
        if tc.index == 0 and tc.function
    )
    assert json.loads(args) == {"a": 1}
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 10
    assert chunks.index(finals[0]) == len(chunks) - 2


def test_chunk_stream_without_usage_and_empty_answer() -> None:
    enc = ChunkEncoder("m", include_usage=False)
    events = _parse(enc.finish([Finish("length")]))
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(e)) for e in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)


def test_stream_error_event_ends_stream() -> None:
    enc = ChunkEncoder("m", include_usage=True)
    out = enc.encode([TextDelta("a"), StreamError(UpstreamError("boom", status=503, code="overloaded"))])
    events = _parse(out)
    assert json.loads(events[-2])["error"]["message"] == "boom" and events[-1] == "[DONE]"
    assert enc.finish([]) == b""  # nothing after the error
