"""``POST /v1/completions`` (legacy text completions) through the real proxy with the openai SDK.

An OpenAI-compatible upstream gets the body with only its model replaced, and the answer back as bytes,
streamed or not; a provider on any other API answers a 400 that says to use chat completions.

The fake is :class:`FakeOpenAI` plus a ``/v1/completions`` route written here (the shared fake has none).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.conftest import local_provider, models_json
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import Action


class FakeLegacy(FakeOpenAI):
    """FakeOpenAI that also answers ``POST /v1/completions`` as OpenAI does (``text_completion``)."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/completions", self._completions)
        super().routes(app)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        played = await self.play(request, action := self.next_action())
        if played is not None:
            return played
        text = f"Echo: {body['prompt']}"
        if not body.get("stream"):
            return web.json_response(_completion(body["model"], text, "stop", _usage()))
        frames = [_completion(body["model"], word + " ", None) for word in text.split(" ")]
        frames.append(_completion(body["model"], "", "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append({**_completion(body["model"], "", None), "choices": [], "usage": _usage()})
        raw = [b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames]
        return await self.stream(request, [*raw, b"data: [DONE]\n\n"], action, b'data: {"id":"cmpl-x","ob')


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def _completion(model: str, text: str, finish: str | None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
    out: dict[str, Any] = {
        "id": "cmpl-fake1",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }
    if usage is not None:
        out["usage"] = usage
    return out


@pytest.fixture
def legacy(isolated_env: Path) -> Iterator[FakeLegacy]:
    fake = FakeLegacy().start()
    local_provider(isolated_env, fake, model="gpt-3.5-turbo-instruct")
    yield fake
    fake.stop()


MODEL = "local/gpt-3.5-turbo-instruct"


def test_answer_passes_through_with_only_the_model_replaced(legacy: FakeLegacy, start_proxy: Any) -> None:
    out = (
        start_proxy()
        .client()
        .completions.create(model=MODEL, prompt="Say this is a test", max_tokens=7, temperature=0, echo=False, n=1)
    )
    assert out.object == "text_completion" and out.choices[0].text == "Echo: Say this is a test"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and (out.usage.prompt_tokens, out.usage.completion_tokens) == (5, 4)
    sent = legacy.last
    assert sent.path == "/v1/completions" and sent.headers["Authorization"] == "Bearer k"
    # max_tokens kept as is: the chat passthrough's rename to max_completion_tokens would break this endpoint.
    assert sent.body == {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "Say this is a test",
        "max_tokens": 7,
        "temperature": 0,
        "echo": False,
        "n": 1,
    }


def test_stream_relayed(legacy: FakeLegacy, start_proxy: Any) -> None:
    chunks = list(
        start_proxy()
        .client()
        .completions.create(
            model=MODEL, prompt=["one prompt"], stream=True, stream_options={"include_usage": True}, suffix="!"
        )
    )
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices).rstrip() == "Echo: ['one prompt']"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 9
    sent = legacy.last.body
    assert sent["model"] == "gpt-3.5-turbo-instruct" and sent["stream"] is True and sent["suffix"] == "!"
    assert sent["prompt"] == ["one prompt"] and sent["stream_options"] == {"include_usage": True}


def test_stream_cut_short_ends_in_an_error(legacy: FakeLegacy, start_proxy: Any) -> None:
    legacy.push(Action("break", after_events=2))
    stream = start_proxy().client().completions.create(model=MODEL, prompt="x y z", stream=True)
    with pytest.raises(openai.APIError, match="broke off mid-answer"):
        list(stream)


def test_upstream_error_keeps_its_status(legacy: FakeLegacy, start_proxy: Any) -> None:
    err = {"error": {"message": "slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
    legacy.push(Action("error", status=429, body=err, headers={"retry-after": "3"}))
    with pytest.raises(openai.RateLimitError) as info:
        start_proxy().client().completions.create(model=MODEL, prompt="hi")
    assert "slow down" in info.value.message and info.value.response.headers["retry-after"] == "3"


def test_a_server_without_the_endpoint_says_what_to_use(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    local_provider(isolated_env, fake_openai)  # FakeOpenAI has no /completions: aiohttp answers 404
    with pytest.raises(openai.NotFoundError) as info:
        start_proxy().client().completions.create(model="local/m", prompt="hi")
    assert "local may not serve legacy completions at /v1/completions; use /v1/chat/completions" in (info.value.message)


def test_other_apis_answer_a_clear_400(isolated_env: Path, fake_claude: FakeAnthropic, start_proxy: Any) -> None:
    provider = {"baseUrl": fake_claude.url, "api": "anthropic-messages", "apiKey": "sk-ant-test"}
    models_json(isolated_env, {"claude": {**provider, "models": [{"id": "claude-sonnet-4-5"}]}})
    client = start_proxy().client()
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="claude/claude-sonnet-4-5", prompt="hi", stream=stream)
        assert "- claude has no legacy completions endpoint; use /v1/chat/completions" in info.value.message
        assert info.value.body["param"] == "model"  # type: ignore[index]
    assert fake_claude.requests == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "hi"}, "model"),
        ({"model": MODEL}, "prompt"),
        ({"model": MODEL, "prompt": None}, "prompt"),
    ],
)
def test_bad_requests_name_the_parameter(
    legacy: FakeLegacy, start_proxy: Any, body: dict[str, Any], param: str
) -> None:
    resp = start_proxy().http().post("/v1/completions", json=body)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param
    assert legacy.requests == []


def test_not_json_and_get(legacy: FakeLegacy, start_proxy: Any) -> None:
    http = start_proxy().http()
    resp = http.post("/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"
    assert http.get("/v1/completions").status_code == 405
