"""The team gateway through the real server: the openai SDK with virtual keys, every refusal asserted
with its status, code and headers, and the ledger against the upstream's usage (SQLite store)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.config import ServerConfig
from tests.conftest import Proxy, models_json
from tests.fakes.openai_upstream import FakeOpenAI

MASTER = "sk-sb-master-0123456789abcdef0123"

#: Prices per million tokens of the local model (a custom model's ``cost`` in models.json).
PRICES = {"input": 2.0, "output": 8.0, "cacheRead": 0.5, "cacheWrite": 2.5}


def _no_discovery() -> ServerConfig:
    return ServerConfig(discovery=ServerConfig().discovery.__class__(enabled=False))


@pytest.fixture
def gateway(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI, start_proxy: Callable[..., Proxy]
) -> Proxy:
    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)
    models_json(
        isolated_env,
        {
            "local": {
                "baseUrl": fake_openai.url + "/v1",
                "api": "openai-completions",
                "apiKey": "upstream-secret",
                "models": [{"id": "m", "cost": PRICES}, {"id": "other"}],
            }
        },
    )
    return start_proxy(config=_no_discovery())


def admin(proxy: Proxy) -> httpx.Client:
    return httpx.Client(base_url=proxy.url + "/admin/v1", headers={"Authorization": f"Bearer {MASTER}"}, timeout=30)


def create_key(proxy: Proxy, **spec: Any) -> tuple[str, dict[str, Any]]:
    with admin(proxy) as http:
        r = http.post("/keys", json={"name": "t", **spec})
    assert r.status_code == 201, r.text
    body = r.json()
    return body["key"], body


def sdk(proxy: Proxy, key: str) -> openai.OpenAI:
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0)
    proxy._clients.append(client)
    return client


def ask(client: openai.OpenAI, model: str = "local/m", **kw: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], **kw)


def records(proxy: Proxy, key_id: str) -> list[dict[str, Any]]:
    with admin(proxy) as http:
        r = http.get("/requests", params={"key": key_id, "limit": 100})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


def wait_records(proxy: Proxy, key_id: str, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        found = records(proxy, key_id)
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_virtual_key_works_and_is_never_forwarded(gateway: Proxy, fake_openai: FakeOpenAI) -> None:
    key, _ = create_key(gateway)
    assert key.startswith("sk-sb-") and len(key) >= 6 + 32
    out = ask(sdk(gateway, key))
    assert out.choices[0].message.content
    sent = fake_openai.requests[-1].headers
    assert sent["Authorization"] == "Bearer upstream-secret"
    assert key not in str(sent)


@pytest.mark.parametrize("header", ["x-api-key", "api-key"])
def test_anthropic_and_azure_style_key_headers(gateway: Proxy, header: str) -> None:
    key, _ = create_key(gateway)
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "local/m", "messages": [{"role": "user", "content": "hi"}]},
        headers={header: key},
    )
    assert r.status_code == 200, r.text


def test_missing_and_unknown_keys_are_401_invalid_api_key(gateway: Proxy) -> None:
    r = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "local/m", "messages": []})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    bogus = "sk-sb-" + "x" * 43
    with pytest.raises(openai.AuthenticationError) as err:
        ask(sdk(gateway, bogus))
    assert err.value.status_code == 401
    assert err.value.code == "invalid_api_key"
    assert bogus not in err.value.response.text


def test_disabled_and_expired_keys(gateway: Proxy) -> None:
    key, body = create_key(gateway)
    with admin(gateway) as http:
        assert http.patch(f"/keys/{body['id']}", json={"disabled": True}).status_code == 200
    with pytest.raises(openai.AuthenticationError) as err:
        ask(sdk(gateway, key))
    assert err.value.code == "key_disabled"

    soon, _ = create_key(gateway, expires=time.time() + 1.0)
    client = sdk(gateway, soon)
    assert ask(client).choices
    deadline = time.monotonic() + 10
    while True:
        try:
            ask(client)
        except openai.AuthenticationError as exc:
            assert exc.code == "key_expired"
            assert "expired at" in exc.message
            break
        assert time.monotonic() < deadline, "the key never expired"
        time.sleep(0.05)


def test_model_allow_list(gateway: Proxy) -> None:
    key, _ = create_key(gateway, models=["local/m"])
    client = sdk(gateway, key)
    assert ask(client).choices
    with pytest.raises(openai.PermissionDeniedError) as err:
        ask(client, model="local/other")
    assert err.value.status_code == 403
    assert err.value.code == "model_not_allowed"
    assert "local/m" in err.value.message
    listed = [m.id for m in client.models.list()]
    assert listed == ["local/m"]

    wide, _ = create_key(gateway, models=["local/*"])
    assert {m.id for m in sdk(gateway, wide).models.list()} == {"local/m", "local/other"}


def test_rpm_limit_headers(gateway: Proxy) -> None:
    key, _ = create_key(gateway, rpm=2)
    client = sdk(gateway, key)
    ask(client)
    ask(client)
    with pytest.raises(openai.RateLimitError) as err:
        ask(client)
    resp = err.value.response
    assert resp.status_code == 429
    assert err.value.code == "rate_limit_exceeded"
    assert int(resp.headers["retry-after"]) >= 1
    assert resp.headers["x-ratelimit-limit-requests"] == "2"
    assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    assert resp.headers["x-ratelimit-reset-requests"]


def test_budget_reserves_the_worst_case(gateway: Proxy) -> None:
    # The worst case of max_tokens=1000 is ~$0.008 (1,000 output tokens at $8/M): it fits $0.01 once the
    # first answer's ~$0.0001 is spent; max_tokens=2000 (~$0.016) does not fit at all.
    key, _ = create_key(gateway, budget=0.01)
    client = sdk(gateway, key)
    ask(client, max_tokens=1000)
    with pytest.raises(openai.RateLimitError) as err:
        ask(client, max_tokens=2000)
    assert err.value.code == "budget_exceeded"
    assert "budget" in err.value.message
    assert ask(client, max_tokens=1000).choices


def test_budget_spent_is_refused(gateway: Proxy) -> None:
    # Each answer costs 12 x $2/M + 9 x $8/M = $0.000096; a request reserves ~$0.00012 with max_tokens=10.
    key, body = create_key(gateway, budget=0.0002)
    client = sdk(gateway, key)
    ask(client, max_tokens=10)
    with pytest.raises(openai.RateLimitError) as err:
        ask(client, max_tokens=10)
    assert err.value.code == "budget_exceeded"
    assert "retry-after" not in err.value.response.headers  # a lifetime budget does not reset
    with admin(gateway) as http:
        shown = http.get(f"/keys/{body['id']}").json()
    assert shown["spend"] == pytest.approx(0.000096)


def test_ledger_matches_upstream_usage_and_prices(gateway: Proxy) -> None:
    key, body = create_key(gateway)
    client = sdk(gateway, key)
    out = ask(client)
    assert out.usage is not None
    chunks = list(ask(client, stream=True))
    # The client did not ask for the usage chunk: it was asked for upstream and stripped.
    assert all(c.usage is None for c in chunks)
    found = wait_records(gateway, body["id"], 2)
    assert len(found) == 2
    for rec in found:
        assert rec["input_tokens"] == out.usage.prompt_tokens
        assert rec["output_tokens"] == out.usage.completion_tokens
        expected = (out.usage.prompt_tokens * PRICES["input"] + out.usage.completion_tokens * PRICES["output"]) / 1e6
        assert rec["cost"] == pytest.approx(expected)
        assert rec["status"] == 200
        assert rec["estimated"] is False
    assert {rec["stream"] for rec in found} == {True, False}


def test_master_key_is_not_a_client_secret_in_errors(gateway: Proxy) -> None:
    with admin(gateway) as http:
        r = http.get("/keys")
    assert r.status_code == 200
    assert MASTER not in r.text


def test_healthz_stays_open(gateway: Proxy) -> None:
    r = httpx.get(gateway.url + "/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_parallel_limit(gateway: Proxy, fake_openai: FakeOpenAI) -> None:
    from tests.fakes.openai_upstream import Action

    key, made = create_key(gateway, parallel=1)
    assert made["parallel"] == 1, made
    fake_openai.push(Action("slow"))
    body = {"model": "local/m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        assert resp.status_code == 200
        chunks = resp.iter_bytes()  # kept: a dropped iterator closes the response
        next(chunks)
        with pytest.raises(openai.RateLimitError) as err:
            ask(sdk(gateway, key))
        assert err.value.code == "parallel_limit"
        assert int(err.value.response.headers["retry-after"]) >= 1
    deadline = time.monotonic() + 10
    while True:
        try:
            assert ask(sdk(gateway, key)).choices
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "the slot was never released"
            time.sleep(0.05)
