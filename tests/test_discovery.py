"""Live model discovery: the built-in ``groq`` provider routed to the fake upstream by ``models.json``.

Discovery asks ``GET {baseUrl}/models`` with the provider's own credentials, in the background only;
ids the catalog does not know are added with ``"source": "discovered"``, cached under
``SWITCHBOARD_HOME/cache/models/`` and listed at once by the next process. A failing upstream leaves
the catalog serving and says so in a warning that never contains the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers.discovery import DiscoveredModel, fetch_models, merge_discovered, save_cached
from providers.errors import ConfigError
from providers.registry import Provider, load_builtin_models
from proxy.config import DiscoveryConfig, Paths, ServerConfig
from proxy.models import list_models
from proxy.runtime import Runtime
from tests.conftest import auth_json, models_json
from tests.fakes.openai_upstream import Action, FakeOpenAI
from tests.fakes.server import free_port

KEY = "gsk-discovery-secret-4f9a1c"
CATALOG = load_builtin_models("groq")
PINNED = "pinned-by-models-json"


@pytest.fixture
def groq(isolated_env: Path, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """groq → the fake, with GROQ_API_KEY set; the fake lists a new id, a catalog id and a pinned id."""
    route_groq(isolated_env, fake_openai.url + "/openai/v1")
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    fake_openai.models = ["brand-new-model", *(m.id for m in CATALOG[:1]), PINNED]
    return fake_openai


def route_groq(sb_home: Path, base_url: str, **more: Any) -> None:
    pinned = {"id": PINNED, "name": "Pinned", "contextWindow": 4096, "maxTokens": 1024}
    models_json(sb_home, {"groq": {"baseUrl": base_url, "models": [pinned]}, **more})


def model_gets(fake: FakeOpenAI) -> list[str]:
    return [r.path for r in fake.requests if r.method == "GET" and r.path.endswith("/models")]


def by_id(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in entries}


def cache_file(sb_home: Path) -> Path:
    return sb_home / "cache" / "models" / "groq.json"


class _Recorder:
    """An httpx client that remembers every URL it was asked for."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def _hook(self, request: httpx.Request) -> None:
        self.urls.append(str(request.url))

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=5, event_hooks={"request": [self._hook]})


def _runtime(**discovery: Any) -> Runtime:
    return Runtime(Paths.from_env(), ServerConfig(discovery=DiscoveryConfig(**discovery)))


def _messages(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records]


# --- Runtime.discover_once ---------------------------------------------------------------------------


async def test_discover_once_fetches_with_the_provider_key_and_adds_new_ids(
    groq: FakeOpenAI, isolated_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert CATALOG, "the groq catalog should ship models"
    rt = _runtime()
    before = by_id(list_models(rt, "groq"))
    assert "groq/brand-new-model" not in before
    recorder = _Recorder()
    with caplog.at_level(logging.DEBUG):
        async with recorder.client() as http:
            await rt.discover_once(http)
    await rt.stop()

    assert recorder.urls == [groq.url + "/openai/v1/models"]
    (get,) = [r for r in groq.requests if r.method == "GET"]
    assert get.path == "/openai/v1/models"
    assert get.headers["Authorization"] == f"Bearer {KEY}"
    assert "Content-Type" not in get.headers  # a GET has no body to describe

    after = by_id(list_models(rt, "groq"))
    new = after["groq/brand-new-model"]
    assert new["source"] == "discovered" and new["owned_by"] == "groq" and new["object"] == "model"
    assert new["context_window"] == 128_000 and new["max_tokens"] == 16_384  # conservative defaults
    # Everything known before is untouched: catalog rows and the models.json row alike.
    assert {k: v for k, v in after.items() if k != "groq/brand-new-model"} == before
    assert after[f"groq/{CATALOG[0].id}"]["source"] == "catalog"
    assert after[f"groq/{PINNED}"]["source"] == "models.json"
    assert after[f"groq/{PINNED}"]["context_window"] == 4096
    assert len(after) == len(CATALOG) + 2

    cached = json.loads(cache_file(isolated_env).read_text())
    assert [m["id"] for m in cached["models"]] == groq.models
    assert abs(cached["fetched_at"] - time.time()) < 60
    assert KEY not in cache_file(isolated_env).read_text()
    assert any("discovered 3 models for groq" in m for m in _messages(caplog.records))
    assert not any(KEY in m for m in _messages(caplog.records))

    # The discovered model routes like any other.
    target = rt.router.resolve("groq/brand-new-model")
    assert target.model is not None and target.model.source == "discovered"


async def test_discover_once_respects_the_interval(groq: FakeOpenAI) -> None:
    rt = _runtime(interval=3600)
    async with httpx.AsyncClient(timeout=5) as http:
        await rt.discover_once(http)
        await rt.discover_once(http)
        assert len(model_gets(groq)) == 1
        # A fresh process within the interval trusts the cache file too.
        await _runtime(interval=3600).discover_once(http)
        assert len(model_gets(groq)) == 1
        await _runtime(interval=0).discover_once(http)
        assert len(model_gets(groq)) == 2
    await rt.stop()


async def test_a_failed_fetch_is_retried_within_minutes_not_an_interval(groq: FakeOpenAI) -> None:
    rt = _runtime(interval=3600)
    groq.push(Action("error", status=500, body={"error": {"message": "down"}}))
    async with httpx.AsyncClient(timeout=5) as http:
        await rt.discover_once(http)  # fails
        await rt.discover_once(http)  # not yet due again
        assert len(model_gets(groq)) == 1
        assert 200 < rt.next_discovery("groq") - time.time() <= 300
        rt._discovered_at["groq"] -= 300  # five minutes later
        await rt.discover_once(http)
        assert len(model_gets(groq)) == 2
        assert rt.next_discovery("groq") - time.time() > 3000  # success: the full interval
    await rt.stop()


async def test_discovered_models_survive_a_config_reload(groq: FakeOpenAI) -> None:
    rt = _runtime()
    async with httpx.AsyncClient(timeout=5) as http:
        await rt.discover_once(http)
    rt.reload()
    assert by_id(list_models(rt, "groq"))["groq/brand-new-model"]["source"] == "discovered"
    await rt.stop()


async def test_providers_without_credentials_are_never_queried(isolated_env: Path, fake_openai: FakeOpenAI) -> None:
    # Several discovery-capable providers point at the fake, none has a key.
    route_groq(
        isolated_env,
        fake_openai.url + "/openai/v1",
        deepseek={"baseUrl": fake_openai.url + "/deepseek"},
        mistral={"baseUrl": fake_openai.url + "/mistral/v1"},
    )
    rt = _runtime(interval=0)
    assert not any(p.discovery and rt.credentials.available(p) for p in rt.registry)
    recorder = _Recorder()
    async with recorder.client() as http:
        await rt.discover_once(http)
    await rt.stop()
    assert recorder.urls == []
    assert fake_openai.requests == []
    assert not (isolated_env / "cache").exists()


async def test_only_the_provider_with_a_key_is_queried(
    isolated_env: Path, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    route_groq(isolated_env, fake_openai.url + "/openai/v1", deepseek={"baseUrl": fake_openai.url + "/deepseek"})
    auth_json(isolated_env, {"deepseek": {"type": "api_key", "key": "sk-deepseek-from-auth-json"}})
    recorder = _Recorder()
    rt = _runtime()
    async with recorder.client() as http:
        await rt.discover_once(http)
    await rt.stop()
    assert recorder.urls == [fake_openai.url + "/deepseek/models"]
    assert fake_openai.last.headers["Authorization"] == "Bearer sk-deepseek-from-auth-json"


# --- failures ----------------------------------------------------------------------------------------


class _Upstream(BaseHTTPRequestHandler):
    """Answers every GET with ``status`` and a body that echoes the key, as some providers do."""

    status = 500
    body = b""
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        auth = self.headers.get("Authorization", "")
        body = self.body or json.dumps({"error": {"message": f"Server error for {auth}"}}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def broken_upstream() -> Iterator[Callable[..., tuple[str, list[str]]]]:
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(status: int, body: bytes = b"") -> tuple[str, list[str]]:
        hits: list[str] = []
        handler = type("Handler", (_Upstream,), {"status": status, "body": body, "hits": hits})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}", hits

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, b"", "HTTP 500 from GET http://127.0.0.1:"),
        (401, b"", "HTTP 401 from GET http://127.0.0.1:"),
        (200, b"<html>Bad gateway</html>", "not an OpenAI-style model list"),
        (200, b'{"object": "list", "models": []}', "not an OpenAI-style model list"),
    ],
)
async def test_failing_upstream_keeps_the_catalog_and_warns_without_the_key(
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    broken_upstream: Callable[..., tuple[str, list[str]]],
    status: int,
    body: bytes,
    expected: str,
) -> None:
    url, hits = broken_upstream(status, body)
    route_groq(isolated_env, url + "/openai/v1")
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    rt = _runtime()
    before = list_models(rt, "groq")
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(timeout=5) as http:
            await rt.discover_once(http)
    await rt.stop()
    assert hits == ["/openai/v1/models"]
    assert list_models(rt, "groq") == before
    assert len(before) == len(CATALOG) + 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "model discovery for groq failed" in warnings[0], warnings
    assert expected in warnings[0]
    assert not any(KEY in m for m in _messages(caplog.records))
    assert not cache_file(isolated_env).exists()


async def test_unreachable_upstream_keeps_the_catalog_and_warns(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/openai/v1?token={KEY}"
    route_groq(isolated_env, dead)
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    rt = _runtime()
    before = list_models(rt, "groq")
    with caplog.at_level(logging.INFO):
        async with httpx.AsyncClient(timeout=5) as http:
            await rt.discover_once(http)
    await rt.stop()
    assert list_models(rt, "groq") == before
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("model discovery for groq failed: ConnectError on GET http://127.0.0.1:"), warning
    assert KEY not in warning and "token=" not in warning


async def test_unwritable_cache_still_merges_and_warns(
    groq: FakeOpenAI, isolated_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (isolated_env / "cache").write_text("a file where the cache directory should be")
    rt = _runtime()
    with caplog.at_level(logging.INFO):
        async with httpx.AsyncClient(timeout=5) as http:
            await rt.discover_once(http)  # must not raise
    await rt.stop()
    assert by_id(list_models(rt, "groq"))["groq/brand-new-model"]["source"] == "discovered"
    assert any("could not write the model cache" in m for m in _messages(caplog.records))


async def test_discovery_loop_survives_a_failed_round(
    groq: FakeOpenAI, isolated_env: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that raises is logged; the loop tries again, it does not die. (A broken auth.json no longer
    makes a round raise: the last good version stays in use, so the failure is injected here.)"""
    rt = _runtime(interval=0.1)
    available = rt.credentials.available
    broken = [True]

    def flaky(provider: Provider) -> bool:
        if broken[0]:
            raise ConfigError("auth.json: a lookup that fails")
        return available(provider)

    monkeypatch.setattr(rt.credentials, "available", flaky)
    with caplog.at_level(logging.INFO):
        await rt.start()
        try:
            deadline = time.monotonic() + 10
            while rt.discovery_rounds < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert rt.discovery_rounds >= 2 and model_gets(groq) == []  # two failed rounds, the loop lives
            broken[0] = False
            deadline = time.monotonic() + 5
            while not model_gets(groq) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await rt.stop()  # re-raises if the task died with an error
    assert model_gets(groq), "discovery never ran again after the failed round"
    assert any("model discovery round failed" in m and "auth.json" in m for m in _messages(caplog.records))


# --- a running proxy ---------------------------------------------------------------------------------


def _wait_for_a_discovery_round(proxy: Any) -> None:
    deadline = time.monotonic() + 10
    while proxy.runtime.discovery_rounds < 1:
        assert time.monotonic() < deadline, "no discovery round completed"
        time.sleep(0.02)


def _wait_for_model(proxy: Any, model_id: str, timeout: float = 10.0) -> dict[str, Any]:
    http = proxy.http()
    deadline = time.monotonic() + timeout
    while True:
        entries = by_id(http.get("/v1/models").json()["data"])
        if model_id in entries:
            return entries[model_id]
        if time.monotonic() > deadline:
            raise AssertionError(f"{model_id} never listed; have {sorted(entries)}")
        time.sleep(0.05)


def test_proxy_discovers_in_background_and_a_new_proxy_lists_from_the_cache(
    groq: FakeOpenAI, isolated_env: Path, start_proxy: Callable[..., Any]
) -> None:
    first = start_proxy(config=ServerConfig())  # discovery is on by default
    entry = _wait_for_model(first, "groq/brand-new-model")
    assert entry["source"] == "discovered"
    assert model_gets(groq) == ["/openai/v1/models"]
    assert groq.last.headers["Authorization"] == f"Bearer {KEY}"
    assert cache_file(isolated_env).is_file()
    assert not any(KEY in m for m in _messages(first.logs))
    first.stop()

    groq.requests.clear()
    groq.models = ["something-else-entirely"]
    second = start_proxy(config=ServerConfig())
    listed = by_id(second.http().get("/v1/models").json()["data"])
    assert listed["groq/brand-new-model"]["source"] == "discovered"  # straight from the cache
    assert "groq/something-else-entirely" not in listed
    _wait_for_a_discovery_round(second)
    assert model_gets(groq) == [], "the cache is fresh: no new fetch within the interval"


def test_chat_requests_never_trigger_discovery(
    groq: FakeOpenAI, isolated_env: Path, start_proxy: Callable[..., Any]
) -> None:
    # Discovery on, but the cache is fresh, so the background loop has nothing to do.
    save_cached(isolated_env / "cache" / "models", "groq", [DiscoveredModel("cached-model")])
    proxy = start_proxy(config=ServerConfig())
    client = proxy.client()
    for model in ("groq/cached-model", "groq/not-in-any-list", f"groq/{CATALOG[0].id}"):
        out = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        assert out.choices[0].message.content == "Echo: hi"
    _wait_for_a_discovery_round(proxy)
    assert [(r.method, r.path) for r in groq.requests] == [("POST", "/openai/v1/chat/completions")] * 3


def test_discovery_disabled_never_fetches(groq: FakeOpenAI, start_proxy: Callable[..., Any]) -> None:
    proxy = start_proxy(config=ServerConfig(discovery=DiscoveryConfig(enabled=False)))
    assert "groq/brand-new-model" not in by_id(proxy.http().get("/v1/models").json()["data"])
    assert not any(t.get_name() == "switchboard-discovery" for t in proxy.runtime._tasks)  # no loop at all
    assert groq.requests == []


# --- the list format ---------------------------------------------------------------------------------


async def test_fetch_models_reads_limits_from_the_list() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url == "https://api.example.test/v1/models"
        assert request.headers["authorization"] == "Bearer k"
        data = [
            {"id": "groq-style", "context_window": 131072, "max_completion_tokens": 32768, "active": True},
            {"id": "openrouter-style", "context_length": 200000, "pricing": {"prompt": "0.000003"}},
            {"id": "bare"},
        ]
        return httpx.Response(200, json={"object": "list", "data": data})

    from providers.credentials import ResolvedAuth

    auth = ResolvedAuth("https://api.example.test/v1/", {"authorization": "Bearer k", "content-type": "x"}, "test")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        found = await fetch_models(http, auth)
    assert found == [
        DiscoveredModel("groq-style", 131072, 32768),
        DiscoveredModel("openrouter-style", 200000, None),
        DiscoveredModel("bare", None, None),
    ]
    provider = Provider(id="p", name="P", api="openai-completions", base_url="x")
    merged = {m.id: m for m in merge_discovered(provider, found).models}
    assert (merged["groq-style"].context_window, merged["groq-style"].max_tokens) == (131072, 32768)
    assert (merged["openrouter-style"].context_window, merged["openrouter-style"].max_tokens) == (200000, 16384)
    assert (merged["bare"].context_window, merged["bare"].max_tokens) == (128_000, 16_384)
    assert {m.source for m in merged.values()} == {"discovered"}
