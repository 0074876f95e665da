"""ChatGPT Plus/Pro (Codex): the login (PKCE + callback, paste, device code), refresh, the wire module and
the adapter, and requests through a live proxy with the real ``openai`` SDK against fake OpenAI servers."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest

from providers.canonical import Message, Request, Text, ToolCall
from providers.cloud.base import RequestContext
from providers.cloud.codex import ADAPTER
from providers.errors import MissingCredentials, UpstreamError
from providers.oauth import base as oauth_base
from providers.oauth import codex as codex_oauth
from providers.oauth.codex import FLOW, account_id_from_token
from providers.registry import DEFAULT_COMPAT, load_builtin_providers
from providers.wire.base import UpstreamCall, WireTarget
from providers.wire.openai_codex_responses import API as CODEX_API
from providers.wire.openai_codex_responses import codex_url
from tests.conftest import auth_json
from tests.fakes.codex_upstream import CLAIM, Action, FakeCodex, FakeCodexAuth, make_jwt
from tests.fakes.responses_upstream import encode, stream_events
from tests.fakes.server import free_port
from tests.scripted_ui import ScriptedUI

MODEL = "openai-codex/gpt-5.4"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def oauth(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCodexAuth]:
    server = FakeCodexAuth().start()
    monkeypatch.setenv("SWITCHBOARD_CODEX_AUTH_BASE", server.url)
    monkeypatch.setenv("SWITCHBOARD_CODEX_CALLBACK_PORT", str(free_port()))
    yield server
    server.stop()


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCodex]:
    server = FakeCodex().start()
    monkeypatch.setenv("SWITCHBOARD_CODEX_BASE_URL", server.url + "/backend-api")
    yield server
    server.stop()


def _redirect_location(ui: ScriptedUI) -> str:
    """What the browser would land on: the fake authorize page's redirect, not followed."""
    resp = httpx.get(ui.opened[0], follow_redirects=False)
    assert resp.status_code == 302
    return resp.headers["location"]


def _login(ui: ScriptedUI) -> dict[str, Any]:
    try:
        return FLOW.login(ui)
    finally:
        ui.released.set()


# --- tokens -----------------------------------------------------------------------------------


def test_account_id_comes_from_the_jwt_claim() -> None:
    token = make_jwt({"exp": 1, CLAIM: {"chatgpt_account_id": "acct-42", "chatgpt_plan_type": "pro"}})
    assert account_id_from_token(token) == "acct-42"
    assert account_id_from_token(make_jwt({"sub": "x"})) is None
    assert account_id_from_token(make_jwt({CLAIM: {"chatgpt_account_id": ""}})) is None
    assert account_id_from_token("not-a-jwt") is None
    assert account_id_from_token("a.%%%.c") is None
    assert account_id_from_token("") is None


def test_pkce_pair_is_s256() -> None:
    import base64
    import hashlib

    verifier, challenge = codex_oauth.pkce_pair()
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == digest and len(verifier) == 43 and "=" not in verifier


# --- login: browser + local callback ----------------------------------------------------------


def test_browser_login_through_the_local_callback(oauth: FakeCodexAuth) -> None:
    pages: list[httpx.Response] = []

    def browser(url: str) -> None:
        query = parse_qs(urlsplit(url).query)
        port = urlsplit(query["redirect_uri"][0]).port
        # An answer carrying another attempt's state is refused and does not end the login.
        bad = httpx.get(f"http://127.0.0.1:{port}/auth/callback?code=evil&state=wrong")
        assert bad.status_code == 400
        pages.append(httpx.get(url, follow_redirects=True))

    ui = ScriptedUI(hold=True, on_open=browser)
    t0 = time.time() * 1000
    entry = _login(ui)
    assert pages[0].status_code == 200 and "login complete" in pages[0].text
    params = oauth.authorize_params[-1]
    assert params["client_id"] == "app_EMoamEEZ73f0CkXaXp7hrann"
    assert params["scope"] == "openid profile email offline_access"
    assert params["redirect_uri"].startswith("http://localhost:") and params["redirect_uri"].endswith("/auth/callback")
    assert params["code_challenge_method"] == "S256" and len(params["state"]) == 32
    assert params["id_token_add_organizations"] == "true" and params["codex_cli_simplified_flow"] == "true"
    form = oauth.token_forms[-1]
    assert form["grant_type"] == "authorization_code" and form["redirect_uri"] == params["redirect_uri"]
    assert entry["type"] == "oauth" and entry["access"] == oauth.issued[-1]
    assert entry["refresh"] in oauth.refresh_tokens and entry["accountId"] == "acct-1234"
    assert t0 + 3600_000 <= entry["expires"] <= time.time() * 1000 + 3600_000
    # The callback server is gone once the login is over.
    port = urlsplit(params["redirect_uri"]).port
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/auth/callback")


def test_callback_error_fails_the_login(oauth: FakeCodexAuth) -> None:
    def browser(url: str) -> None:
        query = parse_qs(urlsplit(url).query)
        httpx.get(query["redirect_uri"][0].replace("localhost", "127.0.0.1"),
                  params={"error": "access_denied", "state": query["state"][0]})  # fmt: skip

    with pytest.raises(RuntimeError, match="access_denied"):
        _login(ScriptedUI(hold=True, on_open=browser))


# --- login: paste fallback --------------------------------------------------------------------


@pytest.mark.parametrize("form", ["url", "code#state", "code", "query"])
def test_paste_fallback(oauth: FakeCodexAuth, form: str) -> None:
    def paste(ui: ScriptedUI) -> str:
        location = _redirect_location(ui)
        q = parse_qs(urlsplit(location).query)
        return {
            "url": location,
            "code#state": f"{q['code'][0]}#{q['state'][0]}",
            "code": q["code"][0],
            "query": urlsplit(location).query,
        }[form]

    ui = ScriptedUI(hold=True, answers=[paste])
    entry = _login(ui)
    assert entry["access"] == oauth.issued[-1] and entry["accountId"] == "acct-1234"
    assert "redirect URL" in ui.asked[0] and "'d'" in ui.asked[0]


def test_paste_with_another_state_is_refused(oauth: FakeCodexAuth) -> None:
    def paste(ui: ScriptedUI) -> str:
        return _redirect_location(ui).replace("state=", "state=x")

    with pytest.raises(RuntimeError, match="state mismatch"):
        _login(ScriptedUI(hold=True, answers=[paste]))
    assert oauth.token_forms == []


def test_paste_works_when_the_callback_port_is_taken(oauth: FakeCodexAuth, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("SWITCHBOARD_CODEX_CALLBACK_PORT", str(busy.getsockname()[1]))
        ui = ScriptedUI(hold=True, answers=[_redirect_location])
        entry = _login(ui)
    assert entry["access"] == oauth.issued[-1]
    assert any("Could not listen" in s for s in ui.said)


# --- login: device code -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["prompt", "env"])
def test_device_login_pending_then_slow_down_then_success(
    oauth: FakeCodexAuth, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setattr(codex_oauth, "SLOW_DOWN_STEP", 0.3)
    oauth.device_script = ["forbidden", "pending", "slow_down", "pending", "ok"]
    if how == "env":
        monkeypatch.setenv("SWITCHBOARD_LOGIN_DEVICE", "1")
    ui = ScriptedUI(hold=True, answers=["d"])
    entry = _login(ui)
    assert entry["access"] == oauth.issued[-1] and entry["accountId"] == "acct-1234"
    assert [step for _, step in oauth.device_polls] == ["forbidden", "pending", "slow_down", "pending", "ok"]
    times = [t for t, _ in oauth.device_polls]
    assert times[3] - times[2] >= 0.3  # backed off by SLOW_DOWN_STEP after slow_down
    assert oauth.token_forms[-1]["redirect_uri"] == f"{oauth.url}/deviceauth/callback"
    assert ui.opened[-1] == f"{oauth.url}/codex/device"
    assert any("ABCD-1234" in s for s in ui.said)
    if how == "env":
        assert ui.asked == []  # straight to the device code: no browser, no prompt


def test_device_login_refused(oauth: FakeCodexAuth, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_LOGIN_DEVICE", "1")
    oauth.device_script = ["pending", "denied"]
    with pytest.raises(RuntimeError, match="access_denied"):
        _login(ScriptedUI(hold=True))


# --- refresh ----------------------------------------------------------------------------------


def test_refresh_success_rotates_the_tokens(oauth: FakeCodexAuth) -> None:
    first = oauth.issue()
    entry = {"type": "oauth", "access": first["access_token"], "refresh": first["refresh_token"], "expires": 0}
    new = FLOW.refresh(entry)
    form = oauth.token_forms[-1]
    assert form == {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": form["client_id"],
    }
    assert new["access"] == oauth.issued[-1] != first["access_token"]
    assert new["refresh"] != first["refresh_token"] and new["accountId"] == "acct-1234"
    assert new["expires"] > time.time() * 1000 + 3000_000


def test_refresh_refused_raises_refresh_failed(oauth: FakeCodexAuth) -> None:
    entry = {"type": "oauth", "access": "x", "refresh": "rt_revoked", "expires": 0}
    with pytest.raises(oauth_base.RefreshFailed, match="invalid_grant"):
        FLOW.refresh(entry)
    oauth.refresh_status = 401
    with pytest.raises(oauth_base.RefreshFailed):
        FLOW.refresh(entry)


def test_refresh_server_error_is_not_a_refused_login(oauth: FakeCodexAuth) -> None:
    oauth.refresh_status = 503
    with pytest.raises(UpstreamError) as info:
        FLOW.refresh({"type": "oauth", "access": "x", "refresh": "rt", "expires": 0})
    assert not isinstance(info.value, oauth_base.RefreshFailed) and info.value.status == 502


# --- wire module and adapter ------------------------------------------------------------------


def _target(base: str = "https://chatgpt.com/backend-api") -> WireTarget:
    provider = next(p for p in load_builtin_providers() if p.id == "openai-codex")
    return WireTarget("openai-codex", provider.name, base, "gpt-5.4", provider.model("gpt-5.4"), DEFAULT_COMPAT)


@pytest.mark.parametrize(
    "base",
    [
        "https://chatgpt.com/backend-api",
        "https://chatgpt.com/backend-api/",
        "https://chatgpt.com/backend-api/codex",
        "https://chatgpt.com/backend-api/codex/responses",
    ],
)
def test_codex_url_normalization(base: str) -> None:
    assert codex_url(base) == "https://chatgpt.com/backend-api/codex/responses"


def test_body_has_what_the_backend_requires() -> None:
    req = Request(
        model="gpt-5.4",
        system=[Text("Be brief.")],
        messages=[Message("user", [Text("hi")])],
        max_tokens=100,
        stream=False,
        session_id="sess-1",
    )
    call = CODEX_API.build(req, _target())
    body = msgspec.json.decode(call.body)
    assert call.url == "https://chatgpt.com/backend-api/codex/responses"
    assert body["store"] is False and body["stream"] is True and body["instructions"] == "Be brief."
    assert body["include"] == ["reasoning.encrypted_content"] and body["text"] == {"verbosity": "low"}
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is True
    assert body["prompt_cache_key"] == "sess-1" and "max_output_tokens" not in body
    assert call.headers == {"session-id": "sess-1", "x-client-request-id": "sess-1"}
    bare = msgspec.json.decode(CODEX_API.build(Request(model="m", messages=req.messages), _target()).body)
    assert bare["instructions"] == "" and "prompt_cache_key" not in bare


def test_non_streaming_answer_is_decoded_from_sse() -> None:
    from tests.fakes.responses_upstream import FakeResponses

    fake = FakeResponses()
    try:
        body = {
            "model": "gpt-5.4",
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "yo"}]}],
            "tools": [{"type": "function", "name": "get_weather", "parameters": {}}],
            "reasoning": {"effort": "low", "summary": "auto"},
            "include": ["reasoning.encrypted_content"],
        }
        response = fake._respond(body)
    finally:
        fake.discard()
    sse = b"".join(encode(ev) for ev in stream_events(response))
    resp = CODEX_API.decode_response(sse, _target())
    assert resp.id == response["id"] and resp.finish_reason == "tool_calls"
    calls = [b for b in resp.content if isinstance(b, ToolCall)]
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Paris", "Tokyo"]
    assert resp.content[0].source == "openai-codex-responses:openai-codex"  # type: ignore[union-attr]
    assert resp.usage is not None and resp.usage.output_tokens > 0


async def test_adapter_headers() -> None:
    provider = next(p for p in load_builtin_providers() if p.id == "openai-codex")
    token = make_jwt({CLAIM: {"chatgpt_account_id": "acct-9"}})
    auth = await ADAPTER.resolve(provider, token, "auth.json (oauth)", {})
    assert auth.base_url == "https://chatgpt.com/backend-api" and auth.source == "auth.json (oauth)"
    assert auth.headers["authorization"] == f"Bearer {token}" and auth.headers["chatgpt-account-id"] == "acct-9"
    assert auth.headers["originator"] == "switchboard" and auth.headers["user-agent"].startswith("switchboard (")
    assert ADAPTER.api_for(provider, "gpt-5.4", None) == "openai-codex-responses"
    assert ADAPTER.available(provider, True, {}) and not ADAPTER.available(provider, False, {})
    env = {"SWITCHBOARD_CODEX_BASE_URL": "http://127.0.0.1:1/backend-api/"}
    assert (await ADAPTER.resolve(provider, token, "x", env)).base_url == "http://127.0.0.1:1/backend-api"
    with pytest.raises(MissingCredentials, match="login openai-codex"):
        await ADAPTER.resolve(provider, make_jwt({"sub": "x"}), "x", {})
    with pytest.raises(MissingCredentials):
        await ADAPTER.resolve(provider, None, "ambient", {})
    call = UpstreamCall("u", b"{}", {"authorization": "Bearer t"})
    ctx = RequestContext({"x-session-id": "s-7"}, "openai-codex-responses")
    out = await ADAPTER.finalize(call, auth, _target(), ctx)
    assert out.headers["OpenAI-Beta"] == "responses=experimental" and out.headers["accept"] == "text/event-stream"
    assert out.headers["session-id"] == "s-7" and out.headers["x-client-request-id"] == "s-7"
    plain = await ADAPTER.finalize(call, auth, _target(), RequestContext({}, "openai-codex-responses"))
    assert "session-id" not in plain.headers


# --- through a live proxy ---------------------------------------------------------------------


def _seed(isolated_env: Path, oauth: FakeCodexAuth, expires_ms: float | None = None) -> dict[str, Any]:
    tokens = oauth.issue()
    entry = {
        "type": "oauth",
        "access": tokens["access_token"],
        "refresh": tokens["refresh_token"],
        "expires": int(expires_ms if expires_ms is not None else time.time() * 1000 + 3600_000),
        "accountId": "acct-1234",
    }
    auth_json(isolated_env, {"openai-codex": entry})
    return entry


@pytest.fixture
def codex_proxy(isolated_env: Path, oauth: FakeCodexAuth, backend: FakeCodex, start_proxy: Any) -> Any:
    _seed(isolated_env, oauth)
    return start_proxy()


def test_chat_through_the_proxy(codex_proxy: Any, backend: FakeCodex, oauth: FakeCodexAuth) -> None:
    client = codex_proxy.client()
    answer = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}],
        max_tokens=50,
        extra_body={"prompt_cache_key": "sess-42"},
    )
    assert answer.choices[0].message.content == "Echo: hello"
    assert answer.choices[0].finish_reason == "stop" and answer.usage is not None
    seen = backend.last
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert seen.path == "/backend-api/codex/responses"
    assert headers["authorization"] == f"Bearer {oauth.issued[-1]}" and headers["chatgpt-account-id"] == "acct-1234"
    assert headers["originator"] == "switchboard" and headers["user-agent"].startswith("switchboard (")
    assert headers["openai-beta"] == "responses=experimental" and headers["accept"] == "text/event-stream"
    assert headers["session-id"] == "sess-42" and headers["x-client-request-id"] == "sess-42"
    body = seen.body
    assert body["store"] is False and body["stream"] is True and body["instructions"] == "Be brief."
    assert body["text"]["verbosity"] == "low" and body["prompt_cache_key"] == "sess-42"
    assert "max_output_tokens" not in body


def test_streamed_chat_through_the_proxy(codex_proxy: Any, backend: FakeCodex) -> None:
    client = codex_proxy.client()
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream me please"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None
    assert "session-id" not in {k.lower() for k in backend.last.headers}


def test_tool_call_round_trip_through_the_proxy(codex_proxy: Any, backend: FakeCodex) -> None:
    client = codex_proxy.client()
    messages: list[Any] = [{"role": "user", "content": "weather in Paris and Tokyo?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    calls = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Paris", "Tokyo"]
    assert backend.last.body["tool_choice"] == "auto" and backend.last.body["parallel_tool_calls"] is True
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    for c in calls:
        messages.append({"role": "tool", "tool_call_id": c.id, "content": f"sunny in {c.id}"})
    stream = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("Tool results: sunny in")


def test_expired_token_is_refreshed_before_the_request(
    isolated_env: Path, oauth: FakeCodexAuth, backend: FakeCodex, start_proxy: Any
) -> None:
    old = _seed(isolated_env, oauth, expires_ms=time.time() * 1000 - 1000)
    # The stored token is really expired: the backend would refuse it.
    backend.rejected_keys.add(old["access"])
    proxy = start_proxy()
    answer = proxy.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "Echo: hi"
    assert [f["grant_type"] for f in oauth.token_forms] == ["refresh_token"]
    new_access = oauth.issued[-1]
    assert backend.last.headers["Authorization"] == f"Bearer {new_access}"
    stored = json.loads((isolated_env / "auth.json").read_text())["openai-codex"]
    assert stored["access"] == new_access and stored["refresh"] != old["refresh"]
    assert stored["expires"] > time.time() * 1000 and stored["accountId"] == "acct-1234"


def test_token_revoked_early_is_refreshed_after_a_401(
    codex_proxy: Any, backend: FakeCodex, oauth: FakeCodexAuth
) -> None:
    client = codex_proxy.client()
    assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a"}]).choices
    backend.rejected_keys.add(oauth.issued[-1])
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "b"}])
    assert answer.choices[0].message.content == "Echo: b"
    assert [f["grant_type"] for f in oauth.token_forms] == ["refresh_token"]
    assert backend.last.headers["Authorization"] == f"Bearer {oauth.issued[-1]}"


def test_refused_refresh_says_to_log_in_again(
    isolated_env: Path, oauth: FakeCodexAuth, backend: FakeCodex, start_proxy: Any
) -> None:
    import openai

    entry = _seed(isolated_env, oauth, expires_ms=time.time() * 1000 - 1000)
    oauth.refresh_tokens.discard(entry["refresh"])  # revoked
    proxy = start_proxy()
    with pytest.raises(openai.AuthenticationError) as info:
        proxy.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "switchboard login openai-codex" in str(info.value)
    assert backend.requests == []


def test_refresh_answer_without_an_account_is_an_upstream_error(
    isolated_env: Path, oauth: FakeCodexAuth, backend: FakeCodex, start_proxy: Any
) -> None:
    import openai

    _seed(isolated_env, oauth, expires_ms=time.time() * 1000 - 1000)
    oauth.account_id = ""  # the refreshed tokens name no ChatGPT account
    proxy = start_proxy()
    with pytest.raises(openai.APIStatusError) as info:
        proxy.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502
    assert "ChatGPT token refresh" in info.value.message and "account id" in info.value.message
    assert backend.requests == []


def test_backend_error_is_reported(codex_proxy: Any, backend: FakeCodex) -> None:
    import openai

    backend.push(Action("error", status=429, body={"error": {"type": "usage_limit_reached", "message": "limit"}}))
    with pytest.raises(openai.RateLimitError, match="limit"):
        codex_proxy.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
