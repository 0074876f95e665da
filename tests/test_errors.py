"""Bad input and failing upstreams: every answer is an OpenAI error envelope with the right status,
says how to fix the problem, and carries no secret."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from proxy.config import DiscoveryConfig, ServerConfig, TimeoutConfig
from tests.conftest import models_json
from tests.fakes.openai_upstream import Action, FakeOpenAI
from tests.fakes.server import free_port

KEY = "sk-local-secret-0123456789"
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def local(isolated_env: Path, fake_openai: FakeOpenAI) -> FakeOpenAI:
    models_json(
        isolated_env,
        {
            "local": {
                "baseUrl": fake_openai.url + "/v1",
                "api": "openai-completions",
                "apiKey": KEY,
                "models": [{"id": "gpt-fake"}],
            }
        },
    )
    return fake_openai


def _error(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def _no_secret(proxy, *texts: str) -> None:
    for text in texts:
        assert KEY not in text
    for record in proxy.logs:
        assert KEY not in record.getMessage()


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model", "'model' is required"),
        (b'{"model": 42, "messages": []}', "model", "'model' is required"),
        (b'{"model": "local/gpt-fake"}', "messages", "'messages' is required"),
        (b'{"model": "local/gpt-fake", "messages": []}', "messages", "non-empty"),
    ],
)
def test_malformed_requests_are_400(local, start_proxy, body, param, needle) -> None:
    proxy = start_proxy()
    resp = proxy.http().post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400
    err = _error(resp)
    assert err["type"] == "invalid_request_error" and err["param"] == param and needle in err["message"]
    assert local.requests == []  # nothing reached the upstream


def test_unknown_model_404_with_close_matches(local, start_proxy) -> None:
    client = start_proxy().client()
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="locl/gpt-fake", messages=MSG)
    assert "did you mean 'local/gpt-fake'" in err.value.message
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-fak", messages=MSG)
    assert err.value.code == "model_not_found" and "local/gpt-fake" in err.value.message


def test_unknown_provider_suggests_provider(start_proxy) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        start_proxy().client().chat.completions.create(model="opnai/gpt-4o", messages=MSG)
    assert "openai/..." in err.value.message


def test_missing_credentials_401_says_how_to_fix(start_proxy) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        start_proxy().client().chat.completions.create(model="deepseek/deepseek-chat", messages=MSG)
    assert err.value.status_code == 401
    assert "DEEPSEEK_API_KEY" in err.value.message and "switchboard login deepseek" in err.value.message


def test_unimplemented_provider_is_501(isolated_env, start_proxy) -> None:
    """A provider declaring a wire API that needs a cloud adapter it does not have answers 501, saying so."""
    models_json(isolated_env, {"odd": {"baseUrl": "http://127.0.0.1:9/v1", "api": "azure-openai-responses"}})
    resp = start_proxy().http().post("/v1/chat/completions", json={"model": "odd/some-model", "messages": MSG})
    assert resp.status_code == 501
    err = _error(resp)
    assert err["code"] == "not_implemented" and "azure-openai-responses" in err["message"]


def test_upstream_rate_limit_passes_through_with_retry_after(local, start_proxy) -> None:
    local.push(
        Action(
            "error",
            status=429,
            headers={"retry-after": "7"},
            body={"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit"}},
        )
    )
    with pytest.raises(openai.RateLimitError) as err:
        start_proxy().client().chat.completions.create(model="local/gpt-fake", messages=MSG)
    assert err.value.status_code == 429
    assert err.value.response.headers["retry-after"] == "7"
    assert "Rate limit reached for requests" in err.value.message and err.value.code == "rate_limit"


def test_upstream_400_keeps_param_and_code(local, start_proxy) -> None:
    local.push(
        Action(
            "error",
            status=400,
            body={
                "error": {
                    "message": "Invalid value for 'temperature'",
                    "type": "invalid_request_error",
                    "param": "temperature",
                    "code": "invalid_value",
                }
            },
        )
    )
    with pytest.raises(openai.BadRequestError) as err:
        start_proxy().client().chat.completions.create(model="local/gpt-fake", messages=MSG, temperature=9)
    assert err.value.param == "temperature" and err.value.code == "invalid_value"


def test_upstream_5xx_and_non_json_error(local, start_proxy) -> None:
    local.push(Action("error", status=500, body={"error": {"message": "The server had an error", "type": "server"}}))
    local.push(Action("error", status=502, body="<html>Bad Gateway</html>"))
    http = start_proxy().http()
    r1 = http.post("/v1/chat/completions", json={"model": "local/gpt-fake", "messages": MSG})
    assert r1.status_code == 500 and "The server had an error" in _error(r1)["message"]
    r2 = http.post("/v1/chat/completions", json={"model": "local/gpt-fake", "messages": MSG})
    assert r2.status_code == 502 and "Bad Gateway" in _error(r2)["message"]


def test_upstream_echoing_the_key_is_scrubbed(local, start_proxy) -> None:
    local.push(Action("error", status=401, body={"error": {"message": f"Incorrect API key provided: {KEY}."}}))
    proxy = start_proxy()
    resp = proxy.http().post("/v1/chat/completions", json={"model": "local/gpt-fake", "messages": MSG})
    assert resp.status_code == 401
    assert "Incorrect API key provided: ***" in _error(resp)["message"]
    _no_secret(proxy, resp.text)


def test_upstream_timeout_is_504(local, start_proxy) -> None:
    # The upstream would answer after 20 s; the client gives up at 10 s; so only the proxy's 0.4 s read
    # timeout can produce an answer at all.
    local.push(Action("hang", seconds=20))
    proxy = start_proxy(ServerConfig(timeouts=TimeoutConfig(read=0.4), discovery=DiscoveryConfig(enabled=False)))
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        resp = http.post("/v1/chat/completions", json={"model": "local/gpt-fake", "messages": MSG})
    assert resp.status_code == 504
    err = _error(resp)
    assert err["code"] == "upstream_timeout" and "timeouts.read" in err["message"]


def test_unreachable_upstream_is_502(isolated_env, start_proxy) -> None:
    port = free_port()
    models_json(isolated_env, {"dead": {"baseUrl": f"http://127.0.0.1:{port}/v1", "api": "openai-completions"}})
    resp = start_proxy().http().post("/v1/chat/completions", json={"model": "dead/x", "messages": MSG})
    assert resp.status_code == 502
    err = _error(resp)
    assert err["code"] == "upstream_unreachable" and f"127.0.0.1:{port}" in err["message"]


def test_stream_error_before_first_byte_keeps_status(local, start_proxy) -> None:
    local.push(Action("error", status=503, body={"error": {"message": "overloaded", "type": "server_error"}}))
    resp = (
        start_proxy()
        .http()
        .post("/v1/chat/completions", json={"model": "local/gpt-fake", "messages": MSG, "stream": True})
    )
    assert resp.status_code == 503
    assert resp.headers["content-type"].startswith("application/json")
    assert "overloaded" in _error(resp)["message"]


def _events(text: str) -> list[str]:
    return [block.removeprefix("data: ") for block in text.split("\n\n") if block.strip()]


def test_stream_broken_midway_ends_with_error_event_and_done(local, start_proxy) -> None:
    local.push(Action("break", after_events=3))
    proxy = start_proxy()
    with proxy.http().stream(
        "POST", "/v1/chat/completions", json={"model": "local/gpt-fake", "messages": MSG, "stream": True}
    ) as resp:
        assert resp.status_code == 200
        text = resp.read().decode()
    events = _events(text)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "upstream_unreachable" and "broke off mid-answer" in error["message"]
    # The three complete events before the break came through intact; the half event did not.
    assert [json.loads(e)["object"] for e in events[:-2]] == ["chat.completion.chunk"] * 3


def test_stream_broken_midway_raises_in_openai_sdk(local, start_proxy) -> None:
    local.push(Action("break", after_events=2))
    stream = start_proxy().client().chat.completions.create(model="local/gpt-fake", messages=MSG, stream=True)
    got = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            got.append(chunk)
    assert len(got) == 2
    assert "broke off mid-answer" in err.value.message


def test_client_disconnect_cancels_upstream(local, start_proxy) -> None:
    local.push(Action("slow"))
    proxy = start_proxy()
    with proxy.http().stream(
        "POST", "/v1/chat/completions", json={"model": "local/gpt-fake", "messages": MSG, "stream": True}
    ) as resp:
        lines = resp.iter_lines()
        assert "tick 0" in next(line for line in lines if line)
    # The client closed after the first event; the upstream stream (10 s long) must be aborted.
    assert local.disconnected.wait(5), "the upstream kept streaming after the client left"


def test_unknown_route_and_wrong_method(start_proxy) -> None:
    http = start_proxy().http()
    r = http.get("/v1/nothing-here")
    assert r.status_code == 404 and "/v1/chat/completions" in _error(r)["message"]
    r = http.get("/v1/chat/completions")
    assert r.status_code == 405 and _error(r)["type"] == "invalid_request_error"


def test_paths_without_v1_prefix(local, start_proxy) -> None:
    http = start_proxy().http()
    assert http.post("/chat/completions", json={"model": "local/gpt-fake", "messages": MSG}).status_code == 200
    assert http.get("/models").json()["data"][0]["id"] == "local/gpt-fake"
    assert http.get("/models/local/gpt-fake").json()["id"] == "local/gpt-fake"
    assert http.get("/healthz").json()["status"] == "ok"


def test_model_headers_and_base_url_resolve_and_secrets_are_scrubbed(
    isolated_env, fake_openai, start_proxy, monkeypatch
) -> None:
    """Model-level headers resolve like key values, {NAME} placeholders fill, and a secret header the
    upstream echoes back is masked too."""
    monkeypatch.setenv("TENANT_TOKEN", "tenant-secret-98765")
    monkeypatch.setenv("REGION_HOST", "unused")
    models_json(
        isolated_env,
        {
            "multi": {
                "baseUrl": fake_openai.url + "/v1",
                "api": "openai-completions",
                "apiKey": KEY,
                "models": [
                    {
                        "id": "m1",
                        "baseUrl": fake_openai.url + "/{TENANT_PATH}/v1",
                        "headers": {"X-Tenant": "$TENANT_TOKEN", "X-Plain": "team-a"},
                    }
                ],
            }
        },
    )
    monkeypatch.setenv("TENANT_PATH", "t42")
    fake_openai.push(Action("error", status=403, body={"error": {"message": "tenant tenant-secret-98765 denied"}}))
    proxy = start_proxy()
    resp = proxy.http().post("/v1/chat/completions", json={"model": "multi/m1", "messages": MSG})
    assert resp.status_code == 403
    assert "tenant *** denied" in _error(resp)["message"]
    sent = fake_openai.last
    assert sent.path == "/t42/v1/chat/completions"
    assert sent.headers["X-Tenant"] == "tenant-secret-98765" and sent.headers["X-Plain"] == "team-a"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    _no_secret(proxy, resp.text)
    for record in proxy.logs:
        assert "tenant-secret-98765" not in record.getMessage()
