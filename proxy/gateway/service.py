"""Virtual-key operations shared by the admin API (:mod:`proxy.gateway.admin`) and the local CLI
(:mod:`proxy.cli_keys`): create, list, update, rotate, delete, usage.

Input is validated here, once, so both front ends refuse the same things with the same messages
(:class:`InvalidRequest`, 400, naming the field). Every change is published on the :class:`Bus`, so
every replica drops its cached copy of the key at once. A key's plaintext leaves this module only as
the return value of :meth:`KeyService.create` and :meth:`KeyService.rotate`.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from typing import Annotated, Any, TypeVar, get_args

import msgspec

from providers.errors import InvalidRequest, NotFound

from .contract import (
    Bus,
    GroupBy,
    KeyRecord,
    Limiter,
    Period,
    Store,
    UsageRecord,
    UsageRow,
    hash_key,
    new_key,
    new_key_id,
)
from .periods import iso, period_bounds
from .timeparse import parse_expires, parse_since

__all__ = ["KeyPatch", "KeyService", "KeySpec", "key_not_found", "stack_by"]

_Budget = Annotated[float, msgspec.Meta(ge=0)]
_Count = Annotated[int, msgspec.Meta(ge=1)]
_Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
_Name = Annotated[str, msgspec.Meta(max_length=200)]

#: How many characters of a key its listing shows: ``sk-sb-`` and four random ones.
PREFIX_LEN = 10
MAX_REQUESTS = 1000


class KeySpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new key, as the admin API's ``POST /keys`` body and ``switchboard keys create`` give it."""

    name: _Name = ""
    #: Allowed model patterns (``provider/*``, ``provider/model``, alias); empty: every model.
    models: list[_Pattern] = []
    budget: _Budget | None = None
    period: Period | None = None
    rpm: _Count | None = None
    tpm: _Count | None = None
    parallel: _Count | None = None
    #: A duration from now (``2h``), a date, an ISO datetime, or epoch seconds.
    expires: str | float | None = None
    metadata: dict[str, Any] = {}


class KeyPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The fields ``PATCH /keys/{id}`` may set; absent ones stay, ``null`` clears a limit."""

    name: _Name | msgspec.UnsetType = msgspec.UNSET
    models: list[_Pattern] | msgspec.UnsetType = msgspec.UNSET
    budget: _Budget | msgspec.UnsetType | None = msgspec.UNSET
    period: Period | msgspec.UnsetType | None = msgspec.UNSET
    rpm: _Count | msgspec.UnsetType | None = msgspec.UNSET
    tpm: _Count | msgspec.UnsetType | None = msgspec.UNSET
    parallel: _Count | msgspec.UnsetType | None = msgspec.UNSET
    expires: str | float | msgspec.UnsetType | None = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


_T = TypeVar("_T")
_LIMIT = "a whole number >= 1, or null for no limit"
_HINTS = {
    "name": "a string of at most 200 characters",
    "models": 'a list of patterns such as ["openai/*", "anthropic/claude-sonnet-4-5", "fast"] (empty: every model)',
    "budget": "US dollars >= 0, or null for no budget",
    "period": "day, week or month (null: the budget is for the key's lifetime)",
    "rpm": _LIMIT,
    "tpm": _LIMIT,
    "parallel": _LIMIT,
    "expires": "a duration (30m, 2h, 7d), a date (YYYY-MM-DD), an ISO datetime or epoch seconds",
    "metadata": "a JSON object",
    "disabled": "true or false",
}
_SPEC_FIELDS = frozenset(KeySpec.__struct_fields__)
_PATCH_FIELDS = frozenset(KeyPatch.__struct_fields__)
_GROUPS: tuple[str, ...] = get_args(GroupBy)


def key_not_found(key_id: str) -> NotFound:
    return NotFound(
        f"no key with id {key_id!r}; 'switchboard keys list' or GET /admin/v1/keys lists them",
        code="key_not_found",
        param="key_id",
    )


def stack_by(value: str) -> GroupBy:
    """What the dashboard's daily charts stack their bars by: ``model`` or ``provider``."""
    if value == "model":
        return "model"
    if value == "provider":
        return "provider"
    raise InvalidRequest(f"by must be model or provider; got {value[:40]!r}", param="by")


def decode_spec(data: Any) -> KeySpec:
    """A :class:`KeySpec` from decoded JSON, every unknown field named in the refusal."""
    return _convert(data, KeySpec, _SPEC_FIELDS)


def decode_patch(data: Any) -> KeyPatch:
    return _convert(data, KeyPatch, _PATCH_FIELDS)


class KeyService:
    def __init__(self, store: Store, bus: Bus, limiter: Limiter | None = None) -> None:
        self.store = store
        self.bus = bus
        self.limiter = limiter

    async def create(self, spec: KeySpec, now: float | None = None) -> tuple[KeyRecord, str]:
        """The stored record and the plaintext key, which nothing else will ever show again."""
        now = time.time() if now is None else now
        _check_period(spec.budget, spec.period)
        plaintext = new_key()
        record = KeyRecord(
            id=new_key_id(),
            name=spec.name,
            key_hash=hash_key(plaintext),
            key_prefix=plaintext[:PREFIX_LEN],
            models=list(spec.models),
            budget=spec.budget,
            period=spec.period,
            rpm=spec.rpm,
            tpm=spec.tpm,
            parallel=spec.parallel,
            expires_at=None if spec.expires is None else parse_expires(spec.expires, now),
            metadata=dict(spec.metadata),
            created_at=now,
        )
        await self.store.create_key(record)
        # A new id is unknown to every cache, but a replica may hold a negative entry for its hash.
        await self.bus.publish(record.id)
        return record, plaintext

    async def list(self) -> list[KeyRecord]:
        return await self.store.list_keys()

    async def get(self, key_id: str) -> KeyRecord:
        record = await self.store.get_key(key_id)
        if record is None:
            raise key_not_found(key_id)
        return record

    async def update(self, key_id: str, changes: KeyPatch | dict[str, Any], now: float | None = None) -> KeyRecord:
        now = time.time() if now is None else now
        patch = changes if isinstance(changes, KeyPatch) else decode_patch(changes)
        fields = {f: v for f in _PATCH_FIELDS if (v := getattr(patch, f)) is not msgspec.UNSET}
        if not fields:
            raise InvalidRequest(
                f"nothing to change; give at least one of {', '.join(sorted(_PATCH_FIELDS))}", param="body"
            )
        if "expires" in fields:
            raw = fields.pop("expires")
            fields["expires_at"] = None if raw is None else parse_expires(raw, now)
        current = await self.get(key_id)
        if fields.get("budget", 0) is None and "period" not in fields:
            # Clearing the budget clears its period: a period without a budget means nothing.
            fields["period"] = None
        _check_period(fields.get("budget", current.budget), fields.get("period", current.period))
        updated = await self.store.update_key(key_id, fields)
        if updated is None:
            raise key_not_found(key_id)
        await self.bus.publish(key_id)
        return updated

    async def rotate(self, key_id: str) -> str:
        """A new plaintext for the key; the old one is unknown to the store from now on."""
        plaintext = new_key()
        updated = await self.store.update_key(
            key_id, {"key_hash": hash_key(plaintext), "key_prefix": plaintext[:PREFIX_LEN]}
        )
        if updated is None:
            raise key_not_found(key_id)
        await self.bus.publish(key_id)
        return plaintext

    async def delete(self, key_id: str) -> None:
        if not await self.store.delete_key(key_id):
            raise key_not_found(key_id)
        await self.bus.publish(key_id)

    async def usage(
        self, group_by: str = "key", since: str | float = "30d", key_id: str | None = None, now: float | None = None
    ) -> builtins.list[UsageRow]:
        now = time.time() if now is None else now
        if group_by not in _GROUPS:
            raise InvalidRequest(
                f"group_by must be one of {', '.join(_GROUPS)}; got {group_by[:40]!r}", param="group_by"
            )
        start = parse_since(since, now)
        return await self.store.usage(group_by, start, key_id)  # type: ignore[arg-type]  # checked above

    async def requests(self, key_id: str | None = None, limit: int = 50) -> builtins.list[UsageRecord]:
        if not 1 <= limit <= MAX_REQUESTS:
            raise InvalidRequest(f"limit must be between 1 and {MAX_REQUESTS}; got {limit}", param="limit")
        return await self.store.requests(key_id, limit)

    async def spends(self, records: builtins.list[KeyRecord], now: float) -> dict[str, float]:
        """Each key's spend in its current budget period (lifetime when it has none).

        The ledger's figure, raised to the limiter's where that is higher: the limiter has the
        requests settled since the ledger's last batch, and the ledger has what a limiter never saw
        (kept in process, it starts empty on each restart until a key's first request seeds it).
        """
        starts = {r.id: _period_start(r, now) for r in records}
        spent = await self.store.spends(starts) if starts else {}
        out = {r.id: spent.get(r.id, 0.0) for r in records}
        if self.limiter is not None:
            # Only budgeted keys are counted by a limiter; in Redis each is a round trip, so together.
            budgeted = [r for r in records if r.budget is not None]
            counted = await asyncio.gather(*(self.limiter.spent(r, now) for r in budgeted))
            for r, amount in zip(budgeted, counted, strict=True):
                out[r.id] = max(out[r.id], amount)
        return out

    async def views(self, records: builtins.list[KeyRecord], now: float | None = None) -> builtins.list[dict[str, Any]]:
        now = time.time() if now is None else now
        spent = await self.spends(records, now)
        return [self.view(r, spent[r.id], now) for r in records]

    @staticmethod
    def view(record: KeyRecord, spend: float, now: float) -> dict[str, Any]:
        """What listings show of a key: everything but its hash (and never a plaintext)."""
        return {
            "id": record.id,
            "name": record.name,
            "key_prefix": record.key_prefix + "…",
            "models": list(record.models),
            "budget": record.budget,
            "period": record.period,
            "spend": round(spend, 6),
            "budget_resets_at": iso(period_bounds(record.period, now)[1]) if record.period else None,
            "rpm": record.rpm,
            "tpm": record.tpm,
            "parallel": record.parallel,
            "expires_at": _iso(record.expires_at),
            "expired": record.expires_at is not None and record.expires_at <= now,
            "disabled": record.disabled,
            "metadata": dict(record.metadata),
            "created_at": _iso(record.created_at),
            "last_used_at": _iso(record.last_used_at),
        }


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)


def _period_start(record: KeyRecord, now: float) -> float:
    return period_bounds(record.period, now)[0] if record.period else 0.0


def _check_period(budget: float | None, period: str | None) -> None:
    if period is not None and budget is None:
        raise InvalidRequest(
            "period applies to a budget; give budget too (or leave period out for no budget)", param="period"
        )


def _convert(data: Any, type_: type[_T], allowed: frozenset[str]) -> _T:
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", param="body")
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise InvalidRequest(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(repr(u[:40]) for u in unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}",
            param=unknown[0][:40],
        )
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        # msgspec says "Expected `int` >= 1 - at `$.rpm`": name the field people wrote.
        message, _, where = str(exc).rpartition(" - at `$.")
        field = where.rstrip("`").split("[", 1)[0].split(".", 1)[0] if message else ""
        if not message:
            message = str(exc)
        at = f" (at {where.rstrip('`')})" if "[" in where else ""
        hint = _HINTS.get(field, "")
        raise InvalidRequest(
            f"invalid {field or 'value'}: {message}{at}" + (f"; {field} is {hint}" if hint else ""),
            param=field or None,
        ) from exc
