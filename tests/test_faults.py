"""Upstream faults end the way the stream contract says, through the real proxy and a faulty provider.

The provider is :class:`tests.fakes.faulty_upstream.FaultyUpstream`, a raw HTTP server on loopback; the
client is raw httpx (to see every byte of a stream) or the openai SDK.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.config import ServerConfig, TimeoutConfig
from tests.conftest import models_json
from tests.fakes.faulty_upstream import HALF_EVENT, FaultyUpstream

KEY = "sk-faulty-0123456789abcdefghij"
SECRET_HEADER = "hdr-secret-value-0123456789"
CHAT = "/v1/chat/completions"


@pytest.fixture
def faulty(isolated_env: Path) -> Iterator[FaultyUpstream]:
    fake = FaultyUpstream().start()
    models_json(
        isolated_env,
        {
            "faulty": {
                "baseUrl": fake.url + "/v1",
                "api": "openai-completions",
                "apiKey": KEY,
                "headers": {"x-team-secret": SECRET_HEADER},
                "models": [{"id": "m"}],
            }
        },
    )
    yield fake
    fake.stop()


@pytest.fixture
def recorder() -> Iterator[FaultyUpstream]:
    fake = FaultyUpstream().start()
    yield fake
    fake.stop()


def _ask(stream: bool = False) -> dict[str, Any]:
    return {"model": "faulty/m", "messages": [{"role": "user", "content": "the prompt"}], "stream": stream}


def _events(body: bytes) -> list[str]:
    """The data of each SSE event, in order."""
    return [block.removeprefix(b"data: ").decode() for block in body.split(b"\n\n") if block.strip()]


def _quick_client(proxy_url: str) -> httpx.Client:
    # The bound on the test: with read timeouts of 1 s in the proxy, 20 s means the proxy never answered.
    return httpx.Client(base_url=proxy_url, timeout=httpx.Timeout(20.0))


@pytest.mark.parametrize("status", [302, 307, 308])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("client_kind", ["aiohttp", "httpx"])
def test_redirect_is_refused_and_nothing_reaches_its_target(
    faulty: FaultyUpstream,
    recorder: FaultyUpstream,
    start_proxy: Any,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    stream: bool,
    client_kind: str,
) -> None:
    monkeypatch.setenv("SWITCHBOARD_UPSTREAM_CLIENT", client_kind)
    faulty.mode = "redirect"
    faulty.redirect_status = status
    faulty.redirect_to = recorder.url + CHAT
    proxy = start_proxy()
    resp = proxy.http().post(CHAT, json=_ask(stream))
    assert resp.status_code == 502
    error = resp.json()["error"]
    assert str(status) in error["message"] and "does not follow provider redirects" in error["message"]
    assert "baseUrl" in error["message"]
    assert recorder.requests == []  # neither the key, the secret header nor the prompt went there
    assert len(faulty.requests) == 1


def test_stream_without_done_ends_with_an_error_event(faulty: FaultyUpstream, start_proxy: Any) -> None:
    faulty.mode = "no_done"
    proxy = start_proxy()
    resp = proxy.http().post(CHAT, json=_ask(stream=True))
    assert resp.status_code == 200
    events = _events(resp.content)
    assert [json.loads(e)["choices"][0]["delta"]["content"] for e in events[:2]] == ["one ", "two "]
    error = json.loads(events[-2])["error"]
    assert "without data: [DONE]" in error["message"] and error["code"] == "upstream_unreachable"
    assert events[-1] == "[DONE]"


def test_stream_cut_inside_an_event_never_forwards_the_half(faulty: FaultyUpstream, start_proxy: Any) -> None:
    faulty.mode = "half_event"
    proxy = start_proxy()
    resp = proxy.http().post(CHAT, json=_ask(stream=True))
    assert b"HALF-EVENT-SENTINEL" not in resp.content
    events = _events(resp.content)
    assert "inside an event" in json.loads(events[-2])["error"]["message"]
    assert events[-1] == "[DONE]"


def test_complete_stream_is_forwarded_byte_for_byte(faulty: FaultyUpstream, start_proxy: Any) -> None:
    proxy = start_proxy()
    resp = proxy.http().post(CHAT, json=_ask(stream=True))
    events = _events(resp.content)
    assert events[-1] == "[DONE]" and not any('"error"' in e for e in events)
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "stop"


def test_truncated_json_answer_is_a_502(faulty: FaultyUpstream, start_proxy: Any) -> None:
    faulty.mode = "truncated_json"
    proxy = start_proxy()
    resp = proxy.http().post(CHAT, json=_ask())
    assert resp.status_code == 502
    assert "not a JSON object" in resp.json()["error"]["message"]


def test_dripping_answer_hits_the_total_deadline(faulty: FaultyUpstream, start_proxy: Any) -> None:
    faulty.mode = "drip"
    proxy = start_proxy(ServerConfig(timeouts=TimeoutConfig(read=1.0)))
    with _quick_client(proxy.url) as client:
        resp = client.post(CHAT, json=_ask())
    assert resp.status_code == 504
    error = resp.json()["error"]
    assert error["code"] == "upstream_timeout" and "faulty" in error["message"]


def test_dripping_stream_ends_with_a_timeout_event(faulty: FaultyUpstream, start_proxy: Any) -> None:
    faulty.mode = "drip"
    proxy = start_proxy(ServerConfig(timeouts=TimeoutConfig(read=1.0)))
    with _quick_client(proxy.url) as client:
        resp = client.post(CHAT, json=_ask(stream=True))
    assert resp.status_code == 200
    events = _events(resp.content)
    assert json.loads(events[-2])["error"]["code"] == "upstream_timeout"
    assert events[-1] == "[DONE]"
    assert HALF_EVENT[:20] not in resp.content


@pytest.mark.parametrize("client_kind", ["aiohttp", "httpx"])
def test_pooled_connection_closed_by_the_provider_is_retried(
    faulty: FaultyUpstream, start_proxy: Any, monkeypatch: pytest.MonkeyPatch, client_kind: str
) -> None:
    monkeypatch.setenv("SWITCHBOARD_UPSTREAM_CLIENT", client_kind)
    faulty.mode = "keepalive_race"
    proxy = start_proxy()
    http = proxy.http()
    statuses = [http.post(CHAT, json=_ask()).status_code for _ in range(12)]
    assert statuses == [200] * 12
    # The race did happen: connections were reused and dropped, and answered on new ones.
    assert len(faulty.requests) > 12


def test_open_stream_ends_with_a_shutdown_event(faulty: FaultyUpstream, start_proxy: Any) -> None:
    faulty.mode = "slow_stream"
    proxy = start_proxy(ServerConfig(timeouts=TimeoutConfig(shutdown=1)))
    seen: list[bytes] = []
    with (
        httpx.Client(base_url=proxy.url, timeout=20) as client,
        client.stream("POST", CHAT, json=_ask(stream=True)) as resp,
    ):
        for chunk in resp.iter_bytes():
            seen.append(chunk)
            if len(seen) == 1:
                proxy.server.should_exit = True
    events = _events(b"".join(seen))
    error = json.loads(events[-2])["error"]
    assert error["code"] == "server_shutdown" and "retry" in error["message"]
    assert events[-1] == "[DONE]"


def test_unanswered_request_gets_503_on_shutdown(faulty: FaultyUpstream, start_proxy: Any) -> None:
    faulty.mode = "hang"
    proxy = start_proxy(ServerConfig(timeouts=TimeoutConfig(shutdown=1)))
    with httpx.Client(base_url=proxy.url, timeout=20) as client:
        pending = client.build_request("POST", CHAT, json=_ask())
        deadline = time.monotonic() + 10

        # Ask for the shutdown once the request is at the provider.
        def stop_when_sent() -> None:
            while not faulty.requests and time.monotonic() < deadline:
                time.sleep(0.01)
            proxy.server.should_exit = True

        stopper = threading.Thread(target=stop_when_sent)
        stopper.start()
        resp = client.send(pending)
        stopper.join(10)
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "server_shutdown"
