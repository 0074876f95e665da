"""GitHub Copilot: the device-flow login, the Copilot token exchange and refresh, the adapter's API choice and
headers, and requests through a live proxy with the real ``openai`` SDK (fakes on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from providers.authstore import AuthStore
from providers.cloud.base import RequestContext
from providers.cloud.copilot import ADAPTER, Copilot, model_not_supported_hint
from providers.credentials import Credentials
from providers.errors import MissingCredentials
from providers.oauth import ensure_fresh
from providers.oauth.base import RefreshFailed
from providers.oauth.copilot import (
    CLIENT_ID,
    DOMAIN_PROMPT,
    FLOW,
    CopilotFlow,
    api_url,
    base_url_from_token,
    github_url,
    normalize_domain,
)
from providers.registry import Provider, load_builtin_models, load_builtin_providers
from providers.request_facts import facts_from_body
from providers.resolved import ResolvedAuth
from providers.wire.base import UpstreamCall, WireTarget
from tests.conftest import Proxy, auth_json, models_json
from tests.fakes.copilot_upstream import DEVICE_CODE, USER_CODE, FakeCopilot, FakeGitHub, copilot_token
from tests.fakes.openai_upstream import Action
from tests.scripted_ui import ScriptedUI

PID = "github-copilot"
GH_TOKEN = "gho_fake_github_token_0123"
StartProxy = Callable[..., Proxy]


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub(GH_TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture
def copilot() -> Iterator[FakeCopilot]:
    fake = FakeCopilot().start()
    yield fake
    fake.stop()


@pytest.fixture
def endpoints(github: FakeGitHub, copilot: FakeCopilot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_GITHUB_URL", github.url)
    monkeypatch.setenv("SWITCHBOARD_COPILOT_API_URL", github.url)
    monkeypatch.setenv("SWITCHBOARD_COPILOT_BASE_URL", copilot.url)


def _provider() -> Provider:
    # The shipped row as it is: deleting its "adapter" in providers.json must turn these tests red.
    return next(p for p in load_builtin_providers() if p.id == PID)


# --- device flow ---------------------------------------------------------------------------------------


def test_device_flow_pending_then_slow_down_then_success(
    endpoints: None, github: FakeGitHub, copilot: FakeCopilot
) -> None:
    github.poll_answers = [{"error": "authorization_pending"}, {"error": "slow_down"}]
    sleeps: list[float] = []
    flow = CopilotFlow(sleep=sleeps.append)
    ui = ScriptedUI([""])
    before = time.time() * 1000
    entry = flow.login(ui)

    assert ui.asked == [DOMAIN_PROMPT]
    assert ui.opened == ["https://github.com/login/device"]
    assert any(USER_CODE in line for line in ui.said)
    # One interval before the first poll; slow_down without an interval adds 5 s.
    assert sleeps == [1.0, 1.0, 6.0]
    start, *polls = [r for r in github.requests if r.path.startswith("/login/")]
    assert start.body == {"client_id": CLIENT_ID, "scope": "read:user"}
    assert len(polls) == 3
    assert polls[0].body == {
        "client_id": CLIENT_ID,
        "device_code": DEVICE_CODE,
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
    }
    exchange = next(r for r in github.requests if r.path == "/copilot_internal/v2/token")
    assert exchange.headers["Authorization"] == f"Bearer {GH_TOKEN}"
    assert exchange.headers["User-Agent"] == "GitHubCopilotChat/0.35.0"
    assert exchange.headers["Copilot-Integration-Id"] == "vscode-chat"

    assert entry["type"] == "oauth"
    assert entry["refresh"] == GH_TOKEN
    assert entry["access"] == github.issued[-1]
    # expires = expires_at*1000 - 5 minutes
    assert before + 1800_000 - 300_000 - 5_000 <= entry["expires"] <= time.time() * 1000 + 1800_000 - 300_000
    assert "enterpriseUrl" not in entry and "env" not in entry
    # Every catalog model's policy was enabled, then the model list filtered.
    assert sorted(copilot.enabled) == sorted(m.id for m in load_builtin_models(PID))
    policy = next(r for r in copilot.requests if r.path.endswith("/policy"))
    assert policy.body == {"state": "enabled"}
    assert policy.headers["openai-intent"] == "chat-policy"
    assert policy.headers["x-interaction-type"] == "chat-policy"
    assert policy.headers["Authorization"] == f"Bearer {entry['access']}"
    listing = next(r for r in copilot.requests if r.path == "/models")
    assert listing.headers["X-GitHub-Api-Version"] == "2026-06-01"
    assert entry["availableModelIds"] == ["gpt-4.1", "claude-sonnet-4.5", "gpt-5.2"]


def test_device_flow_real_waits_and_server_slow_down_interval(
    endpoints: None, github: FakeGitHub, copilot: FakeCopilot
) -> None:
    github.interval = 0.05
    github.poll_answers = [{"error": "authorization_pending"}, {"error": "slow_down", "interval": 0.3}]
    flow = CopilotFlow(min_interval=0.01, catalog_ids=lambda: ["gpt-4.1"])
    started = time.monotonic()
    entry = flow.login(ScriptedUI([""]))
    assert entry["refresh"] == GH_TOKEN
    t = github.poll_times
    assert len(t) == 3
    assert t[0] - started >= 0.05  # waited one interval before the first poll
    assert t[1] - t[0] >= 0.05
    assert t[2] - t[1] >= 0.3  # the server's slow_down interval
    assert copilot.enabled == ["gpt-4.1"]


def test_device_flow_denied(endpoints: None, github: FakeGitHub) -> None:
    github.poll_answers = [{"error": "access_denied", "error_description": "The user denied"}]
    with pytest.raises(RuntimeError, match="denied"):
        CopilotFlow(sleep=lambda s: None).login(ScriptedUI([""]))


def test_device_flow_rejects_non_http_verification_uri(endpoints: None, github: FakeGitHub) -> None:
    github.verification_uri = "javascript:alert(1)"
    with pytest.raises(RuntimeError, match="http"):
        CopilotFlow(sleep=lambda s: None).login(ScriptedUI([""]))


# --- enterprise domain -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://ghe.example.com/", "ghe.example.com"),
        ("ghe.example.com", "ghe.example.com"),
        ("  GHE.Example.com/some/path ", "ghe.example.com"),
        ("http://ghe.example.com:8443", "ghe.example.com"),
        ("", None),
        ("   ", None),
        ("not a domain!", None),
        ("ftp://ghe.example.com", None),
    ],
)
def test_normalize_domain(text: str, expected: str | None) -> None:
    assert normalize_domain(text) == expected


def test_enterprise_login(endpoints: None, github: FakeGitHub, copilot: FakeCopilot) -> None:
    ui = ScriptedUI(["https://ghe.example.com/"])
    entry = CopilotFlow(sleep=lambda s: None, catalog_ids=lambda: []).login(ui)
    assert entry["enterpriseUrl"] == "ghe.example.com"
    assert entry["env"] == {"COPILOT_ENTERPRISE_DOMAIN": "ghe.example.com"}
    assert entry["refresh"] == GH_TOKEN


def test_invalid_enterprise_domain() -> None:
    with pytest.raises(RuntimeError, match="not a GitHub Enterprise Server domain"):
        CopilotFlow(sleep=lambda s: None).login(ScriptedUI(["not a domain!"]))


def test_endpoint_urls_default_and_overrides() -> None:
    assert github_url("github.com", {}) == "https://github.com"
    assert api_url("ghe.example.com", {}) == "https://api.ghe.example.com"
    assert github_url("x", {"SWITCHBOARD_GITHUB_URL": "http://127.0.0.1:9/"}) == "http://127.0.0.1:9"
    assert api_url("x", {"SWITCHBOARD_COPILOT_API_URL": "http://127.0.0.1:8"}) == "http://127.0.0.1:8"


# --- base URL from the token -----------------------------------------------------------------------


def test_base_url_from_token() -> None:
    assert base_url_from_token(copilot_token(1)) == "https://api.individual.githubcopilot.com"
    assert base_url_from_token(copilot_token(1, "proxy.business.githubcopilot.com")) == (
        "https://api.business.githubcopilot.com"
    )
    assert base_url_from_token(copilot_token(1, "copilot-proxy.corp.example")) == "https://copilot-proxy.corp.example"
    assert base_url_from_token("tid=1;exp=2;", "ghe.example.com") == "https://copilot-api.ghe.example.com"
    assert base_url_from_token("tid=1;exp=2;") == "https://api.individual.githubcopilot.com"


def test_resolve_stored_copilot_token() -> None:
    token = copilot_token(7, "proxy.business.githubcopilot.com")
    auth = asyncio.run(Copilot().resolve(_provider(), token, "auth.json (oauth)", {}))
    assert auth.base_url == "https://api.business.githubcopilot.com"
    assert auth.source == "auth.json (oauth)"
    assert auth.headers["Authorization"] == f"Bearer {token}"
    assert auth.headers["User-Agent"] == "GitHubCopilotChat/0.35.0"
    assert auth.headers["Editor-Version"] == "vscode/1.107.0"
    assert auth.headers["Editor-Plugin-Version"] == "copilot-chat/0.35.0"
    assert auth.headers["Copilot-Integration-Id"] == "vscode-chat"
    assert auth.key is None and token in auth.secrets
    no_ep = asyncio.run(Copilot().resolve(_provider(), "tid=1;exp=2;", "x", {"COPILOT_ENTERPRISE_DOMAIN": "ghe.io"}))
    assert no_ep.base_url == "https://copilot-api.ghe.io"


def test_resolve_exchanges_a_github_token(github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"SWITCHBOARD_COPILOT_API_URL": github.url}
    auth = asyncio.run(Copilot().resolve(_provider(), GH_TOKEN, "env COPILOT_GITHUB_TOKEN", env))
    assert github.exchanges == 1
    assert auth.headers["Authorization"] == f"Bearer {github.issued[0]}"
    assert auth.base_url == "https://api.individual.githubcopilot.com"
    assert auth.source == "env COPILOT_GITHUB_TOKEN"
    assert GH_TOKEN in auth.secrets and github.issued[0] in auth.secrets
    with pytest.raises(MissingCredentials, match="not accepted"):
        asyncio.run(Copilot().resolve(_provider(), "gho_revoked", "env COPILOT_GITHUB_TOKEN", env))
    with pytest.raises(MissingCredentials, match="switchboard login github-copilot"):
        asyncio.run(Copilot().resolve(_provider(), None, "ambient", {}))


def test_credentials_keep_bearer_on_the_anthropic_route(isolated_env: Path) -> None:
    token = copilot_token(3)
    expires = int(time.time() * 1000) + 3_600_000
    auth_json(isolated_env, {PID: {"type": "oauth", "access": token, "refresh": GH_TOKEN, "expires": expires}})
    creds = Credentials(AuthStore(isolated_env / "auth.json"))
    provider = _provider()
    model = provider.model("claude-sonnet-4.5")
    assert model is not None and model.api == "anthropic-messages"
    auth = asyncio.run(creds.resolve(provider, model))
    assert auth.headers["Authorization"] == f"Bearer {token}"
    assert "x-api-key" not in {k.lower() for k in auth.headers}
    assert auth.base_url == "https://api.individual.githubcopilot.com"
    assert creds.source_of(provider) == "auth.json (oauth)"


# --- refresh ------------------------------------------------------------------------------------------


def test_refresh_re_exchanges(endpoints: None, github: FakeGitHub) -> None:
    old = {"type": "oauth", "access": "tid=old;", "refresh": GH_TOKEN, "expires": 1, "enterpriseUrl": None}
    new = FLOW.refresh(old)
    assert new["access"] == github.issued[-1]
    assert new["refresh"] == GH_TOKEN
    assert new["expires"] > time.time() * 1000
    assert new["availableModelIds"] == ["gpt-4.1", "claude-sonnet-4.5", "gpt-5.2"]


def test_refresh_refused(endpoints: None, github: FakeGitHub) -> None:
    with pytest.raises(RefreshFailed, match="401"):
        FLOW.refresh({"type": "oauth", "access": "a", "refresh": "gho_revoked", "expires": 1})
    with pytest.raises(RefreshFailed):
        FLOW.refresh({"type": "oauth", "access": "a", "expires": 1})


def test_ensure_fresh_persists_and_keeps_extras(endpoints: None, github: FakeGitHub, tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.json")
    store.set(PID, {"type": "oauth", "access": "tid=old;", "refresh": GH_TOKEN, "expires": 0, "enterpriseUrl": "x"})
    # enterpriseUrl "x" would send the exchange to api.x; the endpoint override points it at the fake.
    entry = asyncio.run(ensure_fresh(store, PID))
    assert entry["access"] == github.issued[-1]
    assert store.get(PID)["access"] == github.issued[-1]  # type: ignore[index]
    assert store.get(PID)["enterpriseUrl"] == "x"  # type: ignore[index]
    store.set(PID, {"type": "oauth", "access": "tid=old;", "refresh": "gho_revoked", "expires": 0})
    with pytest.raises(MissingCredentials, match="log"):
        asyncio.run(ensure_fresh(store, PID))


# --- API per model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "api"),
    [
        ("claude-sonnet-4.5", "anthropic-messages"),
        ("claude-haiku-4.5", "anthropic-messages"),
        ("claude-opus-4-1", "anthropic-messages"),
        ("claude-sonnet-5", "anthropic-messages"),
        ("claude-opus-45", "openai-completions"),
        ("claude-3.7-sonnet", "openai-completions"),
        ("claude-fable-5", "openai-completions"),
        ("gpt-5", "openai-responses"),
        ("gpt-5.2-codex", "openai-responses"),
        ("oswe-vscode-prime", "openai-responses"),
        ("gpt-4.1", "openai-completions"),
        ("gpt-4o", "openai-completions"),
        ("gemini-2.5-pro", "openai-completions"),
        ("grok-code-fast-1", "openai-completions"),
    ],
)
def test_api_for(model_id: str, api: str) -> None:
    assert ADAPTER.api_for(_provider(), model_id, None) == api


def test_api_for_catalog_models_agree_with_the_rule() -> None:
    provider = _provider()
    for model in load_builtin_models(PID):
        assert ADAPTER.api_for(provider, model.id, model) == (model.api or "openai-completions")


# --- dynamic headers ---------------------------------------------------------------------------------

IMG = "data:image/png;base64,iVBORw0KGgo="


def _finalize(body: dict[str, Any], api: str = "openai-completions") -> dict[str, str]:
    provider = _provider()
    target = WireTarget(PID, "GitHub Copilot", "https://api.x", "m", None, provider.compat)
    headers = {"Authorization": "Bearer tid=1;", "x-api-key": "tid=1;"}
    call = UpstreamCall("https://api.x/chat/completions", json.dumps(body).encode(), headers)
    auth = ResolvedAuth("https://api.x", headers, "test")
    ctx = RequestContext({}, api, facts_from_body(call.body, api))
    out = asyncio.run(Copilot().finalize(call, auth, target, ctx))
    return out.headers


@pytest.mark.parametrize(
    ("api", "body", "expected"),
    [
        ("openai-completions", {"messages": [{"role": "user", "content": "hi"}]}, "user"),
        (
            "openai-completions",
            {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]},
            "user",
        ),
        (
            "openai-completions",
            {"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "c", "content": "r"}]},
            "agent",
        ),
        ("openai-completions", {"messages": [{"role": "assistant", "content": "partial"}]}, "agent"),
        (
            "anthropic-messages",
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]}]},
            "agent",
        ),
        ("anthropic-messages", {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, "user"),
        ("openai-responses", {"input": "hi"}, "user"),
        ("openai-responses", {"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}, "user"),
        ("openai-responses", {"input": [{"type": "function_call_output", "call_id": "c", "output": "r"}]}, "agent"),
    ],
)
def test_x_initiator(api: str, body: dict[str, Any], expected: str) -> None:
    headers = _finalize(body, api)
    assert headers["X-Initiator"] == expected
    assert headers["Openai-Intent"] == "conversation-edits"
    assert "Copilot-Vision-Request" not in headers
    assert "x-api-key" not in headers and headers["Authorization"] == "Bearer tid=1;"
    assert facts_from_body(json.dumps(body).encode(), api).initiator == expected


@pytest.mark.parametrize(
    ("api", "body"),
    [
        (
            "openai-completions",
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMG}}]}]},
        ),
        (
            "anthropic-messages",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}],
                            }
                        ],
                    }
                ]
            },
        ),
        ("openai-responses", {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": IMG}]}]}),
    ],
)
def test_vision_header(api: str, body: dict[str, Any]) -> None:
    assert _finalize(body, api)["Copilot-Vision-Request"] == "true"
    assert facts_from_body(json.dumps(body).encode(), api).has_image


def test_model_not_supported_hint() -> None:
    hint = model_not_supported_hint(400, "The requested model is not supported.")
    assert hint is not None and "VS Code" in hint and "Enable" in hint
    assert model_not_supported_hint(400, '{"error":{"code":"model_not_supported"}}') is not None
    assert model_not_supported_hint(400, "max_tokens is too large") is None
    assert model_not_supported_hint(200, "model not supported") is None


# --- through a live proxy ------------------------------------------------------------------------------


def _assert_copilot_headers(headers: dict[str, str], token: str, initiator_: str = "user") -> None:
    assert headers["Authorization"] == f"Bearer {token}"
    assert headers["User-Agent"] == "GitHubCopilotChat/0.35.0"
    assert headers["Editor-Version"] == "vscode/1.107.0"
    assert headers["Editor-Plugin-Version"] == "copilot-chat/0.35.0"
    assert headers["Copilot-Integration-Id"] == "vscode-chat"
    assert headers["X-Initiator"] == initiator_
    assert headers["Openai-Intent"] == "conversation-edits"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_proxy_with_stored_login(
    isolated_env: Path, copilot: FakeCopilot, start_proxy: StartProxy, stream: bool
) -> None:
    token = copilot_token(42)
    models_json(isolated_env, {PID: {"baseUrl": copilot.url}})
    expires = int(time.time() * 1000) + 3_600_000
    auth_json(isolated_env, {PID: {"type": "oauth", "access": token, "refresh": GH_TOKEN, "expires": expires}})
    running = start_proxy()
    assert running.runtime.credentials.source_of(running.runtime.registry.get(PID)) == "auth.json (oauth)"
    client = running.client()
    messages: Any = [{"role": "user", "content": "hello there"}]
    if stream:
        chunks = client.chat.completions.create(model=f"{PID}/gpt-4.1", messages=messages, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        answer = client.chat.completions.create(model=f"{PID}/gpt-4.1", messages=messages)
        text = answer.choices[0].message.content or ""
    assert text.strip() == "Echo: hello there"
    rec = copilot.last
    assert rec.path == "/chat/completions"
    assert rec.body["model"] == "gpt-4.1"
    _assert_copilot_headers(rec.headers, token)


@pytest.mark.parametrize(
    ("model", "path"),
    [("claude-sonnet-4.5", "/v1/messages"), ("gpt-5.2", "/responses")],
    ids=["anthropic", "responses"],
)
def test_proxy_other_wire_apis(
    isolated_env: Path, copilot: FakeCopilot, start_proxy: StartProxy, model: str, path: str
) -> None:
    token = copilot_token(43)
    copilot.anthropic.api_key = token
    models_json(isolated_env, {PID: {"baseUrl": copilot.url}})
    expires = int(time.time() * 1000) + 3_600_000
    auth_json(isolated_env, {PID: {"type": "oauth", "access": token, "refresh": GH_TOKEN, "expires": expires}})
    client = start_proxy().client()
    answer = client.chat.completions.create(model=f"{PID}/{model}", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    fake = copilot.anthropic if path == "/v1/messages" else copilot.responses
    rec = fake.last
    assert rec.path == path
    headers = {k.lower(): v for k, v in rec.headers.items()}
    assert headers["authorization"] == f"Bearer {token}"
    assert "x-api-key" not in headers
    assert headers["x-initiator"] == "user"
    assert headers["openai-intent"] == "conversation-edits"
    assert headers["copilot-integration-id"] == "vscode-chat"


def test_proxy_with_github_token_env_re_exchanges_after_401(
    isolated_env: Path,
    github: FakeGitHub,
    copilot: FakeCopilot,
    start_proxy: StartProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COPILOT_GITHUB_TOKEN", GH_TOKEN)
    monkeypatch.setenv("SWITCHBOARD_COPILOT_API_URL", github.url)
    models_json(isolated_env, {PID: {"baseUrl": copilot.url}})
    client = start_proxy().client()
    image: Any = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": IMG}},
    ]
    answer = client.chat.completions.create(model=f"{PID}/gpt-4.1", messages=[{"role": "user", "content": image}])
    assert "image_url" in (answer.choices[0].message.content or "")
    first = github.issued[0]
    _assert_copilot_headers(copilot.last.headers, first)
    assert copilot.last.headers["Copilot-Vision-Request"] == "true"
    assert GH_TOKEN not in json.dumps(copilot.last.headers)

    copilot.rejected_keys.add(first)  # the Copilot token was revoked early: 401, exchange again, retry
    tool_turn: Any = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    answer = client.chat.completions.create(model=f"{PID}/gpt-4.1", messages=tool_turn)
    assert "sunny" in (answer.choices[0].message.content or "")
    assert github.exchanges == 2
    _assert_copilot_headers(copilot.last.headers, github.issued[1], "agent")


def test_model_not_supported_gets_the_vscode_hint(
    isolated_env: Path, copilot: FakeCopilot, start_proxy: StartProxy
) -> None:
    """Copilot refuses a model not enabled for the account: the client is told how to enable it."""
    models_json(isolated_env, {PID: {"baseUrl": copilot.url}})
    expires = int(time.time() * 1000) + 3_600_000
    auth_json(
        isolated_env, {PID: {"type": "oauth", "access": copilot_token(7), "refresh": GH_TOKEN, "expires": expires}}
    )
    body = {
        "error": {
            "message": "The requested model is not supported.",
            "code": "model_not_supported",
            "param": "model",
            "type": "invalid_request_error",
        }
    }
    copilot.push(Action("error", status=400, body=body))
    with pytest.raises(openai.BadRequestError) as err:
        start_proxy().client().chat.completions.create(
            model=f"{PID}/gpt-4.1", messages=[{"role": "user", "content": "hi"}]
        )
    assert "not supported" in err.value.message and "VS Code" in err.value.message
