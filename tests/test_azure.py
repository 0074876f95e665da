"""Azure OpenAI: endpoint normalization, deployments, api-version, api-key and Entra ID (real azure-identity).

End to end: the real ``openai`` SDK → live proxy → :class:`FakeAzure` (which answers through the OpenAI
Responses and chat fakes). Entra ID runs azure-identity's ``ClientSecretCredential``/MSAL for real against
:class:`FakeEntraAuthority` over TLS on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from providers.cloud.azure import ADAPTER, normalize_base_url, parse_deployment_map
from providers.cloud.base import RequestContext
from providers.errors import ConfigError, MissingCredentials
from providers.registry import Model, Provider, load_builtin_providers
from providers.wire.base import UpstreamCall, WireTarget
from tests.conftest import Proxy, auth_json, models_json
from tests.fakes.azure_upstream import ACCESS_DENIED, FakeAzure, FakeEntraAuthority

PROVIDER_ID = "azure-openai-responses"
MODEL = f"{PROVIDER_ID}/gpt-4.1"
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _provider() -> Provider:
    found = [p for p in load_builtin_providers() if p.id == PROVIDER_ID]
    assert found and found[0].adapter == "azure"
    return found[0]


# --- base URL, resource name, deployment map ---------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://res.openai.azure.com", "https://res.openai.azure.com/openai/v1"),
        ("https://res.openai.azure.com/", "https://res.openai.azure.com/openai/v1"),
        ("  https://res.openai.azure.com/openai//  ", "https://res.openai.azure.com/openai/v1"),
        ("https://res.openai.azure.com/openai/v1/responses", "https://res.openai.azure.com/openai/v1"),
        ("https://res.openai.azure.com/openai/v1/responses?api-version=v1", "https://res.openai.azure.com/openai/v1"),
        ("https://res.openai.azure.com/?x=1", "https://res.openai.azure.com/openai/v1"),
        ("https://res.cognitiveservices.azure.com", "https://res.cognitiveservices.azure.com/openai/v1"),
        ("https://res.cognitiveservices.azure.com/openai", "https://res.cognitiveservices.azure.com/openai/v1"),
        ("https://res.services.ai.azure.com/", "https://res.services.ai.azure.com/openai/v1"),
        ("https://RES.OpenAI.Azure.com", "https://RES.OpenAI.Azure.com/openai/v1"),
        # Other paths are kept: only trailing slashes go.
        ("https://res.openai.azure.com/openai/v1", "https://res.openai.azure.com/openai/v1"),
        (
            "https://res.openai.azure.com/openai/deployments/gpt4/",
            "https://res.openai.azure.com/openai/deployments/gpt4",
        ),
        ("https://res.cognitiveservices.azure.com/custom/path", "https://res.cognitiveservices.azure.com/custom/path"),
        # Not an Azure host: as given.
        ("https://gateway.example.com", "https://gateway.example.com"),
        ("https://gateway.example.com/openai/", "https://gateway.example.com/openai"),
        ("https://res.openai.azure.com.example.com/", "https://res.openai.azure.com.example.com"),
        ("http://127.0.0.1:8080/openai/v1", "http://127.0.0.1:8080/openai/v1"),
    ],
)
def test_base_url_normalization(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize(
    "bad", ["res.openai.azure.com", "ftp://res.openai.azure.com", "https://", "https://x.example.com/a?b=1"]
)
def test_base_url_rejected(bad: str) -> None:
    with pytest.raises(ConfigError, match="AZURE_OPENAI_BASE_URL"):
        normalize_base_url(bad)


def test_deployment_map_parses() -> None:
    assert parse_deployment_map("gpt-4=my-gpt4,gpt-4o=my-gpt4o") == {"gpt-4": "my-gpt4", "gpt-4o": "my-gpt4o"}
    assert parse_deployment_map(" gpt-4 = my-gpt4 ,\tgpt-4o=my-gpt4o , ") == {"gpt-4": "my-gpt4", "gpt-4o": "my-gpt4o"}
    assert parse_deployment_map("") == {}
    assert parse_deployment_map("a=b=c") == {"a": "b=c"}  # split on the first '='
    assert parse_deployment_map("gpt-4=x,gpt-4=x") == {"gpt-4": "x"}


@pytest.mark.parametrize("bad", ["gpt-4", "gpt-4=my-gpt4,gpt-4o", "=my-gpt4", "gpt-4=", "gpt-4= ,x=y"])
def test_deployment_map_rejects_malformed_entries(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_deployment_map(bad)
    assert "AZURE_OPENAI_DEPLOYMENT_NAME_MAP" in err.value.message
    bad_entry = next(e.strip() for e in bad.split(",") if "=" not in e or not all(s.strip() for s in e.split("=", 1)))
    assert repr(bad_entry) in err.value.message


def test_deployment_map_rejects_conflicting_entries() -> None:
    with pytest.raises(ConfigError, match="maps 'gpt-4' twice"):
        parse_deployment_map("gpt-4=a,gpt-4=b")


async def test_resolve_endpoint_order_and_key() -> None:
    p = _provider()
    env = {"AZURE_OPENAI_RESOURCE_NAME": "my-res"}
    auth = await ADAPTER.resolve(p, "k-123456789", "env AZURE_OPENAI_API_KEY", env)
    assert auth.base_url == "https://my-res.openai.azure.com/openai/v1"
    assert auth.headers["api-key"] == "k-123456789" and "authorization" not in auth.headers
    assert auth.source == "env AZURE_OPENAI_API_KEY" and auth.secrets == ("k-123456789",)
    env["AZURE_OPENAI_BASE_URL"] = " https://other.cognitiveservices.azure.com/ "
    auth = await ADAPTER.resolve(p, "k", "auth.json", env)
    assert auth.base_url == "https://other.cognitiveservices.azure.com/openai/v1"


async def test_resolve_errors_say_what_to_set() -> None:
    p = _provider()
    with pytest.raises(MissingCredentials) as err:
        await ADAPTER.resolve(p, "k", "auth.json", {})
    assert "AZURE_OPENAI_BASE_URL" in err.value.message and "AZURE_OPENAI_RESOURCE_NAME" in err.value.message
    with pytest.raises(ConfigError, match="AZURE_OPENAI_RESOURCE_NAME"):
        await ADAPTER.resolve(p, "k", "auth.json", {"AZURE_OPENAI_RESOURCE_NAME": "https://x.openai.azure.com"})
    with pytest.raises(MissingCredentials, match="AZURE_OPENAI_API_KEY"):
        await ADAPTER.resolve(p, None, "ambient", {"AZURE_OPENAI_RESOURCE_NAME": "r", "HOME": "/nonexistent"})


def test_api_for() -> None:
    p = _provider()
    assert ADAPTER.api_for(p, "gpt-4.1", p.model("gpt-4.1")) == "openai-responses"
    assert ADAPTER.api_for(p, "unknown", None) == "openai-responses"
    chat = Model("my-chat", "my-chat", api="openai-completions")
    assert ADAPTER.api_for(p, "my-chat", chat) == "openai-completions"


def test_available_and_describe(tmp_path: Path) -> None:
    p = _provider()
    home = tmp_path / "home"
    home.mkdir()
    base = {"HOME": str(home), "AZURE_OPENAI_BASE_URL": "https://r.openai.azure.com"}
    sp = {"AZURE_CLIENT_ID": "cid-1", "AZURE_TENANT_ID": "tid", "AZURE_CLIENT_SECRET": "s"}
    assert not ADAPTER.available(p, True, {"HOME": str(home)})  # a key but no endpoint: requests would fail
    assert ADAPTER.available(p, True, base)
    assert ADAPTER.describe(p, True, base) is None  # the resolver names the key's source
    assert not ADAPTER.available(p, False, base)
    assert not ADAPTER.available(p, False, {"HOME": str(home), **sp})  # no endpoint
    assert ADAPTER.available(p, False, {**base, **sp})
    assert ADAPTER.describe(p, False, {**base, **sp}) == "Entra ID service principal cid-1"
    no_proof = {k: v for k, v in sp.items() if k != "AZURE_CLIENT_SECRET"}
    assert not ADAPTER.available(p, False, {**base, **no_proof})
    cert = {**no_proof, "AZURE_CLIENT_CERTIFICATE_PATH": "/c.pem"}
    assert ADAPTER.describe(p, False, {**base, **cert}) == "Entra ID service principal cid-1"
    for mi in ("IDENTITY_ENDPOINT", "MSI_ENDPOINT"):
        assert ADAPTER.available(p, False, {**base, mi: "http://127.0.0.1:1"})
        assert ADAPTER.describe(p, False, {**base, mi: "x"}) == "Entra ID (DefaultAzureCredential)"
    (home / ".azure").mkdir()
    assert ADAPTER.available(p, False, base)
    assert ADAPTER.describe(p, False, base) == "Entra ID (DefaultAzureCredential)"
    assert not ADAPTER.available(p, False, {"HOME": str(home)})


async def test_finalize_adds_api_version_and_wire_target_names_the_deployment() -> None:
    p = _provider()
    env = {"AZURE_OPENAI_RESOURCE_NAME": "r", "AZURE_OPENAI_API_VERSION": "2025-04-01-preview"}
    env["AZURE_OPENAI_DEPLOYMENT_NAME_MAP"] = "gpt-4.1=dep-41"
    auth = await ADAPTER.resolve(p, "k", "auth.json", env)
    ctx = RequestContext({}, "openai-responses")

    def target(model: str) -> WireTarget:
        return WireTarget(p.id, p.name, auth.base_url, model, p.model(model), p.compat, auth.headers)

    body = json.dumps({"model": "gpt-4.1", "input": "hi"}).encode()
    call = UpstreamCall(auth.base_url + "/responses", body, {"x": "1"})
    assert ADAPTER.wire_target(target("gpt-4.1"), "openai-responses", auth).model_id == "dep-41"
    assert ADAPTER.wire_target(target("gpt-4o"), "openai-responses", auth) == target("gpt-4o")
    out = await ADAPTER.finalize(call, auth, target("gpt-4.1"), ctx)
    assert out.url == "https://r.openai.azure.com/openai/v1/responses?api-version=2025-04-01-preview"
    assert out.body is body and out.headers == {"x": "1"}  # the body was built for the deployment already
    unmapped = json.dumps({"model": "gpt-4o", "input": "hi"}).encode()
    out = await ADAPTER.finalize(UpstreamCall(auth.base_url + "/responses?a=b", unmapped), auth, target("gpt-4o"), ctx)
    assert out.url.endswith("/responses?a=b&api-version=2025-04-01-preview") and out.body == unmapped


# --- end to end with an API key ------------------------------------------------------------------------


@pytest.fixture
def azure() -> Iterator[FakeAzure]:
    server = FakeAzure().start()
    yield server
    server.stop()


@pytest.fixture
def keyed(azure: FakeAzure, monkeypatch: pytest.MonkeyPatch) -> FakeAzure:
    monkeypatch.setenv("AZURE_OPENAI_BASE_URL", azure.url + "/openai/v1/")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key")
    return azure


def _check_azure_call(fake: FakeAzure, path: str, deployment: str, version: str = "v1") -> None:
    last = fake.last
    assert last.path == path
    assert last.query == {"api-version": version}
    assert last.body["model"] == deployment
    assert last.headers.get("api-key") == "azure-key" and "Authorization" not in last.headers


def test_chat_via_responses(keyed: FakeAzure, start_proxy: Callable[..., Proxy]) -> None:
    client = start_proxy().client()
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello azure"}])
    assert answer.choices[0].message.content == "Echo: hello azure"
    assert answer.usage is not None and answer.usage.prompt_tokens == 20
    _check_azure_call(keyed, "/openai/v1/responses", "gpt-4.1")
    assert keyed.responses.last.body["store"] is False


def test_chat_streamed_via_responses(keyed: FakeAzure, start_proxy: Callable[..., Proxy]) -> None:
    client = start_proxy().client()
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "one two three"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Echo: one two three"
    _check_azure_call(keyed, "/openai/v1/responses", "gpt-4.1")
    assert keyed.last.body["stream"] is True


def test_tool_call_round_trip(keyed: FakeAzure, start_proxy: Callable[..., Proxy]) -> None:
    client = start_proxy().client()
    messages: list[Any] = [{"role": "user", "content": "weather in Paris and Tokyo?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    calls = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls"
    assert calls is not None
    assert [json.loads(c.function.arguments)["city"] for c in calls if c.type == "function"] == ["Paris", "Tokyo"]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages += [{"role": "tool", "tool_call_id": c.id, "content": f"sunny #{i}"} for i, c in enumerate(calls)]
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Tool results: sunny #0; sunny #1"
    outputs = [it for it in keyed.last.body["input"] if it["type"] == "function_call_output"]
    assert [o["call_id"] for o in outputs] == [c.id for c in calls]
    _check_azure_call(keyed, "/openai/v1/responses", "gpt-4.1")


def test_deployment_map_and_api_version(
    keyed: FakeAzure, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME_MAP", "gpt-4o=dep-4o, gpt-4.1 = dep-41")
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2025-04-01-preview")
    keyed.deployments = {"dep-41", "dep-4o"}
    keyed.api_version = "2025-04-01-preview"
    client = start_proxy().client()
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "Echo: hi"
    _check_azure_call(keyed, "/openai/v1/responses", "dep-41", "2025-04-01-preview")
    with pytest.raises(openai.NotFoundError, match="deployment for this resource does not exist"):
        client.chat.completions.create(model=f"{PROVIDER_ID}/gpt-4.1-mini", messages=[{"role": "user", "content": "x"}])
    assert keyed.last.body["model"] == "gpt-4.1-mini"  # unmapped: the model id itself


def test_chat_completions_deployment(
    keyed: FakeAzure, start_proxy: Callable[..., Proxy], isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models_json(isolated_env, {PROVIDER_ID: {"models": [{"id": "my-chat", "api": "openai-completions"}]}})
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME_MAP", "my-chat=chat-dep")
    client = start_proxy().client()
    model = f"{PROVIDER_ID}/my-chat"
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "plain chat"}])
    assert answer.choices[0].message.content == "Echo: plain chat"
    _check_azure_call(keyed, "/openai/v1/chat/completions", "chat-dep")
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "a b"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip() == "Echo: a b"
    _check_azure_call(keyed, "/openai/v1/chat/completions", "chat-dep")
    assert not keyed.responses.requests


def test_wrong_key_is_401(keyed: FakeAzure, start_proxy: Callable[..., Proxy]) -> None:
    keyed.keys = {"another-key"}
    client = start_proxy().client()
    with pytest.raises(openai.AuthenticationError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "Access denied" in str(err.value)
    assert keyed.last.headers["api-key"] == "azure-key"
    assert ACCESS_DENIED.startswith("Access denied")


def test_auth_json_key_and_env_map(azure: FakeAzure, start_proxy: Callable[..., Proxy], isolated_env: Path) -> None:
    env = {"AZURE_OPENAI_BASE_URL": azure.url + "/openai/v1", "AZURE_OPENAI_DEPLOYMENT_NAME_MAP": "gpt-4.1=d1"}
    auth_json(isolated_env, {PROVIDER_ID: {"type": "api_key", "key": "azure-key", "env": env}})
    proxy = start_proxy()
    answer = proxy.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "Echo: hi"
    _check_azure_call(azure, "/openai/v1/responses", "d1")


def test_missing_endpoint_and_bad_map_answer_with_the_fix(
    start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch, azure: FakeAzure
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key")
    http = start_proxy().http()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 401
    assert "AZURE_OPENAI_BASE_URL" in resp.json()["error"]["message"]
    monkeypatch.setenv("AZURE_OPENAI_BASE_URL", azure.url + "/openai/v1")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME_MAP", "gpt-4.1:oops")
    http = start_proxy().http()
    resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 500
    message = resp.json()["error"]["message"]
    assert "AZURE_OPENAI_DEPLOYMENT_NAME_MAP" in message and "'gpt-4.1:oops'" in message
    assert not azure.requests


# --- Entra ID through azure-identity, against a fake authority over TLS ------------------------------------


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[FakeEntraAuthority]:
    server = FakeEntraAuthority(tmp_path, "tenant-1", "client-1", "s3cret").start()
    yield server
    server.stop()


@pytest.fixture
def entra(
    azure: FakeAzure, authority: FakeEntraAuthority, monkeypatch: pytest.MonkeyPatch
) -> tuple[FakeAzure, FakeEntraAuthority]:
    monkeypatch.setenv("AZURE_OPENAI_BASE_URL", azure.url + "/openai/v1")
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-1")
    monkeypatch.setenv("AZURE_CLIENT_ID", "client-1")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", authority.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(authority.ca_file))
    azure.tokens = authority.issued  # the fake resource accepts what the fake authority issued
    return azure, authority


def _token_requests(authority: FakeEntraAuthority) -> list[Any]:
    return [r for r in authority.requests if r[0] == "POST"]


def test_entra_token_from_azure_identity(
    entra: tuple[FakeAzure, FakeEntraAuthority], start_proxy: Callable[..., Proxy]
) -> None:
    azure, authority = entra
    proxy = start_proxy()
    assert proxy.runtime.credentials.source_of(_provider()) == "Entra ID service principal client-1"
    client = proxy.client()
    for word in ("one", "two"):
        answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": word}])
        assert answer.choices[0].message.content == f"Echo: {word}"
    assert len(authority.issued) == 1  # cached: the second request reuses the token
    last = azure.last
    assert last.headers["Authorization"] == f"Bearer {authority.issued[0]}" and "api-key" not in last.headers
    assert last.query == {"api-version": "v1"}
    form = _token_requests(authority)[0][2]
    assert form["scope"] == "https://cognitiveservices.azure.com/.default" and form["client_id"] == "client-1"


def test_entra_token_refreshed_before_expiry(
    entra: tuple[FakeAzure, FakeEntraAuthority], start_proxy: Callable[..., Proxy]
) -> None:
    azure, authority = entra
    authority.expires_in = 200  # inside the five-minute refresh margin: every request refreshes
    client = start_proxy().client()
    for _ in range(2):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert len(authority.issued) == 2
    assert azure.last.headers["Authorization"] == f"Bearer {authority.issued[1]}"


async def test_entra_one_refresh_at_a_time(entra: tuple[FakeAzure, FakeEntraAuthority]) -> None:
    _, authority = entra
    p = _provider()
    auth = await ADAPTER.resolve(p, None, "ambient", dict(os.environ))
    assert auth.source == "Entra ID service principal client-1" and "api-key" not in auth.headers
    target = WireTarget(p.id, p.name, auth.base_url, "gpt-4.1", p.model("gpt-4.1"), p.compat, auth.headers)
    ctx = RequestContext({}, "openai-responses")
    calls = [UpstreamCall(auth.base_url + "/responses", b"{}", {}) for _ in range(5)]
    authority.gate = threading.Event()
    finalizing = asyncio.gather(*(ADAPTER.finalize(c, auth, target, ctx) for c in calls))
    # The token request now waits on the gate; only an event loop the fetch left free can open it.
    deadline = time.monotonic() + 10
    while not _token_requests(authority) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    authority.gate.set()
    outs = await finalizing
    assert authority.gated == [True], "the token fetch blocked the event loop"
    assert len(_token_requests(authority)) == 1
    assert {o.headers["authorization"] for o in outs} == {f"Bearer {authority.issued[0]}"}


def test_entra_failure_is_401_with_the_fix(
    entra: tuple[FakeAzure, FakeEntraAuthority], start_proxy: Callable[..., Proxy]
) -> None:
    azure, authority = entra
    authority.secret = "rotated"
    client = start_proxy().client()
    with pytest.raises(openai.AuthenticationError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    message = str(err.value)
    assert "Entra ID token" in message and "AZURE_OPENAI_API_KEY" in message and "s3cret" not in message
    assert _token_requests(authority) and not azure.requests
