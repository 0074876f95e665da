"""The key-change bus: in process, and Redis pub/sub between two replicas (two clients of a real Redis at
127.0.0.1:6379), surviving a restart of the connection between one of them and Redis."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as redis

from proxy.gateway.bus import LocalBus, RedisBus
from tests.test_gateway_limits import Forwarder, make_client, needs_redis, poll


async def test_local_bus_calls_every_subscriber(caplog: pytest.LogCaptureFixture) -> None:
    bus = LocalBus()
    seen: list[str] = []

    def broken(key_id: str) -> None:
        raise RuntimeError("subscriber bug")

    async def later(key_id: str) -> None:
        seen.append("async:" + key_id)

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    bus.subscribe(later)
    await bus.start()
    await bus.publish("key_1")
    await bus.close()
    assert seen == ["key_1", "async:key_1"]  # a failing subscriber does not stop the others
    assert any("key_1" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


@pytest.fixture
async def channel() -> AsyncIterator[str]:
    yield f"sbtest:keys:{uuid.uuid4().hex[:12]}"


@needs_redis
async def test_two_replicas_hear_each_other_and_survive_a_reconnect(
    channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.gateway.bus")
    forwarder = Forwarder()
    await forwarder.start()
    clients: list[redis.Redis] = [make_client(), make_client(forwarder.port)]
    buses = [RedisBus(c, channel, min_backoff=0.02, max_backoff=0.2) for c in clients]
    heard: list[list[str]] = [[], []]
    for bus, sink in zip(buses, heard, strict=True):
        bus.subscribe(sink.append)
        await bus.start()
    try:

        def everyone_heard(key_id: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return all(key_id in sink for sink in heard)

            return check

        await buses[0].publish("key_a")
        await poll(everyone_heard("key_a"), "both replicas to hear replica A's change")
        await buses[1].publish("key_b")
        await poll(everyone_heard("key_b"), "both replicas to hear replica B's change")

        await forwarder.stop()

        async def b_lost() -> bool:
            return buses[1].problem is not None

        await poll(b_lost, "replica B to notice it lost Redis")
        await forwarder.start()

        async def b_back() -> bool:
            return buses[1].problem is None

        await poll(b_back, "replica B to subscribe again")
        await buses[0].publish("key_c")
        await poll(everyone_heard("key_c"), "replica B to hear changes after reconnecting")
        assert heard[1].count("key_a") == 1  # nothing delivered twice
        levels = [r.levelno for r in caplog.records if r.name == "proxy.gateway.bus"]
        assert levels == [logging.WARNING, logging.INFO]
    finally:
        for bus in buses:
            await bus.close()
        for client in clients:
            await client.aclose()
        await forwarder.stop()


async def test_publish_without_redis_still_tells_this_replica(caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(port=9)  # nothing listens there
    bus = RedisBus(client, min_backoff=0.02, max_backoff=0.2)
    heard: list[str] = []
    bus.subscribe(heard.append)
    await bus.start()
    try:
        assert bus.problem is not None and "cannot reach Redis" in bus.problem
        await bus.publish("key_x")
        assert heard == ["key_x"]
        assert any("key_x" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    finally:
        await bus.close()
        await client.aclose()
