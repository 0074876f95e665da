"""The key-change bus: tells every replica's KeyCache that a key changed.

:class:`LocalBus` serves one process (calls the subscribers directly). :class:`RedisBus` uses Redis
pub/sub: a listener task delivers every message of the channel, this replica's own publishes included
(Redis echoes them to its subscriber connection), and reconnects with backoff after an outage.

Pub/sub does not keep messages for a subscriber that is away: changes published during an outage
never arrive. Subscribers that must not miss one (revocations) therefore also refresh from the Store
on their own schedule; :attr:`RedisBus.problem` says when the bus is down, for ``/healthz``.

A subscriber is ``on_change(key_id)``; it may return an awaitable, which is awaited. A subscriber
that raises is logged and the others still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["LocalBus", "RedisBus"]

log = logging.getLogger(__name__)

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
OnChange = Callable[[str], Any]


class LocalBus:
    """One process: publish calls every subscriber before it returns."""

    def __init__(self) -> None:
        self._subscribers: list[OnChange] = []
        #: Nothing in process can fail (the contract's health field).
        self.problem: str | None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def subscribe(self, on_change: OnChange) -> None:
        self._subscribers.append(on_change)

    async def publish(self, key_id: str) -> None:
        await _deliver(self._subscribers, key_id)


class RedisBus:
    """Redis pub/sub on ``channel``; ``client`` is owned by the caller (the app's lifespan closes it)."""

    def __init__(
        self,
        client: redis.Redis,
        channel: str = "switchboard:keys",
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        self._client = client
        self._channel = channel
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._subscribers: list[OnChange] = []
        self._task: asyncio.Task[None] | None = None
        #: Set after the listener's first attempt to subscribe, whatever its outcome; start() waits for it.
        self._tried = asyncio.Event()
        self.problem: str | None = None

    def subscribe(self, on_change: OnChange) -> None:
        self._subscribers.append(on_change)

    async def start(self) -> None:
        """Start the listener and wait (a few seconds at most) for its first attempt to subscribe, so
        that changes published right after start are not missed. A Redis that is down does not stop
        the start: :attr:`problem` says so and the listener keeps trying."""
        self._task = asyncio.create_task(self._listen(), name="switchboard-key-bus")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), timeout=3.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish(self, key_id: str) -> None:
        """Publish the change; when Redis cannot take it, tell this replica's subscribers directly
        (the other replicas learn of it from their Store refresh) and log a warning."""
        try:
            await self._client.publish(self._channel, key_id)
        except _UNREACHABLE as exc:
            log.warning(
                "could not publish the change of key %s to the other replicas (%s: %s); "
                "they see it at their next refresh from the store",
                key_id,
                type(exc).__name__,
                exc,
            )
            await _deliver(self._subscribers, key_id)

    async def _listen(self) -> None:
        backoff = self._min_backoff
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                if self.problem is not None:
                    log.info("key-change bus: subscribed to Redis again")
                    self.problem = None
                self._tried.set()
                backoff = self._min_backoff
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        data = message["data"]
                        await _deliver(self._subscribers, data.decode() if isinstance(data, bytes) else str(data))
            except _UNREACHABLE as exc:
                if self.problem is None:
                    log.warning(
                        "key-change bus: lost Redis (%s: %s); reconnecting with backoff, key changes made "
                        "meanwhile reach this replica at its next refresh from the store",
                        type(exc).__name__,
                        exc,
                    )
                self.problem = f"key-change bus cannot reach Redis ({type(exc).__name__}: {exc})"
                self._tried.set()
            finally:
                with contextlib.suppress(*_UNREACHABLE):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)


async def _deliver(subscribers: list[OnChange], key_id: str) -> None:
    for on_change in subscribers:
        try:
            result = on_change(key_id)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("key-change subscriber %r failed for key %s", on_change, key_id)
