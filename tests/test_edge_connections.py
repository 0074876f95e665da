"""Raw sockets against the real server: slow, idle and surplus connections are closed; bad HTTP gets
an OpenAI envelope."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.config import DiscoveryConfig, ServerConfig, TimeoutConfig
from tests.conftest import local_provider
from tests.fakes.openai_upstream import Action, FakeOpenAI

DEADLINE = 15.0


def _config(head: float = 0.5, **kw: object) -> ServerConfig:
    return ServerConfig(
        timeouts=TimeoutConfig(request_head=head),
        discovery=DiscoveryConfig(enabled=False),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def _connect(proxy, opened: list[socket.socket]) -> socket.socket:
    host, port = proxy.url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=DEADLINE)
    opened.append(s)
    return s


def _read_until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; fails if it stays open."""
    data = b""
    s.settimeout(DEADLINE)
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return data
        except TimeoutError:
            pytest.fail(f"the server kept the connection open for {DEADLINE}s; got {data!r}")
        if not chunk:
            return data
        data += chunk


def _poll(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _response(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def test_half_sent_request_head_is_closed(start_proxy, sockets) -> None:
    s = _connect(start_proxy(_config()), sockets)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    assert _read_until_closed(s) == b""


def test_idle_connection_is_closed(start_proxy, sockets) -> None:
    s = _connect(start_proxy(_config()), sockets)
    assert _read_until_closed(s) == b""


def test_half_sent_second_request_on_keep_alive_is_closed(start_proxy, sockets) -> None:
    s = _connect(start_proxy(_config()), sockets)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = b""
    while b'"status"' not in first:
        chunk = s.recv(65536)
        assert chunk, "closed before answering"
        first += chunk
    assert first.startswith(b"HTTP/1.1 200")
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127")
    assert _read_until_closed(s) == b""


def test_slow_answer_is_not_cut_by_the_head_deadline(isolated_env: Path, fake_openai: FakeOpenAI, start_proxy) -> None:
    local_provider(isolated_env, fake_openai)
    fake_openai.push(Action("hang", seconds=1.5))
    http = start_proxy(_config(head=0.3)).http()
    resp = http.post("/v1/chat/completions", json={"model": "local/m", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 200, resp.text


def test_connections_over_the_cap_get_503_and_healthz_recovers(start_proxy, sockets) -> None:
    proxy = start_proxy(_config(head=60, max_connections=3))
    held = [_connect(proxy, sockets) for _ in range(3)]
    _poll(lambda: len(proxy.server.server_state.connections) == 3, "3 open connections")

    status, body = _response(_read_until_closed(_connect(proxy, sockets)))
    assert status == 503
    assert body["error"]["code"] == "too_many_connections" and "max_connections" in body["error"]["message"]
    assert any("refusing connections" in r.getMessage() for r in proxy.logs if r.levelname == "WARNING")

    held[0].close()
    _poll(lambda: len(proxy.server.server_state.connections) == 2, "a connection to close")
    assert proxy.http().get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n",
    ],
)
def test_malformed_http_gets_the_openai_envelope(start_proxy, sockets, raw) -> None:
    s = _connect(start_proxy(_config()), sockets)
    s.sendall(raw)
    status, body = _response(_read_until_closed(s))
    assert status == 400
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "invalid_http"
