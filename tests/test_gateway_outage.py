"""A database and Redis outage under a live gateway: valid keys keep working, records queue, /healthz
says what is wrong, and everything recorded during the outage reaches the ledger once they are back.

PostgreSQL and Redis are reached through TCP forwarders the test stops (cutting every open connection)
and starts again on the same ports.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.config import GatewayConfig, ServerConfig
from tests.conftest import Proxy, local_provider
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_gateway_ledger import Forwarder
from tests.test_gateway_replicas import _reachable
from tests.test_gateway_store import create_pg_database

MASTER = "sk-sb-master-outage-0123456789abcdef"

pytestmark = pytest.mark.skipif(
    not (_reachable(5432) and _reachable(6379)),
    reason="needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (scripts/services starts them)",
)


class Forwarders:
    """Forwarders to PostgreSQL and Redis on an event loop of their own (the proxy runs in a thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.pg = Forwarder(5432)
        self.redis = Forwarder(6379)
        self.up()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def up(self) -> None:
        self._run(self.pg.start())
        self._run(self.redis.start())

    def down(self) -> None:
        self._run(self.pg.stop())
        self._run(self.redis.stop())

    def close(self) -> None:
        for fwd in (self.pg, self.redis):
            if fwd._server is not None:
                self._run(fwd.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def database() -> Iterator[str]:
    yield from create_pg_database("sb_outage")


@pytest.fixture
def forwarders() -> Iterator[Forwarders]:
    fwd = Forwarders()
    yield fwd
    fwd.close()


def _poll(predicate: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_valid_keys_keep_working_and_nothing_is_lost(
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_openai: FakeOpenAI,
    start_proxy: Callable[..., Proxy],
    database: str,
    forwarders: Forwarders,
) -> None:
    local_provider(isolated_env, fake_openai)
    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)
    config = ServerConfig(
        database_url=f"postgresql://postgres@127.0.0.1:{forwarders.pg.port}/{database}",
        redis_url=f"redis://127.0.0.1:{forwarders.redis.port}/0",
        discovery=ServerConfig().discovery.__class__(enabled=False),
        gateway=GatewayConfig(key_refresh=0.2, ledger_flush=0.2),
    )
    proxy = start_proxy(config=config)
    admin = {"Authorization": f"Bearer {MASTER}"}
    made = httpx.post(proxy.url + "/admin/v1/keys", json={"name": "o", "rpm": 1000, "budget": 100}, headers=admin)
    assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["id"]
    chat = {"model": "local/m", "messages": [{"role": "user", "content": "hi"}]}

    asked = [0]

    def ask() -> int:
        asked[0] += 1
        return httpx.post(
            proxy.url + "/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ).status_code

    assert ask() == 200

    forwarders.down()
    # A valid key is not turned into a 401 while the database and Redis are gone.
    assert [ask() for _ in range(5)] == [200] * 5

    def degraded() -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(proxy.url + "/healthz").json()
        return body

    _poll(lambda: degraded()["status"] == "degraded", "/healthz to report the outage")
    problems = " ".join(degraded()["problems"])
    assert "database" in problems and "Redis" in problems, problems
    assert key not in problems and MASTER not in problems
    assert ask() == 200

    forwarders.up()
    # Redis is tried again on use (at most every few seconds), so requests keep coming meanwhile.
    _poll(lambda: ask() == 200 and degraded()["status"] == "ok", "/healthz to recover")

    def recorded() -> int:
        r = httpx.get(proxy.url + "/admin/v1/requests", params={"key": key_id, "limit": 100}, headers=admin)
        return len(r.json()["data"]) if r.status_code == 200 else -1

    # Every request is recorded once: those of the outage were queued, none lost or written twice.
    _poll(lambda: recorded() == asked[0], f"{asked[0]} requests in the ledger")
    logs = "\n".join(r.getMessage() for r in proxy.logs)
    assert key not in logs and MASTER not in logs
