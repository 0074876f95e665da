"""Claude Pro/Max login (``providers.oauth.anthropic``): PKCE through the local callback and the paste
fallback, refresh, and requests through a live proxy with the token kept fresh across processes."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import openai
import pytest

from providers import oauth
from providers.authstore import AuthStore
from providers.errors import UpstreamError, UpstreamUnreachable
from providers.oauth.anthropic import CLIENT_ID, FLOW, SCOPES, code_from_paste, pkce_pair
from providers.oauth.base import RefreshFailed
from tests.conftest import auth_json, models_json
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.claude_oauth import FakeClaudeAuth, s256
from tests.fakes.server import free_port
from tests.scripted_ui import ScriptedUI

MODEL = "anthropic/claude-haiku-4-5"
IDENTITY = "You are Claude Code, Anthropic's official CLI for Claude."


@pytest.fixture
def auth_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClaudeAuth]:
    server = FakeClaudeAuth().start()
    monkeypatch.setenv("SWITCHBOARD_CLAUDE_AUTHORIZE_URL", server.authorize_url)
    monkeypatch.setenv("SWITCHBOARD_CLAUDE_TOKEN_URL", server.token_url)
    monkeypatch.setenv("SWITCHBOARD_CLAUDE_CALLBACK_PORT", str(free_port()))
    yield server
    server.stop()


@pytest.fixture
def backend(auth_server: FakeClaudeAuth) -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key="none-issued-yet").start()
    # Only the newest access token is valid, as after a real refresh.
    auth_server.on_issue = lambda token: setattr(fake, "api_key", token)
    yield fake
    fake.stop()


def _login(ui: ScriptedUI) -> dict[str, Any]:
    try:
        return FLOW.login(ui)
    finally:
        ui.released.set()


def _redirect_location(ui: ScriptedUI) -> str:
    """Where the (fake) authorize page sends the browser, not followed."""
    resp = httpx.get(ui.opened[0], follow_redirects=False)
    assert resp.status_code == 302
    return str(resp.headers["location"])


# --- the login ---------------------------------------------------------------------------------


def test_pkce_pair_is_s256() -> None:
    verifier, challenge = pkce_pair()
    assert len(verifier) == 43 and "=" not in verifier
    assert challenge == s256(verifier)


def test_login_through_the_local_callback(auth_server: FakeClaudeAuth) -> None:
    seen: dict[str, Any] = {}

    def browser(url: str) -> None:
        params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        seen.update(params)
        assert url.startswith(auth_server.authorize_url + "?")
        assert params["code"] == "true" and params["client_id"] == CLIENT_ID
        assert params["response_type"] == "code" and params["scope"] == SCOPES
        assert params["code_challenge_method"] == "S256"
        assert params["code_challenge"] == s256(params["state"])  # state is the PKCE verifier
        assert params["redirect_uri"] == f"http://localhost:{FLOW.callback_port()}/callback"
        # The browser: the authorize page redirects, then the redirect lands on the local server.
        location = httpx.get(url, follow_redirects=False).headers["location"]
        local = location.replace("http://localhost:", "http://127.0.0.1:")
        answer = httpx.get(local)
        assert answer.status_code == 200 and "login complete" in answer.text

    ui = ScriptedUI(hold=True, on_open=browser)
    before = time.time() * 1000
    entry = _login(ui)
    assert set(entry) == {"type", "access", "refresh", "expires"}
    assert entry["type"] == "oauth" and entry["access"] == auth_server.issued[-1]
    assert entry["refresh"].startswith("sk-ant-ort01-")
    # expires = now + expires_in*1000 - 5 min
    expected = before + auth_server.expires_in * 1000 - 5 * 60 * 1000
    assert expected - 1000 <= entry["expires"] <= expected + 60_000
    body = auth_server.bodies[-1]
    assert body["grant_type"] == "authorization_code" and body["client_id"] == CLIENT_ID
    assert body["state"] == body["code_verifier"] == seen["state"]
    assert body["redirect_uri"] == seen["redirect_uri"]


def test_callback_with_a_wrong_state_is_refused_then_paste_wins(auth_server: FakeClaudeAuth) -> None:
    def browser(url: str) -> None:
        bad = httpx.get(f"http://127.0.0.1:{FLOW.callback_port()}/callback?code=x&state=other")
        assert bad.status_code == 400

    ui = ScriptedUI(hold=True, on_open=browser, answers=[_redirect_location])
    assert _login(ui)["access"] == auth_server.issued[-1]


@pytest.mark.parametrize("form", ["url", "code#state", "bare"])
def test_paste_fallback(auth_server: FakeClaudeAuth, form: str) -> None:
    def paste(ui: ScriptedUI) -> str:
        location = _redirect_location(ui)
        if form == "url":
            return location
        params = parse_qs(urlsplit(location).query)
        code, state = params["code"][0], params["state"][0]
        return f"{code}#{state}" if form == "code#state" else code

    ui = ScriptedUI(hold=True, answers=[paste])
    entry = _login(ui)
    assert entry["access"] == auth_server.issued[-1]
    assert ui.asked and "Paste" in ui.asked[0]
    body = auth_server.bodies[-1]
    assert body["grant_type"] == "authorization_code" and body["state"] == body["code_verifier"]


def test_paste_with_another_state_is_refused(auth_server: FakeClaudeAuth) -> None:
    ui = ScriptedUI(hold=True, answers=["somecode#not-this-login"])
    with pytest.raises(RuntimeError, match="state mismatch"):
        _login(ui)
    assert auth_server.bodies == []


def test_paste_works_when_the_callback_port_is_taken(auth_server: FakeClaudeAuth) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", FLOW.callback_port()))
        taken.listen()
        ui = ScriptedUI(hold=True, answers=[_redirect_location])
        assert _login(ui)["access"] == auth_server.issued[-1]
        assert any("Could not listen" in s for s in ui.said)


def test_code_from_paste_forms() -> None:
    assert code_from_paste("abc", "v") == ("abc", "v")
    assert code_from_paste(" abc#v ", "v") == ("abc", "v")
    assert code_from_paste("http://localhost:53692/callback?code=abc&state=v", "v") == ("abc", "v")
    assert code_from_paste("https://console.anthropic.com/oauth/code/callback?code=abc#v", "v") == ("abc", "v")
    with pytest.raises(RuntimeError, match="failed: access_denied"):
        code_from_paste("http://localhost:53692/callback?error=access_denied", "v")
    with pytest.raises(RuntimeError, match="cancelled"):
        code_from_paste("  ", "v")


def test_refused_code_fails_the_login(auth_server: FakeClaudeAuth) -> None:
    ui = ScriptedUI(hold=True, answers=["not-a-code-it-issued"])
    with pytest.raises(RuntimeError, match="token exchange failed: HTTP 400"):
        _login(ui)


# --- refresh -----------------------------------------------------------------------------------


def test_refresh_success_rotates_the_tokens(auth_server: FakeClaudeAuth) -> None:
    first = auth_server.issue()
    entry = {"type": "oauth", "access": first["access_token"], "refresh": first["refresh_token"], "expires": 1}
    new = FLOW.refresh(entry)
    assert new["type"] == "oauth" and new["access"] == auth_server.issued[-1] != first["access_token"]
    assert new["refresh"] != first["refresh_token"] and new["expires"] > time.time() * 1000
    assert auth_server.bodies[-1] == {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "refresh_token": first["refresh_token"],
    }


def test_refresh_refused_raises_refresh_failed(auth_server: FakeClaudeAuth) -> None:
    with pytest.raises(RefreshFailed, match="400"):
        FLOW.refresh({"type": "oauth", "access": "a", "refresh": "sk-ant-ort01-revoked", "expires": 1})
    with pytest.raises(RefreshFailed):
        FLOW.refresh({"type": "oauth", "access": "a", "expires": 1})


@pytest.mark.parametrize("status", [400, 401])
def test_refresh_refused_status_raises_refresh_failed(auth_server: FakeClaudeAuth, status: int) -> None:
    tokens = auth_server.issue()
    auth_server.refresh_status = status
    with pytest.raises(RefreshFailed, match=str(status)):
        FLOW.refresh({"type": "oauth", "access": "a", "refresh": tokens["refresh_token"], "expires": 1})


def test_refresh_server_error_is_not_a_refused_login(
    auth_server: FakeClaudeAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = auth_server.issue()
    auth_server.refresh_status = 503
    with pytest.raises(UpstreamError) as info:
        FLOW.refresh({"type": "oauth", "access": "a", "refresh": tokens["refresh_token"], "expires": 1})
    assert not isinstance(info.value, RefreshFailed)
    monkeypatch.setenv("SWITCHBOARD_CLAUDE_TOKEN_URL", f"http://127.0.0.1:{free_port()}/v1/oauth/token")
    with pytest.raises(UpstreamUnreachable):
        FLOW.refresh({"type": "oauth", "access": "a", "refresh": tokens["refresh_token"], "expires": 1})


# --- through a live proxy ----------------------------------------------------------------------


def _seed(home: Path, server: FakeClaudeAuth, expires_ms: float | None = None) -> dict[str, Any]:
    tokens = server.issue()
    entry = {
        "type": "oauth",
        "access": tokens["access_token"],
        "refresh": tokens["refresh_token"],
        "expires": int(expires_ms if expires_ms is not None else time.time() * 1000 + 3600_000),
    }
    auth_json(home, {"anthropic": entry})
    return entry


def _chat(proxy: Any, text: str = "hello") -> Any:
    return proxy.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        max_tokens=50,
    )


def _assert_oauth_request(backend: FakeAnthropic, token: str) -> None:
    seen = backend.last
    assert seen.headers["authorization"] == f"Bearer {token}"
    assert "x-api-key" not in seen.headers
    betas = seen.headers["anthropic-beta"].split(",")
    assert "claude-code-20250219" in betas and "oauth-2025-04-20" in betas
    assert seen.headers["x-app"] == "cli" and seen.headers["user-agent"].startswith("claude-cli/")
    assert seen.headers["anthropic-dangerous-direct-browser-access"] == "true"
    system = seen.body["system"]
    assert system[0] == {"type": "text", "text": IDENTITY}
    assert any(b.get("text") == "Be brief." for b in system[1:])


def test_chat_with_a_stored_login(
    isolated_env: Path, auth_server: FakeClaudeAuth, backend: FakeAnthropic, start_proxy: Any
) -> None:
    models_json(isolated_env, {"anthropic": {"baseUrl": backend.url}})
    entry = _seed(isolated_env, auth_server)
    proxy = start_proxy()
    answer = _chat(proxy)
    assert answer.choices[0].message.content
    _assert_oauth_request(backend, entry["access"])
    stream = proxy.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "stream me"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert backend.last.headers["authorization"] == f"Bearer {entry['access']}"
    assert auth_server.bodies == []  # nothing to refresh


def test_expired_login_is_refreshed_before_the_request(
    isolated_env: Path, auth_server: FakeClaudeAuth, backend: FakeAnthropic, start_proxy: Any
) -> None:
    models_json(isolated_env, {"anthropic": {"baseUrl": backend.url}})
    old = _seed(isolated_env, auth_server, expires_ms=time.time() * 1000 - 1000)
    proxy = start_proxy()
    assert _chat(proxy).choices[0].message.content
    assert [b["grant_type"] for b in auth_server.bodies] == ["refresh_token"]
    new_access = auth_server.issued[-1]
    assert new_access != old["access"]
    _assert_oauth_request(backend, new_access)
    path = isolated_env / "auth.json"
    stored = json.loads(path.read_text())["anthropic"]
    assert stored["access"] == new_access and stored["refresh"] != old["refresh"]
    assert stored["expires"] > time.time() * 1000
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_token_revoked_early_is_refreshed_after_a_401(
    isolated_env: Path, auth_server: FakeClaudeAuth, backend: FakeAnthropic, start_proxy: Any
) -> None:
    models_json(isolated_env, {"anthropic": {"baseUrl": backend.url}})
    _seed(isolated_env, auth_server)
    proxy = start_proxy()
    assert _chat(proxy, "a").choices
    backend.api_key = "revoked-everything"  # the stored token stops working before it expires
    auth_server.on_issue = lambda token: setattr(backend, "api_key", token)
    answer = _chat(proxy, "b")
    assert answer.choices[0].message.content
    assert [b["grant_type"] for b in auth_server.bodies] == ["refresh_token"]
    assert backend.last.headers["authorization"] == f"Bearer {auth_server.issued[-1]}"


def test_refused_refresh_says_to_log_in_again(
    isolated_env: Path, auth_server: FakeClaudeAuth, backend: FakeAnthropic, start_proxy: Any
) -> None:
    models_json(isolated_env, {"anthropic": {"baseUrl": backend.url}})
    entry = _seed(isolated_env, auth_server, expires_ms=time.time() * 1000 - 1000)
    auth_server.refresh_tokens.discard(entry["refresh"])  # revoked
    proxy = start_proxy()
    with pytest.raises(openai.AuthenticationError) as info:
        _chat(proxy)
    assert info.value.status_code == 401
    assert "switchboard login anthropic" in str(info.value)
    assert backend.requests == []
    assert json.loads((isolated_env / "auth.json").read_text())["anthropic"] == entry  # kept as it was


def test_oauth_token_env_is_preferred_over_the_api_key(
    isolated_env: Path, backend: FakeAnthropic, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    models_json(isolated_env, {"anthropic": {"baseUrl": backend.url}})
    token = "sk-ant-oat01-from-the-environment"
    backend.api_key = token
    monkeypatch.setenv("ANTHROPIC_OAUTH_TOKEN", token)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-plain-key")
    proxy = start_proxy()
    assert _chat(proxy).choices[0].message.content
    _assert_oauth_request(backend, token)


# --- two processes refreshing at once --------------------------------------------------------


def _refresh_in_child(path: str, out: Any) -> None:
    out.put(("asking", None))
    try:
        entry = asyncio.run(oauth.ensure_fresh(AuthStore(Path(path)), "anthropic"))
        out.put(("ok", entry["access"]))
    except Exception as exc:  # reported to the parent
        out.put(("error", repr(exc)))


def test_two_processes_refresh_once(isolated_env: Path, auth_server: FakeClaudeAuth) -> None:
    old = _seed(isolated_env, auth_server, expires_ms=time.time() * 1000 - 1000)
    # The first refresh is held until both processes have asked for a fresh token.
    auth_server.refresh_gate = threading.Event()
    path = isolated_env / "auth.json"
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_refresh_in_child, args=(str(path), out)) for _ in range(2)]
    for p in procs:
        p.start()
    assert [out.get(timeout=30) for _ in procs] == [("asking", None)] * 2
    deadline = time.monotonic() + 30
    while auth_server.refresh_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    auth_server.refresh_gate.set()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert [r[0] for r in results] == ["ok", "ok"], results
    refreshes = [b for b in auth_server.bodies if b["grant_type"] == "refresh_token"]
    assert len(refreshes) == 1 and refreshes[0]["refresh_token"] == old["refresh"]
    new_access = auth_server.issued[-1]
    assert {r[1] for r in results} == {new_access}
    stored = json.loads(path.read_text())  # intact JSON
    assert stored["anthropic"]["access"] == new_access
    assert stored["anthropic"]["refresh"] in auth_server.refresh_tokens
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- `switchboard login anthropic` as a real process -----------------------------------------


def _cli_env(home: Path, auth_server: FakeClaudeAuth, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "SWITCHBOARD_HOME": str(home),
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TERM": "dumb",
        "SWITCHBOARD_NO_BROWSER": "1",
        "SWITCHBOARD_CLAUDE_AUTHORIZE_URL": auth_server.authorize_url,
        "SWITCHBOARD_CLAUDE_TOKEN_URL": auth_server.token_url,
        "SWITCHBOARD_CLAUDE_CALLBACK_PORT": os.environ["SWITCHBOARD_CLAUDE_CALLBACK_PORT"],
    }


@pytest.mark.parametrize("answer", ["callback", "paste"])
def test_cli_login(isolated_env: Path, auth_server: FakeClaudeAuth, tmp_path: Path, answer: str) -> None:
    from tests.test_cli_auth import stored, term

    t = term(_cli_env(isolated_env, auth_server, tmp_path), "login", "anthropic")
    t.expect("Number or id (Enter to cancel): ")
    t.send("1")  # the subscription
    shown = t.expect("Paste the authorization code")
    url = re.search(r"(http://127\.0\.0\.1:\d+/oauth/authorize\?\S+)", shown)
    assert url is not None, shown
    location = httpx.get(url.group(1), follow_redirects=False).headers["location"]
    if answer == "callback":
        assert httpx.get(location.replace("http://localhost:", "http://127.0.0.1:")).status_code == 200
    else:
        t.send(location)
    assert t.wait() == 0, t.output
    entry = stored(isolated_env)["anthropic"]
    assert entry["type"] == "oauth" and entry["access"] == auth_server.issued[-1]
    assert set(entry) == {"type", "access", "refresh", "expires"}
    assert stat.S_IMODE((isolated_env / "auth.json").stat().st_mode) == 0o600
    assert entry["access"] not in t.output and entry["refresh"] not in t.output
