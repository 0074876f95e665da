"""Verified virtual keys in process: the request path never waits for the database.

Every key is loaded at start and reloaded every ``refresh`` seconds; a key changed anywhere (admin API,
CLI, another replica) is dropped at once through the :class:`Bus` and fetched again. A key the cache
does not know yet (created on another replica since the last reload) costs one store lookup, shared by
concurrent requests with the same key, with misses remembered for a while and store lookups capped
per second, so a flood of invented keys cannot turn into a flood of queries. When the store is down,
the cached keys keep working and :attr:`KeyCache.problem` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict

from .contract import KeyRecord, Limiter, Store
from .periods import period_bounds
from .store import StoreUnavailable

__all__ = ["KeyCache"]

log = logging.getLogger("switchboard")

#: How long an unknown key is answered from memory before the store is asked again.
_MISS_TTL = 5.0
_MISS_LIMIT = 10_000
#: Store lookups of unknown keys per second, at most (beyond: refused without a lookup).
_LOOKUPS_PER_SECOND = 20


class KeyCache:
    def __init__(self, store: Store, limiter: Limiter, refresh: float) -> None:
        self._store = store
        self._limiter = limiter
        self._refresh = refresh
        self._by_hash: dict[str, KeyRecord] = {}
        self._misses: OrderedDict[str, float] = OrderedDict()
        self._pending: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._lookup_second = 0
        self._lookups = 0
        self._task: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self.loaded = False

    @property
    def problem(self) -> str | None:
        if self._down_since is None:
            return None
        since = time.strftime("%H:%M:%SZ", time.gmtime(self._down_since))
        return f"keys: the database is unreachable since {since}; serving the {len(self._by_hash)} cached keys"

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._refresh_loop(), name="switchboard-key-refresh")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def get(self, key_hash: str) -> KeyRecord | None:
        """The cached record (no I/O); None when it is not cached."""
        return self._by_hash.get(key_hash)

    async def find(self, key_hash: str) -> KeyRecord | None:
        """The record for a key the cache does not hold: one bounded store lookup."""
        record = self._by_hash.get(key_hash)
        if record is not None:
            return record
        now = time.monotonic()
        expiry = self._misses.get(key_hash)
        if expiry is not None and expiry > now:
            return None
        pending = self._pending.get(key_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        if not self._may_look_up(now):
            return None
        fut: asyncio.Future[KeyRecord | None] = asyncio.get_running_loop().create_future()
        self._pending[key_hash] = fut
        try:
            record = await self._store.find_key(key_hash)
        except StoreUnavailable:
            record = None
        finally:
            del self._pending[key_hash]
        fut.set_result(record)
        if record is None:
            self._remember_miss(key_hash, now)
        else:
            await self._add(record)
        return record

    def invalidate(self, key_id: str) -> None:
        """Drop the key (updated, rotated, disabled or deleted elsewhere) and fetch it again."""
        for h, rec in list(self._by_hash.items()):
            if rec.id == key_id:
                del self._by_hash[h]
        # A rotated key's new hash may have been looked up (and missed) moments ago.
        self._misses.clear()
        task = asyncio.get_running_loop().create_task(self._refetch(key_id))
        task.add_done_callback(_log_failure)

    def put(self, record: KeyRecord) -> None:
        """A record this process just wrote (the admin API), usable before the next reload."""
        self._drop_id(record.id)
        self._by_hash[record.key_hash] = record

    async def reload(self) -> None:
        try:
            records = await self._store.list_keys()
            now = time.time()
            starts = {r.id: period_bounds(r.period, now)[0] for r in records if r.budget is not None}
            spends = await self._store.spends(starts) if starts else {}
        except StoreUnavailable as exc:
            if self._down_since is None:
                self._down_since = time.time()
                log.warning("%s; serving cached keys until it is back", exc.message)
            return
        if self._down_since is not None:
            log.info("the keys database is reachable again")
            self._down_since = None
        for key_id, start in starts.items():
            self._limiter.seed_spend(key_id, start, spends.get(key_id, 0.0))
        self._by_hash = {r.key_hash: r for r in records}
        self._misses.clear()
        self.loaded = True

    async def _add(self, record: KeyRecord) -> None:
        if record.budget is not None:
            start = period_bounds(record.period, time.time())[0]
            with contextlib.suppress(StoreUnavailable):
                self._limiter.seed_spend(record.id, start, await self._store.spend(record.id, start))
        self._drop_id(record.id)
        self._by_hash[record.key_hash] = record

    def _drop_id(self, key_id: str) -> None:
        for h in [h for h, r in self._by_hash.items() if r.id == key_id]:
            del self._by_hash[h]

    async def _refetch(self, key_id: str) -> None:
        try:
            record = await self._store.get_key(key_id)
        except StoreUnavailable:
            return  # the next reload brings it back
        if record is not None:
            await self._add(record)

    def _may_look_up(self, now: float) -> bool:
        second = int(now)
        if second != self._lookup_second:
            self._lookup_second, self._lookups = second, 0
        self._lookups += 1
        return self._lookups <= _LOOKUPS_PER_SECOND

    def _remember_miss(self, key_hash: str, now: float) -> None:
        self._misses[key_hash] = now + _MISS_TTL
        self._misses.move_to_end(key_hash)
        while len(self._misses) > _MISS_LIMIT:
            self._misses.popitem(last=False)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            try:
                await self.reload()
            except Exception:
                log.exception("reloading the keys failed")


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("refetching a changed key failed: %r", task.exception())
