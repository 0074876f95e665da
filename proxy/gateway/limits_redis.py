"""The limits of virtual keys in Redis, shared by every replica (the semantics: :mod:`proxy.gateway.limits`).

Each admit and each settle is ONE round trip: a Lua script (``limits.lua``, run by EVALSHA) that checks
and reserves atomically, so replicas racing for the last slot of a budget cannot both get it. All
Redis keys of one virtual key share the hash tag ``{key_id}``, so the scripts also run on Redis Cluster.

Time is the ``now`` the caller passes (and ``clock()`` at settle), not Redis's ``TIME``: the budget
period a request belongs to must be the one the ledger files it under (the ledger stamps records
with the replica's clock), tests can drive time explicitly, and NTP keeps replicas' clocks within
milliseconds of each other, which is nothing against a 60 s window. Redis's own expiries (PEXPIRE)
are relative, so they work whatever the callers' clock says.

Parallel slots and reservations are leases that expire (``lease_ttl``): the reservations of a replica
that died mid-request come back when its leases expire instead of blocking the key forever.

When Redis cannot be reached, an internal :class:`LocalLimiter` takes over so that valid keys keep
working (limits are then per replica, starting from the last spend this replica saw in Redis); one
WARNING is logged when the outage starts, Redis is retried at most every ``retry_interval`` seconds,
and one INFO is logged when it is back. Settles of Redis admissions made during the outage are
replayed at recovery (their leases released, their cost added), as is the spend of the fallback's
own admissions, so that no spend is lost. :attr:`problem` says what is wrong, for ``/healthz``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy.gateway.contract import Admission, KeyRecord
from proxy.gateway.limits import CODE_PERIOD, WINDOW, LocalLimiter, lease_flags, limit_error
from proxy.gateway.periods import period_bounds

__all__ = ["RedisLimiter"]

log = logging.getLogger(__name__)

_SCRIPTS = Path(__file__).with_name("limits.lua").read_text()
_ADMIT, _, _SETTLE = _SCRIPTS.partition("-- [settle]\n")
#: How long a budget hash outlives its period: settles of requests admitted just before the end.
_BUDGET_GRACE = 86_400.0
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisLimiter:
    """Limits in Redis; ``client`` is owned by the caller (the app's lifespan closes it)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "sb:",
        lease_ttl: float = 900.0,
        *,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._lease_ttl = lease_ttl
        self._keep_ms = int((lease_ttl + 60.0) * 1000)
        self._retry_interval = retry_interval
        self._clock = clock
        self._admit_script = client.register_script(_ADMIT)
        self._settle_script = client.register_script(_SETTLE)
        self._fallback = LocalLimiter(clock=clock)
        # Lease ids: a per-instance random part and a counter (cheaper than a random id per request).
        self._replica = os.urandom(6).hex()
        self._serial = 0
        #: Seeds not yet sent: key id → (period start, spend); sent with the key's next admit.
        self._seeds: dict[str, tuple[float, float]] = {}
        #: The last spend Redis reported per key: key id → (period start, spend); starts the fallback.
        self._known: dict[str, tuple[float, float]] = {}
        #: Settles of Redis admissions made during an outage, (admission, cost): at most the requests
        #: in flight when it began. Replayed at recovery.
        self._owed_leases: list[tuple[Admission, float]] = []
        #: Spend of the fallback's admissions, per (key id, period start, period code); added at recovery.
        self._owed_spend: dict[tuple[str, float, str], float] = {}
        self._paying = False
        #: Monotonic time before which Redis is not tried again; None while Redis is up.
        self._down_until: float | None = None
        self.problem: str | None = None

    async def start(self) -> None:
        try:
            await self._client.script_load(_ADMIT)
            await self._client.script_load(_SETTLE)
        except _UNREACHABLE as exc:
            self._outage(exc)

    async def close(self) -> None:
        return None

    def seed_spend(self, key_id: str, period_start: float, spend: float) -> None:
        pending = self._seeds.get(key_id)
        if pending is None or pending[0] != period_start:  # like SET NX: the first figure of a period stays
            self._seeds[key_id] = (period_start, spend)
        self._fallback.seed_spend(key_id, period_start, spend)

    async def admit(self, key: KeyRecord, tokens: int, cost: float, now: float) -> Admission:
        rpm, tpm, parallel, budget = key.rpm, key.tpm, key.parallel, key.budget
        if rpm is None and tpm is None and parallel is None and budget is None:
            return Admission(key_id=key.id)
        if tpm is not None and tokens > tpm:
            raise limit_error("tpm_request", key, now, requested=tokens)
        if not await self._redis_usable():
            return self._fallback_admit(key, tokens, cost, now)
        kid = key.id
        period_start, period_end = period_bounds(key.period, now) if budget is not None else (0.0, math.inf)
        seed = self._seeds.get(kid)
        self._serial += 1
        uid = f"{self._replica}{self._serial:x}"
        base = f"{self._prefix}{{{kid}}}:"
        try:
            result = await self._admit_script(
                keys=(base + "s", base + "r", base + "t", base + "l", f"{base}b:{period_start:.0f}"),
                args=(
                    now,
                    uid,
                    -1 if rpm is None else rpm,
                    -1 if tpm is None else tpm,
                    tokens if tpm is not None else 0,
                    -1 if parallel is None else parallel,
                    -1 if budget is None else budget,
                    cost if budget is not None else 0.0,
                    f"{period_start:.0f}",
                    _ttl_ms(period_end, now),
                    repr(seed[1]) if seed is not None and seed[0] == period_start else "",
                    now + self._lease_ttl,
                    self._keep_ms,
                ),
            )
        except _UNREACHABLE as exc:
            self._outage(exc)
            return self._fallback_admit(key, tokens, cost, now)
        self._recovered()
        if seed is not None and budget is not None:  # the script has applied it (or found a figure)
            self._seeds.pop(kid, None)  # a concurrent admit may have taken it already
        if result[0] != 1:
            kind = _text(result[1])
            raise limit_error(
                kind,  # type: ignore[arg-type]  # the script returns one of the kinds
                key,
                now,
                used=float(result[2]),
                reserved=float(result[3]),
                requested=cost if kind == "budget" else tokens,
                reset_at=period_end if kind == "budget" else float(result[4]),
            )
        if budget is not None:
            self._known[kid] = (period_start, float(result[1]))
        if tpm is None and parallel is None and budget is None:
            return Admission(key_id=kid)
        return Admission(
            key_id=kid,
            tokens=tokens if tpm is not None else 0,
            cost=cost if budget is not None else 0.0,
            period_start=period_start,
            lease=f"r:{lease_flags(key)}:{uid}",
        )

    def settle_nowait(self, admission: Admission, tokens: int, cost: float) -> asyncio.Task[None] | None:
        if admission.lease is None:
            return None  # nothing held: nothing to tell Redis
        return asyncio.get_running_loop().create_task(self.settle(admission, tokens, cost))

    async def settle(self, admission: Admission, tokens: int, cost: float) -> None:
        lease = admission.lease
        if lease is None:
            return
        if lease[0] == "l":
            # Admitted by the fallback during an outage: settled there, its spend owed to Redis.
            self._fallback.settle_now(admission, tokens, cost)
            if lease[4] != "-" and cost:
                debt = (admission.key_id, admission.period_start, lease[4])
                self._owed_spend[debt] = self._owed_spend.get(debt, 0.0) + cost
            if self._down_until is None:
                try:
                    await self._pay_debts()
                except _UNREACHABLE as exc:
                    self._outage(exc)
            return
        if await self._redis_usable():
            try:
                await self._run_settle(admission, tokens, cost)
            except _UNREACHABLE as exc:
                self._outage(exc)
            else:
                self._recovered()
                return
        self._owed_leases.append((admission, cost))
        if lease[4] != "-" and cost:
            # The fallback counts the spend too, so that its budget checks during the outage include it.
            self._fallback.settle_now(
                Admission(key_id=admission.key_id, period_start=admission.period_start, lease="l:--" + lease[4]),
                0,
                cost,
            )

    async def window(self, key: KeyRecord, now: float) -> tuple[int, int]:
        if not await self._redis_usable():
            return await self._fallback.window(key, now)
        base = f"{self._prefix}{{{key.id}}}:"
        cutoff = f"({now - WINDOW!r}"
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zcount(base + "r", cutoff, "+inf")
                pipe.zrangebyscore(base + "t", cutoff, "+inf")
                pipe.hget(base + "s", "tr")
                requests, settled, reserved = await pipe.execute()
        except _UNREACHABLE as exc:
            self._outage(exc)
            return await self._fallback.window(key, now)
        self._recovered()
        used = sum(int(_text(member).rpartition(":")[2]) for member in settled)
        return int(requests), used + int(reserved or 0)

    async def spent(self, key: KeyRecord, now: float) -> float:
        if key.budget is None:
            return 0.0
        if not await self._redis_usable():
            return await self._fallback.spent(key, now)
        period_start = period_bounds(key.period, now)[0]
        try:
            value = await self._client.hget(f"{self._prefix}{{{key.id}}}:b:{period_start:.0f}", "s")
        except _UNREACHABLE as exc:
            self._outage(exc)
            return await self._fallback.spent(key, now)
        self._recovered()
        if value is not None:
            return float(value)
        seed = self._seeds.get(key.id)
        return seed[1] if seed is not None and seed[0] == period_start else 0.0

    async def _run_settle(self, admission: Admission, tokens: int, cost: float) -> None:
        lease = admission.lease or "r:---:"
        code = lease[4]
        end = period_bounds(CODE_PERIOD[code], admission.period_start)[1] if code != "-" else math.inf
        now = self._clock()
        base = f"{self._prefix}{{{admission.key_id}}}:"
        await self._settle_script(
            keys=(base + "s", base + "t", base + "l", f"{base}b:{admission.period_start:.0f}"),
            args=(
                lease[6:],
                admission.tokens,
                admission.cost,
                int(tokens),
                cost,
                now,
                self._keep_ms,
                _ttl_ms(end, now),
                1 if lease[3] == "T" else 0,
                0 if code == "-" else 1,
            ),
        )

    async def _redis_usable(self) -> bool:
        """False during an outage until the next retry; the caller that retries first pays the debts."""
        if self._down_until is None:
            return True
        if time.monotonic() < self._down_until:
            return False
        # One caller probes; the others keep using the fallback until it succeeds.
        self._down_until = time.monotonic() + self._retry_interval
        try:
            await self._pay_debts()
        except _UNREACHABLE:
            return False
        return True

    async def _pay_debts(self) -> None:
        """Replay what the outage kept from Redis: settles of its admissions (releasing their leases at
        once rather than at their expiry), and the spend of the fallback's admissions. One payer at a
        time, and each debt leaves the books before its await, so that none is paid twice."""
        if self._paying:
            return
        self._paying = True
        try:
            while self._owed_leases:
                admission, cost = self._owed_leases.pop()
                try:
                    await self._run_settle(admission, 0, cost)
                except BaseException:
                    self._owed_leases.append((admission, cost))
                    raise
            while self._owed_spend:
                debt, cost = self._owed_spend.popitem()
                key_id, period_start, code = debt
                try:
                    await self._run_settle(
                        Admission(key_id=key_id, period_start=period_start, lease=f"l:--{code}"), 0, cost
                    )
                except BaseException:
                    self._owed_spend[debt] = self._owed_spend.get(debt, 0.0) + cost
                    raise
        finally:
            self._paying = False

    def _fallback_admit(self, key: KeyRecord, tokens: int, cost: float, now: float) -> Admission:
        known = self._known.pop(key.id, None)
        if known is not None:
            self._fallback.raise_spend(key.id, known[0], known[1])
        return self._fallback.admit_now(key, tokens, cost, now)

    def _outage(self, exc: BaseException) -> None:
        if self._down_until is None:
            self.problem = (
                f"Redis unreachable ({type(exc).__name__}: {exc}); limits are counted per replica until it is back"
            )
            log.warning("Redis unreachable (%s: %s): limits are now counted per replica", type(exc).__name__, exc)
        self._down_until = time.monotonic() + self._retry_interval

    def _recovered(self) -> None:
        if self._down_until is not None:
            self._down_until = None
            self.problem = None
            log.info("Redis reachable again: limits are shared by the replicas again")


def _ttl_ms(period_end: float, now: float) -> int:
    """Expiry of a budget hash: a grace day after its period; 0 (none) for a lifetime budget."""
    if not math.isfinite(period_end):
        return 0
    return max(1000, int((period_end - now + _BUDGET_GRACE) * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
