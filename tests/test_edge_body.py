"""Request bodies at the edge: the size limit from config.json, refused before reading; a client that
leaves mid-upload; no server path in what clients read."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.config import DiscoveryConfig, ServerConfig
from tests.conftest import auth_json, local_provider
from tests.fakes.openai_upstream import FakeOpenAI

DEADLINE = 15.0


def _config(**kw: object) -> ServerConfig:
    return ServerConfig(discovery=DiscoveryConfig(enabled=False), **kw)  # type: ignore[arg-type]


@pytest.fixture
def local(isolated_env: Path, fake_openai: FakeOpenAI) -> FakeOpenAI:
    return local_provider(isolated_env, fake_openai)


def _chat(size: int) -> bytes:
    return b'{"model": "local/m", "messages": [{"role": "user", "content": "' + b"x" * size + b'"}]}'


def _poll(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def uvicorn_errors() -> Iterator[tuple[list[logging.LogRecord], Callable[[], None]]]:
    """uvicorn logs application tracebacks on its own logger, which does not propagate to the root.

    Attached on first use: building a server reconfigures uvicorn's loggers and drops their handlers.
    """
    records: list[logging.LogRecord] = []

    class Sink(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Sink(logging.DEBUG)
    logger = logging.getLogger("uvicorn.error")
    yield records, lambda: logger.addHandler(handler)
    logger.removeHandler(handler)


def test_body_limit_comes_from_config(local, start_proxy) -> None:
    http = start_proxy(_config(max_body_mb=0.5)).http()
    headers = {"content-type": "application/json"}
    assert http.post("/v1/chat/completions", content=_chat(400_000), headers=headers).status_code == 200
    resp = http.post("/v1/chat/completions", content=_chat(600_000), headers=headers)
    assert resp.status_code == 413
    err = resp.json()["error"]
    assert err["code"] == "request_too_large" and "max_body_mb" in err["message"] and "0.5 MiB" in err["message"]
    assert len(local.requests) == 1


def test_oversized_content_length_is_refused_before_the_body_is_sent(local, start_proxy) -> None:
    proxy = start_proxy(_config(max_body_mb=1))
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=DEADLINE) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
        )
        data = b""
        while b'"request_too_large"' not in data:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                pytest.fail(f"no answer before the body was sent; got {data!r}")
            assert chunk, f"closed without an answer; got {data!r}"
            data += chunk
    assert data.startswith(b"HTTP/1.1 413")


def test_chunked_body_over_the_limit_is_413(local, start_proxy) -> None:
    http = start_proxy(_config(max_body_mb=0.25)).http()

    def body() -> Iterator[bytes]:  # a generator body is sent chunked, without Content-Length
        yield _chat(100_000)[:-4]
        for _ in range(4):
            yield b"x" * 100_000
        yield b'"}]}'

    resp = http.post("/v1/chat/completions", content=body(), headers={"content-type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"
    assert local.requests == []


def test_chunked_body_under_the_limit_is_served(local, start_proxy) -> None:
    http = start_proxy(_config(max_body_mb=1)).http()
    whole = _chat(300_000)
    resp = http.post(
        "/v1/chat/completions",
        content=iter([whole[:1000], whole[1000:200_000], whole[200_000:]]),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    assert len(local.last.body["messages"][0]["content"]) == 300_000


def test_client_leaving_mid_upload_logs_no_error(local, start_proxy, uvicorn_errors) -> None:
    proxy = start_proxy()
    records, attach = uvicorn_errors
    attach()
    state = proxy.server.server_state
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=DEADLINE) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + _chat(100)[:50]
        )
        _poll(lambda: len(state.tasks) == 1, "the request to start")
    _poll(lambda: not state.tasks and not state.connections, "the request to end")
    noisy = [r for r in records + proxy.logs if r.levelno > logging.DEBUG and r.name != "httpx"]
    assert noisy == [], [r.getMessage() for r in noisy]
    assert local.requests == []


def test_server_paths_do_not_reach_clients(isolated_env: Path, start_proxy) -> None:
    """A broken auth.json entry names the file to fix, relative to SWITCHBOARD_HOME."""
    auth_json(isolated_env, {"openai": 5})
    http = start_proxy().http()
    resp = http.post(
        "/v1/chat/completions", json={"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    )
    assert resp.status_code >= 400, resp.text
    message = resp.json()["error"]["message"]
    assert "$SWITCHBOARD_HOME/auth.json" in message
    assert str(isolated_env) not in message and str(Path.home()) not in message
    missing = http.get("/v1/nothing-here")
    assert missing.status_code == 404 and str(isolated_env) not in missing.text
