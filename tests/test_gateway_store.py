"""SqlStore against real databases: SQLite in tmp_path and PostgreSQL on 127.0.0.1:5432.

Each PostgreSQL test module gets its own database (``pg_database``); each test starts from an empty
``public`` schema in it. The database's time zone is set far from UTC so that day grouping in the
session's zone would show.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import stat
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from providers.errors import ConfigError
from proxy.gateway.contract import KeyRecord, UsageRecord, hash_key, new_key
from proxy.gateway.store import KeyConflict, SqlStore, StoreUnavailable, database_url, redact_url
from proxy.gateway.store_schema import NO_KEY_GROUP, metadata

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"


# -- shared with tests/test_gateway_ledger.py --------------------------------------------------------------


def pg_url(dbname: str, port: int = PG_PORT) -> str:
    return database_url(f"postgresql://postgres@{PG_HOST}:{port}/{dbname}", Path("/nonexistent"))


def create_pg_database(prefix: str) -> Iterator[str]:
    """A new database (dropped afterwards), or a skip when no PostgreSQL answers."""
    name = f"{prefix}_{secrets.token_hex(4)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def admin(sql: str) -> None:
        # In a thread of its own: the fixture may be set up while a test's event loop runs.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: asyncio.run(run(sql))).result()

    try:
        admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as e:
        pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} as user postgres ({e!r}); CI runs it")
    # Day grouping must not depend on the session's zone.
    admin(f"ALTER DATABASE \"{name}\" SET timezone TO 'Pacific/Kiritimati'")
    try:
        yield name
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def reset_pg_database(name: str) -> None:
    conn = await asyncpg.connect(f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}")
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


def usage_record(ts: float, **kw: object) -> UsageRecord:
    fields: dict[str, object] = {
        "request_id": "req_" + secrets.token_hex(6),
        "key_id": "key_a",
        "surface": "openai-chat",
        "provider": "openai",
        "model": "gpt-4o",
        "status": 200,
        "stream": False,
    }
    fields.update(kw)
    return UsageRecord(ts=ts, **fields)  # type: ignore[arg-type]


async def count_rows(url: str, sql: str = "SELECT count(*) FROM usage") -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.text(sql))).scalar_one())
    finally:
        await engine.dispose()


# -- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    yield from create_pg_database("sb_store")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return database_url(None, tmp_path / "home")
    name = request.getfixturevalue("pg_database")
    await reset_pg_database(name)
    return pg_url(name)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    s = SqlStore(store_url)
    await s.start()
    yield s
    await s.close()


def key_record(**kw: object) -> KeyRecord:
    fields: dict[str, object] = {
        "id": "key_" + secrets.token_hex(4),
        "name": "ci",
        "key_hash": hash_key(new_key()),
        "key_prefix": "sk-sb-AbCd",
        "created_at": 1_700_000_000.25,
    }
    fields.update(kw)
    return KeyRecord(**fields)  # type: ignore[arg-type]


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


# -- migrations ----------------------------------------------------------------------------------------------


async def test_migrations_create_the_schema_the_queries_use(store_url: str) -> None:
    for _ in range(2):  # the second start finds everything applied
        s = SqlStore(store_url)
        await s.start()
        await s.close()
    engine = create_async_engine(store_url)
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars().all()
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
            indexes = await conn.run_sync(
                lambda c: {i["name"]: i for t in ("keys", "usage") for i in sa.inspect(c).get_indexes(t)}
            )
    finally:
        await engine.dispose()
    assert versions == ["0002"]
    assert diff == []
    assert indexes["ix_keys_key_hash"]["unique"]
    assert indexes["ix_usage_key_id_ts"]["column_names"] == ["key_id", "ts"]
    assert indexes["ix_usage_ts"]["column_names"] == ["ts"]


async def test_replicas_starting_together_migrate_once(store_url: str) -> None:
    stores = [SqlStore(store_url) for _ in range(4)]
    try:
        await asyncio.gather(*(s.start() for s in stores))
        await stores[0].create_key(key_record(id="key_x"))
        assert [k.id for k in await stores[3].list_keys()] == ["key_x"]
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert await count_rows(store_url, "SELECT count(*) FROM alembic_version") == 1


async def test_sqlite_file_is_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    s = SqlStore(database_url(None, home))
    await s.start()
    await s.close()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "switchboard.db").stat().st_mode) == 0o600


# -- keys ----------------------------------------------------------------------------------------------------


async def test_key_crud_round_trips_every_field(store: SqlStore) -> None:
    rec = key_record(
        models=["openai/*", "anthropic/claude-sonnet-4", "fast"],
        budget=12.5,
        period="month",
        rpm=60,
        tpm=5_000_000_000,
        parallel=4,
        expires_at=1_800_000_000.5,
        disabled=True,
        metadata={"team": "ml", "tags": ["a", "b"], "n": 3, "nested": {"x": None}},
    )
    await store.create_key(rec)
    assert await store.get_key(rec.id) == rec
    assert await store.find_key(rec.key_hash) == rec
    assert await store.get_key("key_missing") is None
    assert await store.find_key(hash_key("sk-sb-other")) is None

    empty = key_record(name="defaults", created_at=rec.created_at - 1)
    await store.create_key(empty)
    assert await store.get_key(empty.id) == empty
    assert await store.list_keys() == [empty, rec]  # oldest first


async def test_update_and_rotation(store: SqlStore) -> None:
    rec = key_record()
    await store.create_key(rec)
    updated = await store.update_key(rec.id, {"name": "renamed", "rpm": 10, "models": ["groq/*"], "disabled": True})
    assert updated is not None
    assert (updated.name, updated.rpm, updated.models, updated.disabled) == ("renamed", 10, ["groq/*"], True)
    assert await store.get_key(rec.id) == updated

    new_hash = hash_key(new_key())
    rotated = await store.update_key(rec.id, {"key_hash": new_hash, "key_prefix": "sk-sb-WxYz"})
    assert rotated is not None and rotated.key_prefix == "sk-sb-WxYz"
    assert await store.find_key(rec.key_hash) is None
    assert await store.find_key(new_hash) == rotated

    assert await store.update_key("key_missing", {"name": "x"}) is None


async def test_duplicate_hash_is_a_conflict(store: SqlStore) -> None:
    rec = key_record()
    await store.create_key(rec)
    with pytest.raises(KeyConflict) as info:
        await store.create_key(key_record(key_hash=rec.key_hash))
    assert info.value.status == 409
    other = key_record()
    await store.create_key(other)
    with pytest.raises(KeyConflict):
        await store.update_key(other.id, {"key_hash": rec.key_hash})
    assert (await store.get_key(other.id)) == other  # the failed update changed nothing


async def test_delete(store: SqlStore) -> None:
    rec = key_record()
    await store.create_key(rec)
    assert await store.delete_key(rec.id) is True
    assert await store.get_key(rec.id) is None
    assert await store.find_key(rec.key_hash) is None
    assert await store.delete_key(rec.id) is False


# -- usage ---------------------------------------------------------------------------------------------------


async def test_spend_and_spends_count_from_since(store: SqlStore) -> None:
    t0 = ts("2025-01-01T00:00:00")
    await store.add_usage(
        [
            usage_record(t0 - 1, key_id="key_a", cost=100.0),
            usage_record(t0, key_id="key_a", cost=1.5),
            usage_record(t0 + 10, key_id="key_a", cost=2.25),
            usage_record(t0 + 10, key_id="key_b", cost=4.0),
            usage_record(t0 + 20, key_id="key_b", cost=8.0),
            usage_record(t0 + 20, key_id=None, cost=16.0),
        ]
    )
    assert await store.spend("key_a", t0) == pytest.approx(3.75)
    assert await store.spend("key_a", 0) == pytest.approx(103.75)
    assert await store.spend("key_c", 0) == 0.0
    spends = await store.spends({"key_a": t0, "key_b": t0 + 15, "key_c": 0.0})
    assert spends == pytest.approx({"key_a": 3.75, "key_b": 8.0, "key_c": 0.0})
    assert await store.spends({}) == {}


async def test_usage_groups(store: SqlStore) -> None:
    day1 = ts("2025-03-09T23:59:59")
    day2 = ts("2025-03-10T00:00:00")
    await store.add_usage(
        [
            usage_record(day1, key_id="key_a", provider="openai", model="gpt-4o", cost=1.0, input_tokens=10),
            usage_record(day2, key_id="key_a", provider="anthropic", model="claude", cost=5.0, output_tokens=7),
            usage_record(day2 + 5, key_id="key_b", provider="openai", model="gpt-4o", cost=2.0, cached_tokens=3),
            usage_record(
                day2 + 6,
                key_id=None,
                provider="openai",
                model="o3",
                cost=0.5,
                reasoning_tokens=9,
                cache_write_tokens=4,
            ),
            usage_record(day1 - 86400, key_id="key_a", cost=1000.0),  # before `since`
        ]
    )
    since = day1 - 3600

    by_key = await store.usage("key", since)
    assert [(r.group, r.requests, r.cost) for r in by_key] == [
        ("key_a", 2, 6.0),
        ("key_b", 1, 2.0),
        (NO_KEY_GROUP, 1, 0.5),
    ]
    assert (by_key[0].input_tokens, by_key[0].output_tokens) == (10, 7)

    by_model = await store.usage("model", since)
    assert [(r.group, r.requests, r.cost) for r in by_model] == [
        ("anthropic/claude", 1, 5.0),
        ("openai/gpt-4o", 2, 3.0),
        ("openai/o3", 1, 0.5),
    ]
    o3 = by_model[2]
    assert (o3.reasoning_tokens, o3.cache_write_tokens, o3.cached_tokens) == (9, 4, 0)

    by_provider = await store.usage("provider", since)
    assert [(r.group, r.requests, r.cost) for r in by_provider] == [("anthropic", 1, 5.0), ("openai", 3, 3.5)]

    by_day = await store.usage("day", since)
    assert [(r.group, r.requests, r.cost) for r in by_day] == [("2025-03-09", 1, 1.0), ("2025-03-10", 3, 7.5)]

    only_a = await store.usage("day", 0, key_id="key_a")
    assert [(r.group, r.cost) for r in only_a] == [("2025-03-08", 1000.0), ("2025-03-09", 1.0), ("2025-03-10", 5.0)]
    assert await store.usage("model", day2 + 100) == []


async def test_requests_newest_first(store: SqlStore) -> None:
    base = ts("2025-05-01T12:00:00")
    records = [usage_record(base + i, key_id="key_a" if i % 2 else "key_b", request_id=f"r{i}") for i in range(10)]
    full = usage_record(
        base + 100,
        request_id="r_full",
        stream=True,
        status=499,
        input_tokens=1,
        output_tokens=2,
        cached_tokens=3,
        cache_write_tokens=4,
        reasoning_tokens=5,
        cost=0.125,
        estimated=True,
        latency_ms=12.5,
        ttft_ms=3.25,
    )
    await store.add_usage([*records, full])
    latest = await store.requests(None, 3)
    assert latest[0] == full
    assert [r.request_id for r in latest] == ["r_full", "r9", "r8"]
    assert [r.request_id for r in await store.requests("key_b", 2)] == ["r8", "r6"]
    assert await store.requests("key_z", 5) == []


async def test_last_used_at_moves_forward_only(store: SqlStore) -> None:
    rec = key_record()
    await store.create_key(rec)
    await store.add_usage([usage_record(1000.0, key_id=rec.id), usage_record(2000.0, key_id=rec.id)])
    assert (await store.get_key(rec.id)).last_used_at == 2000.0  # type: ignore[union-attr]
    await store.add_usage([usage_record(1500.0, key_id=rec.id)])
    assert (await store.get_key(rec.id)).last_used_at == 2000.0  # type: ignore[union-attr]
    await store.add_usage([usage_record(3000.0, key_id=rec.id), usage_record(2500.0, key_id="key_gone")])
    assert (await store.get_key(rec.id)).last_used_at == 3000.0  # type: ignore[union-attr]


# -- unreachable databases and URLs ----------------------------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_postgres_is_store_unavailable_without_the_password() -> None:
    port = _closed_port()
    s = SqlStore(database_url(f"postgres://sb:hunter2secret@127.0.0.1:{port}/sb", Path("/x")))
    with pytest.raises(StoreUnavailable) as info:
        await s.start()
    await s.close()
    err = info.value
    assert (err.status, err.code) == (503, "store_unavailable")
    assert f"127.0.0.1:{port}" in err.message
    assert "SWITCHBOARD_DATABASE_URL" in err.message
    assert "hunter2secret" not in err.message


async def test_missing_postgres_database_is_store_unavailable(pg_database: str) -> None:
    s = SqlStore(pg_url(pg_database + "_missing"))
    with pytest.raises(StoreUnavailable) as info:
        await s.start()
    await s.close()
    assert "InvalidCatalogNameError" in info.value.message
    assert "does not exist" in info.value.message


async def test_unopenable_sqlite_is_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()  # a directory where the database file should be
    s = SqlStore(database_url(f"sqlite:///{tmp_path / 'db'}", tmp_path))
    with pytest.raises(StoreUnavailable) as info:
        await s.start()
    await s.close()
    assert "SQLite" in info.value.message


def test_database_url_forms(tmp_path: Path) -> None:
    assert database_url(None, tmp_path) == f"sqlite+aiosqlite:///{tmp_path}/switchboard.db"
    assert database_url("sqlite:////var/lib/sb.db", tmp_path) == "sqlite+aiosqlite:////var/lib/sb.db"
    assert database_url("sqlite+aiosqlite:///rel.db", tmp_path) == "sqlite+aiosqlite:///rel.db"
    assert database_url("postgres://u:p@db:5433/sb", tmp_path) == "postgresql+asyncpg://u:p@db:5433/sb"
    assert database_url("postgresql://u@db/sb", tmp_path) == "postgresql+asyncpg://u@db/sb"
    assert database_url("postgresql+asyncpg://u@db/sb", tmp_path) == "postgresql+asyncpg://u@db/sb"
    assert database_url("postgresql://u@db/sb?sslmode=require", tmp_path) == "postgresql+asyncpg://u@db/sb?ssl=require"
    for bad in ("mysql://u:pw9@db/sb", "db.example.com", "sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ConfigError) as info:
            database_url(bad, tmp_path)
        assert "pw9" not in info.value.message
    with pytest.raises(ConfigError, match=r"sqlite:///.*postgresql://"):
        database_url("mysql://db/sb", tmp_path)


def test_redact_url() -> None:
    assert redact_url("postgresql+asyncpg://sb:s3cret@db:5432/sb") == "postgresql+asyncpg://sb:***@db:5432/sb"
    assert "s3cret" not in redact_url("postgres://sb:s3cret@db/sb")
    assert redact_url("sqlite+aiosqlite:////x/y.db") == "sqlite+aiosqlite:////x/y.db"
