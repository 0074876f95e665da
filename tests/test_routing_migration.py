"""Migration 0002 (the ledger's route and attempts) upgrades an existing database, SQLite and
PostgreSQL, keeping its rows; the store then reads and writes the new columns."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from proxy.gateway.contract import UsageRecord
from proxy.gateway.store import SqlStore, database_url
from tests.test_gateway_store import create_pg_database, pg_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "proxy" / "gateway" / "migrations"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield database_url(f"sqlite:///{tmp_path / 'old.db'}", tmp_path)
    else:
        yield from (pg_url(name) for name in create_pg_database("sb_routing_mig"))


async def _at_0001_with_a_row(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:

            def upgrade(sync: sa.Connection) -> None:
                config = Config()
                config.set_main_option("script_location", str(MIGRATIONS))
                config.attributes["connection"] = sync
                command.upgrade(config, "0001")

            await conn.run_sync(upgrade)
            await conn.execute(
                sa.text(
                    "INSERT INTO usage (ts, request_id, key_id, surface, provider, model, status, stream, "
                    "input_tokens, output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, cost, "
                    "estimated, latency_ms) VALUES (:ts, 'req_old', 'key_a', '/v1/chat/completions', 'openai', "
                    "'gpt-4o', 200, false, 1, 2, 0, 0, 0, 0.0, false, 5.0)"
                ),
                {"ts": time.time() - 10},
            )
    finally:
        await engine.dispose()


async def test_an_existing_ledger_is_upgraded_and_keeps_its_rows(url: str) -> None:
    await _at_0001_with_a_row(url)
    store = SqlStore(url)
    await store.start()
    try:
        new = UsageRecord(
            ts=time.time(),
            request_id="req_new",
            key_id="key_a",
            surface="/v1/chat/completions",
            provider="p1",
            model="m",
            status=200,
            stream=False,
            route="r",
            attempts=2,
            attempt_log='[{"target":"p0/m","status":529,"error":null,"ms":3.0}]',
        )
        await store.add_usage([new])
        records = await store.requests("key_a", 10)
    finally:
        await store.close()
    by_id = {r.request_id: r for r in records}
    old = by_id["req_old"]
    assert (old.route, old.attempts, old.attempt_log, old.input_tokens) == (None, 0, None, 1)
    assert (by_id["req_new"].route, by_id["req_new"].attempts) == ("r", 2)
    assert by_id["req_new"].attempt_log == new.attempt_log
