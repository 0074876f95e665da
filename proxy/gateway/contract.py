"""The team gateway's parts and the contracts between them.

::

    GatewaySteps (proxy.gateway.steps)      the pipeline's authenticate / admit / finish steps
      ├── KeyCache (proxy.gateway.keycache) sha256(key) → KeyRecord, in process; refreshed from the Store,
      │                                     invalidated through the Bus; serves cached keys through outages
      ├── Limiter                           rpm, tpm, parallel, budget reservation; in process, or Redis
      │                                     (proxy.gateway.limits / limits_redis)
      ├── Ledger (proxy.gateway.ledger)     UsageRecords queued, written in batches off the request path
      └── Store (proxy.gateway.store)       keys and the usage ledger: SQLite (default) or PostgreSQL

Everything a request needs is in memory: the Store is read at start, on a cache miss (bounded,
negatively cached) and by the admin API; it is written by the admin API and the Ledger's batches.

Times are epoch seconds (float, UTC). Money is US dollars (float). A key's plaintext exists only in the
response that creates or rotates it; everywhere else it is :func:`hash_key`'s digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import msgspec

from providers.errors import SwitchboardError

__all__ = [
    "KEY_PREFIX",
    "Admission",
    "Bus",
    "GatewayError",
    "GroupBy",
    "KeyRecord",
    "Limiter",
    "Period",
    "Store",
    "UsageRecord",
    "UsageRow",
    "hash_key",
    "new_key",
    "new_key_id",
]

Period = Literal["day", "week", "month"]
GroupBy = Literal["key", "model", "provider", "day"]

KEY_PREFIX = "sk-sb-"


def new_key() -> str:
    """A new virtual key: ``sk-sb-`` and 43 URL-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def hash_key(key: str) -> str:
    """What the Store and the caches keep of a key. A plain SHA-256 suffices: keys carry 256 random
    bits, so there is nothing to brute-force that a slow hash would protect."""
    return hashlib.sha256(key.encode()).hexdigest()


class GatewayError(SwitchboardError):
    """A refusal by the gateway: 401 (key), 403 (model), 429 (limits), in the OpenAI envelope."""

    type = "invalid_request_error"


class KeyRecord(msgspec.Struct, kw_only=True):
    """A virtual key as stored (never its plaintext)."""

    id: str
    name: str
    key_hash: str
    #: The first characters of the key (``sk-sb-AbCd``), so people can tell their keys apart in listings.
    key_prefix: str
    #: Allowed models: ``provider/*``, ``provider/model``, alias names; empty: every model.
    models: list[str] = []
    budget: float | None = None
    #: Budget period; None: the budget is for the key's lifetime.
    period: Period | None = None
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None
    expires_at: float | None = None
    disabled: bool = False
    metadata: dict[str, Any] = {}
    created_at: float = 0.0
    last_used_at: float | None = None


class UsageRecord(msgspec.Struct, kw_only=True):
    """One answered (or failed, or cut) request, as the ledger stores it."""

    ts: float
    request_id: str
    key_id: str | None
    surface: str
    provider: str
    model: str
    status: int
    stream: bool
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    #: The tokens were counted by Switchboard (a cut stream without the upstream's usage), not reported.
    estimated: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    #: The route the client asked for (None: a model name).
    route: str | None = None
    #: Upstream requests made (retries and fallbacks included).
    attempts: int = 0
    #: Each attempt as JSON: ``[{"target", "status", "error", "ms"}, ...]`` (None: no attempt).
    attempt_log: str | None = None


class UsageRow(msgspec.Struct, kw_only=True):
    """One group of :meth:`Store.usage`."""

    group: str
    requests: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: float


class Store(Protocol):
    """Keys and the usage ledger in a SQL database (SQLAlchemy Core, async).

    Every method may raise :class:`StoreUnavailable` (a :class:`SwitchboardError`, 503) when the
    database cannot be reached; callers on the request path never await it.
    """

    async def start(self) -> None:
        """Connect and apply the schema migrations (Alembic) up to the newest."""
        ...

    async def close(self) -> None: ...

    async def create_key(self, record: KeyRecord) -> None: ...

    async def get_key(self, key_id: str) -> KeyRecord | None: ...

    async def find_key(self, key_hash: str) -> KeyRecord | None: ...

    async def list_keys(self) -> list[KeyRecord]: ...

    async def update_key(self, key_id: str, changes: dict[str, Any]) -> KeyRecord | None:
        """Set the given KeyRecord fields (``key_hash``/``key_prefix`` too: rotation); None if no such key."""
        ...

    async def delete_key(self, key_id: str) -> bool: ...

    async def add_usage(self, records: Sequence[UsageRecord]) -> None:
        """Insert the records and move each key's ``last_used_at`` forward, in one transaction."""
        ...

    async def spend(self, key_id: str, since: float) -> float:
        """The key's cost recorded since ``since``."""
        ...

    async def spends(self, since_by_key: dict[str, float]) -> dict[str, float]:
        """:meth:`spend` of many keys in one query (for start-up and listings)."""
        ...

    async def usage(self, group_by: GroupBy, since: float, key_id: str | None = None) -> list[UsageRow]: ...

    async def requests(self, key_id: str | None, limit: int) -> list[UsageRecord]:
        """The latest records, newest first."""
        ...


class Admission(msgspec.Struct, kw_only=True):
    """What :meth:`Limiter.admit` reserved for one request; handed back to :meth:`Limiter.settle`."""

    key_id: str
    #: Tokens reserved against the TPM window (the estimate; reconciled to the actual count).
    tokens: int = 0
    #: Dollars reserved against the budget (worst case; reconciled to the actual cost).
    cost: float = 0.0
    #: Start of the budget period the reservation belongs to (0 for a lifetime budget).
    period_start: float = 0.0
    #: The limiter's opaque handle: set when anything is held (parallel slot, tpm or budget reservation);
    #: None: settle is free.
    lease: str | None = None


class Limiter(Protocol):
    """Rate limits, parallel slots and budgets of virtual keys, atomically (in process, or in Redis so
    that every replica sees the same counts).

    :meth:`admit` raises :class:`GatewayError` 429 with the code (``rate_limit_exceeded``,
    ``budget_exceeded``, ``parallel_limit``), a message naming the limit and when it resets, and the
    ``retry-after`` and ``x-ratelimit-*`` headers. :meth:`settle` is called exactly once per admitted
    request, whatever happened to it.
    """

    #: What is wrong right now (Redis unreachable: limits kept per replica), for ``/healthz``; None: fine.
    problem: str | None

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def seed_spend(self, key_id: str, period_start: float, spend: float) -> None:
        """The ledger's spend for the key's current period, known before its first request (in Redis:
        set only if the counter does not exist yet)."""
        ...

    async def admit(self, key: KeyRecord, tokens: int, cost: float, now: float) -> Admission:
        """Count one request against ``rpm``, take a slot of ``parallel``, reserve ``tokens`` against
        ``tpm`` and ``cost`` against ``budget`` (its period holding ``now``)."""
        ...

    async def settle(self, admission: Admission, tokens: int, cost: float) -> None:
        """Release the slot; replace the reservations by the actual ``tokens`` and ``cost``."""
        ...

    def settle_nowait(self, admission: Admission, tokens: int, cost: float) -> asyncio.Task[None] | None:
        """:meth:`settle` from synchronous code: done at once (None) or in the returned task (Redis)."""
        ...

    async def spent(self, key: KeyRecord, now: float) -> float:
        """The key's spend in its current period, as the limiter counts it (reservations excluded)."""
        ...

    async def window(self, key: KeyRecord, now: float) -> tuple[int, int]:
        """Requests admitted in the key's last 60 s, and the tokens used in them plus those reserved
        (read at scrape time by ``/metrics``, never per request)."""
        ...


class Bus(Protocol):
    """Tells every replica that a key changed (updated, rotated, disabled, deleted)."""

    #: What is wrong right now (Redis unreachable), for ``/healthz``; None: fine.
    problem: str | None

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, key_id: str) -> None: ...

    def subscribe(self, on_change: Any) -> None:
        """``on_change(key_id)`` is called (in the event loop) for every change, this replica's included."""
        ...
