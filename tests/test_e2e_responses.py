"""End to end: the real openai SDK (chat completions) → live proxy → fake OpenAI Responses upstream.

The fake itself is checked first, from both sides: what it sends parses with the SDK's response and
stream-event types (and the SDK's own ``responses`` client reads it), and it refuses what OpenAI refuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from tests.conftest import models_json
from tests.fakes.responses_upstream import Action, FakeResponses, encode, stream_events

TINY_PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="  # noqa: E501
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
MODEL = "resp/gpt-5-pro"


@pytest.fixture
def fake() -> Iterator[FakeResponses]:
    server = FakeResponses().start()
    yield server
    server.stop()


@pytest.fixture
def resp(isolated_env: Path, fake: FakeResponses) -> FakeResponses:
    models = [{"id": "gpt-5-pro", "reasoning": True, "input": ["text", "image"]}]
    provider = {"baseUrl": fake.url + "/v1", "api": "openai-responses", "apiKey": "sk-test", "models": models}
    models_json(isolated_env, {"resp": provider})
    return fake


def _inputs(fake: FakeResponses, kind: str, n: int = -1) -> list[dict[str, Any]]:
    return [it for it in fake.requests[n].body["input"] if it.get("type") == kind]


# --- the fake, on its own -------------------------------------------------------------------------


@pytest.mark.parametrize("with_tools", [False, True])
def test_fake_speaks_the_sdk_types(fake: FakeResponses, with_tools: bool) -> None:
    body: dict[str, Any] = {
        "model": "gpt-5-pro",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "reasoning": {"effort": "high", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
    }
    if with_tools:
        body["tools"] = [{"type": "function", "name": "get_weather", "parameters": {}, "strict": False}]
    response = fake._respond(body)
    Response.model_validate(response)
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
    events = stream_events(response)
    for ev in events:
        adapter.validate_python(ev)
    assert [ev["sequence_number"] for ev in events] == list(range(len(events)))
    kinds = [ev["type"] for ev in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert "response.reasoning_summary_text.delta" in kinds and kinds[-1] == "response.completed"
    assert ("response.function_call_arguments.delta" in kinds) is with_tools
    assert response["output"][0]["encrypted_content"] == fake.issued[response["output"][0]["id"]]


def test_the_sdk_responses_client_reads_the_fake(fake: FakeResponses) -> None:
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="sk-test", max_retries=0) as client:
        answer = client.responses.create(model="gpt-4.1", input="hello", store=False)
        assert answer.output_text == "Echo: hello" and answer.usage is not None and answer.usage.total_tokens > 20
        with client.responses.create(model="gpt-4.1", input="hello again", stream=True) as stream:
            events = list(stream)
    text = "".join(ev.delta for ev in events if ev.type == "response.output_text.delta")
    assert text == "Echo: hello again" and events[-1].type == "response.completed"


@pytest.mark.parametrize(
    ("headers", "body", "status", "needle"),
    [
        ({}, {"model": "m", "input": "x"}, 401, "API key"),
        ({"Authorization": "Bearer sk-test"}, {"model": "m", "input": "x", "messages": []}, 400, "'messages'"),
        ({"Authorization": "Bearer sk-test"}, {"model": "m", "input": [{"type": "bogus"}]}, 400, "Invalid request"),
        (
            {"Authorization": "Bearer sk-test"},
            {"model": "m", "input": [{"type": "function_call_output", "call_id": "c9", "output": "x"}]},
            400,
            "No tool call found",
        ),
        (
            {"Authorization": "Bearer sk-test"},
            {"model": "m", "input": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "e"}]},
            400,
            "could not be verified",
        ),
        (
            {"Authorization": "Bearer sk-test"},
            {"model": "gpt-5-pro", "input": "x", "temperature": 0.5},
            400,
            "temperature",
        ),
    ],
)  # fmt: skip
def test_fake_refuses_what_openai_refuses(
    fake: FakeResponses, headers: dict[str, str], body: dict[str, Any], status: int, needle: str
) -> None:
    with httpx.Client() as client:
        answer = client.post(fake.url + "/v1/responses", json=body, headers=headers)
    assert answer.status_code == status and needle in answer.json()["error"]["message"]


# --- through the proxy ----------------------------------------------------------------------------


def test_plain_chat(resp: FakeResponses, start_proxy: Any) -> None:
    out = (
        start_proxy()
        .client()
        .chat.completions.create(
            model=MODEL,
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
            temperature=0.3,  # a reasoning model rejects it: the proxy must leave it out
            max_tokens=100,
            user="user-42",
        )
    )
    assert out.choices[0].message.content == "Echo: hello there" and out.choices[0].finish_reason == "stop"
    sent = resp.last
    assert sent.path == "/v1/responses" and sent.headers["Authorization"] == "Bearer sk-test"
    assert sent.body["model"] == "gpt-5-pro" and sent.body["instructions"] == "Be brief."
    assert sent.body["store"] is False and sent.body["stream"] is False and "temperature" not in sent.body
    assert sent.body["max_output_tokens"] == 100 and sent.body["safety_identifier"] == "user-42"
    assert sent.body["include"] == ["reasoning.encrypted_content"]


def test_streaming_with_usage(resp: FakeResponses, start_proxy: Any) -> None:
    stream = (
        start_proxy()
        .client()
        .chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "count to three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: count to three"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"] and resp.last.body["stream"] is True
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (20, 4, 24)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 8


def _second_turn(first: dict[str, Any], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = [
        {"role": "tool", "tool_call_id": c["id"], "content": w} for c, w in zip(calls, ("sunny", "rainy"), strict=True)
    ]
    return [{"role": "user", "content": "Weather in Paris and Tokyo?"}, first, *results]


def test_parallel_tool_call_round_trip(resp: FakeResponses, start_proxy: Any) -> None:
    client = start_proxy().client()
    question = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    out = client.chat.completions.create(model=MODEL, messages=question, tools=[WEATHER_TOOL])
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
    calls = [c.model_dump() for c in choice.message.tool_calls]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {"city": "Tokyo"}]
    assert resp.last.body["tools"][0] == {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
        "strict": False,
    }
    first = choice.message.model_dump(exclude_none=True)
    final = client.chat.completions.create(model=MODEL, messages=_second_turn(first, calls), tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "Tool results: sunny; rainy"
    assert [it["call_id"] for it in _inputs(resp, "function_call")] == [c["id"] for c in calls]
    assert [it["call_id"] for it in _inputs(resp, "function_call_output")] == [c["id"] for c in calls]


def test_streamed_tool_call_round_trip(resp: FakeResponses, start_proxy: Any) -> None:
    client = start_proxy().client()
    question = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    chunks = list(client.chat.completions.create(model=MODEL, messages=question, tools=[WEATHER_TOOL], stream=True))
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(
                tc.index, {"id": tc.id, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["function"]["name"] += (tc.function and tc.function.name) or ""
            call["function"]["arguments"] += (tc.function and tc.function.arguments) or ""
    assert [chunks[-1].choices[0].finish_reason] == ["tool_calls"]
    ordered = [calls[i] for i in sorted(calls)]
    assert [json.loads(c["function"]["arguments"]) for c in ordered] == [{"city": "Paris"}, {"city": "Tokyo"}]
    first = {"role": "assistant", "content": None, "tool_calls": ordered}
    second = client.chat.completions.create(
        model=MODEL, messages=_second_turn(first, ordered), tools=[WEATHER_TOOL], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in second if c.choices) == "Tool results: sunny; rainy"


def test_image(resp: FakeResponses, start_proxy: Any) -> None:
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": TINY_PNG}}]
    out = start_proxy().client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    assert out.choices[0].message.content == "I received parts: input_text, input_image"
    part = resp.last.body["input"][0]["content"][1]
    assert part == {"type": "input_image", "image_url": TINY_PNG, "detail": "auto"}


def test_reasoning_carried_across_turns(resp: FakeResponses, start_proxy: Any) -> None:
    client = start_proxy().client()
    question = [{"role": "user", "content": "think first"}]
    out = client.chat.completions.create(model=MODEL, messages=question, reasoning_effort="high")
    sent = resp.last.body
    assert sent["reasoning"] == {"effort": "high", "summary": "auto"}
    assert sent["include"] == ["reasoning.encrypted_content"]
    message = out.choices[0].message.model_dump(exclude_none=True)
    assert message["reasoning_content"] == "**Planning**\n\nThe user wants an answer.\n\nAnswering now."
    (block,) = message["thinking_blocks"]
    assert block["provider"] == "openai-responses:resp" and block["id"] in resp.issued
    assert block["data"] == resp.issued[block["id"]]
    usage = out.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 7
    follow_up = [*question, message, {"role": "user", "content": "and now?"}]
    again = client.chat.completions.create(model=MODEL, messages=follow_up, reasoning_effort="high")
    assert again.choices[0].message.content == "Echo: and now?"
    (replayed,) = _inputs(resp, "reasoning")
    assert replayed["id"] == block["id"] and replayed["encrypted_content"] == block["data"]


def test_streamed_reasoning_carried_across_turns(resp: FakeResponses, start_proxy: Any) -> None:
    client = start_proxy().client()
    question = [{"role": "user", "content": "think first"}]
    chunks = list(client.chat.completions.create(model=MODEL, messages=question, reasoning_effort="low", stream=True))
    deltas = [c.choices[0].delta.model_dump() for c in chunks if c.choices]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    blocks = [b for d in deltas for b in d.get("thinking_blocks") or ()]
    assert reasoning.startswith("**Planning**") and len(blocks) == 1
    assert blocks[0]["data"] == resp.issued[blocks[0]["id"]]
    text = "".join(d.get("content") or "" for d in deltas)
    message = {"role": "assistant", "content": text, "reasoning_content": reasoning, "thinking_blocks": blocks}
    follow_up = [*question, message, {"role": "user", "content": "go on"}]
    again = client.chat.completions.create(model=MODEL, messages=follow_up, reasoning_effort="low")
    assert again.choices[0].message.content == "Echo: go on"
    (replayed,) = _inputs(resp, "reasoning")
    assert (replayed["id"], replayed["encrypted_content"]) == (blocks[0]["id"], blocks[0]["data"])


def test_length_finish(resp: FakeResponses, start_proxy: Any) -> None:
    long = " ".join(f"word{i}" for i in range(40))
    client = start_proxy().client()
    out = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": long}], max_tokens=5)
    assert resp.last.body["max_output_tokens"] == 16
    assert out.choices[0].finish_reason == "length" and len((out.choices[0].message.content or "").split()) == 16


def test_stop_is_refused(resp: FakeResponses, start_proxy: Any) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        start_proxy().client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stop=["END"]
        )
    assert "stop" in str(err.value) and not resp.requests


def test_upstream_errors_keep_their_status(resp: FakeResponses, start_proxy: Any) -> None:
    resp.push(Action("error", status=429, body={"error": {"message": "Rate limit reached", "type": "requests",
                                                          "param": None, "code": "rate_limit_exceeded"}}))  # fmt: skip
    client = start_proxy().client()
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert "Rate limit reached" in str(err.value)
    resp.push(Action("failed", body={"code": "server_error", "message": "The server had an error"}))
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.APIError) as streamed:
        list(stream)
    assert "The server had an error" in str(streamed.value)


@pytest.mark.parametrize("how", ["connection dropped", "no terminal event"])
def test_upstream_stream_cut_short(resp: FakeResponses, start_proxy: Any, how: str) -> None:
    if how == "connection dropped":
        resp.push(Action("break", after_events=5))
    else:
        events = stream_events(resp._respond({"model": "gpt-5-pro", "input": "a b c", "store": False}))
        resp.push(Action("raw", chunks=[encode(ev) for ev in events[:-1]]))
    client = start_proxy().client()
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a b c"}], stream=True)
    with pytest.raises(openai.APIError) as err:
        list(stream)
    assert isinstance(err.value.body, dict) and err.value.body["code"] == "upstream_unreachable"
    if how == "no terminal event":
        assert "stream ended early" in err.value.message
