"""The cloud-adapter contract and the credential path, through the live proxy.

* A stored OAuth login whose access token expires within the refresh margin is refreshed before the
  request is sent, at first resolution and when a cached token enters the margin later.
* ``GET /v1/models`` answers whether Bedrock's ambient AWS credentials exist without parsing
  ``~/.aws/credentials`` on every call (botocore's own loader, once per file version).
* Adapter state lives in the resolved value: two runtimes in one process never share it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.configloader
import pytest

from providers.authstore import AuthStore
from providers.cloud import adapter_for
from providers.cloud.base import AdapterBase, CloudAdapter, RequestContext
from providers.credentials import Credentials
from providers.registry import load_builtin_providers
from providers.wire.base import UpstreamCall, WireTarget
from tests.conftest import Proxy, auth_json, models_json
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.claude_oauth import FakeClaudeAuth
from tests.fakes.copilot_upstream import FakeCopilot, FakeGitHub, copilot_token

MODEL = "anthropic/claude-haiku-4-5"
#: Claude's token endpoint stores ``expires = now + expires_in - 5 min``: 330 s leaves 30 s, inside the
#: one-minute refresh margin.
_INSIDE_MARGIN_S = 330


@pytest.fixture
def auth_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClaudeAuth]:
    server = FakeClaudeAuth(expires_in=_INSIDE_MARGIN_S).start()
    monkeypatch.setenv("SWITCHBOARD_CLAUDE_TOKEN_URL", server.token_url)
    yield server
    server.stop()


@pytest.fixture
def backend(auth_server: FakeClaudeAuth) -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key="none-issued-yet").start()
    auth_server.on_issue = lambda token: setattr(fake, "api_key", token)  # only the newest token works
    yield fake
    fake.stop()


def _chat(proxy: Proxy) -> str:
    answer = proxy.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=20
    )
    return answer.choices[0].message.content or ""


def test_token_inside_the_refresh_margin_is_refreshed_before_the_request(
    isolated_env: Path, auth_server: FakeClaudeAuth, backend: FakeAnthropic, start_proxy: Callable[..., Proxy]
) -> None:
    models_json(isolated_env, {"anthropic": {"baseUrl": backend.url}})
    tokens = auth_server.issue()
    backend.api_key = tokens["access_token"]  # the stored token still works: only the margin says refresh
    stored = {
        "type": "oauth",
        "access": tokens["access_token"],
        "refresh": tokens["refresh_token"],
        "expires": int(time.time() * 1000 + 30_000),
    }
    auth_json(isolated_env, {"anthropic": stored})
    proxy = start_proxy()

    assert _chat(proxy)
    assert [b["grant_type"] for b in auth_server.bodies] == ["refresh_token"]
    first_refreshed = auth_server.issued[-1]
    assert first_refreshed != stored["access"]
    assert backend.last.headers["authorization"] == f"Bearer {first_refreshed}"

    # The refreshed token is itself inside the margin: the cached auth must not be used as it is.
    assert _chat(proxy)
    assert [b["grant_type"] for b in auth_server.bodies] == ["refresh_token", "refresh_token"]
    assert backend.last.headers["authorization"] == f"Bearer {auth_server.issued[-1]}"
    assert auth_server.issued[-1] != first_refreshed


# --- GET /v1/models and the AWS shared files ---------------------------------------------------------


def test_model_listing_parses_the_aws_credentials_file_once_per_version(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, start_proxy: Callable[..., Proxy]
) -> None:
    parsed: list[str] = []
    real = botocore.configloader.raw_config_parse

    def counting(path: str, *args: Any, **kwargs: Any) -> Any:
        parsed.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(botocore.configloader, "raw_config_parse", counting)
    creds_file = Path.home() / ".aws" / "credentials"
    creds_file.parent.mkdir()
    creds_file.write_text("[default]\naws_access_key_id = AKIDLISTING0000000XYZ\naws_secret_access_key = s\n")
    http = start_proxy().http()

    def bedrock_listed() -> bool:
        resp = http.get("/v1/models")
        assert resp.status_code == 200
        return any(m["owned_by"] == "amazon-bedrock" for m in resp.json()["data"])

    assert all(bedrock_listed() for _ in range(5))
    assert parsed.count(str(creds_file)) == 1

    creds_file.write_text("[other]\naws_access_key_id = AKIDOTHERPROFILE00XYZ\naws_secret_access_key = s\n")
    assert not bedrock_listed()  # an edited file is parsed again; a non-default profile gives nothing
    assert parsed.count(str(creds_file)) == 2


# --- the contract itself -----------------------------------------------------------------------------


def test_every_shipped_adapter_implements_the_whole_contract() -> None:
    names = {p.adapter for p in load_builtin_providers() if p.adapter}
    assert names >= {"bedrock", "vertex", "azure", "cloudflare", "codex", "copilot"}
    for name in names:
        adapter: CloudAdapter = adapter_for(name)
        assert isinstance(adapter, AdapterBase), name


def test_a_forgotten_exchanged_token_does_not_leak_into_another_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copilot exchanges a GitHub token for a Copilot token; a 401 in one runtime renews only its own."""
    github = FakeGitHub().start()
    try:
        monkeypatch.setenv("SWITCHBOARD_COPILOT_API_URL", github.url)
        monkeypatch.setenv("COPILOT_GITHUB_TOKEN", github.github_token)
        copilot = next(p for p in load_builtin_providers() if p.id == "github-copilot")
        adapter = adapter_for("copilot")

        async def run() -> tuple[bool, int, int]:
            one = Credentials(AuthStore(Path.home() / "one.json"))
            two = Credentials(AuthStore(Path.home() / "two.json"))
            await one.resolve(copilot)
            auth_two = await two.resolve(copilot)
            before = github.exchanges
            forgot = one.after_unauthorized(copilot.id)
            target = WireTarget(copilot.id, copilot.name, auth_two.base_url, "gpt-4o", None, copilot.compat)
            call = UpstreamCall(auth_two.base_url + "/chat/completions", b"{}", dict(auth_two.headers))
            await adapter.finalize(call, auth_two, target, RequestContext({}, "openai-completions"))
            return forgot, before, github.exchanges

        forgot, before, after = asyncio.run(run())
        assert forgot  # runtime one will exchange again on its retry
        assert after == before  # runtime two's token was not touched
    finally:
        github.stop()


# --- request facts reach the adapter on both branches ------------------------------------------------

_IMG = "data:image/png;base64,iVBORw0KGgo="


@pytest.mark.parametrize(
    ("model", "api"),
    [("gpt-4.1", "completions"), ("claude-sonnet-4.5", "anthropic"), ("gpt-5.2", "responses")],
)
def test_copilot_sees_the_agent_turn_and_the_image(
    isolated_env: Path, start_proxy: Callable[..., Proxy], model: str, api: str
) -> None:
    """The passthrough (chat → chat) and the translated branches hand Copilot the same facts."""
    copilot = FakeCopilot().start()
    try:
        token = copilot_token(44)
        copilot.anthropic.api_key = token
        models_json(isolated_env, {"github-copilot": {"baseUrl": copilot.url}})
        expires = int(time.time() * 1000) + 3_600_000
        entry = {"type": "oauth", "access": token, "refresh": "gho_unused", "expires": expires}
        auth_json(isolated_env, {"github-copilot": entry})
        messages: Any = [
            {
                "role": "user",
                "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": _IMG}}],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "zoom", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "zoomed"},
        ]
        tools: Any = [{"type": "function", "function": {"name": "zoom", "parameters": {"type": "object"}}}]
        client = start_proxy().client()
        client.chat.completions.create(model=f"github-copilot/{model}", messages=messages, tools=tools)
        fake = {"completions": copilot, "anthropic": copilot.anthropic, "responses": copilot.responses}[api]
        headers = {k.lower(): v for k, v in fake.last.headers.items()}
        assert headers["x-initiator"] == "agent"
        assert headers["copilot-vision-request"] == "true"
    finally:
        copilot.stop()
