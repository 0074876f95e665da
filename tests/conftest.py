"""Shared fixtures: an isolated environment for every test, fake upstreams, and a live proxy.

The proxy runs in-process under uvicorn on a free loopback port in its own thread, built by the same
``build_server`` as ``switchboard serve``; clients (the real ``openai`` SDK, httpx) talk to it over HTTP.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from providers.registry import load_builtin_providers
from proxy.app import create_app
from proxy.config import Paths, ServerConfig
from proxy.server import build_server
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.openai_upstream import FakeOpenAI

_CLOUD_PREFIXES = ("AWS_", "GOOGLE_", "GCLOUD_", "AZURE_", "CLOUDFLARE_", "ANTHROPIC_", "SWITCHBOARD_", "OTEL_")

#: With no credentials, the vendors' chains probe instance-metadata services at 169.254.169.254. Tests send
#: traffic to loopback only: these switch the probes off (google-auth reads its switches at import time,
#: so they are set before any test module imports it).
_NO_METADATA_PROBES = {
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AZURE_TOKEN_CREDENTIALS": "dev",
}
os.environ.update(_NO_METADATA_PROBES)


def _provider_env_names() -> set[str]:
    names: set[str] = set()
    for p in load_builtin_providers():
        names.update(p.env_vars)
        names.update(p.url_env)
    return names


_PROVIDER_ENV = _provider_env_names()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No provider or cloud credential leaks in from the machine; HOME and SWITCHBOARD_HOME are tmp.

    The directories live outside the test's own ``tmp_path``, which stays empty for the test.
    """
    tmp_path = tmp_path_factory.mktemp("env")
    for name in list(os.environ):
        if name in _PROVIDER_ENV or name.startswith(_CLOUD_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in _NO_METADATA_PROBES.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    sb_home = tmp_path / "switchboard"
    monkeypatch.setenv("SWITCHBOARD_HOME", str(sb_home))
    return sb_home


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_claude() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBedrock]:
    """A Bedrock endpoint that accepts one static AWS key, which the environment names (us-east-1)."""
    fake = FakeBedrock({"AKIDSTATIC0000000XYZ": ("static-secret", None)}).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTATIC0000000XYZ")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "static-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    yield fake
    fake.stop()


@dataclass
class Proxy:
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    app: Any
    logs: list[logging.LogRecord] = field(default_factory=list)
    _clients: list[Any] = field(default_factory=list)

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def client(self, **kw: Any) -> openai.OpenAI:
        client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, **kw)
        self._clients.append(client)
        return client

    def http(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=30)
        self._clients.append(client)
        return client

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(10)


class _Capture(logging.Handler):
    def __init__(self, sink: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record)


def write_json(path: Path, data: Any, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps(data, indent=2))
    path.chmod(mode)
    return path


@pytest.fixture
def start_proxy(isolated_env: Path) -> Iterator[Callable[..., Proxy]]:
    """Start a proxy: ``start_proxy(config=ServerConfig(...), cli_keys={...})``; stopped after the test."""
    started: list[Proxy] = []
    root = logging.getLogger()
    old_level = root.level

    def start(
        config: ServerConfig | None = None, cli_keys: dict[str, str] | None = None, bind_host: str = "127.0.0.1"
    ) -> Proxy:
        """``bind_host`` is the address the server is told it serves (its checks depend on it); the
        socket itself is always on 127.0.0.1."""
        paths = Paths.from_env()
        config = config or ServerConfig(discovery=ServerConfig().discovery.__class__(enabled=False))
        app = create_app(paths, config, cli_keys)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = build_server(app, config, bind_host, port)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        logs: list[logging.LogRecord] = []
        handler = _Capture(logs)
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("proxy did not start")
            time.sleep(0.01)
        proxy = Proxy(f"http://127.0.0.1:{port}", server, thread, app, logs)
        proxy._handler = handler  # type: ignore[attr-defined]
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
        root.removeHandler(proxy._handler)  # type: ignore[attr-defined]
    root.setLevel(old_level)


def models_json(sb_home: Path, providers: dict[str, Any]) -> Path:
    return write_json(sb_home / "models.json", {"providers": providers})


def local_provider(sb_home: Path, fake: FakeOpenAI, *, key: str = "k", model: str = "m") -> FakeOpenAI:
    """models.json with one OpenAI-compatible provider ``local`` (model ``local/{model}``) at ``fake``."""
    models_json(
        sb_home,
        {"local": {"baseUrl": fake.url + "/v1", "api": "openai-completions", "apiKey": key, "models": [{"id": model}]}},
    )
    return fake


def auth_json(sb_home: Path, entries: dict[str, Any]) -> Path:
    return write_json(sb_home / "auth.json", entries)
