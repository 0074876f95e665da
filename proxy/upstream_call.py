"""The last step before a request leaves: merge headers, then let a cloud adapter sign or authorize it.

Both entry points reach the provider's adapter through its :class:`~providers.cloud.base.CloudAdapter`
contract; a provider without an adapter passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from providers.cloud import adapter_for
from providers.cloud.base import RequestContext
from providers.request_facts import RequestFacts, facts_from_body
from providers.resolved import ResolvedAuth
from providers.wire.base import UpstreamCall, WireTarget

from .asgi import Scope
from .router import Target

__all__ = ["error_hint", "final_call", "merged_headers", "wire_target"]


def wire_target(target: Target, auth: ResolvedAuth) -> WireTarget:
    """What the wire module (or the passthrough) builds for: the Target with this credential, as the
    provider's cloud adapter shapes it (Azure's deployment as the model id, Claude on Vertex's variant)."""
    wt = WireTarget(
        target.provider.id,
        target.provider.name,
        auth.base_url,
        target.upstream_model,
        target.model,
        target.compat,
        auth.headers,
    )
    provider = target.provider
    return adapter_for(provider.adapter).wire_target(wt, target.api, auth) if provider.adapter else wt


async def final_call(
    target: Target, auth: ResolvedAuth, call: UpstreamCall, scope: Scope, facts: RequestFacts | None = None
) -> UpstreamCall:
    """``call`` with the credential headers merged in (a header set to "" by the wire module is dropped),
    signed or authorized by the provider's cloud adapter when it has one.

    ``facts`` are what the caller read from the request it decoded (:func:`providers.request_facts.
    facts_from_chat` / :func:`~providers.request_facts.facts_from_request`); without them an adapted
    provider's facts are read off ``call.body``, which costs a decode.
    """
    merged = UpstreamCall(call.url, call.body, merged_headers(auth, call.headers))
    provider = target.provider
    if not provider.adapter:
        return merged
    inbound = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    if facts is None:
        facts = facts_from_body(call.body, target.api)
    ctx = RequestContext(inbound, target.api, facts)
    return await adapter_for(provider.adapter).finalize(merged, auth, wire_target(target, auth), ctx)


def merged_headers(auth: ResolvedAuth, extra: Mapping[str, str]) -> dict[str, str]:
    """The credential headers with a wire module's ``extra`` over them (a value of "" drops that header):
    a new dict, which the caller (a cloud adapter) may change. Synchronous, for a provider without an
    adapter, whose request needs no other step (see :func:`final_call`)."""
    headers = dict(auth.headers)
    for name, value in extra.items():
        if value:
            headers[name] = value
        else:
            headers.pop(name, None)
    return headers


def error_hint(target: Target, status: int, message: str) -> str:
    """``message`` with the provider's cloud adapter's advice appended, when it has some for this error."""
    provider = target.provider
    if not provider.adapter:
        return message
    extra = adapter_for(provider.adapter).error_hint(status, message)
    return f"{message} ({extra})" if extra else message
