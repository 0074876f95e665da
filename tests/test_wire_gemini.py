"""Wire API ``google-generative-ai``: canonical Request → GenerateContentRequest, and Gemini's answers
(whole or streamed, from committed fixture files split at every byte) → canonical events."""

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
    Response,
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
from providers.wire.base import WireTarget
from providers.wire.google_generative_ai import API, GoogleGenerativeAI, model_url
from providers.wire.google_schema import clean_schema

#: Who issued thought signatures that came from the ``google`` provider (providers/wire/replay.py).
SIGNER = "google-generative-ai:google"
FIXTURES = Path(__file__).parent / "fixtures" / "gemini"
BASE = "https://generativelanguage.googleapis.com/v1beta"
SIG = "CiQBcsjafE3Zt8d2/J+ZcQ3WOoD0bMqd2I3m1k7mYH9rV0O3pKIKYgFyyNp8RnvN1tL4bA=="
WEATHER = Tool(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
    strict=True,
)


def target(model_id: str = "gemini-2.5-flash", model: Model | None = None) -> WireTarget:
    return WireTarget("google", "Google Gemini", BASE, model_id, model, DEFAULT_COMPAT, {"x-goog-api-key": "k"})


def user(*blocks: Any) -> Message:
    return Message("user", [Text(b) if isinstance(b, str) else b for b in blocks])


def body_of(req: Request, tgt: WireTarget | None = None) -> dict[str, Any]:
    call = API.build(req, tgt or target())
    assert call.headers == {}  # authentication stays with the credential headers
    return json.loads(call.body)


# --- URLs ---------------------------------------------------------------------------------------


def test_urls_for_gemini_and_a_vertex_style_resource_path() -> None:
    req = Request("gemini-2.5-flash", [user("hi")])
    assert API.build(req, target()).url == f"{BASE}/models/gemini-2.5-flash:generateContent"
    req.stream = True
    assert API.build(req, target()).url == f"{BASE}/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert API.build(req, target("tunedModels/mine")).url.startswith(f"{BASE}/tunedModels/mine:")
    vertex = "projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-pro"
    assert model_url("https://us-central1-aiplatform.googleapis.com/v1/", vertex, False) == (
        f"https://us-central1-aiplatform.googleapis.com/v1/{vertex}:generateContent"
    )
    custom = GoogleGenerativeAI("google-vertex", model_path=lambda t: f"publishers/google/models/{t.model_id}")
    assert custom.build(req, target()).url.endswith(
        "/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    )


# --- request: contents --------------------------------------------------------------------------


def test_system_roles_and_same_role_turns_are_merged() -> None:
    req = Request(
        "m",
        [user("one"), user("two"), Message("assistant", [Text("three")]), user(Text(""), "four")],
        system=[Text("Be brief."), Text("Answer in French.")],
    )
    body = body_of(req)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "three"}]},
        {"role": "user", "parts": [{"text": "four"}]},  # empty text parts are not sent
    ]
    assert "tools" not in body and "generationConfig" not in body


def test_tool_results_become_function_responses_matched_by_name() -> None:
    history = [
        user("weather?"),
        Message(
            "assistant", [ToolCall("call_r1_0", "get_weather", '{"city":"Paris"}'), ToolCall("fc-77", "get_time", "{}")]
        ),
        Message("tool", [ToolResult("call_r1_0", [Text("18C"), Text("sunny")])]),  # name found in history
        Message("tool", [ToolResult("fc-77", [Text("boom")], is_error=True, name="get_time")]),
        user("thanks"),
    ]
    contents = body_of(Request("m", history))["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},  # our generated id stays here
            {"functionCall": {"name": "get_time", "args": {}, "id": "fc-77"}},  # Gemini's own id goes back
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": "18C\nsunny"}}},
            {"functionResponse": {"name": "get_time", "response": {"error": "boom"}, "id": "fc-77"}},
            {"text": "thanks"},
        ],
    }


def test_a_tool_result_without_a_known_function_is_a_clear_400() -> None:
    req = Request("m", [user("x"), Message("tool", [ToolResult("call_zzz", [Text("1")])])])
    with pytest.raises(InvalidRequest, match=r"call_zzz.*function name") as info:
        API.build(req, target())
    assert info.value.status == 400 and info.value.param == "messages[1]"


def test_images_inline_data_url_remote_and_in_tool_results() -> None:
    req = Request(
        "m",
        [
            user(
                "look",
                Image(media_type="image/jpeg", data="AAAA"),
                Image(url="data:image/webp;base64,BBBB"),
                Image(url="https://example.com/cat.png", media_type="image/png"),
                Image(url="gs://bucket/dog.jpg"),
            ),
            Message("assistant", [ToolCall("call_a_0", "shot", "{}"), ToolCall("call_a_1", "shot", "{}")]),
            Message(
                "tool",
                [ToolResult("call_a_0", [Image(media_type="image/png", data="CCCC"), Text("done")], name="shot")],
            ),
            Message("tool", [ToolResult("call_a_1", [Text("again")], name="shot")]),
        ],
    )
    contents = body_of(req)["contents"]
    assert contents[0]["parts"] == [
        {"text": "look"},
        {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}},
        {"inlineData": {"mimeType": "image/webp", "data": "BBBB"}},
        {"fileData": {"fileUri": "https://example.com/cat.png", "mimeType": "image/png"}},
        {"fileData": {"fileUri": "gs://bucket/dog.jpg"}},
    ]
    assert contents[2]["parts"] == [  # all function responses first, then what the tools showed
        {"functionResponse": {"name": "shot", "response": {"output": "done"}}},
        {"functionResponse": {"name": "shot", "response": {"output": "again"}}},
        {"inlineData": {"mimeType": "image/png", "data": "CCCC"}},
    ]
    with pytest.raises(InvalidRequest, match="ftp://") as info:
        API.build(Request("m", [user(Image(url="ftp://x/y.png"))]), target())
    assert info.value.param == "messages[0].content"


def test_unparsable_replayed_arguments_are_a_clear_400() -> None:
    req = Request("m", [user("x"), Message("assistant", [ToolCall("c1", "f", "{not json")])])
    with pytest.raises(InvalidRequest, match="not a JSON object"):
        API.build(req, target())


# --- request: replay of thinking and signatures -------------------------------------------------


def test_replay_keeps_signatures_and_drops_foreign_or_unsigned_thinking() -> None:
    assistant = Message(
        "assistant",
        [
            Thinking("anthropic thoughts", signature="EqQB", source="anthropic-messages"),
            Thinking("summary without signature", source=SIGNER),
            Thinking("**Plan**", signature="T1", source=SIGNER),
            Text("Checking."),
            Thinking("", signature="T2", source=SIGNER),  # came on the text part
            ToolCall("call_r_0", "get_weather", '{"city":"Paris"}', signature=SIG),
            ToolCall("call_r_1", "get_weather", '{"city":"Tokyo"}'),
        ],
    )
    parts = body_of(Request("m", [user("q"), assistant]))["contents"][1]["parts"]
    assert parts == [
        {"thought": True, "text": "**Plan**", "thoughtSignature": "T1"},
        {"text": "Checking.", "thoughtSignature": "T2"},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG},
        {"functionCall": {"name": "get_weather", "args": {"city": "Tokyo"}}},
    ]
    # Another API's name (e.g. Vertex) does not accept this API's signatures.
    vertex = GoogleGenerativeAI("google-vertex")
    replayed = json.loads(vertex.build(Request("m", [user("q"), assistant]), target()).body)
    assert [p for p in replayed["contents"][1]["parts"] if "thought" in p] == []


def test_a_lone_text_signature_is_replayed_on_an_empty_text_part() -> None:
    msg = Message("assistant", [Thinking("", signature="T9", source=SIGNER)])
    assert body_of(Request("m", [user("q"), msg]))["contents"][1]["parts"] == [{"text": "", "thoughtSignature": "T9"}]


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("gemini-3-pro-preview", "skip_thought_signature_validator"),
        ("gemini-flash-latest", "skip_thought_signature_validator"),
        ("gemini-2.5-pro", None),
    ],
)
def test_unsigned_calls_get_the_documented_placeholder_on_gemini_3(model_id: str, expected: str | None) -> None:
    calls = Message("assistant", [ToolCall("call_x_0", "f", "{}"), ToolCall("call_x_1", "g", "{}")])
    parts = body_of(Request(model_id, [user("q"), calls]), target(model_id))["contents"][1]["parts"]
    assert parts[0].get("thoughtSignature") == expected
    assert "thoughtSignature" not in parts[1]


# --- request: tools, schema, generation config --------------------------------------------------


def test_tools_and_tool_choice() -> None:
    noargs = Tool("ping", None, {"type": "object", "properties": {}})
    req = Request("m", [user("q")], tools=[WEATHER, noargs])
    body = body_of(req)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]},
                },
                {"name": "ping"},  # Gemini refuses an OBJECT without properties
            ]
        }
    ]
    assert "toolConfig" not in body
    for choice, config in [
        (ToolChoice("auto"), {"mode": "AUTO"}),
        (ToolChoice("none"), {"mode": "NONE"}),
        (ToolChoice("required"), {"mode": "ANY"}),
        (ToolChoice("tool", "get_weather"), {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ]:
        req.tool_choice = choice
        assert body_of(req)["toolConfig"] == {"functionCallingConfig": config}


SCHEMA_CASES = [
    pytest.param(
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": False,
            "strict": True,
            "properties": {"a": {"type": "string", "default": "x", "examples": ["y"]}},
        },
        {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
        id="drops-unsupported-keywords",
    ),
    pytest.param(
        {"type": ["string", "null"], "description": "maybe"},
        {"type": "STRING", "nullable": True, "description": "maybe"},
        id="type-array-with-null",
    ),
    pytest.param(
        {"type": ["string", "integer"]},
        {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]},
        id="type-array-of-two",
    ),
    pytest.param(
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "title": "N"},
        {"type": "INTEGER", "minimum": 1, "nullable": True, "title": "N"},
        id="optional-anyof-flattened",
    ),
    pytest.param(
        {"oneOf": [{"type": "string"}, {"type": "boolean"}]},
        {"anyOf": [{"type": "STRING"}, {"type": "BOOLEAN"}]},
        id="oneof-to-anyof",
    ),
    pytest.param({"const": "fixed"}, {"type": "STRING", "enum": ["fixed"]}, id="const-to-enum"),
    pytest.param({"enum": ["a", None]}, {"type": "STRING", "enum": ["a"], "nullable": True}, id="enum-with-null"),
    pytest.param(
        {"type": "integer", "enum": [1, 2], "description": "Level"},
        {"type": "INTEGER", "description": "Level (one of: 1, 2)"},
        id="numeric-enum-described",
    ),
    pytest.param(
        {"type": "string", "format": "uri", "pattern": "^h"}, {"type": "STRING", "pattern": "^h"}, id="unknown-format"
    ),
    pytest.param(
        {"type": "string", "format": "date-time"}, {"type": "STRING", "format": "date-time"}, id="known-format"
    ),
    pytest.param(
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "ghost"]},
        {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "required": ["a"]},
        id="required-only-declared",
    ),
    pytest.param(
        {
            "type": "object",
            "properties": {"p": {"$ref": "#/$defs/Point", "description": "where"}},
            "$defs": {
                "Point": {"type": "object", "properties": {"x": {"type": "number"}}, "additionalProperties": False}
            },
        },
        {
            "type": "OBJECT",
            "properties": {"p": {"type": "OBJECT", "description": "where", "properties": {"x": {"type": "NUMBER"}}}},
        },
        id="ref-inlined",
    ),
    pytest.param(
        {
            "type": "array",
            "items": {"$ref": "#/definitions/Tag"},
            "definitions": {"Tag": {"$ref": "#/definitions/Name"}, "Name": {"type": "string"}},
        },
        {"type": "ARRAY", "items": {"type": "STRING"}},
        id="ref-chain-draft7-definitions",
    ),
    pytest.param(
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
            ]
        },
        {"type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "INTEGER"}}, "required": ["a", "b"]},
        id="allof-merged",
    ),
    pytest.param(
        {
            "type": "object",
            "properties": {"b": {"type": "string"}, "a": {"type": "string"}},
            "propertyOrdering": ["a", "b", "c"],
        },
        {
            "type": "OBJECT",
            "properties": {"b": {"type": "STRING"}, "a": {"type": "STRING"}},
            "propertyOrdering": ["a", "b"],
        },
        id="property-ordering-kept",
    ),
    pytest.param(
        {"type": "array", "items": [{"type": "string"}]},
        {"type": "ARRAY", "items": {"type": "STRING"}},
        id="tuple-items",
    ),
    pytest.param(
        {"type": "object", "properties": {"free": {}}}, {"type": "OBJECT", "properties": {"free": {}}}, id="any"
    ),
]


@pytest.mark.parametrize(("schema", "expected"), SCHEMA_CASES)
def test_schema_cleaning(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert clean_schema(schema, where="tools[t].parameters") == expected


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {
                "$ref": "#/$defs/Node",
                "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
            },
            "recursive",
        ),
        ({"$ref": "https://example.com/schema.json"}, "cannot be resolved"),
        ({"$ref": "#/$defs/Missing"}, "cannot be resolved"),
    ],
)
def test_schemas_gemini_cannot_express_are_a_clear_400(schema: dict[str, Any], message: str) -> None:
    req = Request("m", [user("q")], tools=[Tool("walk", None, schema)])
    with pytest.raises(InvalidRequest, match=message) as info:
        API.build(req, target())
    assert info.value.param is not None and info.value.param.startswith("tools[walk].parameters")


def test_generation_config_and_response_formats() -> None:
    req = Request("m", [user("q")], max_tokens=99, temperature=0.2, top_p=0.9, stop=["END"], seed=7, extra={"top_k": 3})
    assert body_of(req)["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 99,
        "stopSequences": ["END"],
        "seed": 7,
        "topK": 3,
    }
    req = Request("m", [user("q")], response_format={"type": "json_object"})
    assert body_of(req)["generationConfig"] == {"responseMimeType": "application/json"}
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    req.response_format = {"type": "json_schema", "json_schema": {"name": "out", "strict": True, "schema": schema}}
    assert body_of(req)["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}, "required": ["n"]},
    }
    req.response_format = {"type": "text"}
    assert "generationConfig" not in body_of(req)
    req.response_format = {"type": "xml"}
    with pytest.raises(InvalidRequest, match="xml") as info:
        API.build(req, target())
    assert info.value.param == "response_format"


THINKING_CASES = [
    ("gemini-2.5-pro", "minimal", {"includeThoughts": True, "thinkingBudget": 128}),
    ("gemini-2.5-pro", "high", {"includeThoughts": True, "thinkingBudget": 32768}),
    ("gemini-2.5-pro", "xhigh", {"includeThoughts": True, "thinkingBudget": 32768}),
    ("gemini-2.5-flash", "low", {"includeThoughts": True, "thinkingBudget": 2048}),
    ("gemini-2.5-flash", "high", {"includeThoughts": True, "thinkingBudget": 24576}),
    ("gemini-2.5-flash-lite", "minimal", {"includeThoughts": True, "thinkingBudget": 512}),
    ("gemini-2.5-flash-lite", "medium", {"includeThoughts": True, "thinkingBudget": 8192}),
    ("gemini-2.0-flash-thinking-exp", "medium", {"includeThoughts": True, "thinkingBudget": -1}),
    ("gemini-3-pro-preview", "low", {"includeThoughts": True, "thinkingLevel": "LOW"}),
    ("gemini-3.1-pro-preview", "medium", {"includeThoughts": True, "thinkingLevel": "HIGH"}),
    ("gemini-3-flash-preview", "minimal", {"includeThoughts": True, "thinkingLevel": "MINIMAL"}),
    ("gemini-3-flash-preview", "medium", {"includeThoughts": True, "thinkingLevel": "MEDIUM"}),
    ("gemini-flash-latest", "high", {"includeThoughts": True, "thinkingLevel": "HIGH"}),
    ("gemma-4-31b-it", "low", {"includeThoughts": True, "thinkingLevel": "MINIMAL"}),
    ("gemma-4-31b-it", "medium", {"includeThoughts": True, "thinkingLevel": "HIGH"}),
    ("gemini-3-pro-preview", "none", {"thinkingLevel": "LOW"}),
    ("gemini-3-flash-preview", "none", {"thinkingLevel": "MINIMAL"}),
    ("gemma-4-26b-a4b-it", "none", {"thinkingLevel": "MINIMAL"}),
    ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
    ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),  # 2.5 Pro cannot turn thinking off
]


@pytest.mark.parametrize(("model_id", "effort", "expected"), THINKING_CASES)
def test_thinking_config_from_reasoning_effort(model_id: str, effort: str, expected: dict[str, Any]) -> None:
    req = Request(model_id, [user("q")], reasoning_effort=effort)
    assert body_of(req, target(model_id))["generationConfig"] == {"thinkingConfig": expected}


def test_thinking_budget_wins_and_catalog_facts_apply() -> None:
    req = Request("gemini-3-pro-preview", [user("q")], reasoning_effort="high", thinking_budget=1000)
    assert body_of(req, target("gemini-3-pro-preview"))["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 1000,
        "includeThoughts": True,
    }
    plain = Model("gemini-2.0-flash", "Gemini 2.0 Flash", reasoning=False)
    req = Request("gemini-2.0-flash", [user("q")], reasoning_effort="high")
    assert "generationConfig" not in body_of(req, target("gemini-2.0-flash", plain))
    mapped = Model(
        "custom", "Custom", reasoning=True, thinking_level_map={"high": "4096", "low": "low", "minimal": None}
    )
    for effort, expected in [
        ("high", {"thinkingBudget": 4096, "includeThoughts": True}),
        ("low", {"thinkingLevel": "LOW", "includeThoughts": True}),
    ]:
        req.reasoning_effort = effort
        assert body_of(req, target("custom", mapped))["generationConfig"]["thinkingConfig"] == expected
    req.reasoning_effort = "minimal"
    assert "generationConfig" not in body_of(req, target("custom", mapped))
    req.reasoning_effort = "ultra"
    with pytest.raises(InvalidRequest, match="ultra"):
        API.build(req, target("gemini-2.5-flash"))


# --- answers: whole responses -------------------------------------------------------------------


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_decode_thinking_and_parallel_calls() -> None:
    resp = API.decode_response(load("thinking_tool.json"), target("gemini-3-pro-preview"))
    assert resp.id == "k9NoaJrKBOWnkdUPpL2Q-Ac" and resp.model == "gemini-3-pro-preview"
    assert resp.content == [
        Thinking(
            "**Planning the lookup**\n\nThe user wants the weather in two cities."
            " I'll call get_weather for both at once.",
            source=SIGNER,
        ),
        ToolCall("call_k9NoaJrKBOWnkdUPpL2Q-Ac_0", "get_weather", '{"city":"Paris","unit":"celsius"}', SIG, SIGNER),
        ToolCall("call_k9NoaJrKBOWnkdUPpL2Q-Ac_1", "get_weather", '{"city":"Tōkyō"}'),
    ]
    assert resp.finish_reason == "tool_calls"
    assert resp.usage == Usage(input_tokens=61, output_tokens=96, reasoning_tokens=66)


def test_decode_prompt_blocked_by_safety_filters() -> None:
    resp = API.decode_response(load("safety_blocked.json"), target())
    assert resp.finish_reason == "content_filter"
    assert resp.content == [Text("The request was blocked by Gemini safety filters: PROHIBITED_CONTENT")]
    assert resp.usage == Usage(input_tokens=14)


def test_decode_max_tokens() -> None:
    resp = API.decode_response(load("max_tokens.json"), target())
    assert resp.finish_reason == "length"
    assert resp.content == [Text("Once upon a time, in a kingdom by the sea, there lived")]
    assert resp.usage == Usage(input_tokens=7, output_tokens=12)


def gemini(parts: list[dict[str, Any]] | None, finish: str | None = "STOP", **extra: Any) -> bytes:
    candidate: dict[str, Any] = {"content": {"role": "model", **({"parts": parts} if parts is not None else {})}}
    if finish:
        candidate["finishReason"] = finish
    return json.dumps({"candidates": [candidate], "responseId": "r1", **extra}).encode()


@pytest.mark.parametrize(
    ("body", "content", "finish"),
    [
        (gemini(None), [Text("")], "stop"),  # an empty candidate
        (gemini([]), [Text("")], "stop"),
        (gemini([{"text": "partial"}], "SAFETY"), [Text("partial")], "content_filter"),
        (
            gemini(None, "RECITATION"),
            [Text("The answer was blocked by Gemini safety filters: RECITATION")],
            "content_filter",
        ),
        (
            gemini([{"text": "hi", "thoughtSignature": "S"}]),
            [Text("hi"), Thinking("", "S", source=SIGNER)],
            "stop",
        ),
        (
            json.dumps(
                {
                    "candidates": [
                        {
                            "content": {"parts": []},
                            "finishReason": "MALFORMED_FUNCTION_CALL",
                            "finishMessage": "Malformed function call: print(x",
                        }
                    ]
                }
            ).encode(),
            [Text("[Gemini stopped: MALFORMED_FUNCTION_CALL: Malformed function call: print(x]")],
            "error",
        ),
        (gemini([{"functionCall": {"id": "fc-1", "name": "f"}}]), [ToolCall("fc-1", "f", "{}")], "tool_calls"),
        (gemini([{"text": "no finish"}], None), [Text("no finish")], "stop"),
    ],
)
def test_decode_edge_cases(body: bytes, content: list[Any], finish: str) -> None:
    resp = API.decode_response(body, target())
    assert resp.content == content and resp.finish_reason == finish
    assert resp.usage is None


def test_decode_unreadable_or_error_bodies() -> None:
    with pytest.raises(UpstreamError, match="not valid JSON") as info:
        API.decode_response(b"<html>", target())
    assert info.value.status == 502
    with pytest.raises(UpstreamError, match="Google Gemini: overloaded") as info:
        API.decode_response(b'{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}', target())
    assert info.value.status == 503


# --- answers: streams, split at every byte -------------------------------------------------------


def decode_stream(pieces: list[bytes], model_id: str = "gemini-2.5-flash") -> list[Event]:
    decoder = API.stream_decoder(target(model_id))
    events: list[Event] = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events + decoder.close()


EXPECTED_STREAMS: dict[str, list[Event]] = {
    "text_stream.sse": [
        TextDelta("The capital of France is **Paris** — "),
        TextDelta("a city of café culture,\nmuseums and"),
        TextDelta(" the Eiffel Tower 🗼."),
        Finish("stop"),
        UsageEvent(Usage(input_tokens=9, output_tokens=48, cache_read_tokens=4, reasoning_tokens=31)),
    ],
    "thinking_tool_stream.sse": [
        ThinkingDelta("**Planning the lookup**\n\nThe user wants the weather in two cities.", source=SIGNER),
        ThinkingDelta(" I'll call get_weather for both at once.", source=SIGNER),
        ToolCallStart(0, "call_k9NoaJrKBOWnkdUPpL2Q-Ac_0", "get_weather", SIG, SIGNER),
        ToolCallDelta(0, '{"city":"Paris","unit":"celsius"}'),
        ToolCallEnd(0),
        ToolCallStart(1, "call_k9NoaJrKBOWnkdUPpL2Q-Ac_1", "get_weather"),
        ToolCallDelta(1, '{"city":"Tōkyō"}'),
        ToolCallEnd(1),
        Finish("tool_calls"),
        UsageEvent(Usage(input_tokens=61, output_tokens=96, reasoning_tokens=66)),
    ],
    "safety_blocked.sse": [
        TextDelta("The request was blocked by Gemini safety filters: PROHIBITED_CONTENT"),
        Finish("content_filter"),
        UsageEvent(Usage(input_tokens=14)),
    ],
    "max_tokens_stream.sse": [
        TextDelta("Once upon a time, in a kingdom by the sea, there"),
        TextDelta(" lived"),
        Finish("length"),
        UsageEvent(Usage(input_tokens=7, output_tokens=12)),
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_STREAMS))
def test_stream_fixture_events_whole_split_and_bytewise(name: str) -> None:
    data = load(name)
    whole = decode_stream([data])
    assert whole == EXPECTED_STREAMS[name]
    for cut in range(1, len(data)):
        assert decode_stream([data[:cut], data[cut:]]) == whole, f"split at byte {cut}"
    assert decode_stream([data[i : i + 1] for i in range(len(data))]) == whole


@pytest.mark.parametrize(
    ("stream", "whole"),
    [
        ("thinking_tool_stream.sse", "thinking_tool.json"),
        ("safety_blocked.sse", "safety_blocked.json"),
        ("max_tokens_stream.sse", "max_tokens.json"),
    ],
)
def test_stream_and_whole_answer_agree(stream: str, whole: str) -> None:
    collected = collect(decode_stream([load(stream)]), id="x", model="m")
    decoded = API.decode_response(load(whole), target())
    assert (collected.content, collected.finish_reason, collected.usage) == (
        decoded.content,
        decoded.finish_reason,
        decoded.usage,
    )


def test_stream_error_event_and_early_end() -> None:
    events = decode_stream(
        [
            b'data: {"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}\r\n\r\n',
            b'data: {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}\r\n\r\n',
            b'data: {"candidates": [{"content": {"parts": [{"text": "ignored"}]}, "finishReason": "STOP"}]}\r\n\r\n',
        ]
    )
    assert events[0] == TextDelta("Hi")
    assert len(events) == 2 and isinstance(events[1], StreamError)
    err = events[1].error
    assert isinstance(err, UpstreamError) and err.status == 503 and err.code == "UNAVAILABLE"
    assert "Google Gemini: The model is overloaded." in err.message

    events = decode_stream([b'data: {"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}\r\n\r\ndata: {"cand'])
    assert events[0] == TextDelta("Hi") and isinstance(events[-1], StreamError)
    assert isinstance(events[-1].error, UpstreamError) and events[-1].error.status == 502  # the cut event

    events = decode_stream([b'data: {"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}\r\n\r\n'])
    assert isinstance(events[-1], StreamError) and isinstance(events[-1].error, UpstreamUnreachable)
    assert "stream ended early" in events[-1].error.message
    assert isinstance(decode_stream([])[-1], StreamError)


# --- errors -------------------------------------------------------------------------------------


def error_body(code: int, message: str, status: str, details: list[dict[str, Any]] | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return json.dumps({"error": err}).encode()


def test_errors_keep_status_code_and_retry_hints() -> None:
    retry = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36.5s"}]
    err = API.error(target(), 429, error_body(429, "Quota exceeded", "RESOURCE_EXHAUSTED", retry), {})
    assert isinstance(err, UpstreamError)
    assert (err.status, err.code, err.type) == (429, "RESOURCE_EXHAUSTED", "rate_limit_error")
    assert err.message == "Google Gemini: Quota exceeded" and err.headers == {"retry-after": "37"}
    err = API.error(target(), 429, error_body(429, "Quota", "RESOURCE_EXHAUSTED", retry), {"retry-after": "5"})
    assert err.headers == {"retry-after": "5"}  # the header wins

    err = API.error(target(), 400, error_body(400, 'Unknown name "foo"', "INVALID_ARGUMENT"), {})
    assert (err.status, err.code, err.type) == (400, "INVALID_ARGUMENT", "invalid_request_error")
    assert "GEMINI_API_KEY" not in err.message


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (403, error_body(403, "Method doesn't allow unregistered callers", "PERMISSION_DENIED")),
        (401, error_body(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")),
        (
            400,
            error_body(
                400,
                "API key not valid. Please pass a valid API key.",
                "INVALID_ARGUMENT",
                [{"reason": "API_KEY_INVALID"}],
            ),
        ),
    ],
)
def test_key_errors_say_how_to_fix_them(status: int, body: bytes) -> None:
    err = API.error(target(), status, body, {})
    assert err.status == status and "set GEMINI_API_KEY or run 'switchboard login google'" in err.message
    vertex = GoogleGenerativeAI("google-vertex", key_hint="run 'gcloud auth application-default login'")
    assert "gcloud auth" in vertex.error(target(), status, body, {}).message


def test_error_bodies_that_are_not_google_json() -> None:
    err = API.error(target(), 502, b"<html>Bad Gateway</html>", {})
    assert err.status == 502 and err.message == "Google Gemini: <html>Bad Gateway</html>"
    wrapped = b"[" + error_body(500, "Internal error", "INTERNAL") + b"]"
    err = API.error(target(), 500, wrapped, {})
    assert err.message == "Google Gemini: Internal error" and err.code == "INTERNAL"
    assert API.error(target(), 504, b"", {}).message == "Google Gemini: HTTP 504"


# --- multi-turn round trip ----------------------------------------------------------------------


def test_signatures_and_call_ids_round_trip_into_the_next_request() -> None:
    model_id = "gemini-3-pro-preview"
    first: Response = collect(decode_stream([load("thinking_tool_stream.sse")], model_id), id="r", model=model_id)
    calls = [b for b in first.content if isinstance(b, ToolCall)]
    results = Message("tool", [ToolResult(c.id, [Text(f"{json.loads(c.arguments)['city']}: 20C")]) for c in calls])
    second = Request(
        model_id, [user("Weather in Paris and Tokyo?"), Message("assistant", first.content), results], tools=[WEATHER]
    )
    contents = body_of(second, target(model_id))["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "celsius"}},
                "thoughtSignature": SIG,
            },
            {"functionCall": {"name": "get_weather", "args": {"city": "Tōkyō"}}},
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": "Paris: 20C"}}},
            {"functionResponse": {"name": "get_weather", "response": {"output": "Tōkyō: 20C"}}},
        ],
    }
    # Ids Gemini itself gave are carried back on both sides.
    second.messages[1] = Message("assistant", [ToolCall("fc-9", "get_weather", "{}", signature=SIG)])
    second.messages[2] = Message("tool", [ToolResult("fc-9", [Text("ok")])])
    contents = body_of(second, target(model_id))["contents"]
    assert contents[1]["parts"][0]["functionCall"]["id"] == "fc-9"
    assert contents[2]["parts"][0]["functionResponse"]["id"] == "fc-9"
