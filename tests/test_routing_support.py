"""Helpers shared by the routing tests (no tests here): fakes that fail on demand and the set-up of
OpenAI-compatible providers at them, each with its own key.

Every fake is a real HTTP server on 127.0.0.1: :class:`TimedOpenAI` is the OpenAI fake recording when
each request arrived (so backoff is asserted on the upstream's side, never on a wall clock), and
:class:`ResetServer` reads a request and resets the connection.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from proxy.config import ServerConfig
from tests.conftest import models_json
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import Action

__all__ = [
    "ANTHROPIC_CONTEXT_ERROR",
    "OPENAI_CONTEXT_ERROR",
    "ResetServer",
    "TimedOpenAI",
    "config",
    "error",
    "poll",
    "providers",
]

#: What api.openai.com answers (400) for a prompt longer than the model's context window.
OPENAI_CONTEXT_ERROR = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in "
        "9013 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
#: What api.anthropic.com answers (400) for a prompt longer than the model's context window.
ANTHROPIC_CONTEXT_ERROR = {
    "type": "error",
    "error": {"type": "invalid_request_error", "message": "prompt is too long: 208310 tokens > 200000 maximum"},
}


def error(status: int, message: str = "upstream trouble", headers: dict[str, str] | None = None) -> Action:
    """An OpenAI error envelope with ``status`` (and ``headers``, such as ``retry-after``)."""
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return Action("error", status=status, body=body, headers=headers or {})


class TimedOpenAI(FakeOpenAI):
    """The OpenAI fake, also recording when each chat request arrived (``time.monotonic()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{prefix:.*}chat/completions", self._timed)

    async def _timed(self, request: web.Request) -> web.StreamResponse:
        self.times.append(time.monotonic())
        return await self._chat(request)

    @property
    def keys(self) -> list[str]:
        """The bearer key of every request received."""
        return [r.headers.get("Authorization", "").removeprefix("Bearer ") for r in self.requests]


class ResetServer:
    """Reads a request's first bytes, then resets the connection (RST): a connection error."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port: int = self._sock.getsockname()[1]
        self.hits = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ResetServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        with socket.create_connection(("127.0.0.1", self.port)):
            pass
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while True:
            conn, _ = self._sock.accept()
            if self._stop:
                conn.close()
                return
            self.hits += 1
            conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()


def providers(home: Path, fakes: dict[str, Any], models: dict[str, list[dict[str, Any]]] | None = None) -> None:
    """models.json with one OpenAI-compatible provider per fake (``<id>/m`` unless ``models`` says), each
    with the key ``key-<id>``."""
    models_json(
        home,
        {
            pid: {
                "baseUrl": fake.url + "/v1",
                "api": "openai-completions",
                "apiKey": f"key-{pid}",
                "models": (models or {}).get(pid, [{"id": "m"}]),
            }
            for pid, fake in fakes.items()
        },
    )


def config(**settings: Any) -> ServerConfig:
    """A server config from config.json-shaped settings (discovery off)."""
    return msgspec.convert({"discovery": {"enabled": False}, **settings}, ServerConfig)


def write_config(home: Path, settings: dict[str, Any]) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.json"
    path.write_text(json.dumps(settings))
    return path


def poll(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def fakes(n: int) -> Iterator[list[TimedOpenAI]]:
    started = [TimedOpenAI().start() for _ in range(n)]
    try:
        yield started
    finally:
        for fake in started:
            fake.stop()
