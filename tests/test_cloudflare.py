"""Cloudflare Workers AI and AI Gateway: the real openai SDK → live proxy → fake Cloudflare.

The providers are routed at the fake with a ``models.json`` ``baseUrl`` override that keeps the
placeholders, so account and gateway ids still come from the environment or the auth.json ``env`` map,
and the gateway route (compat/openai/anthropic) is chosen by the adapter, not by the catalog's URLs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from providers.authstore import AuthStore
from providers.cloud.base import RequestContext
from providers.cloud.cloudflare import ADAPTER
from providers.credentials import Credentials
from providers.errors import MissingCredentials
from providers.registry import load_builtin_models, load_builtin_providers
from providers.resolved import ResolvedAuth
from providers.wire.base import UpstreamCall, WireTarget
from tests.conftest import Proxy, auth_json, models_json
from tests.fakes.cloudflare_upstream import CfRecorded, FakeCloudflare

ACCOUNT, GATEWAY, TOKEN = "acct-0123", "gw-main", "cf-token-0123456789abcdef"
GW = "cloudflare-ai-gateway"
WAI = "cloudflare-workers-ai"
ROUTES = [
    ("workers-ai/@cf/moonshotai/kimi-k2.6", "compat", "/compat/chat/completions"),
    ("gpt-5.1", "openai", "/openai/responses"),
    ("claude-sonnet-4-5", "anthropic", "/anthropic/v1/messages"),
]
UNKNOWN = [
    ("workers-ai/@cf/acme/brand-new-model", "compat", "/compat/chat/completions"),
    ("gpt-9-preview", "openai", "/openai/responses"),
    ("claude-future-9", "anthropic", "/anthropic/v1/messages"),
]
StartProxy = Callable[..., Proxy]


@pytest.fixture
def cf() -> Iterator[FakeCloudflare]:
    fake = FakeCloudflare(ACCOUNT, GATEWAY, TOKEN).start()
    yield fake
    fake.stop()


def _route_at(sb_home: Path, cf: FakeCloudflare, gateway: dict[str, Any] | None = None) -> None:
    models_json(
        sb_home,
        {
            GW: {"baseUrl": cf.url + "/v1/{CLOUDFLARE_ACCOUNT_ID}/{CLOUDFLARE_GATEWAY_ID}", **(gateway or {})},
            WAI: {"baseUrl": cf.url + "/client/v4/accounts/{CLOUDFLARE_ACCOUNT_ID}/ai/v1"},
        },
    )


def _set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    env = {"CLOUDFLARE_API_KEY": TOKEN, "CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_GATEWAY_ID": GATEWAY}
    env.update(values)
    for name, value in env.items():
        if value:
            monkeypatch.setenv(name, value)


@pytest.fixture
def proxy(isolated_env: Path, cf: FakeCloudflare, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch) -> Proxy:
    _route_at(isolated_env, cf)
    _set_env(monkeypatch)
    return start_proxy()


def _ask(
    client: openai.OpenAI, model: str, stream: bool, messages: list[dict[str, Any]] | None = None, **kw: Any
) -> str:
    messages = messages or [{"role": "user", "content": "hello there"}]
    if not stream:
        answer = client.chat.completions.create(model=model, messages=messages, **kw)  # type: ignore[arg-type]
        return answer.choices[0].message.content or ""
    chunks: Any = client.chat.completions.create(model=model, messages=messages, stream=True, **kw)  # type: ignore[arg-type]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _assert_gateway_call(rec: CfRecorded, route: str, suffix: str, model: str) -> None:
    assert rec.route == route
    assert rec.path == f"/v1/{ACCOUNT}/{GATEWAY}{suffix}"
    assert rec.headers["cf-aig-authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in rec.headers and "x-api-key" not in rec.headers
    assert rec.body["model"] == model
    assert TOKEN not in str(rec.upstream_headers)  # the gateway token never reaches the upstream


# --- AI Gateway: the three routes ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("model", "route", "suffix"), ROUTES + UNKNOWN, ids=[r[0] for r in ROUTES + UNKNOWN])
def test_gateway_route(proxy: Proxy, cf: FakeCloudflare, model: str, route: str, suffix: str, stream: bool) -> None:
    text = _ask(proxy.client(), f"{GW}/{model}", stream)
    assert text.strip() == "Echo: hello there"
    (rec,) = cf.requests
    _assert_gateway_call(rec, route, suffix, model)
    # Session affinity on the Workers AI (compat) and Anthropic routes only, as the reference does.
    assert (rec.affinity is not None) is (route != "openai")


def test_gateway_ids_and_key_from_auth_json_env(
    isolated_env: Path, cf: FakeCloudflare, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    _route_at(isolated_env, cf)
    # The auth.json entry's env wins over the process environment.
    _set_env(monkeypatch, CLOUDFLARE_API_KEY="", CLOUDFLARE_ACCOUNT_ID="wrong-account", CLOUDFLARE_GATEWAY_ID="")
    env = {"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_GATEWAY_ID": GATEWAY}
    auth_json(isolated_env, {GW: {"type": "api_key", "key": TOKEN, "env": env}})
    proxy = start_proxy()
    assert proxy.runtime.credentials.source_of(proxy.runtime.registry.get(GW)) == "auth.json"
    client = proxy.client()
    for model, route, suffix in ROUTES:
        assert _ask(client, f"{GW}/{model}", False).strip() == "Echo: hello there"
        _assert_gateway_call(cf.requests[-1], route, suffix, model)


def test_gateway_catalog_urls_without_override(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a baseUrl override each catalog model keeps its own route URL, placeholders filled."""
    _set_env(monkeypatch)
    creds = Credentials(AuthStore(isolated_env / "auth.json"))
    provider = next(p for p in load_builtin_providers() if p.id == GW)
    provider = provider.with_models(load_builtin_models(GW))
    base = f"https://gateway.ai.cloudflare.com/v1/{ACCOUNT}/{GATEWAY}"
    for model_id, route, _ in ROUTES:
        auth = asyncio.run(creds.resolve(provider, provider.model(model_id)))
        assert auth.base_url == f"{base}/{route}"
        assert auth.headers["cf-aig-authorization"] == f"Bearer {TOKEN}"
        assert not {"authorization", "x-api-key"} & {k.lower() for k in auth.headers}


@pytest.mark.parametrize(
    ("model", "route", "header", "value"),
    [
        ("gpt-5.1", "openai", "Authorization", "Bearer sk-byok-openai-0123"),
        ("workers-ai/@cf/moonshotai/kimi-k2.6", "compat", "Authorization", "Bearer sk-byok-compat-0123"),
        ("claude-sonnet-4-5", "anthropic", "x-api-key", "sk-ant-byok-0123"),
    ],
)
def test_inline_byok_provider_header(
    isolated_env: Path,
    cf: FakeCloudflare,
    start_proxy: StartProxy,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    route: str,
    header: str,
    value: str,
) -> None:
    cf.anthropic.api_key = "sk-ant-byok-0123"
    _route_at(isolated_env, cf, {"headers": {header: value}})
    _set_env(monkeypatch)
    assert _ask(start_proxy().client(), f"{GW}/{model}", False).strip() == "Echo: hello there"
    rec = cf.requests[-1]
    assert rec.route == route
    assert rec.headers["cf-aig-authorization"] == f"Bearer {TOKEN}"
    assert rec.headers[header.lower()] == value
    assert rec.upstream_headers[header.lower()] == value  # the gateway forwarded the caller's own key


def test_inline_byok_model_header(
    isolated_env: Path, cf: FakeCloudflare, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_OPENAI_KEY", "sk-byok-model-0123")
    overrides = {"gpt-5.1": {"headers": {"Authorization": "Bearer $MY_OPENAI_KEY"}}}
    _route_at(isolated_env, cf, {"modelOverrides": overrides})
    _set_env(monkeypatch)
    client = start_proxy().client()
    _ask(client, f"{GW}/gpt-5.1", True)
    assert cf.requests[-1].headers["authorization"] == "Bearer sk-byok-model-0123"
    _ask(client, f"{GW}/gpt-5.2", False)  # no header configured for this one: the stored key applies
    assert "authorization" not in cf.requests[-1].headers
    assert cf.requests[-1].upstream_headers["authorization"] == "Bearer sk-openai-stored-0123"


@pytest.mark.parametrize("missing", ["CLOUDFLARE_GATEWAY_ID", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_KEY"])
def test_gateway_missing_setting(
    isolated_env: Path, cf: FakeCloudflare, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    _route_at(isolated_env, cf)
    _set_env(monkeypatch, **{missing: ""})
    with pytest.raises(openai.AuthenticationError) as info:
        _ask(start_proxy().client(), f"{GW}/claude-sonnet-4-5", False)
    assert missing in info.value.message
    assert cf.requests == []


def test_available_and_describe(monkeypatch: pytest.MonkeyPatch) -> None:
    providers = {p.id: p for p in load_builtin_providers()}
    env = {"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_GATEWAY_ID": GATEWAY}
    assert ADAPTER.available(providers[GW], True, env)
    assert not ADAPTER.available(providers[GW], False, env)
    assert not ADAPTER.available(providers[GW], True, {"CLOUDFLARE_ACCOUNT_ID": ACCOUNT})
    assert ADAPTER.available(providers[WAI], True, {"CLOUDFLARE_ACCOUNT_ID": ACCOUNT})
    assert not ADAPTER.available(providers[WAI], True, {})
    assert ADAPTER.describe(providers[GW], True, env) is None  # the resolver names the key's own source


def test_api_for_unknown_ids() -> None:
    gw = next(p for p in load_builtin_providers() if p.id == GW)
    assert ADAPTER.api_for(gw, "workers-ai/@cf/x/y", None) == "openai-completions"
    assert ADAPTER.api_for(gw, "claude-opus-9", None) == "anthropic-messages"
    assert ADAPTER.api_for(gw, "o9-mini", None) == "openai-responses"


def test_finalize_strips_the_token_from_upstream_auth_headers() -> None:
    """Were the key ever merged into Authorization/x-api-key, it must not leave as an upstream key."""
    base = f"https://gateway.ai.cloudflare.com/v1/{ACCOUNT}/{GATEWAY}"
    headers = {"cf-aig-authorization": f"Bearer {TOKEN}", "Authorization": f"Bearer {TOKEN}", "x-api-key": TOKEN}
    call = UpstreamCall(base + "/v1/messages", b'{"model":"claude-x","messages":[]}', headers)
    target = WireTarget(GW, "Cloudflare AI Gateway", base, "claude-x", None, load_builtin_providers()[0].compat)
    auth = ResolvedAuth(base, headers, "test")
    out = asyncio.run(ADAPTER.finalize(call, auth, target, RequestContext({}, "anthropic-messages")))
    assert out.url == base + "/anthropic/v1/messages"
    assert {k.lower() for k in out.headers} == {"cf-aig-authorization", "x-session-affinity"}


# --- Workers AI -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_workers_ai(proxy: Proxy, cf: FakeCloudflare, stream: bool) -> None:
    model = "@cf/moonshotai/kimi-k2.6"
    assert _ask(proxy.client(), f"{WAI}/{model}", stream).strip() == "Echo: hello there"
    (rec,) = cf.requests
    assert rec.route == "workers-ai"
    assert rec.path == f"/client/v4/accounts/{ACCOUNT}/ai/v1/chat/completions"
    assert rec.headers["authorization"] == f"Bearer {TOKEN}"
    assert "cf-aig-authorization" not in rec.headers
    assert rec.body["model"] == model
    assert rec.affinity is not None and rec.affinity.startswith("sb-")


def _conversation(system: str, first: str, turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": first}]
    for n in range(1, turns):
        messages.append({"role": "assistant", "content": f"answer {n}"})
        messages.append({"role": "user", "content": f"follow-up {n}"})
    return messages


@pytest.mark.parametrize(
    "model",
    [f"{WAI}/@cf/moonshotai/kimi-k2.6", f"{GW}/claude-sonnet-4-5", f"{GW}/workers-ai/@cf/zai-org/glm-4.7-flash"],
)
def test_session_affinity_follows_the_conversation(proxy: Proxy, cf: FakeCloudflare, model: str) -> None:
    client = proxy.client()
    _ask(client, model, False, _conversation("You are terse.", "Plan a trip", 1))
    _ask(client, model, True, _conversation("You are terse.", "Plan a trip", 3))
    _ask(client, model, False, _conversation("You are terse.", "Write a poem", 1))
    _ask(client, model, False, _conversation("You are verbose.", "Plan a trip", 2))
    first, second, other, other_system = (r.affinity for r in cf.requests)
    assert first is not None and first == second
    assert len({first, other, other_system}) == 3


@pytest.mark.parametrize("header", ["x-session-affinity", "x-session-id", "session_id"])
def test_session_affinity_from_client_header(proxy: Proxy, cf: FakeCloudflare, header: str) -> None:
    client = proxy.client()
    _ask(client, f"{WAI}/@cf/moonshotai/kimi-k2.6", False, extra_headers={header: "sess-client-42"})
    _ask(client, f"{GW}/claude-sonnet-4-5", True, extra_headers={header: "sess-client-42"})
    assert [r.affinity for r in cf.requests] == ["sess-client-42", "sess-client-42"]


def test_session_affinity_from_prompt_cache_key(proxy: Proxy, cf: FakeCloudflare) -> None:
    _ask(proxy.client(), f"{WAI}/@cf/moonshotai/kimi-k2.6", False, extra_body={"prompt_cache_key": "conv-7"})
    assert cf.requests[-1].affinity == "conv-7"


def test_workers_ai_missing_account(
    isolated_env: Path, cf: FakeCloudflare, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    _route_at(isolated_env, cf)
    _set_env(monkeypatch, CLOUDFLARE_ACCOUNT_ID="")
    with pytest.raises(openai.AuthenticationError) as info:
        _ask(start_proxy().client(), f"{WAI}/@cf/moonshotai/kimi-k2.6", False)
    assert "CLOUDFLARE_ACCOUNT_ID" in info.value.message


def test_workers_ai_default_url(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_env(monkeypatch)
    provider = next(p for p in load_builtin_providers() if p.id == WAI)
    auth = asyncio.run(ADAPTER.resolve(provider, TOKEN, "env CLOUDFLARE_API_KEY", dict(os.environ)))
    assert auth.base_url == f"https://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai/v1"
    assert auth.headers["authorization"] == f"Bearer {TOKEN}"


def test_resolve_without_key_says_what_to_set() -> None:
    provider = next(p for p in load_builtin_providers() if p.id == GW)
    with pytest.raises(MissingCredentials, match="CLOUDFLARE_API_KEY"):
        asyncio.run(ADAPTER.resolve(provider, None, "ambient", {}))


# --- the fake itself --------------------------------------------------------------------------------


def test_fake_gateway_refuses_without_cf_aig_authorization(cf: FakeCloudflare) -> None:
    body = {"model": "gpt-5.1", "input": "hi"}
    url = f"{cf.url}/v1/{ACCOUNT}/{GATEWAY}/openai/responses"
    assert httpx.post(url, json=body, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 401
    assert httpx.post(f"{cf.url}/v1/{ACCOUNT}/other-gw/openai/responses", json=body).status_code == 404
    ok = httpx.post(url, json=body, headers={"cf-aig-authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert cf.requests[-1].upstream_headers["authorization"] == "Bearer sk-openai-stored-0123"


def test_inline_byok_header_from_a_command(
    isolated_env: Path, cf: FakeCloudflare, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A models.json header value may be a !command, resolved like any key value (file owned, 0600)."""
    _route_at(isolated_env, cf, {"headers": {"Authorization": "!printf 'Bearer sk-byok-cmd-0123'"}})
    (isolated_env / "models.json").chmod(0o600)
    _set_env(monkeypatch)
    assert _ask(start_proxy().client(), f"{GW}/gpt-5.1", False).strip() == "Echo: hello there"
    rec = cf.requests[-1]
    assert rec.headers["authorization"] == "Bearer sk-byok-cmd-0123"
    assert rec.headers["cf-aig-authorization"] == f"Bearer {TOKEN}"
