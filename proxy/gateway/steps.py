"""The gateway's steps of the request pipeline: who is calling, may they, and what did it cost.

* authenticate: ``Authorization: Bearer KEY`` (or ``x-api-key`` / ``api-key``, for Anthropic- and
  Azure-style clients) → the master key or a cached virtual key; refused with 401 otherwise. The
  client's key is never forwarded: the pipeline sends the provider's credential instead.
* admit: the key's allow-list (403), then its rpm / tpm / parallel / budget in the :class:`Limiter`
  (429), reserving the worst case: the input estimated from the body's size plus the output the client
  allows (``max_tokens``), or the model's largest output.
* finish: the exchange's usage priced with the model's prices (:func:`providers.pricing.cost_for`),
  queued to the ledger with the route asked for and every upstream attempt, and the reservation
  settled to it. A client that left before any usage was reported is charged the input estimate.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from providers.canonical import Usage
from providers.pricing import cost_for, cost_of
from providers.registry import Cost

from ..asgi import Scope
from ..metering import estimate_input_tokens
from ..outcome import Attempt
from ..pipeline import Admit, Caller, Outcome, Steps
from ..router import Target
from .contract import Admission, GatewayError, KeyRecord, UsageRecord, hash_key
from .oidc_config import looks_like_jwt
from .periods import iso

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["GatewayCaller", "GatewaySteps", "bearer_token", "entry_allowed", "model_allowed"]

log = logging.getLogger("switchboard")

_NO_COST = Cost()
#: Output reserved when neither the client nor the catalog says how long the answer may be.
_DEFAULT_MAX_OUTPUT = 4096


class GatewayCaller(Caller):
    """The master key (``key`` None) or a virtual key."""

    __slots__ = ("key",)

    def __init__(self, key: KeyRecord | None) -> None:
        self.key = key


_MASTER = GatewayCaller(None)


class _Ticket:
    __slots__ = ("admission", "input_estimate", "key_id", "route", "surface")

    def __init__(
        self,
        surface: str,
        key_id: str | None,
        admission: Admission | None,
        input_estimate: int,
        route: str | None = None,
    ) -> None:
        self.surface = surface
        self.key_id = key_id
        self.admission = admission
        self.input_estimate = input_estimate
        self.route = route


def attempt_log(attempts: list[Attempt]) -> str | None:
    """The ledger's ``attempt_log``: each upstream attempt's target, status, error and milliseconds (JSON),
    when there was more than one; a single attempt is the row itself (its provider, model, status and
    latency), so most rows carry none and cost no encoding."""
    if len(attempts) < 2:
        return None
    return msgspec.json.encode(
        [
            {
                "target": a.target.public_id,
                "status": a.status,
                "error": a.error_type,
                "ms": round((a.ended - a.started) * 1000.0, 1) if a.ended is not None else None,
            }
            for a in attempts
        ]
    ).decode()


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The client's key from ``Authorization: Bearer``, ``x-api-key`` or ``api-key`` (ASGI headers)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name in (b"x-api-key", b"api-key") and value.strip():
            return value.decode("latin-1").strip()
    return None


def model_allowed(key: KeyRecord, requested: str, target: Target) -> bool:
    """``provider/*`` and other globs match the routed ``provider/model``; an alias matches by name."""
    return not key.models or _matches(key.models, target.public_id, requested)


def entry_allowed(key: KeyRecord, entry: dict[str, Any]) -> bool:
    """:func:`model_allowed` for a ``/v1/models`` entry (a model, or an alias with ``alias_of``)."""
    if not key.models:
        return True
    target = entry.get("alias_of")
    return _matches(key.models, str(target or entry["id"]), str(entry["id"]))


def _matches(patterns: list[str], public_id: str, name: str) -> bool:
    return any(p in (name, public_id) or fnmatch.fnmatchcase(public_id, p) for p in patterns)


class GatewaySteps(Steps):
    meter = True

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    async def authenticate(self, scope: Scope) -> Caller:
        return await self.caller(bearer_token(scope["headers"]))

    async def caller(self, token: str | None) -> GatewayCaller:
        """The caller a token stands for: the master key, a virtual key, or an OIDC ID token (a CI job,
        :mod:`proxy.gateway.oidc`); raises :class:`GatewayError` 401 (403: a token no OIDC rule admits)."""
        if token is None:
            raise GatewayError(
                "no API key: send 'Authorization: Bearer sk-sb-…' with a virtual key from your gateway's admin "
                "('switchboard keys create')",
                status=401,
                code="invalid_api_key",
            )
        gw = self._gw
        if gw.oidc is not None and looks_like_jwt(token) and not gw.is_master(token):
            return GatewayCaller(await gw.oidc.verify(token))
        digest = hash_key(token)
        key = gw.keys.get(digest) or await gw.keys.find(digest)
        if key is None:
            if gw.is_master(token):
                return _MASTER
            if looks_like_jwt(token):
                raise GatewayError(
                    "the API key looks like an OIDC ID token, but this gateway trusts no OIDC issuer; its admin "
                    'can add one under "oidc" in config.json, or give you a virtual key',
                    status=401,
                    code="invalid_api_key",
                )
            raise GatewayError(
                "the API key is not valid (unknown, rotated or deleted); ask your gateway's admin for a key",
                status=401,
                code="invalid_api_key",
            )
        if key.disabled:
            raise GatewayError(
                f"the API key {key.key_prefix}… ({key.name}) is disabled; ask your gateway's admin to enable it",
                status=401,
                code="key_disabled",
            )
        if key.expires_at is not None and key.expires_at <= time.time():
            raise GatewayError(
                f"the API key {key.key_prefix}… ({key.name}) expired at {iso(key.expires_at)}; ask for a new key",
                status=401,
                code="key_expired",
            )
        return GatewayCaller(key)

    async def admit(self, caller: Caller, admit: Admit) -> object:
        assert isinstance(caller, GatewayCaller)
        key = caller.key
        input_estimate = estimate_input_tokens(admit.body_len)
        if key is None:
            return _Ticket(admit.surface, None, None, input_estimate, admit.route)
        target = admit.target
        # Every Target the request may reach, fallbacks included: a key limited to openai/* must not reach
        # another provider through a route or ``fallbacks`` (a route allowed by its name is allowed whole).
        for name, reachable in admit.targets:
            if not model_allowed(key, name, reachable):
                through = "" if name in (admit.requested, reachable.public_id) else f" (fallback {name!r})"
                raise GatewayError(
                    f"this key may not use {reachable.public_id}{through}; it allows: {', '.join(key.models)}",
                    status=403,
                    code="model_not_allowed",
                    param="model" if name == admit.requested else "fallbacks",
                )
        if key.rpm is None and key.tpm is None and key.parallel is None and key.budget is None:
            return _Ticket(admit.surface, key.id, None, input_estimate, admit.route)  # nothing to count or reserve
        model = target.model
        max_output = admit.max_output or (model.max_tokens if model is not None else _DEFAULT_MAX_OUTPUT)
        worst = 0.0
        if key.budget is not None:
            # Any of the Targets may answer (a route, fallbacks): reserve what the dearest would cost.
            worst = max(
                cost_of(t.model.cost if t.model is not None else _NO_COST, Usage(input_estimate, max_output))
                for _, t in admit.targets
            )
        admission = await self._gw.limiter.admit(key, input_estimate + max_output, worst, time.time())
        return _Ticket(admit.surface, key.id, admission, input_estimate, admit.route)

    def finish(self, caller: Caller, ticket: object, outcome: Outcome) -> None:
        assert isinstance(ticket, _Ticket)
        leg = outcome.leg
        usage = outcome.usage()
        estimated = leg.estimated if leg is not None else False
        if usage is None and outcome.status == 499:
            # The upstream read the prompt before the client left: charge at least that.
            usage, estimated = Usage(input_tokens=ticket.input_estimate), True
        elif usage is not None and estimated and usage.input_tokens == 0:
            # A stream cut before the upstream said what the prompt cost: the input estimate stands in.
            usage.input_tokens = ticket.input_estimate
        target = outcome.target
        assert target is not None  # admitted: routed
        cost = cost_for(target.model, usage)
        now = outcome.ended or time.perf_counter()
        u = usage or Usage()
        self._gw.ledger.record(
            UsageRecord(
                ts=time.time(),
                request_id=outcome.request_id,
                key_id=ticket.key_id,
                surface=ticket.surface,
                provider=target.provider.id,
                model=target.upstream_model,
                status=outcome.status,
                stream=leg.stream if leg is not None else False,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cached_tokens=u.cache_read_tokens,
                cache_write_tokens=u.cache_write_tokens,
                reasoning_tokens=u.reasoning_tokens,
                cost=cost,
                estimated=estimated,
                latency_ms=(now - outcome.started) * 1000.0,
                ttft_ms=(outcome.first_byte - outcome.started) * 1000.0 if outcome.first_byte is not None else None,
                route=ticket.route,
                attempts=len(outcome.attempts),
                attempt_log=attempt_log(outcome.attempts),
            )
        )
        if ticket.admission is not None:
            # Input includes the cached and cache-write tokens (see providers.canonical.Usage).
            tokens = u.input_tokens + u.output_tokens
            task = self._gw.limiter.settle_nowait(ticket.admission, tokens, cost)
            if task is not None:
                self._gw.tasks.add(task)
                task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._gw.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("settling a request's limits failed: %r", task.exception())
