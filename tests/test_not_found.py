"""Unknown paths answer a 404 that names the method and path and lists what Switchboard serves (LangChain,
pydantic-ai and Claude Code show a bare 404 as a missing model); ``HEAD /`` (Claude Code's probe) and
``HEAD /healthz`` answer 200.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

ENDPOINTS = (
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/responses",
    "POST /v1/messages",
    "POST /v1/messages/count_tokens",
    "POST /v1/embeddings",
    "GET /v1/models",
    "GET /healthz",
)


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/chat/complete"), ("POST", "/v2/foo"), ("DELETE", "/api/v1/chat")]
)
def test_unknown_path_names_method_path_and_endpoints(start_proxy: Any, method: str, path: str) -> None:
    resp = start_proxy().http().request(method, path, json={"model": "x"})
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["code"] == "not_found" and error["type"] == "invalid_request_error"
    assert f"no endpoint {method} {path};" in error["message"]
    for endpoint in ENDPOINTS:
        assert endpoint in error["message"]
    assert "model" not in error["code"]


def test_openai_sdk_with_a_wrong_base_url_sees_the_path(start_proxy: Any) -> None:
    proxy = start_proxy()
    client = openai.OpenAI(base_url=proxy.url + "/v2", api_key="unused", max_retries=0)
    with client, pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "no endpoint POST /v2/chat/completions;" in info.value.message
    assert "POST /v1/chat/completions" in info.value.message


def test_anthropic_sdk_with_v1_in_its_base_url_sees_the_doubled_path(start_proxy: Any) -> None:
    proxy = start_proxy()
    client = anthropic.Anthropic(base_url=proxy.url + "/v1/", api_key="unused", max_retries=0)
    with client, pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert "no endpoint POST /v1/v1/messages;" in info.value.message


def test_a_long_path_is_cut(start_proxy: Any) -> None:
    path = "/x" * 500
    message = start_proxy().http().get(path).json()["error"]["message"]
    assert path[:200] + "..." in message and path not in message


@pytest.mark.parametrize(
    ("method", "path", "allow"), [("PUT", "/", "HEAD"), ("POST", "/healthz", "GET"), ("DELETE", "/v1/models", "GET")]
)
def test_wrong_method_names_it_and_what_is_allowed(start_proxy: Any, method: str, path: str, allow: str) -> None:
    resp = start_proxy().http().request(method, path, json={})
    assert resp.status_code == 405 and allow in resp.headers["allow"]
    message = resp.json()["error"]["message"]
    assert message.startswith(f"{method} is not allowed on {path}; it answers ") and allow in message


@pytest.mark.parametrize("path", ["/", "/healthz"])
def test_head_probes_answer_200(start_proxy: Any, path: str) -> None:
    resp = start_proxy().http().head(path)
    assert resp.status_code == 200 and resp.content == b""


def test_get_healthz_still_answers_its_body(start_proxy: Any) -> None:
    resp = start_proxy().http().get("/healthz")
    assert resp.status_code == 200 and resp.json()["status"] in ("ok", "degraded")
