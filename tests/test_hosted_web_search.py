"""Hosted web search (``Request.web_search``): Codex sends ``{"type": "web_search"}`` on every request.

Through the live proxy with the ``openai`` SDK's Responses client (and raw ``/v1/messages``): an Anthropic
upstream gets its ``web_search_20250305`` server tool, a Gemini upstream ``google_search`` (only without
function tools: the API refuses the two together), and the answer comes back. Anthropic's answer with
``server_tool_use`` / ``web_search_tool_result`` blocks (a fake subclass produces one) and a recorded-shape
SSE stream decoded split at every byte must yield only the text (and usage), never a tool call.

The fakes as they are: FakeAnthropic validates the request with the SDK's types (which know the server
tool) but then "calls" every offered tool, server tools too, as client ``tool_use``; FakeGemini refuses
``google_search`` as an unknown field. Both are adapted here only (a subclass, a wrapped validator).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from providers.canonical import Event, Finish, TextDelta, Usage, UsageEvent
from providers.sse import TextRun
from providers.wire import anthropic_stream
from tests.conftest import Proxy, models_json
from tests.fakes import gemini_upstream
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini

GEMINI_KEY = "gm-test-key"
CLAUDE = "anthropic/claude-sonnet-4-5"
#: An Anthropic-speaking server that is not Anthropic: it gets no hosted search (it may refuse it).
OTHER = "kimi-like/claude-sonnet-4-5"
GEMINI = "google/gemini-3-pro-preview"
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CITED = "Switchboard 2.0 shipped on Monday."
_CITATION = {
    "type": "web_search_result_location",
    "url": "https://example.com/news",
    "title": "News",
    "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNm",
    "cited_text": "Switchboard 2.0 shipped on Monday.",
}


class SearchingClaude(FakeAnthropic):
    """Offered only server tools, it answers as Anthropic does after a search: the search blocks, then
    cited text (streamed by the fake's own framing: the server blocks open whole, the text as deltas)."""

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        tools = body.get("tools") or []
        if not tools or any("input_schema" in t for t in tools):
            return super()._answer(body)
        message = super()._answer({**body, "tools": []})
        search = {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "news"}}
        result = {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_01",
            "content": [
                {"type": "web_search_result", "url": _CITATION["url"], "title": "News", "encrypted_content": "x"}
            ],
        }
        message["content"] = [search, result, {"type": "text", "text": CITED, "citations": [_CITATION]}]
        message["usage"]["server_tool_use"] = {"web_search_requests": 1}
        return message


@pytest.fixture
def claude(isolated_env: Path) -> Iterator[SearchingClaude]:
    fake = SearchingClaude().start()
    models = [{"id": "claude-sonnet-4-5", "maxTokens": 64000, "input": ["text", "image"]}]
    provider = {"baseUrl": fake.url, "api": "anthropic-messages", "apiKey": "sk-ant-test", "models": models}
    models_json(isolated_env, {"anthropic": provider, "kimi-like": provider})
    yield fake
    fake.stop()


class SearchingGemini(FakeGemini):
    """Offered only ``google_search``, it answers as without tools (the fake would call a function it was
    not offered)."""

    def _answer(self, body: dict[str, Any], model: str) -> list[dict[str, Any]]:
        if any("functionDeclarations" in t for t in body.get("tools") or ()):
            return super()._answer(body, model)
        return super()._answer({k: v for k, v in body.items() if k != "tools"}, model)


@pytest.fixture
def gemini(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGemini]:
    """FakeGemini, taught ``google_search`` as the real API takes it: alone, never next to functions."""
    validate = gemini_upstream._validate

    def with_search(body: Any, model: str) -> None:
        tools = body.get("tools") if isinstance(body, dict) else None
        if tools and any("google_search" in t for t in tools):
            if any(t != {"google_search": {}} for t in tools) or "toolConfig" in body:
                raise gemini_upstream.InvalidArgument("Tool use with function calling is unsupported")
            body = {k: v for k, v in body.items() if k != "tools"}
        validate(body, model)

    monkeypatch.setattr(gemini_upstream, "_validate", with_search)
    fake = SearchingGemini(api_key=GEMINI_KEY).start()
    models_json(isolated_env, {"google": {"baseUrl": fake.url + "/v1beta"}})
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    yield fake
    fake.stop()


def _respond(proxy: Any, model: str, tools: list[dict[str, Any]], stream: bool, **kw: Any) -> Any:
    """The Responses answer (the completed one when streamed) and the output item types streamed."""
    client = proxy.client()
    if not stream:
        answer = client.responses.create(model=model, input="What is new?", tools=tools, **kw)
        return answer, [item.type for item in answer.output]
    completed, added = None, []
    for event in client.responses.create(model=model, input="What is new?", tools=tools, stream=True, **kw):
        if event.type == "response.output_item.added":
            added.append(event.item.type)
        elif event.type == "response.completed":
            completed = event.response
    assert completed is not None
    return completed, added


# --- Anthropic ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", ["web_search", "web_search_preview"])
def test_responses_web_search_reaches_anthropic(
    claude: SearchingClaude, start_proxy: Any, kind: str, stream: bool
) -> None:
    answer, added = _respond(start_proxy(), CLAUDE, [{"type": kind}], stream)
    body = claude.last.body
    assert body["tools"] == [WEB_SEARCH]
    assert "tool_choice" not in body
    # The search blocks are Anthropic's own: only the cited text reaches the client, no call to run.
    assert answer.status == "completed"
    assert answer.output_text == CITED
    assert [item.type for item in answer.output] == ["message"]
    assert added == ["message"]


def test_anthropic_search_beside_functions_and_forced_choice(claude: SearchingClaude, start_proxy: Any) -> None:
    proxy = start_proxy()
    answer, _ = _respond(proxy, CLAUDE, [WEATHER, {"type": "web_search"}], False)
    assert [t.get("type", "custom") for t in claude.last.body["tools"]] == ["custom", WEB_SEARCH["type"]]
    assert "get_weather" in {item.name for item in answer.output if item.type == "function_call"}
    # "required" was about the client's functions: with search alone it must not force a search.
    answer, _ = _respond(proxy, CLAUDE, [{"type": "web_search"}], False, tool_choice="required")
    assert claude.last.body["tools"] == [WEB_SEARCH] and "tool_choice" not in claude.last.body
    assert answer.output_text == CITED


# --- Gemini ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_responses_web_search_reaches_gemini(gemini: FakeGemini, start_proxy: Any, stream: bool) -> None:
    answer, _ = _respond(start_proxy(), GEMINI, [{"type": "web_search"}], stream)
    body = gemini.last.body
    assert body["tools"] == [{"google_search": {}}]
    assert "toolConfig" not in body
    assert answer.status == "completed" and answer.output_text.startswith("Echo: What is new?")


def test_gemini_drops_search_beside_functions(gemini: FakeGemini, start_proxy: Any) -> None:
    answer, _ = _respond(start_proxy(), GEMINI, [WEATHER, {"type": "web_search_preview"}], False)
    assert [list(t) for t in gemini.last.body["tools"]] == [["functionDeclarations"]]
    assert answer.status == "completed"


def test_messages_server_tool_reaches_gemini(gemini: FakeGemini, start_proxy: Any) -> None:
    body = {
        "model": GEMINI,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "What is new?"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
    }
    resp = start_proxy().http().post("/v1/messages", json=body)
    assert resp.status_code == 200, resp.text
    assert gemini.last.body["tools"] == [{"google_search": {}}]
    assert [b["type"] for b in resp.json()["content"]] == ["text"]


# --- the Anthropic decoder on a search answer ------------------------------------------------------


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def _start(index: int, block: dict[str, Any]) -> bytes:
    return _sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def _stop(index: int) -> bytes:
    return _sse("content_block_stop", {"type": "content_block_stop", "index": index})


#: Anthropic's documented event shapes for a streamed web search: text, the server tool call (its input as
#: input_json_delta), the search result block, cited text (citations_delta, then its text).
SEARCH_STREAM = b"".join(
    [
        _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_01",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 2679, "cache_read_input_tokens": 0, "output_tokens": 3},
                },
            },
        ),
        _start(0, {"type": "text", "text": ""}),
        _delta(0, {"type": "text_delta", "text": "I'll search for that. "}),
        _delta(0, {"type": "text_delta", "text": "One moment."}),
        _stop(0),
        _start(
            1, {"type": "server_tool_use", "id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB", "name": "web_search", "input": {}}
        ),
        _delta(1, {"type": "input_json_delta", "partial_json": ""}),
        _delta(1, {"type": "input_json_delta", "partial_json": '{"query'}),
        _delta(1, {"type": "input_json_delta", "partial_json": '": "switchboard release"}'}),
        _stop(1),
        _sse("ping", {"type": "ping"}),
        _start(
            2,
            {
                "type": "web_search_tool_result",
                "tool_use_id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
                "content": [
                    {
                        "type": "web_search_result",
                        "title": "News",
                        "url": "https://example.com/news",
                        "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3Y",
                        "page_age": "November 26, 2026",
                    }
                ],
            },
        ),
        _stop(2),
        _start(3, {"type": "text", "text": "", "citations": []}),
        _delta(3, {"type": "citations_delta", "citation": _CITATION}),
        _delta(3, {"type": "text_delta", "text": "Switchboard 2.0 "}),
        _delta(3, {"type": "text_delta", "text": "shipped on Monday — “quoted”."}),
        _stop(3),
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"input_tokens": 10682, "output_tokens": 510, "server_tool_use": {"web_search_requests": 1}},
            },
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ]
)
SEARCH_TEXT = "I'll search for that. One moment.Switchboard 2.0 shipped on Monday — “quoted”."


def _text_and_rest(events: list[Any]) -> tuple[str, list[Any]]:
    text, rest = "", []
    for ev in events:
        if isinstance(ev, TextDelta):
            text += ev.text
        elif isinstance(ev, TextRun):
            text += "".join(msgspec.json.decode(b'"' + t + b'"') for t in ev.texts)
        else:
            rest.append(ev)
    return text, rest


@pytest.mark.parametrize("spliced", [False, True])
def test_search_stream_decodes_to_text_only_at_every_split(spliced: bool) -> None:
    expected: list[Event] = [Finish("stop"), UsageEvent(Usage(input_tokens=10682, output_tokens=510))]
    for cut in range(len(SEARCH_STREAM) + 1):
        decoder = anthropic_stream.MessageStreamDecoder("anthropic")
        feed = decoder.feed_spliced if spliced else decoder.feed
        events: list[Any] = [*feed(SEARCH_STREAM[:cut]), *feed(SEARCH_STREAM[cut:]), *decoder.close()]
        text, rest = _text_and_rest(events)
        assert (text, rest) == (SEARCH_TEXT, expected), f"split at byte {cut}"


def test_search_message_decodes_to_text_only() -> None:
    message = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "news"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": []},
            {"type": "text", "text": CITED, "citations": [_CITATION]},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 100, "output_tokens": 20, "server_tool_use": {"web_search_requests": 1}},
    }
    answer = anthropic_stream.decode_message(msgspec.json.encode(message), "anthropic")
    assert [type(b).__name__ for b in answer.content] == ["Text"]
    assert answer.finish_reason == "stop"


def test_anthropic_speaking_servers_other_than_anthropic_get_no_hosted_search(
    claude: SearchingClaude, start_proxy: Callable[..., Proxy]
) -> None:
    client = start_proxy().client()
    out = client.responses.create(model=OTHER, input="hi", tools=[{"type": "web_search"}], store=False)
    assert out.status == "completed"
    assert "tools" not in claude.requests[-1].body
