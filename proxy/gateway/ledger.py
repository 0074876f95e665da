"""The usage ledger writer: records queued on the request path, written to the Store in batches.

The pipeline's finish step calls :meth:`Ledger.record` (an append, never awaited, never raising); a
background task writes the queue every ``interval`` seconds, or sooner once ``max_batch`` records wait.
While the database is unreachable the records stay queued (the oldest dropped beyond ``max_queue``)
and the writes are retried with backoff; :attr:`Ledger.problem` says so for ``/healthz``. The admin API
awaits :meth:`Ledger.flush` before answering usage queries; the lifespan awaits :meth:`Ledger.close`,
which writes everything still queued.

A batch is one Store transaction: it is written whole or not at all, so a retried batch is not doubled.
(The one exception: a connection lost after the database committed but before it said so; the batch is
then written again. Connection failures while connecting or mid-transaction lose and double nothing.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time

from proxy.gateway.contract import Store, UsageRecord
from proxy.gateway.store import StoreUnavailable

__all__ = ["Ledger"]

_log = logging.getLogger(__name__)

_BACKOFF_FIRST = 0.5
_BACKOFF_CAP = 10.0


class Ledger:
    def __init__(
        self, store: Store, *, interval: float = 1.0, max_batch: int = 20_000, max_queue: int = 200_000
    ) -> None:
        self._store = store
        self._interval = interval
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._queue: collections.deque[UsageRecord] = collections.deque()
        #: Records taken off the queue for the write in progress (they count as pending).
        self._in_flight = 0
        #: Set by record() once a full batch waits, and by close().
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Set while the database is unreachable: when the outage began (epoch seconds).
        self._down_since: float | None = None
        self._dropped = 0
        self._backoff = _BACKOFF_FIRST

    # -- the request path ---------------------------------------------------------------------------------

    def record(self, rec: UsageRecord) -> None:
        """Queue one record. O(1), never blocks or raises."""
        queue = self._queue
        if len(queue) >= self._max_queue:
            queue.popleft()
            self._dropped += 1
        queue.append(rec)
        if len(queue) >= self._max_batch and not self._wake.is_set():
            self._wake.set()

    # -- status ---------------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records recorded and not yet written."""
        return len(self._queue) + self._in_flight

    @property
    def problem(self) -> str | None:
        """For ``/healthz``: why records are not being written, or None."""
        if self._down_since is None:
            return None
        since = time.strftime("%H:%M:%SZ", time.gmtime(self._down_since))
        text = f"usage ledger: database unreachable since {since}, {self.pending} records queued"
        if self._dropped:
            text += f", {self._dropped} oldest dropped (queue limit {self._max_queue})"
        return text

    # -- life cycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-ledger")

    async def flush(self) -> None:
        """Write the records queued now (after the write in progress, if any). Raises
        :class:`StoreUnavailable` if the database cannot be reached; the records then stay queued."""
        async with self._write_lock:
            count = len(self._queue)
            while count > 0 and self._queue:
                size = min(count, self._max_batch, len(self._queue))
                await self._write_batch(size)
                count -= size

    # The lifespan's shutdown gives the writer a bound of its own: a parameter, not asyncio.timeout around
    # the call, so the writer can finish its batch and log what is left instead of being cancelled.
    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Stop the background task and write everything still queued, retrying for up to ``timeout``
        seconds while the database is unreachable."""
        deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        self._stop.set()
        if self._task is not None:
            # The task finishes the write in progress (cancelling it could double a committed batch).
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        while self._queue and (remaining := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    await self.flush()
            except StoreUnavailable:
                await asyncio.sleep(min(self._backoff, max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                break
        if self.pending:
            _log.error(
                "usage ledger: %d records could not be written before shutdown (the database stayed "
                "unreachable for %.0f s); check database_url / SWITCHBOARD_DATABASE_URL",
                self.pending,
                timeout,
            )
        self._report_dropped()

    # -- the writer -----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            if self._down_since is None:
                await self._pause(self._interval, self._wake)
                self._wake.clear()
            else:
                # In an outage a full batch does not hasten the retry: only the backoff does.
                await self._pause(self._backoff, self._stop)
            if self._stopping:
                return
            try:
                await self.flush()
            except StoreUnavailable:
                pass  # logged once by _outage; the records stay queued
            except Exception:
                _log.exception("usage ledger: unexpected error in the writer")

    @staticmethod
    async def _pause(seconds: float, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()

    async def _write_batch(self, size: int) -> None:
        """Write the first ``size`` queued records in one transaction (the caller holds the write lock)."""
        batch = [self._queue.popleft() for _ in range(size)]
        self._in_flight = size
        try:
            await self._store.add_usage(batch)
        except StoreUnavailable as e:
            self._requeue(batch)
            self._outage(e)
            raise
        except asyncio.CancelledError:
            self._requeue(batch)
            raise
        except Exception:
            # Not an outage (a bug, a value the database refuses): retrying would block every later record.
            _log.exception("usage ledger: dropped a batch of %d records the database refused", size)
        else:
            self._recovered()
        finally:
            self._in_flight = 0

    def _requeue(self, batch: list[UsageRecord]) -> None:
        self._queue.extendleft(reversed(batch))
        while len(self._queue) > self._max_queue:
            self._queue.popleft()
            self._dropped += 1

    def _outage(self, err: StoreUnavailable) -> None:
        if self._down_since is None:
            self._down_since = time.time()
            _log.warning("usage ledger: %s; queuing usage records and retrying", err.message)
        else:
            self._backoff = min(self._backoff * 2, _BACKOFF_CAP)

    def _recovered(self) -> None:
        if self._down_since is not None:
            _log.info(
                "usage ledger: the database is reachable again after %.1f s; writing the %d queued records",
                time.time() - self._down_since,
                self.pending,
            )
            self._down_since = None
            self._backoff = _BACKOFF_FIRST
            self._report_dropped()

    def _report_dropped(self) -> None:
        if self._dropped:
            _log.error(
                "usage ledger: dropped the %d oldest usage records while the database was unreachable "
                "(more than max_queue=%d waiting)",
                self._dropped,
                self._max_queue,
            )
            self._dropped = 0
