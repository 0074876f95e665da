"""``tracing.capture_content``: prompts and answers on the request span, in the GenAI semantic conventions'
message shape (``gen_ai.input.messages``, ``gen_ai.system_instructions``, ``gen_ai.output.messages``,
``gen_ai.response.finish_reasons``), through the real server with the real SDKs; and, off (the default),
neither the attributes nor a copy of any byte."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from proxy.config import DiscoveryConfig, ServerConfig
from proxy.outcome import CAPTURE_LIMIT, Capture, Outcome
from proxy.telemetry import content
from proxy.telemetry.config import TracingConfig
from proxy.telemetry.content import content_attributes
from tests.conftest import Proxy, models_json
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.responses_upstream import FakeResponses
from tests.test_tracing import FakeCollector, spans_of, split

SONNET = "claude-sonnet-4-6"
CONTENT_KEYS = (
    "gen_ai.input.messages",
    "gen_ai.system_instructions",
    "gen_ai.output.messages",
    "gen_ai.response.finish_reasons",
    "switchboard.content.truncated",
)
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


class Traced:
    """A running proxy with tracing on, its spans in memory and every request's Outcome as it ended."""

    def __init__(self, proxy: Proxy, memory: InMemorySpanExporter, outcomes: list[Outcome]) -> None:
        self.proxy = proxy
        self.memory = memory
        self.outcomes = outcomes

    def server_span(self, n: int = 2) -> dict[str, Any]:
        server, _ = split(spans_of(self.memory, n))
        return dict(server.attributes or {})

    def anthropic(self) -> anthropic.Anthropic:
        client = anthropic.Anthropic(
            base_url=self.proxy.url,
            api_key="client-key",
            max_retries=0,
            default_headers={"anthropic-version": "2023-06-01"},
        )
        self.proxy._clients.append(client)
        return client


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    fake = FakeCollector().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_responses() -> Iterator[FakeResponses]:
    fake = FakeResponses().start()
    yield fake
    fake.stop()


@pytest.fixture
def start_traced(
    isolated_env: Path,
    fake_openai: FakeOpenAI,
    fake_claude: FakeAnthropic,
    fake_responses: FakeResponses,
    collector: FakeCollector,
    start_proxy: Callable[..., Proxy],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[bool], Traced]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.url + "/v1/traces")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    models_json(
        isolated_env,
        {
            "local": {
                "baseUrl": fake_openai.url + "/v1",
                "api": "openai-completions",
                "apiKey": "upstream-secret",
                "models": [{"id": "m"}],
            },
            "anthropic": {"baseUrl": fake_claude.url},
            "resp": {
                "baseUrl": fake_responses.url + "/v1",
                "api": "openai-responses",
                "apiKey": "sk-resp-secret",
                "models": [{"id": "gpt-5-pro", "reasoning": True}],
            },
        },
    )

    def start(capture: bool) -> Traced:
        tracing = TracingConfig(capture_content=capture)
        proxy = start_proxy(config=ServerConfig(discovery=DiscoveryConfig(enabled=False), tracing=tracing))
        telemetry = proxy.runtime.telemetry
        assert telemetry is not None and telemetry.tracing is not None
        assert telemetry.capture_content is capture
        memory = InMemorySpanExporter()
        telemetry.tracing.provider.add_span_processor(SimpleSpanProcessor(memory))
        outcomes: list[Outcome] = []
        ended = telemetry.ended

        def keep(outcome: Outcome) -> None:
            outcomes.append(outcome)
            ended(outcome)

        telemetry.ended = keep  # the pipeline calls rt.observer.ended: this instance's
        return Traced(proxy, memory, outcomes)

    return start


def loads(attrs: dict[str, Any], key: str) -> Any:
    value = attrs[key]
    assert isinstance(value, str)
    return json.loads(value)


def text(content: str) -> dict[str, str]:
    return {"type": "text", "content": content}


def test_a_chat_answer_is_recorded_as_the_conventions_messages(start_traced: Callable[[bool], Traced]) -> None:
    t = start_traced(True)
    out = t.proxy.client().chat.completions.create(
        model="local/m",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}],
    )
    assert out.choices[0].message.content == "Echo: hi there"
    attrs = t.server_span()
    # A chat system message is part of the history: it stays in the input messages.
    assert loads(attrs, "gen_ai.input.messages") == [
        {"role": "system", "parts": [text("Be brief.")]},
        {"role": "user", "parts": [text("hi there")]},
    ]
    assert "gen_ai.system_instructions" not in attrs
    assert loads(attrs, "gen_ai.output.messages") == [
        {"role": "assistant", "parts": [text("Echo: hi there")], "finish_reason": "stop"}
    ]
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert "switchboard.content.truncated" not in attrs
    # Nothing else of the request: not the upstream key, not the client's.
    assert not any("secret" in str(v) or "unused" in str(v) for v in attrs.values())
    (outcome,) = t.outcomes
    assert outcome.capture is not None and outcome.capture.request is not None


def test_a_chat_messages_media_are_recorded_as_parts_of_their_kind(start_traced: Callable[[bool], Traced]) -> None:
    """An inline image or document is a blob (its base64 as sent), a URL a uri part, an uploaded file its id,
    audio a blob with its MIME type; a part of another type is recorded by its type alone."""
    t = start_traced(True)
    content: list[Any] = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-abc"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}},
    ]
    t.proxy.client().chat.completions.create(model="local/m", messages=[{"role": "user", "content": content}])
    assert loads(t.server_span(), "gen_ai.input.messages") == [
        {
            "role": "user",
            "parts": [
                text("look"),
                {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBOR"},
                {"type": "uri", "modality": "image", "uri": "https://example.com/cat.png"},
                {"type": "blob", "modality": "audio", "mime_type": "audio/wav", "content": "UklG"},
                {"type": "file", "modality": "document", "file_id": "file-abc"},
                {"type": "blob", "modality": "document", "mime_type": "application/pdf", "content": "JVBE"},
            ],
        }
    ]


def test_a_streamed_chat_with_tool_calls_records_the_calls_and_their_arguments(
    start_traced: Callable[[bool], Traced],
) -> None:
    t = start_traced(True)
    history: list[Any] = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "rain"},
        {"role": "user", "content": "and elsewhere?"},
    ]
    stream = t.proxy.client().chat.completions.create(model="local/m", messages=history, tools=[WEATHER], stream=True)
    got = [c.choices[0].delta.tool_calls for c in stream if c.choices and c.choices[0].delta.tool_calls]
    assert got
    attrs = t.server_span()
    assert loads(attrs, "gen_ai.input.messages") == [
        {"role": "user", "parts": [text("weather?")]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_a", "name": "get_weather", "arguments": {"city": "Oslo"}}],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_a", "response": "rain"}]},
        {"role": "user", "parts": [text("and elsewhere?")]},
    ]
    # The fake streams two calls, their arguments seven characters at a time: joined and parsed back.
    assert loads(attrs, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call_0", "name": "get_weather", "arguments": {"city": "Paris"}},
                {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Tokyo"}},
            ],
            "finish_reason": "tool_call",
        }
    ]
    assert attrs["gen_ai.response.finish_reasons"] == ("tool_call",)


def test_a_streamed_anthropic_message_records_its_system_prompt_apart(
    start_traced: Callable[[bool], Traced],
) -> None:
    t = start_traced(True)
    with t.anthropic().messages.stream(
        model=SONNET,
        max_tokens=64,
        system=[{"type": "text", "text": "You are terse."}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello fake"}]}],
    ) as stream:
        final = stream.get_final_message()
    said = "".join(b.text for b in final.content if b.type == "text")
    assert said.startswith("Echo: hello fake")
    attrs = t.server_span()
    assert loads(attrs, "gen_ai.system_instructions") == [text("You are terse.")]
    assert loads(attrs, "gen_ai.input.messages") == [{"role": "user", "parts": [text("hello fake")]}]
    assert loads(attrs, "gen_ai.output.messages") == [
        {"role": "assistant", "parts": [text(said)], "finish_reason": "stop"}
    ]
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)


@pytest.mark.parametrize("stream", [False, True])
def test_a_translated_answer_is_recorded_as_the_client_got_it(
    start_traced: Callable[[bool], Traced], fake_claude: FakeAnthropic, stream: bool
) -> None:
    """OpenAI chat in, Anthropic upstream: the span holds the chat request and the chat answer."""
    t = start_traced(True)
    client = t.proxy.client()
    messages: Any = [{"role": "system", "content": "Sys."}, {"role": "user", "content": "translate me"}]
    if stream:
        chunks = list(client.chat.completions.create(model="anthropic/" + SONNET, messages=messages, stream=True))
        said = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        out = client.chat.completions.create(model="anthropic/" + SONNET, messages=messages)
        said = out.choices[0].message.content or ""
    assert said.startswith("Echo: translate me")
    assert fake_claude.last.body["system"]  # it did go to Anthropic, translated
    attrs = t.server_span()
    assert loads(attrs, "gen_ai.input.messages") == [
        {"role": "system", "parts": [text("Sys.")]},
        {"role": "user", "parts": [text("translate me")]},
    ]
    assert loads(attrs, "gen_ai.output.messages") == [
        {"role": "assistant", "parts": [text(said)], "finish_reason": "stop"}
    ]
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)


def test_a_streamed_responses_answer_is_recorded_with_its_instructions(
    start_traced: Callable[[bool], Traced],
) -> None:
    t = start_traced(True)
    stream = t.proxy.client().responses.create(
        model="resp/gpt-5-pro", instructions="Answer in French.", input="bonjour", stream=True
    )
    said = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert said
    attrs = t.server_span()
    assert loads(attrs, "gen_ai.system_instructions") == [text("Answer in French.")]
    assert loads(attrs, "gen_ai.input.messages") == [{"role": "user", "parts": [text("bonjour")]}]
    (message,) = loads(attrs, "gen_ai.output.messages")
    assert message["finish_reason"] == "stop"
    assert [p["content"] for p in message["parts"] if p["type"] == "text"] == [said]


def test_contents_beyond_the_limit_are_cut_and_said_to_be(start_traced: Callable[[bool], Traced]) -> None:
    t = start_traced(True)
    big = "word " * (CAPTURE_LIMIT // 4)
    chunks = list(
        t.proxy.client().chat.completions.create(
            model="local/m", messages=[{"role": "user", "content": big}], stream=True
        )
    )
    assert sum(len(c.choices[0].delta.content or "") for c in chunks if c.choices) > CAPTURE_LIMIT
    attrs = t.server_span()
    assert attrs["switchboard.content.truncated"] == ("input", "output")
    # A request body over the limit is not copied at all; a stream keeps its first events.
    assert "gen_ai.input.messages" not in attrs
    (message,) = loads(attrs, "gen_ai.output.messages")
    (part,) = message["parts"]
    assert part["content"].startswith("Echo: word word") and len(part["content"]) < CAPTURE_LIMIT
    assert message["finish_reason"] == "unknown"
    assert "gen_ai.response.finish_reasons" not in attrs
    (outcome,) = t.outcomes
    assert outcome.capture is not None and outcome.capture.request is None
    assert len(outcome.capture.answer) == CAPTURE_LIMIT


def test_off_by_default_no_content_and_no_copy(start_traced: Callable[[bool], Traced]) -> None:
    t = start_traced(False)
    client = t.proxy.client()
    client.chat.completions.create(model="local/m", messages=[{"role": "user", "content": "private"}])
    assert list(
        client.chat.completions.create(model="local/m", messages=[{"role": "user", "content": "private"}], stream=True)
    )
    with t.anthropic().messages.stream(
        model=SONNET, max_tokens=16, system="secret system", messages=[{"role": "user", "content": "private"}]
    ) as stream:
        stream.get_final_message()
    spans: list[ReadableSpan] = spans_of(t.memory, 6)
    assert len(spans) == 6
    for span in spans:
        attrs = dict(span.attributes or {})
        assert not set(CONTENT_KEYS) & set(attrs)
        assert not any("private" in str(v) or "Echo" in str(v) for v in attrs.values())
    assert len(t.outcomes) == 3
    assert all(o.capture is None for o in t.outcomes)


#: Per surface: a request, a stream's events and a whole answer, each well formed; the test breaks them.
_TOOL = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
_RESPONSE = {
    "status": "incomplete",
    "incomplete_details": {"reason": "max_output_tokens"},
    "output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "r"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
    ],
}
TEMPLATES: dict[str, tuple[Any, list[Any], Any]] = {
    "/v1/chat/completions": (
        {
            "messages": [
                {"role": "system", "content": "s"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "t"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                        {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}},
                        {"type": "file", "file": {"file_id": "f1"}},
                    ],
                },
                {"role": "assistant", "content": None, "reasoning_content": "hm", "tool_calls": [_TOOL]},
                {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "r"}]},
            ]
        },
        [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "a", "reasoning_content": "b"}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            {"error": {"message": "cut"}},
        ],
        {"choices": [{"index": 0, "message": {"content": "a", "tool_calls": [_TOOL]}, "finish_reason": "stop"}]},
    ),
    "/v1/messages": (
        {
            "system": [{"type": "text", "text": "s"}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "t"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}},
                        {"type": "document", "source": {"type": "url", "url": "https://x/d.pdf"}},
                        {"type": "tool_result", "tool_use_id": "x", "content": [{"type": "text", "text": "r"}]},
                    ],
                },
                {"role": "assistant", "content": [{"type": "tool_use", "id": "x", "name": "f", "input": {}}]},
            ],
        },
        [
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "h"}},
            {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "a"}},
            {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "x", "name": "f"}},
            {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}},
            {"type": "error", "error": {"type": "overloaded_error"}},
        ],
        {
            "content": [{"type": "text", "text": "a"}, {"type": "tool_use", "id": "x", "name": "f"}],
            "stop_reason": "end_turn",
        },
    ),
    "/v1/responses": (
        {
            "instructions": "i",
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "t"}, {"type": "input_image", "image_url": "u"}],
                },
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "o"},
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "r"}]},
            ],
        },
        [
            {"type": "response.output_item.added", "output_index": 0, "item": {"type": "function_call", "name": "f"}},
            {"type": "response.function_call_arguments.delta", "output_index": 0, "delta": "{}"},
            {"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": "a"},
            {"type": "response.reasoning_summary_text.delta", "output_index": 2, "delta": "r"},
            {"type": "response.completed", "response": _RESPONSE},
        ],
        _RESPONSE,
    ),
    "/v1/completions": (
        {"prompt": ["a", "b"]},
        [{"choices": [{"index": 1, "text": "x", "finish_reason": "length"}]}],
        {"choices": [{"index": 0, "text": "x", "finish_reason": "stop"}]},
    ),
    "/v1/embeddings": ({"input": ["a", "b"]}, [], {"data": [{"embedding": [0.1]}]}),
}
#: The keys the readers look at, so that generated values reach past the first type check.
_KEY_WORDS = (
    "messages input system instructions prompt role content type text choices delta tool_calls function "
    "arguments index output output_index content_index item response finish_reason content_block partial_json "
    "image_url url source summary status stop_reason incomplete_details reason error"
)
KEYS = st.sampled_from(_KEY_WORDS.split())
#: The values they branch on (types, roles, reasons), likewise.
_VALUE_WORDS = (
    "text tool_use server_tool_use thinking tool_result image document base64 url file message function_call "
    "function_call_output reasoning image_url input_audio input_image input_text output_text refusal assistant "
    "tool user system completed incomplete failed stop tool_calls end_turn max_tokens content_block_start "
    "content_block_delta message_delta text_delta thinking_delta input_json_delta response.completed "
    "response.incomplete response.output_item.added response.output_text.delta "
    "response.function_call_arguments.delta response.reasoning_summary_text.delta data:image/png;base64,AA "
    '{"a":1} [DONE]'
)
VALUES = st.sampled_from(_VALUE_WORDS.split())
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | VALUES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=5), inner, max_size=5),
    max_leaves=20,
)


def _paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*at, i))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(copy[path[0]], path[1:], new)
    return copy


def broken(data: st.DataObject, value: Any) -> Any:
    """``value`` with up to three of its parts (any depth) replaced by generated JSON."""
    for _ in range(data.draw(st.integers(0, 3))):
        path = data.draw(st.sampled_from(list(_paths(value))))
        value = _replaced(value, path, data.draw(JSON))
    return value


@settings(max_examples=400, deadline=None)
@given(surface=st.sampled_from(sorted(TEMPLATES)), stream=st.booleans(), cut=st.integers(0, 400), data=st.data())
def test_malformed_content_never_raises(surface: str, stream: bool, cut: int, data: st.DataObject) -> None:
    request, events, answer = TEMPLATES[surface]
    capture = Capture()
    capture.keep_request(msgspec.json.encode(broken(data, request)))
    if stream:
        sse = b"".join(b"data: " + msgspec.json.encode(broken(data, e)) + b"\n\n" for e in events)
        capture.keep_answer(sse[: len(sse) - cut] if cut < len(sse) else sse)  # a stream cut anywhere
    else:
        capture.keep_answer(msgspec.json.encode(broken(data, answer)))
    # The readers themselves (content_attributes would swallow their exceptions): none may raise.
    attrs: dict[str, Any] = {}
    content._input(attrs, surface, capture)
    content._output(attrs, surface, stream, capture)
    assert attrs == content_attributes(surface, stream, capture)
    for key in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"):
        if key in attrs:
            assert isinstance(json.loads(attrs[key]), list)
