"""Cooldowns: a target that failed too often (or asked to wait) is skipped, even as the only primary, and
comes back when its cooldown ends; every target cooling down is a 503 with ``retry-after`` in the
surface's envelope; replicas sharing Redis share cooldowns (two and then three ``switchboard serve``)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis

from tests.conftest import Proxy, write_json
from tests.fakes.server import free_port
from tests.test_routing_support import TimedOpenAI, config, error, fakes, poll, providers

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
REDIS = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ups() -> Iterator[list[TimedOpenAI]]:
    yield from fakes(2)


def _ask(client: openai.OpenAI) -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(model="r", messages=MESSAGES)
    raw.parse()
    return raw.headers["x-switchboard-target"], raw.headers["x-switchboard-attempts"]


def test_a_cooldown_starts_after_failures_and_ends(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b = ups
    providers(isolated_env, {"p0": a, "p1": b})
    settings = {"routes": {"r": {"targets": ["p0/m", "p1/m"]}}, "cooldown": {"failures": 2, "window": 60, "seconds": 1}}
    proxy = start_proxy(config=config(**settings))
    client = proxy.client()
    a.push(error(529, "Overloaded"))
    a.push(error(529, "Overloaded"))
    assert _ask(client) == ("p1/m", "2")
    assert _ask(client) == ("p1/m", "2")  # the second failure in the window: p0 cools down
    [state] = [s for s in proxy.runtime.routing.states() if s.target == "p0/m"]
    assert state.cooldowns == 1 and state.cooling_until is not None
    # The primary is skipped while it cools down.
    assert _ask(client) == ("p1/m", "1")
    assert len(a.requests) == 2
    # ... and is tried again once the cooldown ended.
    poll(lambda: _ask(client) == ("p0/m", "1"), "p0's cooldown to end")


def test_every_target_cooling_down_is_a_503_with_retry_after(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b = ups
    providers(isolated_env, {"p0": a, "p1": b})
    proxy = start_proxy(config=config(routes={"r": {"targets": ["p0/m", "p1/m"]}}))
    client = proxy.client()
    a.push(error(429, "Rate limit reached", {"retry-after": "30"}))
    b.push(error(429, "Rate limit reached", {"retry-after": "20"}))
    with pytest.raises(openai.RateLimitError):  # the last target's own answer
        client.chat.completions.create(model="r", messages=MESSAGES)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="r", messages=MESSAGES)
    assert err.value.status_code == 503
    assert err.value.code == "all_targets_cooling_down"
    assert 15 <= int(err.value.response.headers["retry-after"]) <= 20  # the earliest recovery: p1's
    assert (len(a.requests), len(b.requests)) == (1, 1)  # no upstream request for the refused one
    # The Messages surface answers in Anthropic's envelope.
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as aerr:
        claude.messages.create(model="r", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    claude.close()
    assert aerr.value.status_code == 503
    assert aerr.value.body["type"] == "error"  # type: ignore[index]
    assert "cooling down" in aerr.value.body["error"]["message"]  # type: ignore[index]
    assert aerr.value.response.headers["retry-after"]


# --- replicas sharing Redis -------------------------------------------------------------------------------


class _Replica:
    def __init__(self, home: Path) -> None:
        port = free_port()
        env = dict(os.environ, SWITCHBOARD_HOME=str(home))
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

        def up() -> bool:
            try:
                return httpx.get(self.url + "/healthz").status_code == 200
            except httpx.HTTPError:
                return self.proc.poll() is not None

        poll(up, "a replica to start", 30)
        assert self.proc.poll() is None, "".join(self.log)
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        self.log.extend(self.proc.stderr)

    def close(self) -> None:
        self.client.close()
        self.proc.kill()
        self.proc.wait()
        self._reader.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def replicas(isolated_env: Path) -> Iterator[Callable[[], _Replica]]:
    started: list[_Replica] = []

    def start() -> _Replica:
        started.append(_Replica(isolated_env))
        return started[-1]

    yield start
    for replica in started:
        replica.close()


def test_replicas_sharing_redis_share_a_cooldown(
    isolated_env: Path, ups: list[TimedOpenAI], replicas: Callable[[], _Replica]
) -> None:
    a, b = ups
    # Provider ids of this test only: the Redis server is shared with other tests.
    p0, p1 = f"a{secrets.token_hex(4)}", f"b{secrets.token_hex(4)}"
    providers(isolated_env, {p0: a, p1: b})
    settings = {
        "discovery": {"enabled": False},
        "redis_url": REDIS,
        "routes": {"r": {"targets": [f"{p0}/m", f"{p1}/m"]}},
        "cooldown": {"failures": 100},  # only a retry-after starts a cooldown here
    }
    write_json(isolated_env / "config.json", settings)
    first, second = replicas(), replicas()
    a.push(error(429, "Rate limit reached", {"retry-after": "60"}))
    for _ in range(50):
        a.push(error(529, "Overloaded"))  # fails without starting a cooldown where it is answered
    try:
        assert _ask(first.client) == (f"{p1}/m", "2")
        # The second replica skips p0 once it heard of the cooldown: its own failures never start one.
        poll(lambda: _ask(second.client) == (f"{p1}/m", "1"), "the second replica to learn the cooldown")
        seen = len(a.requests)
        assert _ask(second.client) == (f"{p1}/m", "1")
        # A replica started later reads the cooldowns in force: its first request skips p0.
        third = replicas()
        assert _ask(third.client) == (f"{p1}/m", "1")
        assert len(a.requests) == seen
    finally:
        client = redis.Redis.from_url(REDIS)
        client.delete(f"switchboard:cooldown:{p0}/m", f"switchboard:cooldown:{p1}/m")
        client.close()
