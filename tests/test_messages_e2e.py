"""``/v1/messages`` and ``/v1/messages/count_tokens`` end to end: the ``anthropic`` SDK → Switchboard → fakes.

Upstreams: Anthropic (passthrough), Gemini, Bedrock, an OpenAI Responses server (translated), and OpenAI
chat (translated, once a canonical → chat wire module exists). Streams go through ``messages.stream``,
whose accumulator parses every event with the SDK's own types; thinking and tool use are replayed on a
second turn and the upstream must get its own signature back. Claude Code's requests are replayed from
``tests/fixtures/claude_code_*.json`` with their exact headers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from aiohttp import web

from providers.wire import translating_wire
from proxy.config import ServerConfig
from tests.conftest import models_json
from tests.fakes.anthropic_upstream import Action, FakeAnthropic, error_body, sign
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.responses_upstream import FakeResponses
from tests.fakes.server import Recorded, read_body

FIXTURES = Path(__file__).parent / "fixtures"
SONNET = "claude-sonnet-4-6"  # the SDK warns (an error here) on the deprecated 4-5 ids
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
GEMINI_KEY = "gm-test-key"
BEDROCK_CLAUDE = "amazon-bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
NO_DISCOVERY = ServerConfig().discovery.__class__(enabled=False)


class BetaFakeAnthropic(FakeAnthropic):
    """The fake Anthropic plus what Anthropic serves behind betas: ``context_management`` (with its beta
    header) and ``/v1/messages/count_tokens``."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages/count_tokens", self._count)
        super().routes(app)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        beta = request.headers.get("anthropic-beta", "")
        if isinstance(body, dict) and "context_management" in body and "context-management-2025-06-27" not in beta:
            self.requests.append(Recorded("POST", request.path, dict(request.headers), body))
            return web.json_response(
                error_body("invalid_request_error", "context_management: needs the beta"), status=400
            )
        return await super()._messages(request)

    def _check_body(self, body: Any) -> web.Response | None:
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "context_management"}
        return super()._check_body(body)

    async def _count(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        self.requests.append(Recorded("POST", request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        refused = self._check_headers(request)
        if refused is not None:
            return refused
        return web.json_response({"input_tokens": 4242})


class CountingGemini(FakeGemini):
    """The fake Gemini plus ``countTokens`` (a ``generateContentRequest`` counted as 7 per content)."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{model:[^:/]+}:countTokens", self._count)
        super().routes(app)

    async def _count(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        self.requests.append(Recorded("POST", request.path, dict(request.headers), body))
        if request.headers.get("x-goog-api-key") != self.api_key:
            return web.json_response(
                {"error": {"code": 403, "message": "bad key", "status": "PERMISSION_DENIED"}}, status=403
            )
        inner = body["generateContentRequest"]
        assert inner["model"] == "models/" + request.match_info["model"]
        return web.json_response({"totalTokens": 7 * len(inner["contents"])})


@pytest.fixture
def claude() -> Iterator[BetaFakeAnthropic]:
    fake = BetaFakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture
def gemini() -> Iterator[CountingGemini]:
    fake = CountingGemini(api_key=GEMINI_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
def responses() -> Iterator[FakeResponses]:
    fake = FakeResponses().start()
    yield fake
    fake.stop()


def providers(sb_home: Path, monkeypatch: pytest.MonkeyPatch, **fakes: Any) -> None:
    entries: dict[str, Any] = {}
    if "claude" in fakes:
        entries["anthropic"] = {"baseUrl": fakes["claude"].url}
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    if "gemini" in fakes:
        entries["google"] = {"baseUrl": fakes["gemini"].url + "/v1beta"}
        monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    if "responses" in fakes:
        models = [{"id": "gpt-5-pro", "reasoning": True, "input": ["text", "image"]}]
        entries["resp"] = {
            "baseUrl": fakes["responses"].url + "/v1",
            "api": "openai-responses",
            "apiKey": "sk-test",
            "models": models,
        }
    if "openai" in fakes:
        entries["local"] = {
            "baseUrl": fakes["openai"].url + "/v1",
            "api": "openai-completions",
            "apiKey": "k",
            "models": [{"id": "m"}],
        }
    models_json(sb_home, entries)


def sdk(proxy: Any) -> anthropic.Anthropic:
    # The fake Anthropic knows version 2023-06-01 only (the SDK's default is later); it is forwarded as sent.
    client = anthropic.Anthropic(
        base_url=proxy.url,
        api_key="client-key",
        max_retries=0,
        default_headers={"anthropic-version": "2023-06-01"},
    )
    proxy._clients.append(client)
    return client


def two_turns(client: anthropic.Anthropic, model: str, *, stream: bool, thinking: bool) -> tuple[Any, Any]:
    """A tool call (with thinking) and its results: the final messages of both turns."""
    kwargs: dict[str, Any] = {"model": model, "max_tokens": 8000, "tools": [WEATHER]}
    if thinking:
        kwargs["thinking"] = {"type": "enabled", "budget_tokens": 2048}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    first = _ask(client, messages, stream, kwargs)
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert {"city": "Paris"} in [u.input for u in uses]
    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]})
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": "20C"} for u in uses]}
    )
    second = _ask(client, messages, stream, kwargs)
    assert second.stop_reason == "end_turn"
    text = "".join(b.text for b in second.content if b.type == "text")
    assert "20C" in text, text  # the fakes summarize the tool results
    return first, second


def _ask(client: anthropic.Anthropic, messages: list[dict[str, Any]], stream: bool, kwargs: dict[str, Any]) -> Any:
    if not stream:
        return client.messages.create(messages=messages, **kwargs)  # type: ignore[arg-type]
    with client.messages.stream(messages=messages, **kwargs) as events:  # type: ignore[arg-type]
        seen = [ev.type for ev in events]
        final = events.get_final_message()
    assert seen[0] == "message_start" and seen[-1] == "message_stop", seen
    return final


# --- Anthropic: the passthrough ---------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_passthrough_tools_and_thinking_replayed(
    isolated_env: Path, claude: BetaFakeAnthropic, start_proxy: Any, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    providers(isolated_env, monkeypatch, claude=claude)
    client = sdk(start_proxy())
    first, _ = two_turns(client, SONNET, stream=stream, thinking=True)
    thought = first.content[0]
    assert thought.type == "thinking" and thought.signature == sign(thought.thinking)
    sent = claude.last
    assert sent.body["model"] == SONNET and sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["x-api-key"] == "sk-ant-test"  # the provider's key, not the client's
    replayed = sent.body["messages"][1]["content"][0]
    assert replayed == {"type": "thinking", "thinking": thought.thinking, "signature": thought.signature}


def test_passthrough_forwards_betas_and_keeps_unknown_fields(
    isolated_env: Path, claude: BetaFakeAnthropic, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    providers(isolated_env, monkeypatch, claude=claude)
    client = sdk(start_proxy())
    out = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hello"}],
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        extra_headers={"anthropic-beta": "context-management-2025-06-27,made-up-2099-01-01"},
        extra_body={"context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}},
    )
    assert out.content[0].text == "Echo: hello"  # type: ignore[union-attr]
    assert out.usage.cache_creation_input_tokens == 1500
    sent = claude.last
    assert sent.headers["anthropic-beta"] == "context-management-2025-06-27,made-up-2099-01-01"
    assert sent.body["context_management"] == {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
    assert sent.body["stop_sequences"] == ["END"] and sent.body["metadata"] == {"user_id": "u-1"}


def test_errors_are_anthropic_envelopes(
    isolated_env: Path, claude: BetaFakeAnthropic, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    providers(isolated_env, monkeypatch, claude=claude)
    proxy = start_proxy()
    client = sdk(proxy)
    claude.push(Action("error", status=529, body=error_body("overloaded_error", "Overloaded")))
    with pytest.raises(anthropic.APIStatusError) as exc:
        client.messages.create(model=SONNET, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 529
    assert exc.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Anthropic: Overloaded"},
    }
    limited = error_body("rate_limit_error", "slow down")
    claude.push(Action("error", status=429, body=limited, headers={"retry-after": "7"}))
    with pytest.raises(anthropic.RateLimitError) as rate:
        client.messages.create(model=SONNET, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert rate.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nope/nothing", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    raw = proxy.http().post("/v1/messages", json={"model": SONNET, "messages": [{"role": "user", "content": "x"}]})
    assert raw.status_code == 400
    assert raw.json()["type"] == "error" and raw.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in raw.json()["error"]["message"]


def test_errors_inside_a_stream(
    isolated_env: Path, claude: BetaFakeAnthropic, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    providers(isolated_env, monkeypatch, claude=claude)
    client = sdk(start_proxy())
    start = {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "c"}}
    started = f"event: message_start\ndata: {json.dumps(start)}\n\n".encode()
    overloaded = f"event: error\ndata: {json.dumps(error_body('overloaded_error', 'Overloaded'))}\n\n".encode()
    for chunks, match in (([started, overloaded], "Overloaded"), ([started], "no message_stop")):
        claude.push(Action("raw", chunks=chunks))
        with (
            pytest.raises(anthropic.APIStatusError, match=match),
            client.messages.stream(model=SONNET, max_tokens=5, messages=[{"role": "user", "content": "hi"}]) as s,
        ):
            s.get_final_message()


def test_count_tokens_forwarded_to_anthropic(
    isolated_env: Path, claude: BetaFakeAnthropic, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    providers(isolated_env, monkeypatch, claude=claude)
    client = sdk(start_proxy())
    counted = client.messages.count_tokens(model=SONNET, messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens == 4242
    assert claude.last.path == "/v1/messages/count_tokens" and claude.last.body["model"] == SONNET


# --- translated upstreams ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_gemini_tools_and_thought_signatures_replayed(
    isolated_env: Path, gemini: CountingGemini, start_proxy: Any, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """Gemini 3 refuses (400) a replayed function call without its signature; so does the fake."""
    providers(isolated_env, monkeypatch, gemini=gemini)
    client = sdk(start_proxy())
    first, _ = two_turns(client, "google/gemini-3-pro-preview", stream=stream, thinking=True)
    assert first.content[0].type == "thinking" and "Considering" in first.content[0].thinking
    replayed = gemini.last.body["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in replayed if "functionCall" in p] == ["c2lnLTE=", None]


def test_gemini_count_tokens(
    isolated_env: Path, gemini: CountingGemini, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    providers(isolated_env, monkeypatch, gemini=gemini)
    client = sdk(start_proxy())
    messages: list[Any] = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    messages.append({"role": "user", "content": "c"})
    assert client.messages.count_tokens(model="google/gemini-2.5-flash", messages=messages).input_tokens == 21
    assert gemini.last.path == "/v1beta/models/gemini-2.5-flash:countTokens"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_bedrock_reasoning_signature_replayed(fake_bedrock: FakeBedrock, start_proxy: Any, stream: bool) -> None:
    client = sdk(start_proxy())
    first, _ = two_turns(
        client, "amazon-bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", stream=stream, thinking=True
    )
    assert first.content[0].type == "thinking"
    turn = fake_bedrock.requests[-1].body["messages"][1]["content"]
    reasoning = turn[0]["reasoningContent"]["reasoningText"]
    assert reasoning["text"] == first.content[0].thinking and reasoning["signature"]


def test_bedrock_count_tokens_is_estimated_without_a_call(fake_bedrock: FakeBedrock, start_proxy: Any) -> None:
    client = sdk(start_proxy())
    counted = client.messages.count_tokens(
        model=BEDROCK_CLAUDE,
        system="x" * 70,
        messages=[{"role": "user", "content": "y" * 35}],
    )
    assert counted.input_tokens == 30 + 4
    assert fake_bedrock.requests == []


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_responses_upstream_reasoning_replayed(
    isolated_env: Path, responses: FakeResponses, start_proxy: Any, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    providers(isolated_env, monkeypatch, responses=responses)
    client = sdk(start_proxy())
    first, _ = two_turns(client, "resp/gpt-5-pro", stream=stream, thinking=True)
    assert first.content[0].type in ("thinking", "redacted_thinking")
    items = [it for it in responses.requests[-1].body["input"] if it.get("type") == "reasoning"]
    assert len(items) == 1 and items[0]["encrypted_content"] == responses.issued[items[0]["id"]]


@pytest.mark.skipif(
    translating_wire("openai-completions") is None,
    reason="no canonical → OpenAI chat wire module yet (providers/wire: openai-completions is passthrough-only)",
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_openai_chat_upstream(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    providers(isolated_env, monkeypatch, openai=fake_openai)
    client = sdk(start_proxy())
    out = _ask(client, [{"role": "user", "content": "hello"}], stream, {"model": "local/m", "max_tokens": 50})
    assert out.content[0].type == "text" and out.content[0].text


# --- routing ----------------------------------------------------------------------------------


def test_bare_claude_ids_go_to_anthropic_and_aliases_win(
    isolated_env: Path,
    claude: BetaFakeAnthropic,
    gemini: CountingGemini,
    start_proxy: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    providers(isolated_env, monkeypatch, claude=claude, gemini=gemini)
    # Another configured provider listing the same bare id would make it ambiguous without the rule.
    entries = json.loads((isolated_env / "models.json").read_text())["providers"]
    entries["other"] = {
        "baseUrl": gemini.url,
        "api": "anthropic-messages",
        "apiKey": "x",
        "models": [{"id": "claude-haiku-4-5"}],
    }
    models_json(isolated_env, entries)
    config = ServerConfig(discovery=NO_DISCOVERY, aliases={SONNET: "google/gemini-2.5-flash"})
    client = sdk(start_proxy(config=config))
    client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert claude.last.body["model"] == "claude-haiku-4-5"
    out = client.messages.create(model=SONNET, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert out.content[0].type == "text" and gemini.last.path.endswith("gemini-2.5-flash:generateContent")


# --- Claude Code, replayed --------------------------------------------------------------------


def replay(http: httpx.Client, name: str) -> list[httpx.Response]:
    answers = []
    for ex in json.loads((FIXTURES / name).read_text()):
        resp = http.request(ex["method"], ex["path"], headers=ex["headers"], json=ex.get("body"))
        answers.append(resp)
    return answers


def check_answers(answers: list[httpx.Response], fixture: str) -> None:
    for ex, resp in zip(json.loads((FIXTURES / fixture).read_text()), answers, strict=True):
        if ex["method"] == "HEAD":
            assert resp.status_code < 500  # Claude Code's probe only needs an answer
            continue
        assert resp.status_code == 200, resp.text
        if (ex.get("body") or {}).get("stream"):
            names = [line[7:] for line in resp.text.splitlines() if line.startswith("event: ")]
            assert names[0] == "message_start" and names[-1] == "message_stop" and "error" not in names, names


_ALIASED = {
    "gemini": "google/gemini-2.5-flash",
    "bedrock": BEDROCK_CLAUDE,
    "responses": "resp/gpt-5-pro",
}


@pytest.mark.parametrize("upstream", ["anthropic", "gemini", "bedrock", "responses"])
def test_claude_code_session_replayed(
    isolated_env: Path,
    claude: BetaFakeAnthropic,
    gemini: CountingGemini,
    responses: FakeResponses,
    start_proxy: Any,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    upstream: str,
) -> None:
    providers(isolated_env, monkeypatch, claude=claude, gemini=gemini, responses=responses)
    if upstream == "bedrock":
        request.getfixturevalue("fake_bedrock")
    aliases = {}
    if upstream in _ALIASED:
        aliases = {name: _ALIASED[upstream] for name in ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001")}
    proxy = start_proxy(config=ServerConfig(discovery=NO_DISCOVERY, aliases=aliases))
    http = proxy.http()
    for fixture in ("claude_code_probe.json", "claude_code_turns.json", "claude_code_count_tokens.json"):
        check_answers(replay(http, fixture), fixture)
    session = "5f0c7c1e-3a52-4d1e-9a57-2f4d8c1b7e90"
    assert any(session in r.getMessage() for r in proxy.logs)
    if upstream == "anthropic":
        turns = [r for r in claude.requests if r.path == "/v1/messages" and r.body.get("tools")]
        assert len(turns) == 2 and all(len(t.body["tools"]) == 24 for t in turns)
        assert turns[0].headers["anthropic-beta"].startswith("claude-code-20250219,interleaved-thinking")
        assert turns[1].body["messages"][1]["content"][0]["type"] == "thinking"
        assert claude.requests[-1].path == "/v1/messages/count_tokens"
    elif upstream == "gemini":
        sent = [r for r in gemini.requests if "enerateContent" in r.path]
        assert len(sent) == 4 and all("context_management" not in r.body for r in sent)
        assert [len(r.body["tools"][0]["functionDeclarations"]) for r in sent[2:]] == [24, 24]
        # count_tokens on Gemini is Gemini's own countTokens
        assert [r.path for r in gemini.requests[-2:]] == ["/v1beta/models/gemini-2.5-flash:countTokens"] * 2


# --- images -----------------------------------------------------------------------------------

TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
IMAGE_TURN = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": TINY_PNG}},
        ],
    }
]


def test_image_to_anthropic_and_to_gemini(
    isolated_env: Path,
    claude: BetaFakeAnthropic,
    gemini: CountingGemini,
    start_proxy: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    providers(isolated_env, monkeypatch, claude=claude, gemini=gemini)
    client = sdk(start_proxy())
    out = client.messages.create(model=SONNET, max_tokens=50, messages=IMAGE_TURN)  # type: ignore[arg-type]
    assert out.content[0].text == "I see an image (image/png)"  # type: ignore[union-attr]
    assert claude.last.body["messages"] == IMAGE_TURN
    client.messages.create(model="google/gemini-2.5-flash", max_tokens=50, messages=IMAGE_TURN)  # type: ignore[arg-type]
    parts = gemini.last.body["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": TINY_PNG}}


# --- Claude on Vertex: the passthrough in rawPredict's shape ---------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_claude_on_vertex_passthrough(
    isolated_env: Path, start_proxy: Any, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    from tests.fakes.vertex_upstream import FakeVertex

    fake = FakeVertex().start()
    try:
        monkeypatch.setenv("GOOGLE_CLOUD_API_KEY", fake.api_key)  # express mode: no token endpoint involved
        models_json(isolated_env, {"google-vertex": {"baseUrl": fake.url}})
        client = sdk(start_proxy())
        model = "google-vertex/claude-sonnet-4-5@20250929"
        kwargs: dict[str, Any] = {
            "model": model,
            "max_tokens": 50,
            "extra_headers": {"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"},
            "extra_body": {"context_management": {"edits": []}},
        }
        out = _ask(client, [{"role": "user", "content": "hi there"}], stream, kwargs)
        assert out.content[0].text == "Echo: hi there"
        call = fake.calls[-1]
        method = "streamRawPredict" if stream else "rawPredict"
        assert call.path == f"/v1/publishers/anthropic/models/claude-sonnet-4-5@20250929:{method}"
        assert call.body["anthropic_version"] == "vertex-2023-10-16" and "model" not in call.body
        assert "context_management" not in call.body and "anthropic-version" not in call.headers
        assert call.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    finally:
        fake.stop()
