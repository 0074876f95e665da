"""``x-request-id`` on every answer of the real server: echoed when the client sent a usable one, a new one
otherwise, exactly once, on every route (pipeline surfaces, models, health, admin, /metrics, 404, 405)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from proxy.config import DiscoveryConfig, ServerConfig
from proxy.telemetry.config import MetricsConfig
from tests.conftest import Proxy
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_metrics import MASTER, local_models

CHAT_BODY = {"model": "local/m", "messages": [{"role": "user", "content": "hi"}]}
COUNT_BODY = {"model": "local/m", "messages": [{"role": "user", "content": "hi"}]}

#: method, path, JSON body (None: no body), the status expected.
ROUTES = [
    ("POST", "/v1/chat/completions", CHAT_BODY, 200),
    ("POST", "/chat/completions", {**CHAT_BODY, "stream": True}, 200),
    ("GET", "/v1/chat/completions", None, 405),
    ("POST", "/v1/messages/count_tokens", COUNT_BODY, 200),
    ("GET", "/v1/models", None, 200),
    ("GET", "/v1/models/local/m", None, 200),
    ("GET", "/v1/responses/resp_123", None, 404),
    ("GET", "/healthz", None, 200),
    ("HEAD", "/healthz", None, 200),
    ("GET", "/metrics", None, 200),
    ("GET", "/admin/v1/keys", None, 200),
    ("GET", "/no/such/route", None, 404),
    ("DELETE", "/healthz", None, 405),
]


@pytest.fixture
def proxy(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> Proxy:
    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)
    local_models(isolated_env, fake_openai)
    return start_proxy(
        config=ServerConfig(discovery=DiscoveryConfig(enabled=False), metrics=MetricsConfig(enabled=True))
    )


def call(proxy: Proxy, method: str, path: str, body: object, request_id: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {MASTER}", "anthropic-version": "2023-06-01"}
    if request_id is not None:
        headers["x-request-id"] = request_id
    return httpx.request(method, proxy.url + path, json=body, headers=headers, timeout=30)


@pytest.mark.parametrize(("method", "path", "body", "status"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_every_route_echoes_or_makes_a_request_id(
    proxy: Proxy, method: str, path: str, body: object, status: int
) -> None:
    sent = call(proxy, method, path, body, "client-id-7:a/b")
    assert sent.status_code == status, sent.text
    assert sent.headers.get_list("x-request-id") == ["client-id-7:a/b"]

    made = call(proxy, method, path, body, None)
    assert made.status_code == status
    (generated,) = made.headers.get_list("x-request-id")
    assert generated.startswith("req_")
    # One id per request.
    again = call(proxy, method, path, body, None)
    assert again.headers["x-request-id"] != generated


def test_an_unusable_client_id_is_replaced(proxy: Proxy) -> None:
    for bad in ("has space", "x" * 129, "semi;colon"):
        r = call(proxy, "GET", "/healthz", None, bad)
        assert r.headers["x-request-id"].startswith("req_")
        r = call(proxy, "POST", "/v1/chat/completions", CHAT_BODY, bad)
        assert r.headers["x-request-id"].startswith("req_")


def test_the_guards_refusals_carry_a_request_id(proxy: Proxy) -> None:
    # 415 (not JSON) and 421 (a Host this loopback server does not answer to) come from the guard in front
    # of every route.
    not_json = httpx.post(
        proxy.url + "/v1/chat/completions", content=b"hi", headers={"content-type": "text/plain", "x-request-id": "g1"}
    )
    assert not_json.status_code == 415
    assert not_json.headers.get_list("x-request-id") == ["g1"]
    rebound = httpx.get(proxy.url + "/healthz", headers={"host": "evil.example"})
    assert rebound.status_code == 421
    assert rebound.headers["x-request-id"].startswith("req_")
