"""The usage Ledger writing through a real SqlStore (SQLite, PostgreSQL), and riding out a database outage.

The outage is real: the store talks to PostgreSQL through a TCP forwarder on 127.0.0.1 that the test
stops (refusing new connections and cutting the open ones) and starts again on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import pytest

from proxy.gateway import ledger as ledger_module
from proxy.gateway.contract import UsageRecord
from proxy.gateway.ledger import Ledger
from proxy.gateway.store import SqlStore, database_url
from tests.test_gateway_store import (
    PG_PORT,
    count_rows,
    create_pg_database,
    pg_url,
    reset_pg_database,
    usage_record,
)


class CountingStore(SqlStore):
    """The real store, counting the ledger's write transactions (attempted and failed)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.batches: list[int] = []
        self.failures = 0

    async def add_usage(self, records: Sequence[UsageRecord]) -> None:
        try:
            await super().add_usage(records)
        except Exception:
            self.failures += 1
            raise
        self.batches.append(len(records))


class Forwarder:
    """A TCP forwarder to PostgreSQL that can be stopped (an outage) and started again on its port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        await self._server.wait_closed()
        if self._pipes:
            await asyncio.wait(self._pipes)
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pipes = [
            asyncio.ensure_future(self._pipe(reader, up_writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        await asyncio.wait(pipes)
        self._pipes.difference_update(pipes)
        self._writers.difference_update((writer, up_writer))

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            dst.transport.abort()


async def wait_until(check: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    yield from create_pg_database("sb_ledger")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return database_url(None, tmp_path / "home")
    name = request.getfixturevalue("pg_database")
    await reset_pg_database(name)
    return pg_url(name)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[CountingStore]:
    s = CountingStore(store_url)
    await s.start()
    yield s
    await s.close()


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "_BACKOFF_FIRST", 0.05)
    monkeypatch.setattr(ledger_module, "_BACKOFF_CAP", 0.2)


def records(n: int, start: int = 0) -> list[UsageRecord]:
    return [usage_record(1_750_000_000.0 + i, request_id=f"r{i:06d}", cost=0.001) for i in range(start, start + n)]


async def request_ids(url: str) -> list[str]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text("SELECT request_id FROM usage ORDER BY request_id"))).scalars())
    finally:
        await engine.dispose()


async def test_a_full_batch_is_written_in_few_transactions(store: CountingStore, store_url: str) -> None:
    # An interval of an hour: only reaching max_batch can start these writes.
    ledger = Ledger(store, interval=3600, max_batch=1000)
    ledger.start()
    try:
        for rec in records(2500):
            ledger.record(rec)
        await wait_until(lambda: ledger.pending == 0, "the ledger to write 2,500 records")
        assert await count_rows(store_url) == 2500
        assert sum(store.batches) == 2500
        assert store.batches == [1000, 1000, 500]
    finally:
        await ledger.close()


async def test_records_are_written_every_interval(store: CountingStore, store_url: str) -> None:
    ledger = Ledger(store, interval=0.05)
    ledger.start()
    try:
        for rec in records(7):
            ledger.record(rec)
        await wait_until(lambda: ledger.pending == 0, "the interval write")
        assert await count_rows(store_url) == 7
        assert len(store.batches) == 1
    finally:
        await ledger.close()


async def test_flush_writes_what_is_queued(store: CountingStore, store_url: str) -> None:
    ledger = Ledger(store, interval=3600)
    ledger.start()
    try:
        for rec in records(10):
            ledger.record(rec)
        assert ledger.pending == 10
        await ledger.flush()
        assert ledger.pending == 0
        assert await count_rows(store_url) == 10
    finally:
        await ledger.close()


async def test_close_writes_everything_queued(store: CountingStore, store_url: str) -> None:
    ledger = Ledger(store, interval=3600, max_batch=400)
    ledger.start()
    for rec in records(1500):
        ledger.record(rec)
    await ledger.close()
    assert ledger.pending == 0
    assert await request_ids(store_url) == [r.request_id for r in records(1500)]


# -- outages ---------------------------------------------------------------------------------------------------


@pytest.fixture
async def forwarded(pg_database: str) -> AsyncIterator[tuple[Forwarder, CountingStore, str]]:
    """A store reaching PostgreSQL through a forwarder, and the direct URL for checking."""
    await reset_pg_database(pg_database)
    fwd = Forwarder(PG_PORT)
    await fwd.start()
    store = CountingStore(pg_url(pg_database, fwd.port))
    await store.start()
    yield fwd, store, pg_url(pg_database)
    await store.close()
    if fwd._server is not None:
        await fwd.stop()


@pytest.mark.usefixtures("fast_backoff")
async def test_outage_queues_reports_and_recovers_without_loss_or_doubles(
    forwarded: tuple[Forwarder, CountingStore, str], caplog: pytest.LogCaptureFixture
) -> None:
    fwd, store, direct = forwarded
    caplog.set_level(logging.INFO, logger="proxy.gateway.ledger")
    ledger = Ledger(store, interval=0.05, max_batch=50)
    ledger.start()
    try:
        for rec in records(100):
            ledger.record(rec)
        await wait_until(lambda: ledger.pending == 0, "the first records")
        assert ledger.problem is None

        await fwd.stop()
        for rec in records(300, start=100):
            ledger.record(rec)
        await wait_until(lambda: store.failures >= 4, "several failed retries")
        problem = ledger.problem
        assert problem is not None
        assert problem.startswith("usage ledger: database unreachable since ")
        assert "Z, 300 records queued" in problem
        assert ledger.pending == 300
        with pytest.raises(ledger_module.StoreUnavailable):
            await ledger.flush()  # the admin API's flush says so; the records stay queued
        assert ledger.pending == 300

        await fwd.start()
        await wait_until(lambda: ledger.pending == 0, "the queued records after recovery")
        assert ledger.problem is None
    finally:
        await ledger.close()
    assert await request_ids(direct) == [r.request_id for r in records(400)]
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    warnings = [m for lvl, m in levels if lvl == "WARNING"]
    assert len(warnings) == 1 and "PostgreSQL at 127.0.0.1" in warnings[0]
    assert sum(lvl == "INFO" and "reachable again" in m for lvl, m in levels) == 1
    assert not [m for lvl, m in levels if lvl == "ERROR"]


@pytest.mark.usefixtures("fast_backoff")
async def test_beyond_max_queue_the_oldest_are_dropped_and_counted(
    forwarded: tuple[Forwarder, CountingStore, str], caplog: pytest.LogCaptureFixture
) -> None:
    fwd, store, direct = forwarded
    ledger = Ledger(store, interval=0.05, max_batch=20, max_queue=50)
    ledger.start()
    try:
        await fwd.stop()
        for rec in records(80):
            ledger.record(rec)
        await wait_until(lambda: ledger.problem is not None, "the outage to be noticed")
        assert ledger.pending == 50
        assert ledger.problem is not None and "30 oldest dropped" in ledger.problem
        await fwd.start()
        await wait_until(lambda: ledger.pending == 0, "the queued records after recovery")
    finally:
        await ledger.close()
    assert await request_ids(direct) == [r.request_id for r in records(50, start=30)]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "dropped the 30 oldest" in errors[0]


@pytest.mark.usefixtures("fast_backoff")
async def test_close_during_an_outage_gives_up_after_its_timeout(
    forwarded: tuple[Forwarder, CountingStore, str], caplog: pytest.LogCaptureFixture
) -> None:
    fwd, store, _ = forwarded
    ledger = Ledger(store, interval=3600)
    ledger.start()
    await fwd.stop()
    for rec in records(5):
        ledger.record(rec)
    await ledger.close(timeout=0.5)
    assert ledger.pending == 5
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "5 records could not be written before shutdown" in errors[0]
