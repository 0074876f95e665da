"""The Store's tables as SQLAlchemy Core objects, the conversions between rows and records, and the
database URL and SQLite connection set-up.

These objects are what the queries are written against; the database itself is created and changed only
by the Alembic revisions in ``migrations/versions``, which must describe the same schema (a test
compares the two after migrating).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection, RowMapping, make_url

from providers.errors import ConfigError
from proxy.gateway.contract import KeyRecord, UsageRecord

__all__ = [
    "KEY_FIELDS",
    "NO_KEY_GROUP",
    "create_private_file",
    "database_url",
    "key_from_row",
    "keys",
    "metadata",
    "redact_url",
    "row_from_record",
    "sqlite_on_begin",
    "sqlite_on_connect",
    "usage",
    "usage_from_row",
]

#: The group of :meth:`Store.usage` by key for requests made without a virtual key (master key, local use).
NO_KEY_GROUP = "(no key)"

metadata = sa.MetaData()

#: SQLite makes only ``INTEGER PRIMARY KEY`` an alias of the rowid (and so autoincrementing).
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

keys = sa.Table(
    "keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("key_prefix", sa.String(32), nullable=False),
    sa.Column("models", sa.JSON(), nullable=False),
    sa.Column("budget", sa.Double(), nullable=True),
    sa.Column("period", sa.String(8), nullable=True),
    sa.Column("rpm", sa.Integer(), nullable=True),
    sa.Column("tpm", sa.BigInteger(), nullable=True),
    sa.Column("parallel", sa.Integer(), nullable=True),
    sa.Column("expires_at", sa.Double(), nullable=True),
    sa.Column("disabled", sa.Boolean(), nullable=False),
    sa.Column("metadata", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("last_used_at", sa.Double(), nullable=True),
    sa.Index("ix_keys_key_hash", "key_hash", unique=True),
)

usage = sa.Table(
    "usage",
    metadata,
    sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Double(), nullable=False),
    sa.Column("request_id", sa.Text(), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=True),
    sa.Column("surface", sa.Text(), nullable=False),
    sa.Column("provider", sa.Text(), nullable=False),
    sa.Column("model", sa.Text(), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("stream", sa.Boolean(), nullable=False),
    sa.Column("input_tokens", sa.Integer(), nullable=False),
    sa.Column("output_tokens", sa.Integer(), nullable=False),
    sa.Column("cached_tokens", sa.Integer(), nullable=False),
    sa.Column("cache_write_tokens", sa.Integer(), nullable=False),
    sa.Column("reasoning_tokens", sa.Integer(), nullable=False),
    sa.Column("cost", sa.Double(), nullable=False),
    sa.Column("estimated", sa.Boolean(), nullable=False),
    sa.Column("latency_ms", sa.Double(), nullable=False),
    sa.Column("ttft_ms", sa.Double(), nullable=True),
    sa.Column("route", sa.Text(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("attempt_log", sa.Text(), nullable=True),
    sa.Index("ix_usage_key_id_ts", "key_id", "ts"),
    sa.Index("ix_usage_ts", "ts"),
)

_KEY_FIELD_ORDER = KeyRecord.__struct_fields__
KEY_FIELDS = frozenset(_KEY_FIELD_ORDER)
_USAGE_FIELDS = UsageRecord.__struct_fields__


def row_from_record(record: KeyRecord | UsageRecord) -> dict[str, Any]:
    """The column values of a record (the tables' columns are named after the fields)."""
    return msgspec.structs.asdict(record)


def key_from_row(row: RowMapping) -> KeyRecord:
    return KeyRecord(**{name: row[name] for name in _KEY_FIELD_ORDER})


def usage_from_row(row: RowMapping) -> UsageRecord:
    """A usage record from a result row (``usage.id`` is the table's own and is left out)."""
    return UsageRecord(**{name: row[name] for name in _USAGE_FIELDS})


_SQLITE = "sqlite+aiosqlite"
_POSTGRES = "postgresql+asyncpg"
#: What people write → the async driver Switchboard uses.
_SCHEMES = {
    "sqlite": _SQLITE,
    _SQLITE: _SQLITE,
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
    _POSTGRES: _POSTGRES,
}


def database_url(raw: str | None, home: Path) -> str:
    """The SQLAlchemy URL (async driver) for the configured ``database_url``; None: SQLite in ``home``."""
    if raw is None or not raw.strip():
        return f"{_SQLITE}:///{(home / 'switchboard.db').absolute()}"
    raw = raw.strip()
    scheme, sep, rest = raw.partition("://")
    driver = _SCHEMES.get(scheme.lower()) if sep else None
    if driver is None:
        raise ConfigError(
            f"database_url {redact_url(raw)!r} is not supported: use sqlite:///path/to/file.db or "
            "postgresql://user:password@host:5432/dbname (also accepted: sqlite+aiosqlite://, postgres://, "
            "postgresql+asyncpg://); set it in the server config or SWITCHBOARD_DATABASE_URL"
        )
    try:
        url = make_url(f"{driver}://{rest}")
    except exc.ArgumentError as e:
        raise ConfigError(f"database_url {redact_url(raw)!r} cannot be parsed: {e}") from e
    if driver == _SQLITE:
        if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
            raise ConfigError(
                f"database_url {redact_url(raw)!r} names no database file (an in-memory SQLite database "
                "would lose the keys at exit): use sqlite:///path/to/switchboard.db"
            )
        url = url.set(database=str(Path(url.database).expanduser()))
    elif "sslmode" in url.query:
        # libpq's sslmode is asyncpg's ``ssl`` argument (same values: disable, prefer, require, verify-full…).
        url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": url.query["sslmode"]})
    return url.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://…" if sep else "<unparseable database URL>"


def create_private_file(path: Path) -> None:
    """A new SQLite database file readable by its owner only (it holds key hashes and usage); SQLite
    gives its -wal and -shm files the same mode."""
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not the sqlite3 module, emits BEGIN (see _sqlite_on_begin), so DDL is transactional too.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 5000")
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _use_wal(cursor: Any) -> None:
    """WAL is a property of the file, set once. Switching to it needs the file to itself and does not wait
    on busy_timeout: processes opening a new file together (replicas, the CLI beside the server) retry."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def sqlite_on_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get("switchboard_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
