"""The gateway Store in SQL: virtual keys and the usage ledger, SQLite (default) or PostgreSQL.

:class:`SqlStore` implements :class:`proxy.gateway.contract.Store` with SQLAlchemy Core on an async
engine (aiosqlite or asyncpg). The schema is applied by Alembic at :meth:`SqlStore.start`; the tables
the queries use are in :mod:`proxy.gateway.store_schema`.

Errors: every failure to reach or use the database (refused or dropped connections, timeouts, a locked
or unopenable SQLite file) is translated once, in :meth:`SqlStore._guard`, into :class:`StoreUnavailable`
(503); a duplicate key id or hash into :class:`KeyConflict` (409). Messages name the engine and host,
never the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from msgspec.structs import astuple
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from providers.errors import InvalidRequest, SwitchboardError
from proxy.gateway.contract import GroupBy, KeyRecord, UsageRecord, UsageRow
from proxy.gateway.store_schema import (
    KEY_FIELDS,
    NO_KEY_GROUP,
    create_private_file,
    database_url,
    key_from_row,
    keys,
    redact_url,
    row_from_record,
    sqlite_on_begin,
    sqlite_on_connect,
    usage,
    usage_from_row,
)

__all__ = ["KeyConflict", "SqlStore", "StoreUnavailable", "database_url", "redact_url"]

_MIGRATIONS = Path(__file__).with_name("migrations")
#: pg_advisory_xact_lock key serialising schema upgrades of replicas starting together ("SWBM").
_MIGRATION_LOCK = 0x5357424D
#: Many keys per spends() query stay under the drivers' bind-parameter limits (32k) with room to spare.
_SPENDS_CHUNK = 5000


class StoreUnavailable(SwitchboardError):
    status = 503
    type = "api_error"
    code = "store_unavailable"


class KeyConflict(InvalidRequest):
    status = 409
    code = "key_conflict"


class SqlStore:
    """:class:`proxy.gateway.contract.Store` on SQLite or PostgreSQL (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self._url: URL = make_url(url)
        self._sqlite = self._url.get_backend_name() == "sqlite"
        self._engine: AsyncEngine | None = None

    # -- life cycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._guard():
            if self._sqlite:
                await asyncio.to_thread(create_private_file, Path(self._url.database or ""))
            self._engine = self._create_engine()
            async with self._write() as conn:
                if not self._sqlite:
                    # Replicas starting together: one upgrades, the others wait, then find nothing to do.
                    # (SQLite: the write transaction's file lock does the same.)
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
                await conn.run_sync(_upgrade)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    # -- keys ---------------------------------------------------------------------------------------------

    async def create_key(self, record: KeyRecord) -> None:
        async with self._write() as conn:
            await conn.execute(keys.insert().values(row_from_record(record)))

    async def get_key(self, key_id: str) -> KeyRecord | None:
        return await self._one_key(keys.c.id == key_id)

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        return await self._one_key(keys.c.key_hash == key_hash)

    async def list_keys(self) -> list[KeyRecord]:
        async with self._read() as conn:
            result = await conn.execute(keys.select().order_by(keys.c.created_at, keys.c.id))
            return [key_from_row(row) for row in result.mappings()]

    async def update_key(self, key_id: str, changes: dict[str, Any]) -> KeyRecord | None:
        unknown = set(changes) - KEY_FIELDS | ({"id"} & set(changes))
        if unknown:
            raise InvalidRequest(f"cannot change key field(s) {sorted(unknown)}; known: {sorted(KEY_FIELDS - {'id'})}")
        async with self._write() as conn:
            if changes:
                await conn.execute(keys.update().where(keys.c.id == key_id).values(changes))
            row = (await conn.execute(keys.select().where(keys.c.id == key_id))).mappings().first()
            return key_from_row(row) if row is not None else None

    async def delete_key(self, key_id: str) -> bool:
        async with self._write() as conn:
            result = await conn.execute(keys.delete().where(keys.c.id == key_id))
            return result.rowcount > 0

    async def _one_key(self, where: sa.ColumnElement[bool]) -> KeyRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(keys.select().where(where))).mappings().first()
            return key_from_row(row) if row is not None else None

    # -- usage ledger -------------------------------------------------------------------------------------

    async def add_usage(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        last_used: dict[str, float] = {}
        for rec in records:
            if rec.key_id is not None and rec.ts > last_used.get(rec.key_id, float("-inf")):
                last_used[rec.key_id] = rec.ts
        async with self._write() as conn:
            # The driver's own executemany with tuples: SQLAlchemy's per-row parameter processing cost
            # more than the insert itself (measured), and this runs beside the request path.
            style = conn.dialect.paramstyle
            if style == "qmark":
                # SQLite: many rows per statement. Its driver runs in a thread and takes the GIL back after
                # every statement step, so one step per row meant thousands of GIL hand-offs a second
                # with the event loop (measured: the stream path fell from 86% to 67% of plain).
                for start in range(0, len(records), _SQLITE_ROWS):
                    part = records[start : start + _SQLITE_ROWS]
                    flat = [value for rec in part for value in astuple(rec)]
                    await conn.exec_driver_sql(_insert_usage_sql(style, len(part)), tuple(flat))
            else:
                await conn.exec_driver_sql(_insert_usage_sql(style, 1), [astuple(rec) for rec in records])
            if last_used:
                await conn.execute(
                    keys.update()
                    .where(
                        keys.c.id == sa.bindparam("b_id"),
                        sa.or_(keys.c.last_used_at.is_(None), keys.c.last_used_at < sa.bindparam("b_ts")),
                    )
                    .values(last_used_at=sa.bindparam("b_ts")),
                    [{"b_id": k, "b_ts": ts} for k, ts in last_used.items()],
                )

    async def spend(self, key_id: str, since: float) -> float:
        return (await self.spends({key_id: since})).get(key_id, 0.0)

    async def spends(self, since_by_key: dict[str, float]) -> dict[str, float]:
        out = dict.fromkeys(since_by_key, 0.0)
        items = list(since_by_key.items())
        async with self._read() as conn:
            for start in range(0, len(items), _SPENDS_CHUNK):
                # Keys share few distinct period starts (UTC day/week/month, 0 for lifetime budgets), so
                # the condition is one IN list per start rather than one clause per key.
                by_since: dict[float, list[str]] = {}
                for key_id, since in items[start : start + _SPENDS_CHUNK]:
                    by_since.setdefault(since, []).append(key_id)
                where = sa.or_(*(sa.and_(usage.c.ts >= s, usage.c.key_id.in_(ids)) for s, ids in by_since.items()))
                query = sa.select(usage.c.key_id, sa.func.sum(usage.c.cost)).where(where).group_by(usage.c.key_id)
                for key_id, total in await conn.execute(query):
                    out[key_id] = float(total or 0.0)
        return out

    async def usage(self, group_by: GroupBy, since: float, key_id: str | None = None) -> list[UsageRow]:
        group = self._group_expr(group_by).label("grp")
        cost = sa.func.sum(usage.c.cost).label("cost")
        query = sa.select(
            group,
            sa.func.count().label("requests"),
            *(sa.func.sum(usage.c[name]).label(name) for name in _TOKEN_COLUMNS),
            cost,
        ).where(usage.c.ts >= since)
        if key_id is not None:
            query = query.where(usage.c.key_id == key_id)
        query = query.group_by(group)
        query = query.order_by(group) if group_by == "day" else query.order_by(cost.desc(), group)
        async with self._read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            UsageRow(
                group=str(r["grp"]),
                requests=int(r["requests"]),
                cost=float(r["cost"] or 0.0),
                **{name: int(r[name] or 0) for name in _TOKEN_COLUMNS},
            )
            for r in rows
        ]

    async def requests(self, key_id: str | None, limit: int) -> list[UsageRecord]:
        query = usage.select().order_by(usage.c.ts.desc(), usage.c.id.desc()).limit(limit)
        if key_id is not None:
            query = query.where(usage.c.key_id == key_id)
        async with self._read() as conn:
            return [usage_from_row(row) for row in (await conn.execute(query)).mappings()]

    def _group_expr(self, group_by: GroupBy) -> sa.ColumnElement[Any]:
        if group_by == "key":
            return sa.func.coalesce(usage.c.key_id, NO_KEY_GROUP)
        if group_by == "model":
            return usage.c.provider + "/" + usage.c.model
        if group_by == "provider":
            return usage.c.provider
        if group_by == "day":
            if self._sqlite:
                return sa.func.strftime("%Y-%m-%d", usage.c.ts, "unixepoch")
            return sa.func.to_char(sa.func.timezone("UTC", sa.func.to_timestamp(usage.c.ts)), "YYYY-MM-DD")
        raise InvalidRequest(f"cannot group usage by {group_by!r}; use key, model, provider or day", param="group_by")

    # -- connections and the error boundary ---------------------------------------------------------------

    def _create_engine(self) -> AsyncEngine:
        json_opts: dict[str, Any] = {
            "json_serializer": lambda v: msgspec.json.encode(v).decode(),
            "json_deserializer": msgspec.json.decode,
        }
        if not self._sqlite:
            return create_async_engine(
                self._url,
                pool_size=5,
                max_overflow=5,
                pool_timeout=10,
                # After an outage the pooled connections are dead; a ping on checkout replaces them.
                pool_pre_ping=True,
                pool_recycle=1800,
                connect_args={"timeout": 5, "command_timeout": 30},
                **json_opts,
            )
        engine = create_async_engine(self._url, pool_size=5, max_overflow=5, pool_timeout=10, **json_opts)
        event.listen(engine.sync_engine, "connect", sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", sqlite_on_begin)
        return engine

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._guard(), self._connected().begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._guard(), self._connected().connect() as conn:
            # SQLite: take the write lock at BEGIN so that a read-then-write transaction cannot fail half-way
            # on a snapshot another process has moved past (busy_timeout then queues writers).
            await conn.execution_options(switchboard_write=True)
            async with conn.begin():
                yield conn

    def _connected(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("SqlStore used before start() or after close()")
        return self._engine

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """The one boundary where driver and connection errors become :class:`SwitchboardError`\\ s."""
        try:
            yield
        except SwitchboardError:
            raise
        except exc.IntegrityError as e:
            raise KeyConflict(
                "a key with this id or key hash already exists; create the key again (a new id and key are drawn)"
            ) from e
        except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as e:
            raise self._unavailable(e.orig if isinstance(e, exc.DBAPIError) else e) from e
        except exc.DBAPIError as e:
            if e.connection_invalidated or _is_connection_error(e.orig):
                raise self._unavailable(e.orig) from e
            raise
        except (OSError, TimeoutError, sqlite3.OperationalError) as e:
            raise self._unavailable(e) from e
        except Exception as e:
            if _is_connection_error(e):
                raise self._unavailable(e) from e
            raise

    def _unavailable(self, cause: BaseException | None) -> StoreUnavailable:
        if self._sqlite:
            where = f"SQLite file {self._url.database}"
        else:
            where = f"PostgreSQL at {self._url.host or 'localhost'}:{self._url.port or 5432}/{self._url.database or ''}"
        # The driver's own exception (under SQLAlchemy's wrappers) names the problem best.
        while cause is not None and isinstance(inner := getattr(cause, "orig", None), BaseException):
            if inner is cause:
                break
            cause = inner
        reason = type(cause).__name__ if cause is not None else "unknown error"
        detail = str(cause).strip().splitlines()[0][:200] if cause is not None and str(cause).strip() else ""
        if self._url.password and detail:
            detail = detail.replace(self._url.password, "***")
        return StoreUnavailable(
            f"Switchboard could not reach its database ({where}): {reason}{': ' + detail if detail else ''}; "
            "check database_url / SWITCHBOARD_DATABASE_URL and that the database is running and reachable"
        )


_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")


def _is_connection_error(err: BaseException | None) -> bool:
    """Whether a driver error means the database cannot be reached or used at all (not a bad query)."""
    if err is None:
        return False
    if isinstance(err, OSError | TimeoutError | sqlite3.OperationalError):
        return True
    # SQLAlchemy's asyncpg adapter wraps asyncpg's exception in its own (``.orig``).
    inner = getattr(err, "orig", None)
    if isinstance(inner, BaseException) and inner is not err:
        return _is_connection_error(inner)
    import asyncpg  # only the PostgreSQL store gets here with an asyncpg error

    return isinstance(
        err,
        asyncpg.exceptions.PostgresConnectionError  # SQLSTATE class 08, connection exceptions
        | asyncpg.exceptions.CannotConnectNowError  # the server is starting or stopping
        | asyncpg.exceptions.TooManyConnectionsError
        | asyncpg.exceptions.OperatorInterventionError  # admin/crash shutdown, cancelled statement
        | asyncpg.exceptions.InvalidAuthorizationSpecificationError  # no such role, wrong password
        | asyncpg.exceptions.InvalidCatalogNameError  # no such database
        | asyncpg.exceptions.InterfaceError,
    )


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


#: Rows per SQLite INSERT: 18 values each stays under SQLite's 32,766 bound variables.
_SQLITE_ROWS = 500


@functools.cache
def _insert_usage_sql(paramstyle: str, rows: int) -> str:
    """``INSERT INTO usage`` of ``rows`` rows for the driver's placeholder style (sqlite3: ``?``,
    asyncpg: ``$n``, one row: the driver's executemany repeats it)."""
    fields = UsageRecord.__struct_fields__
    n = len(fields)
    if paramstyle == "qmark":
        one = "(" + ", ".join("?" for _ in fields) + ")"
        values = ", ".join(one for _ in range(rows))
    elif paramstyle == "numeric_dollar":
        values = ", ".join("(" + ", ".join(f"${r * n + i}" for i in range(1, n + 1)) + ")" for r in range(rows))
    else:
        one = "(" + ", ".join("%s" for _ in fields) + ")"
        values = ", ".join(one for _ in range(rows))
    return f"INSERT INTO usage ({', '.join(fields)}) VALUES {values}"  # noqa: S608 - fixed names, no client text


class DailyUsageRow(UsageRow, kw_only=True):
    """One (UTC day, model or provider) cell of :func:`daily_usage`, for the dashboard's stacked charts: a
    :class:`UsageRow` and its day."""

    day: str


async def daily_usage(store: SqlStore, by: GroupBy, since: float, key_id: str | None = None) -> list[DailyUsageRow]:
    """Usage per UTC day and ``by`` (``model`` or ``provider``) since ``since``, oldest day first: one
    query, grouped in the database (the ledger may hold millions of rows)."""
    day = store._group_expr("day").label("day")
    group = store._group_expr(by).label("grp")
    query = sa.select(
        day,
        group,
        sa.func.count().label("requests"),
        *(sa.func.sum(usage.c[name]).label(name) for name in _TOKEN_COLUMNS),
        sa.func.sum(usage.c.cost).label("cost"),
    ).where(usage.c.ts >= since)
    if key_id is not None:
        query = query.where(usage.c.key_id == key_id)
    query = query.group_by(day, group).order_by(day, group)
    async with store._read() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        DailyUsageRow(
            day=str(r["day"]),
            group=str(r["grp"]),
            requests=int(r["requests"]),
            cost=float(r["cost"] or 0.0),
            **{name: int(r[name] or 0) for name in _TOKEN_COLUMNS},
        )
        for r in rows
    ]
