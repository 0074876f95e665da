"""Limits of virtual keys, in process (:class:`LocalLimiter`), and the one builder of their refusals.

The semantics, shared by :class:`LocalLimiter` and :class:`proxy.gateway.limits_redis.RedisLimiter`:

- **rpm**: at most ``rpm`` admitted requests in any sliding 60 s window ``(now - 60, now]``; every
  admission's time is kept, so the window is exact (no fixed minute buckets).
- **tpm**: the tokens of the sliding 60 s window plus the tokens reserved by requests in flight. Admit
  reserves ``tokens`` (the caller's estimate: input estimate + max_tokens) and refuses when
  ``used + reserved + tokens > tpm``; a request whose estimate alone exceeds ``tpm`` is refused as too
  large (no retry-after: waiting cannot help). Settle drops the reservation and counts the actual
  tokens at settle time, when they were spent (a long stream's tokens thus stay in the window for the
  minute after it ended, not the minute after it started).
- **parallel**: at most ``parallel`` admitted-and-not-settled requests.
- **budget**: ``spend(period) + reserved(period) + cost > budget`` refuses. Settle drops the
  reservation and adds the actual cost (which may exceed the reservation: spend is never lost) to the
  period the admission was made in (:attr:`Admission.period_start`), even when settled after that
  period ended. :meth:`seed_spend` gives the ledger's figure for a period before its first request and
  is ignored once the limiter counts that period (so a late seed never overwrites live counts).
  :meth:`spent` is the current period's spend of keys that have a budget (0 for the others: the
  limiter does not count what it does not limit; the ledger has it).
- Checks run in a fixed order, the longest-lasting refusal first: request larger than tpm, budget,
  rpm, tpm, parallel; when any refuses nothing is counted or reserved (all or nothing).
- Refusals are :class:`GatewayError` 429 built by :func:`limit_error`: code ``rate_limit_exceeded``
  (rpm, tpm), ``budget_exceeded`` or ``parallel_limit``; ``retry-after`` (whole seconds, at least 1;
  none for a lifetime budget or a request larger than tpm) and OpenAI's ``x-ratelimit-*`` headers.
- A key with no limits costs one attribute check per admit and per settle.

:attr:`Admission.lease` is the limiter's opaque handle: set whenever something is held for the
request (a parallel slot, a tpm or budget reservation), None otherwise (settle is then free). It
records what the key limited at admission (``x:PTm``: parallel, tpm, budget period ``d``/``w``/``m``/
``l``ifetime, ``-`` for none) so settle needs no KeyRecord and stays right when the key changes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from proxy.gateway.contract import Admission, GatewayError, KeyRecord, Period
from proxy.gateway.periods import iso, period_bounds

__all__ = ["WINDOW", "LimitKind", "LocalLimiter", "format_reset", "lease_flags", "limit_error"]

#: The rpm/tpm window, seconds.
WINDOW = 60.0
#: Money tolerance: sums of float costs must not refuse the request that fills a budget exactly.
EPSILON = 1e-9

LimitKind = Literal["rpm", "tpm", "tpm_request", "parallel", "budget"]

PERIOD_CODE: dict[Period | None, str] = {"day": "d", "week": "w", "month": "m", None: "l"}
CODE_PERIOD: dict[str, Period | None] = {code: period for period, code in PERIOD_CODE.items()}


def lease_flags(key: KeyRecord) -> str:
    """What a lease holds for ``key``: ``P``/``-`` parallel, ``T``/``-`` tpm, budget period code/``-``."""
    return (
        ("P" if key.parallel is not None else "-")
        + ("T" if key.tpm is not None else "-")
        + (PERIOD_CODE[key.period] if key.budget is not None else "-")
    )


def limit_error(
    kind: LimitKind,
    key: KeyRecord,
    now: float,
    *,
    used: float = 0.0,
    reserved: float = 0.0,
    requested: float = 0.0,
    reset_at: float | None = None,
) -> GatewayError:
    """The 429 refusing ``key``'s request; both limiters build every refusal here.

    ``used``: requests (rpm), tokens used and reserved (tpm), requests in flight (parallel), spend
    (budget); ``reserved``: budget reserved by requests in flight; ``requested``: the request's tokens
    or cost; ``reset_at``: when the limit lets this request through (period end for a budget).
    """
    who = f"key {key.name!r} ({key.id})" if key.name else f"key {key.id}"
    wait = max(1, math.ceil(reset_at - now)) if reset_at is not None and math.isfinite(reset_at) else None
    headers: dict[str, str] = {}
    if kind == "rpm":
        limit = key.rpm or 0
        code = "rate_limit_exceeded"
        reset = format_reset((reset_at or now) - now)
        message = (
            f"Rate limit reached for {who}: {limit} requests per minute; the next request is allowed in "
            f"{reset} (at {iso(reset_at or now)}). Retry then, or ask an admin to raise the key's rpm."
        )
        headers["x-ratelimit-limit-requests"] = str(limit)
        headers["x-ratelimit-remaining-requests"] = str(max(0, limit - int(used)))
        headers["x-ratelimit-reset-requests"] = reset
    elif kind in ("tpm", "tpm_request"):
        limit = key.tpm or 0
        code = "rate_limit_exceeded"
        headers["x-ratelimit-limit-tokens"] = str(limit)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, limit - int(used)))
        if kind == "tpm_request":
            wait = None
            message = (
                f"Request too large for {who}: it may use up to {int(requested)} tokens (input estimate + "
                f"max_tokens) but the key allows {limit} tokens per minute. Lower max_tokens or shorten "
                "the input, or ask an admin to raise the key's tpm."
            )
        else:
            reset = format_reset((reset_at or now) - now)
            message = (
                f"Rate limit reached for {who}: {limit} tokens per minute, {int(used)} used or reserved in "
                f"the last 60 s and this request may use up to {int(requested)}; enough tokens free up in "
                f"{reset} (at {iso(reset_at or now)}). Retry then, lower max_tokens, or ask an admin to "
                "raise the key's tpm."
            )
            headers["x-ratelimit-reset-tokens"] = reset
    elif kind == "parallel":
        limit = key.parallel or 0
        code = "parallel_limit"
        message = (
            f"Parallel request limit reached for {who}: {limit} requests at a time, {int(used)} in "
            "progress. Retry when one of them has finished, or ask an admin to raise the key's parallel limit."
        )
    else:
        code = "budget_exceeded"
        budget = key.budget or 0.0
        spent = f"spent {_usd(used)}" + (f" (+{_usd(reserved)} reserved by requests in progress)" if reserved else "")
        if wait is None:
            message = (
                f"Budget exceeded for {who}: {spent} of its lifetime budget of {_usd(budget)}; this request "
                f"may cost up to {_usd(requested)}. Ask an admin to raise the key's budget."
            )
        else:
            message = (
                f"Budget exceeded for {who}: {spent} of its {_usd(budget)} budget this {key.period}; this "
                f"request may cost up to {_usd(requested)}. The budget resets at {iso(reset_at or now)} (in "
                f"{format_reset((reset_at or now) - now)}); ask an admin to raise it before then."
            )
    if wait is not None:
        headers["retry-after"] = str(wait)
    return GatewayError(message, status=429, code=code, headers=headers)


def format_reset(seconds: float) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` format (Go durations): ``250ms``, ``1s``, ``1.5s``, ``6m0s``, ``2h0m0s``."""
    ms = max(0, round(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _usd(amount: float) -> str:
    text = f"{amount:.6f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


class _Budget:
    __slots__ = ("end", "reserved", "spend")

    def __init__(self, spend: float, end: float) -> None:
        self.spend = spend
        self.reserved = 0.0
        self.end = end


class _KeyState:
    __slots__ = ("budgets", "parallel", "requests", "tokens", "tokens_reserved", "tokens_used")

    def __init__(self) -> None:
        self.requests: deque[float] = deque()
        #: (time, tokens) of settled requests; ``tokens_used`` is their sum.
        self.tokens: deque[tuple[float, int]] = deque()
        self.tokens_used = 0
        self.tokens_reserved = 0
        self.parallel = 0
        #: period start → spend and reservations of that period.
        self.budgets: dict[float, _Budget] = {}

    def trim(self, now: float) -> None:
        cutoff = now - WINDOW
        requests, tokens = self.requests, self.tokens
        while requests and requests[0] <= cutoff:
            requests.popleft()
        while tokens and tokens[0][0] <= cutoff:
            self.tokens_used -= tokens.popleft()[1]

    def idle(self) -> bool:
        return not (self.requests or self.tokens or self.tokens_reserved or self.parallel or self.budgets)


class LocalLimiter:
    """The limits in this process: one replica's counts (the module docstring has the semantics).

    No locks: admit and settle never await, so on one event loop each runs to completion. Memory is
    bounded: windows hold the last minute, ended periods are dropped once settled, and the state of
    idle keys is dropped by a sweep every minute. ``clock`` gives settle its time (admit is given
    ``now``); tests pass their own.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}
        self._next_sweep = 0.0
        #: Nothing in process can fail (the contract's health field).
        self.problem: str | None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def seed_spend(self, key_id: str, period_start: float, spend: float) -> None:
        state = self._keys.get(key_id)
        if state is None:
            state = self._keys[key_id] = _KeyState()
        if period_start not in state.budgets:
            # The end is not known without the key's period; the first admit sets it.
            state.budgets[period_start] = _Budget(spend, math.inf)

    def raise_spend(self, key_id: str, period_start: float, spend: float) -> None:
        """Count at least ``spend`` for the period (RedisLimiter's fallback starts from Redis's figure)."""
        self.seed_spend(key_id, period_start, spend)
        budget = self._keys[key_id].budgets[period_start]
        budget.spend = max(budget.spend, spend)

    async def admit(self, key: KeyRecord, tokens: int, cost: float, now: float) -> Admission:
        return self.admit_now(key, tokens, cost, now)

    def admit_now(self, key: KeyRecord, tokens: int, cost: float, now: float) -> Admission:
        """:meth:`admit` without the coroutine (for RedisLimiter's fallback)."""
        rpm, tpm, parallel, budget = key.rpm, key.tpm, key.parallel, key.budget
        if rpm is None and tpm is None and parallel is None and budget is None:
            return Admission(key_id=key.id)
        if tpm is not None and tokens > tpm:
            raise limit_error("tpm_request", key, now, requested=tokens)
        if now >= self._next_sweep:
            self._sweep(now)
        state = self._keys.get(key.id)
        if state is None:
            state = self._keys[key.id] = _KeyState()
        state.trim(now)
        period_start = 0.0
        account: _Budget | None = None
        if budget is not None:
            period_start, period_end = period_bounds(key.period, now)
            account = state.budgets.get(period_start)
            if account is None:
                account = state.budgets[period_start] = _Budget(0.0, period_end)
            account.end = period_end
            if account.spend + account.reserved + cost > budget + EPSILON:
                raise limit_error(
                    "budget",
                    key,
                    now,
                    used=account.spend,
                    reserved=account.reserved,
                    requested=cost,
                    reset_at=period_end,
                )
        if rpm is not None and len(state.requests) >= rpm:
            reset_at = state.requests[0] + WINDOW if state.requests else now + WINDOW
            raise limit_error("rpm", key, now, used=len(state.requests), reset_at=reset_at)
        if tpm is not None:
            held = state.tokens_used + state.tokens_reserved
            if held + tokens > tpm:
                raise limit_error(
                    "tpm", key, now, used=held, requested=tokens, reset_at=_tokens_free_at(state, tpm, tokens, now)
                )
        if parallel is not None and state.parallel >= parallel:
            raise limit_error("parallel", key, now, used=state.parallel, reset_at=now + 1)
        if rpm is not None:
            state.requests.append(now)
        if tpm is None:
            tokens = 0
        else:
            state.tokens_reserved += tokens
        if parallel is not None:
            state.parallel += 1
        if account is None:
            cost = 0.0
        else:
            account.reserved += cost
        if tpm is None and parallel is None and budget is None:
            return Admission(key_id=key.id)
        return Admission(
            key_id=key.id, tokens=tokens, cost=cost, period_start=period_start, lease="l:" + lease_flags(key)
        )

    async def settle(self, admission: Admission, tokens: int, cost: float) -> None:
        self.settle_now(admission, tokens, cost)

    def settle_nowait(self, admission: Admission, tokens: int, cost: float) -> asyncio.Task[None] | None:
        self.settle_now(admission, tokens, cost)
        return None

    def settle_now(self, admission: Admission, tokens: int, cost: float) -> None:
        """:meth:`settle` without the coroutine."""
        lease = admission.lease
        if lease is None:
            return
        state = self._keys.get(admission.key_id)
        if state is None:
            # Only a settle without an admission of its own (RedisLimiter recording spend) gets here.
            state = self._keys[admission.key_id] = _KeyState()
        if lease[2] == "P":
            state.parallel = max(0, state.parallel - 1)
        if lease[3] == "T":
            state.tokens_reserved = max(0, state.tokens_reserved - admission.tokens)
            if tokens > 0:
                state.tokens.append((self._clock(), tokens))
                state.tokens_used += tokens
        code = lease[4]
        if code != "-":
            account = state.budgets.get(admission.period_start)
            if account is None:
                end = period_bounds(CODE_PERIOD[code], admission.period_start)[1]
                account = state.budgets[admission.period_start] = _Budget(0.0, end)
            account.reserved -= admission.cost
            account.spend += cost

    async def window(self, key: KeyRecord, now: float) -> tuple[int, int]:
        state = self._keys.get(key.id)
        if state is None:
            return 0, 0
        state.trim(now)
        return len(state.requests), state.tokens_used + state.tokens_reserved

    async def spent(self, key: KeyRecord, now: float) -> float:
        if key.budget is None:
            return 0.0
        state = self._keys.get(key.id)
        account = state.budgets.get(period_bounds(key.period, now)[0]) if state is not None else None
        return account.spend if account is not None else 0.0

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + WINDOW
        for key_id, state in list(self._keys.items()):
            state.trim(now)
            for start, account in list(state.budgets.items()):
                if account.end <= now and abs(account.reserved) < EPSILON:
                    del state.budgets[start]
            if state.idle():
                del self._keys[key_id]


def _tokens_free_at(state: _KeyState, tpm: int, tokens: int, now: float) -> float:
    """When enough of the window's tokens leave it for ``tokens`` more to fit."""
    excess = state.tokens_used + state.tokens_reserved + tokens - tpm
    for ts, count in state.tokens:
        excess -= count
        if excess <= 0:
            return ts + WINDOW
    # Reservations of requests in flight block the rest; they settle into the window within about a minute.
    return now + WINDOW
