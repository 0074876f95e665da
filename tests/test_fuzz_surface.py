"""Fuzz the OpenAI chat surface: odd values in every field never make the proxy answer 5xx.

Hypothesis (derandomized, so CI runs the same examples every time) takes a valid request that uses
every feature (system, text and image parts, a tool-call round trip, thinking blocks, tools) and puts
structurally plausible but wrong values at one to three places in it: top-level fields and the fields
of messages, content parts, tool calls, tools, their JSON schemas, tool_choice, response_format,
stream_options. Each body goes through the real proxy to every wire API's fake upstream; the answer
must be a 200 or a 4xx carrying the OpenAI error envelope.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.surfaces.openai_chat_types import ChatRequest
from tests.fakes.bad_input_stack import BEDROCK_ENV, MODELS, Stack, running_stack

PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
BASE: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "calling",
            "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}],
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "result"},
        {"role": "user", "content": "and now?"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "f",
                "description": "a tool",
                "parameters": {
                    "type": "object",
                    "properties": {"x": {"type": "string"}, "y": {"type": "array", "items": {"type": "integer"}}},
                    "required": ["x"],
                },
            },
        }
    ],
}
# Every place a value is put: a path into BASE (missing containers on the way are created as dicts).
SITES: list[tuple[Any, ...]] = [
    # Every top-level field the surface types, read off its struct: a field added there is fuzzed too.
    *[
        (name,)
        for name in [
            "model_suffix",
            *(f.name for f in msgspec.structs.fields(ChatRequest) if f.name != "model"),
        ]
    ],
    ("thinking", "budget_tokens"),
    ("thinking", "type"),
    ("stream_options", "include_usage"),
    ("response_format", "type"),
    ("response_format", "json_schema"),
    ("response_format", "json_schema", "name"),
    ("response_format", "json_schema", "schema"),
    ("response_format", "json_schema", "schema", "properties"),
    ("response_format", "json_schema", "strict"),
    ("tool_choice", "type"),
    ("tool_choice", "function"),
    ("tool_choice", "function", "name"),
    *[("messages", i) for i in range(5)],
    *[("messages", i, key) for i in range(5) for key in ("role", "content", "name")],
    ("messages", 1, "content", 0),
    ("messages", 1, "content", 1),
    *[("messages", 1, "content", 0, key) for key in ("type", "text", "cache_control")],
    ("messages", 1, "content", 0, "cache_control", "type"),
    *[("messages", 1, "content", 1, key) for key in ("type", "image_url")],
    *[("messages", 1, "content", 1, "image_url", key) for key in ("url", "detail")],
    *[("messages", 2, key) for key in ("tool_calls", "thinking_blocks", "reasoning_content", "refusal")],
    ("messages", 2, "tool_calls", 0),
    *[("messages", 2, "tool_calls", 0, key) for key in ("id", "type", "function", "thought_signature")],
    *[("messages", 2, "tool_calls", 0, "function", key) for key in ("name", "arguments")],
    ("messages", 2, "thinking_blocks", 0),
    *[("messages", 2, "thinking_blocks", 0, key) for key in ("type", "thinking", "signature", "data", "provider")],
    *[("messages", 3, key) for key in ("tool_call_id", "is_error")],
    ("tools", 0),
    *[("tools", 0, key) for key in ("type", "function", "cache_control")],
    *[("tools", 0, "function", key) for key in ("name", "description", "parameters", "strict")],
    *[("tools", 0, "function", "parameters", key) for key in ("type", "properties", "required", "$defs", "anyOf")],
    ("tools", 0, "function", "parameters", "properties", "x"),
    ("tools", 0, "function", "parameters", "properties", "x", "type"),
    ("tools", 0, "function", "parameters", "properties", "y", "items"),
    ("tools", 0, "function", "parameters", "properties", "y", "items", "type"),
]
#: Strings that pass a tag check, so wrong values reach the fields behind it.
WORDS = [
    "text",
    "image_url",
    "input_audio",
    "refusal",
    "file",
    "function",
    "json_schema",
    "json_object",
    "object",
    "array",
    "string",
    "integer",
    "user",
    "assistant",
    "tool",
    "system",
    "developer",
    "auto",
    "none",
    "required",
    "ephemeral",
    "high",
    "low",
    "enabled",
]
KEYS = [*WORDS, "type", "url", "detail", "name", "arguments", "id", "schema", "properties", "items", "$ref"]

# No None: it means "not sent" for every optional field, which tests nothing.
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(WORDS),
    st.text(max_size=6),
)
odd = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    ),
    max_leaves=6,
)


def put(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = body
    for step in path[:-1]:
        if isinstance(node, list):
            node = node[step] if isinstance(step, int) and step < len(node) else None
        elif isinstance(node, dict):
            if not isinstance(node.get(step), dict | list):
                node[step] = {}
            node = node[step]
        if node is None or not isinstance(node, dict | list):
            return  # an earlier change replaced a container on this path
    last = path[-1]
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(last, int) and last < len(node)):
        node[last] = value


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("fuzz") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        yield client


@pytest.fixture(autouse=True)
def bedrock_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**BEDROCK_ENV, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": stack.bedrock.url}.items():
        monkeypatch.setenv(name, value)


def check(http: httpx.Client, api: str, body: dict[str, Any]) -> int:
    sent = dict(body)
    suffix = sent.pop("model_suffix", None)
    sent["model"] = MODELS[api] + (suffix if isinstance(suffix, str) else "")
    raw = json.dumps(sent).encode()
    resp = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code < 500, (api, raw[:2000], resp.text[:2000])
    if resp.status_code >= 400:
        err = resp.json()["error"]
        assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), resp.text
        assert "Traceback" not in err["message"]
    else:
        resp.read()  # a 200 stream must also finish (an error in it is an event, not a dropped connection)
    return resp.status_code


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=st.booleans(), changes=st.lists(st.tuples(st.sampled_from(SITES), odd), min_size=1, max_size=3))
def test_odd_values_anywhere_never_give_a_5xx(
    http: httpx.Client, stream: bool, changes: list[tuple[tuple[Any, ...], Any]]
) -> None:
    body = copy.deepcopy(BASE)
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    for path, value in changes:
        put(body, path, value)
    statuses = {api: check(http, api, body) for api in MODELS}
    assert all(s == 200 or 400 <= s < 500 for s in statuses.values()), statuses


@pytest.mark.parametrize("api", list(MODELS))
def test_the_unchanged_base_request_is_answered(http: httpx.Client, api: str) -> None:
    """The fuzz starts from a request every wire API accepts, so the odd values are what it tests."""
    assert check(http, api, copy.deepcopy(BASE)) == 200
