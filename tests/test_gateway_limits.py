"""Limits of virtual keys, in process and in a real Redis (127.0.0.1:6379): each limit refuses at its
value with the right error, windows slide, reservations reconcile, budgets hold under races between
replicas, periods roll over, leases expire, and a Redis outage falls back to per-replica limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from proxy.gateway.contract import Admission, GatewayError, KeyRecord
from proxy.gateway.limits import LocalLimiter, format_reset
from proxy.gateway.limits_redis import RedisLimiter
from proxy.gateway.periods import iso, period_bounds

REDIS_PORT = 6379
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()  # a Tuesday


def redis_reachable() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=1):
        return True
    return False


needs_redis = pytest.mark.skipif(not redis_reachable(), reason="no Redis at 127.0.0.1:6379 (CI runs one)")


def make_client(port: int = REDIS_PORT) -> redis.Redis:
    # A few quick retries, as the gateway configures its client: redis-py's default (10 retries with
    # backoff up to 1 s) holds a request for seconds before the limiter can fall back.
    retry = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.05), 2)
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=2, retry=retry)


class Clock:
    """settle's clock, moved by the test."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Forwarder:
    """A TCP forwarder to Redis that the test stops (closing every connection) and restarts on the same port."""

    def __init__(self, target_port: int = REDIS_PORT) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.close()
            self._writers.discard(dst)


async def poll(check: Callable[[], Awaitable[bool]], what: str, deadline: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not await check():
        if loop.time() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A unique Redis key prefix; every key under it is deleted afterwards."""
    name = f"sbtest:{uuid.uuid4().hex[:12]}:"
    yield name
    if redis_reachable():
        client = make_client()
        keys = [k async for k in client.scan_iter(match=name + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def clients() -> AsyncIterator[list[redis.Redis]]:
    made: list[redis.Redis] = []
    yield made
    for client in made:
        await client.aclose()


Factory = Callable[..., Any]


@pytest.fixture(params=["local", pytest.param("redis", marks=needs_redis)])
def limiter(request: pytest.FixtureRequest, prefix: str, clients: list[redis.Redis]) -> Factory:
    """Builds a limiter of the parametrized kind: ``limiter(clock, **kw)``."""

    def build(clock: Clock | None = None, **kw: Any) -> LocalLimiter | RedisLimiter:
        if request.param == "local":
            return LocalLimiter(clock=clock or Clock())
        clients.append(make_client())
        return RedisLimiter(clients[-1], prefix, clock=clock or Clock(), **kw)

    return build


def key(**limits: Any) -> KeyRecord:
    return KeyRecord(id="key_" + uuid.uuid4().hex[:8], name="ci", key_hash="h", key_prefix="sk-sb-x", **limits)


async def refusal(
    lim: LocalLimiter | RedisLimiter, k: KeyRecord, now: float, tokens: int = 0, cost: float = 0.0
) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await lim.admit(k, tokens, cost, now)
    assert info.value.status == 429
    return info.value


def test_period_bounds_and_iso() -> None:
    assert period_bounds(None, T0) == (0.0, math.inf)
    day = period_bounds("day", T0)
    assert (iso(day[0]), iso(day[1])) == ("2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z")
    week = period_bounds("week", T0)
    assert (iso(week[0]), iso(week[1])) == ("2026-03-09T00:00:00Z", "2026-03-16T00:00:00Z")
    dec = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    month = period_bounds("month", dec)
    assert (iso(month[0]), iso(month[1])) == ("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")
    # The cached bounds of a period are not reused for a time outside it.
    assert iso(period_bounds("month", month[1])[0]) == "2027-01-01T00:00:00Z"
    assert iso(period_bounds("day", day[0] - 0.5)[0]) == "2026-03-09T00:00:00Z"


def test_format_reset_is_openais() -> None:
    assert [format_reset(s) for s in (0.25, 1, 1.5, 57, 360, 7200.5)] == [
        "250ms",
        "1s",
        "1.5s",
        "57s",
        "6m0s",
        "2h0m0.5s",
    ]


async def test_no_limits_needs_no_redis(clients: list[redis.Redis]) -> None:
    clients.append(make_client(port=9))  # nothing listens there: any Redis call would fail
    lim = RedisLimiter(clients[-1], retry_interval=60)
    admission = await lim.admit(key(), 10_000, 5.0, T0)
    assert admission == Admission(key_id=admission.key_id)
    await lim.settle(admission, 10_000, 5.0)
    assert lim.problem is None


async def test_rpm_refuses_at_its_value_and_slides(limiter: Factory) -> None:
    lim, k = limiter(), key(rpm=3)
    for i in range(3):
        assert (await lim.admit(k, 0, 0.0, T0 + i)).lease is None  # rpm alone holds nothing to settle
    err = await refusal(lim, k, T0 + 3)
    assert err.code == "rate_limit_exceeded"
    assert err.headers == {
        "retry-after": "57",
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "57s",
    }
    assert "3 requests per minute" in err.message and iso(T0 + 60) in err.message
    err = await refusal(lim, k, T0 + 59.5)
    assert err.headers["x-ratelimit-reset-requests"] == "500ms" and err.headers["retry-after"] == "1"
    await lim.admit(k, 0, 0.0, T0 + 60)  # the first request left the window
    # A fixed minute bucket would admit here; the sliding window still holds T0+1, T0+2, T0+60.
    err = await refusal(lim, k, T0 + 60.5)
    assert err.headers["x-ratelimit-reset-requests"] == "500ms"
    await lim.admit(k, 0, 0.0, T0 + 61)


async def test_tpm_reserves_then_reconciles(limiter: Factory) -> None:
    clock = Clock()
    lim, k = limiter(clock), key(tpm=1000)
    first = await lim.admit(k, 600, 0.0, T0)
    err = await refusal(lim, k, T0 + 1, tokens=500)
    assert err.code == "rate_limit_exceeded"
    assert err.headers == {
        "retry-after": "60",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "400",
        "x-ratelimit-reset-tokens": "1m0s",
    }
    assert "1000 tokens per minute" in err.message and "600 used or reserved" in err.message
    await lim.admit(k, 400, 0.0, T0 + 2)  # exactly the limit
    clock.now = T0 + 10
    await lim.settle(first, 100, 0.0)  # 600 reserved, 100 used: 500 come back
    await lim.admit(k, 500, 0.0, T0 + 11)
    err = await refusal(lim, k, T0 + 12, tokens=1)
    # One token more fits once the 100 counted at T0+10 leave the window.
    assert err.headers["x-ratelimit-reset-tokens"] == "58s"
    await lim.admit(k, 1, 0.0, T0 + 70)
    big = await refusal(lim, k, T0 + 70, tokens=1001)
    assert "Request too large" in big.message and "retry-after" not in big.headers


async def test_parallel_refuses_at_its_value(limiter: Factory) -> None:
    lim, k = limiter(), key(parallel=2)
    held = [await lim.admit(k, 0, 0.0, T0), await lim.admit(k, 0, 0.0, T0)]
    err = await refusal(lim, k, T0)
    assert err.code == "parallel_limit" and err.headers == {"retry-after": "1"}
    assert "2 requests at a time" in err.message
    await lim.settle(held[0], 0, 0.0)
    await lim.admit(k, 0, 0.0, T0)


async def test_fifty_concurrent_admits_get_exactly_five(limiter: Factory) -> None:
    lim, k = limiter(), key(budget=0.5, period="day")
    results = await asyncio.gather(*(lim.admit(k, 0, 0.1, T0) for _ in range(50)), return_exceptions=True)
    assert sum(isinstance(r, Admission) for r in results) == 5
    assert {r.code for r in results if isinstance(r, GatewayError)} == {"budget_exceeded"}


@needs_redis
async def test_two_replicas_racing_get_exactly_five(prefix: str, clients: list[redis.Redis]) -> None:
    clients.extend((make_client(), make_client()))
    replicas = [RedisLimiter(c, prefix) for c in clients]
    k = key(budget=0.5, period="day", parallel=100, tpm=10**6, rpm=1000)
    results = await asyncio.gather(*(replicas[i % 2].admit(k, 10, 0.1, T0) for i in range(50)), return_exceptions=True)
    assert sum(isinstance(r, Admission) for r in results) == 5
    assert all(isinstance(r, Admission | GatewayError) for r in results)


async def test_budget_settles_the_actual_cost(limiter: Factory) -> None:
    lim, k = limiter(), key(budget=1.0, period="day")
    admission = await lim.admit(k, 0, 0.3, T0)
    await lim.settle(admission, 0, 0.5)  # more than reserved: counted in full
    assert await lim.spent(k, T0) == pytest.approx(0.5)
    await lim.admit(k, 0, 0.5, T0)
    err = await refusal(lim, k, T0, cost=0.01)
    assert err.code == "budget_exceeded"
    assert "spent $0.50 (+$0.50 reserved" in err.message and "$1.00 budget this day" in err.message
    assert err.headers == {"retry-after": str(12 * 3600)}
    assert iso(period_bounds("day", T0)[1]) in err.message


async def test_lifetime_budget_has_no_retry_after(limiter: Factory) -> None:
    lim, k = limiter(), key(budget=0.2)
    await lim.settle(await lim.admit(k, 0, 0.1, T0), 0, 0.2)
    err = await refusal(lim, k, T0 + 86400 * 400, cost=0.01)
    assert "lifetime budget of $0.20" in err.message and "retry-after" not in err.headers


async def test_period_rollover_settles_into_the_admission_period(limiter: Factory) -> None:
    clock = Clock()
    lim, k = limiter(clock), key(budget=1.0, period="day")
    day2 = period_bounds("day", T0)[1]
    await lim.settle(await lim.admit(k, 0, 0.6, T0), 0, 0.6)
    late = await lim.admit(k, 0, 0.4, day2 - 2)
    err = await refusal(lim, k, day2 - 1, cost=0.1)
    assert err.headers["retry-after"] == "1"
    early = await lim.admit(k, 0, 0.6, day2 + 1)
    clock.now = day2 + 2
    await lim.settle(late, 0, 0.4)  # admitted on day 1: counted on day 1
    assert await lim.spent(k, day2 - 0.5) == pytest.approx(1.0)
    assert await lim.spent(k, day2 + 3) == 0.0
    await lim.settle(early, 0, 0.6)
    assert await lim.spent(k, day2 + 3) == pytest.approx(0.6)


async def test_seed_spend_is_set_only_once(limiter: Factory) -> None:
    first, second = limiter(), limiter()
    k = key(budget=1.0, period="month")
    start = period_bounds("month", T0)[0]
    first.seed_spend(k.id, start, 0.7)
    first.seed_spend(k.id, start, 0.1)  # ignored: the period already has a figure
    assert await first.spent(k, T0) == pytest.approx(0.7)
    await first.admit(k, 0, 0.2, T0)
    err = await refusal(first, k, T0, cost=0.2)
    assert "spent $0.70" in err.message
    if isinstance(second, RedisLimiter):  # a second replica's seed does not overwrite the shared figure
        second.seed_spend(k.id, start, 0.1)
        await second.admit(k, 0, 0.1, T0)
        await refusal(second, k, T0, cost=0.01)
        assert await second.spent(k, T0) == pytest.approx(0.7)


@needs_redis
async def test_budget_counter_expires_after_its_period(prefix: str, clients: list[redis.Redis]) -> None:
    clients.append(make_client())
    lim, k = RedisLimiter(clients[0], prefix), key(budget=1.0, period="day")
    start, end = period_bounds("day", T0)
    lim.seed_spend(k.id, start, 0.25)
    await lim.admit(k, 0, 0.1, T0)
    ttl = await clients[0].ttl(f"{prefix}{{{k.id}}}:b:{start:.0f}")
    assert end - T0 < ttl <= end - T0 + 86400


@needs_redis
async def test_leases_of_a_dead_replica_expire(prefix: str, clients: list[redis.Redis]) -> None:
    clients.append(make_client())
    clock = Clock()
    lim = RedisLimiter(clients[0], prefix, lease_ttl=30, clock=clock)
    k = key(parallel=1, tpm=100, budget=1.0, period="day")
    lost = await lim.admit(k, 80, 0.9, T0)  # its replica "dies": never settled in time
    assert (await refusal(lim, k, T0 + 10, tokens=20, cost=0.1)).code == "parallel_limit"
    await lim.admit(k, 80, 0.9, T0 + 31)  # slot, tokens and budget came back with the lease's expiry
    clock.now = T0 + 32
    await lim.settle(lost, 5, 0.05)  # a late settle releases nothing twice but counts its cost
    assert await lim.spent(k, T0 + 33) == pytest.approx(0.05)
    err = await refusal(lim, k, T0 + 33, tokens=20, cost=0.01)
    assert err.code == "rate_limit_exceeded" and "85 used or reserved" in err.message


@needs_redis
async def test_redis_outage_falls_back_and_recovers(
    prefix: str, clients: list[redis.Redis], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.gateway.limits_redis")
    forwarder = Forwarder()
    await forwarder.start()
    clients.append(make_client(forwarder.port))
    lim = RedisLimiter(clients[0], prefix, retry_interval=0.1)
    k = key(parallel=1, budget=10.0, period="day", rpm=1000)
    before = await lim.admit(k, 0, 1.0, T0)
    assert before.lease is not None and before.lease.startswith("r:")
    await forwarder.stop()

    during = await lim.admit(k, 0, 1.0, T0)  # the fallback counts for this replica
    assert during.lease is not None and during.lease.startswith("l:")
    assert lim.problem is not None and "Redis unreachable" in lim.problem
    assert (await refusal(lim, k, T0, cost=1.0)).code == "parallel_limit"
    await lim.settle(before, 0, 1.5)  # owed to Redis until it is back
    await lim.settle(during, 0, 2.0)
    await forwarder.start()

    async def shared_again() -> bool:
        admission = await lim.admit(k, 0, 0.0, T0)
        await lim.settle(admission, 0, 0.0)
        return admission.lease is not None and admission.lease.startswith("r:")

    await poll(shared_again, "the limiter to use Redis again")
    assert lim.problem is None
    # Both settles reached Redis: the spend, and the release of the slot taken before the outage.
    assert await lim.spent(k, T0) == pytest.approx(3.5)
    await lim.settle(await lim.admit(k, 0, 0.0, T0), 0, 0.0)
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "proxy.gateway.limits_redis"]
    assert [lvl for lvl, _ in levels] == [logging.WARNING, logging.INFO], levels
    await forwarder.stop()
