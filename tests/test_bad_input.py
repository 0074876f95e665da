"""Bad client input is a 400 naming the parameter, never a 500, on every upstream wire API.

Each case goes through the real proxy (uvicorn on loopback, raw httpx) to a fake upstream per wire API.
On the translated paths the request is typed once at the surface; the passthrough checks only what it
needs itself (JSON, UTF-8, nesting, ``model``, ``messages``) and forwards the rest untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.bad_input_stack import BEDROCK_ENV, MODELS, Stack, running_stack

TRANSLATED = [api for api in MODELS if api != "openai-completions"]
TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("bad-input") / "home") as running:
        yield running


@pytest.fixture(autouse=True)
def bedrock_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**BEDROCK_ENV, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": stack.bedrock.url}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


def body(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}


def post(http: httpx.Client, payload: dict[str, Any] | bytes) -> httpx.Response:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})


def error_of(resp: httpx.Response) -> dict[str, Any]:
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err  # type: ignore[no-any-return]


def with_parts(model: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return body(model, messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}, *parts]}])


def with_history(model: str, assistant: dict[str, Any]) -> dict[str, Any]:
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", **assistant}, {"role": "user", "content": "go"}]
    return body(model, messages=msgs)


def tool(**function: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", **function}}


# (case id, body for a model, the param the 400 names, a word its message must contain)
TYPED_CASES: list[tuple[str, Callable[[str], dict[str, Any]], str, str]] = [
    ("response_format-string", lambda m: body(m, response_format="json"), "response_format", "object"),
    ("temperature-string", lambda m: body(m, temperature="0.5"), "temperature", "float"),
    ("max_tokens-string", lambda m: body(m, max_tokens="100"), "max_tokens", "int"),
    ("top_p-bool", lambda m: body(m, top_p=True), "top_p", "float"),
    ("modalities-int", lambda m: body(m, modalities=5), "modalities", "array"),
    ("n-string", lambda m: body(m, n="2"), "n", "int"),
    ("logprobs-string", lambda m: body(m, logprobs="yes"), "logprobs", "bool"),
    ("stop-int", lambda m: body(m, stop=5), "stop", "str"),
    ("stream-string", lambda m: body(m, stream="yes"), "stream", "bool"),
    ("stream_options-int", lambda m: body(m, stream_options=5), "stream_options", "object"),
    ("thinking-int", lambda m: body(m, thinking=5), "thinking", "object"),
    ("top_k-string", lambda m: body(m, top_k="x"), "top_k", "int"),
    ("user-int", lambda m: body(m, user=5), "user", "str"),
    ("prompt_cache_key-list", lambda m: body(m, prompt_cache_key=[]), "prompt_cache_key", "str"),
    ("reasoning_effort-list", lambda m: body(m, reasoning_effort=["high"]), "reasoning_effort", "str"),
    ("tool_choice-int", lambda m: body(m, tool_choice=5), "tool_choice", "expected"),
    ("tools-int", lambda m: body(m, tools=5), "tools", "array"),
    ("tools-item-int", lambda m: body(m, tools=[5]), "tools[0]", "object"),
    ("tool-parameters-int", lambda m: body(m, tools=[tool(parameters=5)]), "tools[0].function.parameters", "object"),
    ("tool-name-missing", lambda m: body(m, tools=[{"type": "function", "function": {}}]), "tools[0].function", "name"),
    (
        "tool-cache_control-int",
        lambda m: body(m, tools=[{**tool(), "cache_control": 5}]),
        "tools[0].cache_control",
        "object",
    ),
    (
        "json_schema-string",
        lambda m: body(m, response_format={"type": "json_schema", "json_schema": "x"}),
        "response_format.json_schema",
        "object",
    ),
    (
        "response_format-unknown-type",
        lambda m: body(m, response_format={"type": "yaml"}),
        "response_format.type",
        "yaml",
    ),
    ("messages-item-int", lambda m: body(m, messages=[5]), "messages[0]", "object"),
    ("role-int", lambda m: body(m, messages=[{"role": 5, "content": "x"}]), "messages[0].role", "expected"),
    ("content-int", lambda m: body(m, messages=[{"role": "user", "content": 5}]), "messages[0].content", "expected"),
    ("content-part-int", lambda m: with_parts(m, 5), "messages[0].content[1]", "object"),
    (
        "cache_control-int",
        lambda m: body(m, messages=[{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": 5}]}]),
        "messages[0].content[0].cache_control",
        "object",
    ),
    ("text-int", lambda m: with_parts(m, {"type": "text", "text": 5}), "messages[0].content[1].text", "str"),
    (
        "image-detail-list",
        lambda m: with_parts(
            m, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{TINY_PNG}", "detail": []}}
        ),
        "messages[0].content[1].image_url.detail",
        "str",
    ),
    (
        "image_url-int",
        lambda m: with_parts(m, {"type": "image_url", "image_url": 5}),
        "messages[0].content[1].image_url",
        "str",
    ),
    ("tool_calls-int", lambda m: with_history(m, {"tool_calls": 5}), "messages[1].tool_calls", "array"),
    ("tool_call-int", lambda m: with_history(m, {"tool_calls": [5]}), "messages[1].tool_calls[0]", "object"),
    (
        "tool_call-arguments-object",
        lambda m: with_history(m, {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}),
        "messages[1].tool_calls[0].function.arguments",
        "str",
    ),
    (
        "thinking_blocks-int",
        lambda m: with_history(m, {"content": "x", "thinking_blocks": 5}),
        "messages[1].thinking_blocks",
        "array",
    ),
    (
        "reasoning_content-int",
        lambda m: with_history(m, {"content": "x", "reasoning_content": 5}),
        "messages[1].reasoning_content",
        "str",
    ),
    (
        "tool_call_id-missing",
        lambda m: body(m, messages=[{"role": "user", "content": "x"}, {"role": "tool", "content": "r"}]),
        "messages[1]",
        "tool_call_id",
    ),
]


@pytest.mark.parametrize("api", TRANSLATED)
@pytest.mark.parametrize(("make", "param", "word"), [c[1:] for c in TYPED_CASES], ids=[c[0] for c in TYPED_CASES])
def test_wrong_types_are_a_400_naming_the_parameter(
    http: httpx.Client, api: str, make: Callable[[str], dict[str, Any]], param: str, word: str
) -> None:
    resp = post(http, make(MODELS[api]))
    assert resp.status_code == 400, resp.text
    err = error_of(resp)
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert word.lower() in err["message"].lower() and "Traceback" not in err["message"]


@pytest.mark.parametrize(("make", "param", "word"), [c[1:] for c in TYPED_CASES], ids=[c[0] for c in TYPED_CASES])
def test_the_passthrough_forwards_what_the_upstream_judges(
    stack: Stack, http: httpx.Client, make: Callable[[str], dict[str, Any]], param: str, word: str
) -> None:
    sent = make(MODELS["openai-completions"])
    sent["vendor_extra"] = {"kept": [1, 2]}
    resp = post(http, sent)
    assert resp.status_code == 200, resp.text
    forwarded = stack.openai.last
    assert forwarded["vendor_extra"] == {"kept": [1, 2]} and forwarded["messages"] == sent["messages"]


def nested(depth: int, opener: bytes = b'{"a":', closer: bytes = b"}") -> bytes:
    return opener * depth + b'"x"' + closer * depth


def with_raw(model: str, name: str, raw: bytes) -> bytes:
    """``body(model)`` with the field ``name`` set to raw JSON text (json.dumps cannot nest 1,000 deep)."""
    return json.dumps(body(model)).encode()[:-1] + b', "' + name.encode() + b'": ' + raw + b"}"


# Cases every path must refuse itself, before anything is forwarded: (id, raw body, param, code, word).
RAW_CASES: list[tuple[str, Callable[[str], bytes], str | None, str, str]] = [
    (
        "byte-0xff",
        lambda m: b'{"model": "%s", "messages": [{"role": "user", "content": "a\xffb"}]}' % m.encode(),
        None,
        "invalid_encoding",
        "UTF-8",
    ),
    (
        "overlong-utf8",
        lambda m: b'{"model": "%s", "messages": [{"role": "user", "content": "\xc0\xaf"}]}' % m.encode(),
        None,
        "invalid_encoding",
        "UTF-8",
    ),
    (
        "utf8-surrogate",
        lambda m: b'{"model": "%s", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}' % m.encode(),
        None,
        "invalid_encoding",
        "UTF-8",
    ),
    (
        "escaped-lone-surrogate",
        lambda m: b'{"model": "%s", "messages": [{"role": "user", "content": "\\udc00"}]}' % m.encode(),
        None,
        "invalid_json",
        "JSON",
    ),
    ("nested-1000", lambda m: with_raw(m, "extra", nested(1000)), None, "nesting_too_deep", "deeper"),
    (
        "nested-100-in-schema",
        lambda m: with_raw(
            m, "tools", b'[{"type": "function", "function": {"name": "f", "parameters": ' + nested(100) + b"}}]"
        ),
        None,
        "nesting_too_deep",
        "deeper",
    ),
    ("nested-900-list", lambda m: with_raw(m, "extra", nested(900, b"[", b"]")), None, "nesting_too_deep", "deeper"),
    (
        "number-out-of-range",
        lambda m: b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "temperature": 1e999}' % m.encode(),
        None,
        "invalid_json",
        "range",
    ),
    ("not-json", lambda m: b"{", None, "invalid_json", "JSON"),
    ("array-body", lambda m: b"[]", None, "", "object"),
    ("model-int", lambda m: json.dumps(body(m) | {"model": 5}).encode(), "model", "", "model"),
    ("messages-empty", lambda m: json.dumps(body(m, messages=[])).encode(), "messages", "", "messages"),
    ("model-too-long", lambda m: json.dumps(body(m + "x" * 300)).encode(), "model", "", "at most 256"),
]


@pytest.mark.parametrize("api", list(MODELS))
@pytest.mark.parametrize(("make", "param", "code", "word"), [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES])
def test_malformed_bodies_are_a_400_on_every_path(
    http: httpx.Client, api: str, make: Callable[[str], bytes], param: str | None, code: str, word: str
) -> None:
    resp = post(http, make(MODELS[api]))
    assert resp.status_code == 400, resp.text
    err = error_of(resp)
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert err["code"] == (code or None) and word.lower() in err["message"].lower()


def test_a_deep_but_reasonable_tool_schema_still_works(http: httpx.Client) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(12):
        schema = {"type": "object", "properties": {"inner": schema}}
    for api in MODELS:
        resp = post(http, body(MODELS[api], tools=[tool(parameters=schema)]))
        assert resp.status_code == 200, (api, resp.text)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": [[]], "properties": {"x": {"type": "string"}}},
        {"type": "object", "properties": {"x": {"type": "string"}}, "required": [[], {}, "x"]},
        {"type": "object", "properties": {"x": {"type": "string"}}, "$defs": 5, "definitions": [1]},
        {"type": "object", "properties": {"x": {"type": "string"}}, "propertyOrdering": 5},
        {"allOf": [{"properties": {"x": {"type": "string"}}}], "properties": 5, "required": 5},
    ],
    ids=["type-list-of-lists", "required-odd-items", "defs-not-objects", "ordering-int", "allOf-over-odd"],
)
def test_odd_schema_keywords_are_dropped_for_gemini(http: httpx.Client, schema: dict[str, Any]) -> None:
    resp = post(http, body(MODELS["google-generative-ai"], tools=[tool(parameters=schema)]))
    assert resp.status_code == 200, resp.text


def test_a_schema_that_expands_without_bound_is_a_400_for_gemini(http: httpx.Client) -> None:
    # Each definition refers to the previous one twice: 2**14 nodes once inlined from a 1 KB schema
    # (a few more definitions and it would be billions).
    defs = {"d0": {"type": "string"}}
    defs |= {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i - 1}"}] * 2 + [{"type": "null"}]} for i in range(1, 15)}
    params = {"type": "object", "properties": {"x": {"$ref": "#/$defs/d14"}}, "$defs": defs}
    resp = post(http, body(MODELS["google-generative-ai"], tools=[tool(parameters=params)]))
    assert resp.status_code == 400, resp.text
    err = error_of(resp)
    assert err["param"] == "tools[f].parameters" and "expands" in err["message"]


def test_a_long_chain_of_references_is_a_400_for_gemini(http: httpx.Client) -> None:
    defs: dict[str, Any] = {"d0": {"type": "string"}}
    defs |= {f"d{i}": {"type": "object", "properties": {"x": {"$ref": f"#/$defs/d{i - 1}"}}} for i in range(1, 400)}
    params = {"type": "object", "properties": {"x": {"$ref": "#/$defs/d399"}}, "$defs": defs}
    resp = post(http, body(MODELS["google-generative-ai"], tools=[tool(parameters=params)]))
    assert resp.status_code == 400, resp.text
    assert error_of(resp)["param"] == "tools[f].parameters"
