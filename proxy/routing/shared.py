"""Cooldowns shared by replicas through Redis, with no Redis round trip on the request path.

Each replica keeps its cooldowns in process (:class:`proxy.routing.health.Health`). A cooldown started
here is announced off the request path: ``PUBLISH`` on :data:`CHANNEL` (replicas running now update their
copy from their subscription) and ``SET`` of ``switchboard:cooldown:<target>`` expiring when the
cooldown ends (a replica starting later, or one back from a Redis outage, reads the current ones). A
cooldown's end is its epoch time: every replica ends it at the same moment without another message.

Redis being down never fails a request: announcements are dropped with one warning, the listener
reconnects with backoff, and :attr:`SharedCooldowns.problem` says so meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING

import msgspec

from .health import Health

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["CHANNEL", "KEY_PREFIX", "SharedCooldowns"]

log = logging.getLogger("switchboard")

CHANNEL = "switchboard:cooldowns"
KEY_PREFIX = "switchboard:cooldown:"


class _Message(msgspec.Struct, frozen=True):
    target: str
    until: float
    #: The announcing replica (it has the cooldown already).
    origin: str


class SharedCooldowns:
    def __init__(self, url: str, health: Health, *, min_backoff: float = 0.1, max_backoff: float = 5.0) -> None:
        from redis.asyncio import Redis as _Redis

        self._client: Redis = _Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=None)
        self._health = health
        self._id = secrets.token_hex(8)
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._subscribed = asyncio.Event()
        self.problem: str | None = None

    async def start(self) -> None:
        """Subscribe and read the current cooldowns (waiting a few seconds at most: a Redis that is down
        does not stop the start)."""
        self._health.announce = self._announce
        self._task = asyncio.create_task(self._listen(), name="switchboard-cooldowns")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=3.0)

    async def stop(self) -> None:
        self._health.announce = None
        if self._sending:
            await asyncio.wait(self._sending, timeout=2.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._client.aclose()

    def _announce(self, target: str, until: float) -> None:
        task = asyncio.get_running_loop().create_task(self._send(target, until))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, target: str, until: float) -> None:
        ms = int((until - time.time()) * 1000)
        if ms <= 0:
            return
        try:
            await self._client.set(KEY_PREFIX + target, repr(until), px=ms)
            await self._client.publish(CHANNEL, msgspec.json.encode(_Message(target, until, self._id)))
        except Exception as exc:  # any Redis failure: the cooldown still holds here
            log.warning("could not share the cooldown of %s with other replicas: %s", target, type(exc).__name__)

    async def _listen(self) -> None:
        backoff = self._min_backoff
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                await self._load()  # after subscribing: nothing announced meanwhile is missed
                if self.problem is not None:
                    log.info("cooldown sharing: connected to Redis again")
                    self.problem = None
                self._subscribed.set()
                backoff = self._min_backoff
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._receive(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.problem is None:
                    log.warning("cooldown sharing: lost Redis (%s); reconnecting", type(exc).__name__)
                self.problem = f"cooldown sharing cannot reach Redis ({type(exc).__name__})"
                self._subscribed.set()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _load(self) -> None:
        names = [key async for key in self._client.scan_iter(match=KEY_PREFIX + "*", count=500)]
        if not names:
            return
        for name, value in zip(names, await self._client.mget(names), strict=True):
            if value is None:
                continue
            with contextlib.suppress(ValueError):
                key = name.decode() if isinstance(name, bytes) else str(name)
                self._health.cool(key.removeprefix(KEY_PREFIX), float(value))

    def _receive(self, data: bytes | str) -> None:
        try:
            message = msgspec.json.decode(data, type=_Message)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("cooldown sharing: ignored a malformed message on %s", CHANNEL)
            return
        if message.origin != self._id:
            self._health.cool(message.target, message.until)
