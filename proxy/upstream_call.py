"""The last step before a request leaves: merge headers, then let a cloud adapter sign or authorize it."""

from __future__ import annotations

from providers.cloud.base import RequestContext
from providers.credentials import ResolvedAuth, adapter_for
from providers.wire.base import UpstreamCall, WireTarget

from .asgi import Scope
from .router import Target

__all__ = ["error_hint", "final_call", "wire_target"]


def wire_target(target: Target, auth: ResolvedAuth) -> WireTarget:
    return WireTarget(
        target.provider.id,
        target.provider.name,
        auth.base_url,
        target.upstream_model,
        target.model,
        target.compat,
        auth.headers,
    )


async def final_call(target: Target, auth: ResolvedAuth, call: UpstreamCall, scope: Scope) -> UpstreamCall:
    """``call`` with the credential headers merged in (a header set to "" by the wire module is dropped),
    signed or authorized by the provider's cloud adapter when it has one."""
    headers = dict(auth.headers)
    for name, value in call.headers.items():
        if value:
            headers[name] = value
        else:
            headers.pop(name, None)
    merged = UpstreamCall(call.url, call.body, headers)
    provider = target.provider
    if not provider.adapter or provider.pending:
        return merged
    inbound = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    ctx = RequestContext(inbound, target.api)
    return await adapter_for(provider.adapter).finalize(merged, wire_target(target, auth), ctx)


def error_hint(target: Target, status: int, message: str) -> str:
    """``message`` with the provider's cloud adapter's advice appended, when it has some for this error."""
    provider = target.provider
    if not provider.adapter or provider.pending:
        return message
    hint = getattr(adapter_for(provider.adapter), "error_hint", None)
    extra = hint(status, message) if hint is not None else None
    return f"{message} ({extra})" if extra else message
