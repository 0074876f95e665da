"""A web page as the attacker: cross-site simple requests and DNS rebinding get nothing from the proxy."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from proxy.config import DiscoveryConfig, ServerConfig
from tests.conftest import local_provider
from tests.fakes.openai_upstream import FakeOpenAI

CHAT = {"model": "local/gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
BODY = b'{"model": "local/gpt-fake", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture
def local(isolated_env: Path, fake_openai: FakeOpenAI) -> FakeOpenAI:
    return local_provider(isolated_env, fake_openai, key="sk-local", model="gpt-fake")


def _config(**kw: object) -> ServerConfig:
    return ServerConfig(discovery=DiscoveryConfig(enabled=False), **kw)  # type: ignore[arg-type]


def _error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},  # what a cross-site <form> or fetch() sends without a preflight
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {},
    ],
)
def test_post_without_json_content_type_is_415(local, start_proxy, headers) -> None:
    resp = start_proxy().http().post("/v1/chat/completions", content=BODY, headers=headers)
    err = _error(resp, 415)
    assert "Content-Type: application/json" in err["message"]
    assert local.requests == []  # no credits spent


@pytest.mark.parametrize(
    "ctype", ["application/json", "application/json; charset=utf-8", "Application/JSON ;charset=UTF-8"]
)
def test_json_content_types_are_served(local, start_proxy, ctype) -> None:
    resp = start_proxy().http().post("/v1/chat/completions", content=BODY, headers={"content-type": ctype})
    assert resp.status_code == 200, resp.text
    assert len(local.requests) == 1


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8642", "127.0.0.1.evil.example", "localhost.evil.example", "[::2]:80"]
)
def test_foreign_host_is_421_on_every_route(local, start_proxy, host) -> None:
    """A page whose name was rebound to 127.0.0.1 sends its own name as Host."""
    http = start_proxy().http()
    for resp in (
        http.get("/healthz", headers={"host": host}),
        http.get("/v1/models", headers={"host": host}),
        http.get("/no/such/route", headers={"host": host}),
        http.post("/v1/chat/completions", json=CHAT, headers={"host": host}),
    ):
        err = _error(resp, 421)
        assert "allowed_hosts" in err["message"]
    assert local.requests == []


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:8642", "app.localhost:1", "127.0.0.1", "127.1.2.3:9", "[::1]", "[::1]:8642"]
)
def test_loopback_hosts_are_served(start_proxy, host) -> None:
    resp = start_proxy().http().get("/healthz", headers={"host": host})
    assert resp.status_code == 200 and resp.json()["status"] == "ok"


def test_allowed_hosts_admit_a_reverse_proxy_name(start_proxy) -> None:
    http = start_proxy(_config(allowed_hosts=["switchboard.internal"])).http()
    assert http.get("/healthz", headers={"host": "switchboard.internal"}).status_code == 200
    assert http.get("/healthz", headers={"host": "Switchboard.Internal:443"}).status_code == 200
    assert http.get("/healthz", headers={"host": "localhost"}).status_code == 200
    _error(http.get("/healthz", headers={"host": "evil.example"}), 421)


def test_allowed_hosts_star_serves_any_host(start_proxy) -> None:
    http = start_proxy(_config(allowed_hosts=["*"])).http()
    assert http.get("/healthz", headers={"host": "anything.example"}).status_code == 200


def test_public_bind_checks_host_only_with_allowed_hosts(start_proxy) -> None:
    """Bound to all interfaces, clients use whatever name reaches the machine: no check unless configured."""
    open_to_all = start_proxy(bind_host="0.0.0.0").http()
    assert open_to_all.get("/healthz", headers={"host": "evil.example"}).status_code == 200
    listed = start_proxy(_config(allowed_hosts=["gateway.example"]), bind_host="0.0.0.0").http()
    assert listed.get("/healthz", headers={"host": "gateway.example:8642"}).status_code == 200
    _error(listed.get("/healthz", headers={"host": "evil.example"}), 421)


def test_no_cors_grant_for_any_origin(local, start_proxy) -> None:
    """Without CORS headers a page on another origin can neither preflight a JSON POST nor read answers."""
    http = start_proxy().http()
    origin = {"origin": "https://evil.example"}
    preflight = {**origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    answers = [
        http.options("/v1/chat/completions", headers=preflight),
        http.options("/v1/models", headers=preflight),
        http.get("/v1/models", headers=origin),
        http.post("/v1/chat/completions", json=CHAT, headers=origin),
    ]
    for resp in answers:
        assert not [h for h in resp.headers if h.lower().startswith("access-control-")], resp.headers
    assert answers[-1].status_code == 200
