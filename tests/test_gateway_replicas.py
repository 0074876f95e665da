"""The compose topology as processes: two ``switchboard serve`` replicas sharing PostgreSQL and Redis.

Every limit must hold across both, a key changed on one must be refused by the other within a second,
and stopping a replica with SIGTERM in the middle of 50 streams must lose no usage record.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import models_json, write_json
from tests.fakes.openai_upstream import Action, FakeOpenAI
from tests.fakes.server import free_port
from tests.test_gateway_store import create_pg_database

ROOT = Path(__file__).resolve().parents[1]
MASTER = "sk-sb-master-replicas-0123456789abcdef"
PG = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
DEADLINE = 30.0
#: Dollars per million tokens: high, so a handful of requests spend a small budget.
PRICES = {"input": 1000.0, "output": 1000.0}


def _reachable(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


pytestmark = pytest.mark.skipif(
    not (_reachable(5432) and _reachable(6379)),
    reason="needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (scripts/services starts them)",
)


def _poll(predicate: Callable[[], bool], what: str, deadline: float = DEADLINE) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


class Replica:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(DEADLINE)
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/admin/v1", headers={"Authorization": f"Bearer {MASTER}"}, timeout=DEADLINE
        )

    def chat(self, key: str, **kw: Any) -> httpx.Response:
        body = {"model": "local/m", "messages": [{"role": "user", "content": "hi"}], **kw}
        return httpx.post(
            self.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=DEADLINE
        )


@pytest.fixture
def database() -> Iterator[str]:
    for name in create_pg_database("sb_replicas"):
        yield f"{PG}/{name}"


@pytest.fixture
def replicas(isolated_env: Path, fake_openai: FakeOpenAI, database: str) -> Iterator[Callable[[int], list[Replica]]]:
    models_json(
        isolated_env,
        {
            "local": {
                "baseUrl": fake_openai.url + "/v1",
                "api": "openai-completions",
                "apiKey": "upstream-secret",
                "models": [{"id": "m", "cost": PRICES}],
            }
        },
    )
    write_json(isolated_env / "config.json", {"discovery": {"enabled": False}, "timeouts": {"shutdown": 20}})
    started: list[Replica] = []

    def start(n: int) -> list[Replica]:
        env = dict(
            os.environ,
            SWITCHBOARD_MASTER_KEY=MASTER,
            SWITCHBOARD_DATABASE_URL=database,
            SWITCHBOARD_REDIS_URL=REDIS,
        )
        out = []
        for _ in range(n):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "proxy", "serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            replica = Replica(proc, f"http://127.0.0.1:{port}")
            started.append(replica)
            out.append(replica)
        for replica in out:

            def up(r: Replica = replica) -> bool:
                try:
                    return httpx.get(r.url + "/healthz").status_code == 200
                except httpx.HTTPError:
                    return r.proc.poll() is not None

            _poll(up, "a replica to start")
            assert replica.proc.poll() is None, "".join(replica.log)
        return out

    yield start
    for replica in started:
        replica.close()


def _create(replica: Replica, **spec: Any) -> tuple[str, str]:
    with replica.admin() as http:
        r = http.post("/keys", json={"name": "replicas", **spec})
    assert r.status_code == 201, r.text
    return r.json()["key"], r.json()["id"]


def test_rpm_holds_across_replicas(replicas: Callable[[int], list[Replica]]) -> None:
    a, b = replicas(2)
    key, _ = _create(a, rpm=4)
    codes = [(a if i % 2 else b).chat(key).status_code for i in range(6)]
    assert codes == [200, 200, 200, 200, 429, 429]
    refused = b.chat(key)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-ratelimit-limit-requests"] == "4"


def test_parallel_holds_across_replicas(replicas: Callable[[int], list[Replica]], fake_openai: FakeOpenAI) -> None:
    a, b = replicas(2)
    key, _ = _create(a, parallel=2)
    fake_openai.push(Action("slow"))
    fake_openai.push(Action("slow"))
    streams = []
    for replica in (a, b):
        body = {"model": "local/m", "messages": [{"role": "user", "content": "x"}], "stream": True}
        ctx = httpx.stream(
            "POST", replica.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        )
        resp = ctx.__enter__()
        assert resp.status_code == 200
        chunks = resp.iter_bytes()  # kept: a dropped iterator closes the response
        next(chunks)
        streams.append((ctx, chunks))
    try:
        for replica in (a, b):
            r = replica.chat(key)
            assert r.status_code == 429, "".join(a.log + b.log)[-6000:]
            assert r.json()["error"]["code"] == "parallel_limit"
    finally:
        for ctx, _ in streams:
            ctx.__exit__(None, None, None)
    # Both slots come back once the streams are gone.
    _poll(lambda: a.chat(key).status_code == 200, "a parallel slot to be released")


def test_tpm_holds_across_replicas(replicas: Callable[[int], list[Replica]]) -> None:
    a, b = replicas(2)
    # Each request reserves its input estimate (~20) plus max_tokens (40), then settles to 21 (12 + 9):
    # 0 + 60, then 21 + 60 fit in 100; 42 + 60 does not.
    key, _ = _create(a, tpm=100)
    codes = [(a if i % 2 else b).chat(key, max_tokens=40).status_code for i in range(4)]
    assert codes == [200, 200, 429, 429]
    refused = a.chat(key, max_tokens=40)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-ratelimit-limit-tokens"] == "100"


def test_fifty_requests_racing_a_budget_never_overspend(replicas: Callable[[int], list[Replica]]) -> None:
    a, b = replicas(2)
    budget = 0.1
    key, key_id = _create(a, budget=budget)

    async def race() -> list[int]:
        async with httpx.AsyncClient(timeout=DEADLINE) as http:

            async def one(i: int) -> int:
                url = (a if i % 2 else b).url + "/v1/chat/completions"
                body = {"model": "local/m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9}
                r = await http.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
                if r.status_code != 200:
                    assert r.json()["error"]["code"] == "budget_exceeded", r.text + "".join(a.log + b.log)[-6000:]
                return r.status_code

            return await asyncio.gather(*(one(i) for i in range(50)))

    codes = asyncio.run(race())
    assert 200 in codes and 429 in codes
    answered = codes.count(200)

    def ledger() -> dict[str, Any]:
        # Each replica writes its own records within a second (ledger_flush).
        with a.admin() as http:
            usage = http.get("/usage", params={"group_by": "key", "since": "1d"}).json()["data"]
        return next((row for row in usage if row["group"] == key_id), {"requests": 0, "cost": 0.0})

    _poll(lambda: ledger()["requests"] == answered, f"{answered} records in the ledger")
    spent = ledger()["cost"]
    # Each answer: 12 input + 9 output tokens at $1,000/M = $0.021.
    assert spent == pytest.approx(answered * 0.021)
    assert spent <= budget


def test_a_deleted_or_rotated_key_is_refused_on_the_other_replica_within_a_second(
    replicas: Callable[[int], list[Replica]],
) -> None:
    a, b = replicas(2)
    key, key_id = _create(a)
    assert b.chat(key).status_code == 200
    with a.admin() as http:
        rotated = http.post(f"/keys/{key_id}/rotate", json={})
    assert rotated.status_code == 200
    took = _poll(lambda: b.chat(key).status_code == 401, "the old key to be refused", deadline=1.0)
    assert took < 1.0
    new = rotated.json()["key"]
    assert b.chat(new).status_code == 200

    with a.admin() as http:
        assert http.delete(f"/keys/{key_id}").status_code in (200, 204)
    _poll(lambda: b.chat(new).status_code == 401, "the deleted key to be refused", deadline=1.0)
    for replica in (a, b):
        text = "".join(replica.log)
        assert key not in text and new not in text


def test_expiry(replicas: Callable[[int], list[Replica]]) -> None:
    (a,) = replicas(1)
    key, _ = _create(a, expires=time.time() + 1.5)
    assert a.chat(key).status_code == 200
    _poll(lambda: a.chat(key).status_code == 401, "the key to expire")
    assert a.chat(key).json()["error"]["code"] == "key_expired"


def test_sigterm_during_fifty_streams_loses_no_record(
    replicas: Callable[[int], list[Replica]], fake_openai: FakeOpenAI
) -> None:
    a, b = replicas(2)
    key, key_id = _create(b)
    results: list[int] = []

    def stream() -> None:
        body = {"model": "local/m", "messages": [{"role": "user", "content": "x"}], "stream": True}
        try:
            with httpx.stream(
                "POST",
                a.url + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
                timeout=DEADLINE,
            ) as resp:
                for _ in resp.iter_bytes():
                    pass
                results.append(resp.status_code)
        except httpx.HTTPError:
            results.append(-1)

    for _ in range(50):
        fake_openai.push(Action("slow"))
    threads = [threading.Thread(target=stream, daemon=True) for _ in range(50)]
    for t in threads:
        t.start()
    _poll(lambda: len(fake_openai.requests) >= 50, "50 streams to reach the upstream")
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(DEADLINE) == 0, "".join(a.log)
    for t in threads:
        t.join(DEADLINE)

    def recorded() -> int:
        with b.admin() as http:
            data = http.get("/requests", params={"key": key_id, "limit": 100}).json()["data"]
        return len(data)

    assert recorded() == 50
    with b.admin() as http:
        data = http.get("/requests", params={"key": key_id, "limit": 100}).json()["data"]
    assert all(rec["stream"] for rec in data)
    assert json.dumps(data).count(key) == 0
