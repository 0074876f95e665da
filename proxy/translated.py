"""The translated path: OpenAI chat in, another wire API upstream, through the canonical model.

Contract as for the passthrough (see :mod:`proxy.chat`): raises :class:`SwitchboardError` before the
first byte is sent; after it, failures become a final error event and ``[DONE]`` (:mod:`proxy.streaming`).
A stream that ends without the wire API's terminal event gets the decoder's own error event.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from providers.canonical import Request
from providers.credentials import ResolvedAuth
from providers.errors import UpstreamUnreachable
from providers.transport import UpstreamResponse, aclose_quietly
from providers.wire.base import WireAPI, WireTarget

from .asgi import Scope, Send, send_json
from .router import Target
from .runtime import Runtime
from .streaming import Deadline, Reply, relay
from .surfaces.openai_chat_in import decode_request
from .surfaces.openai_chat_out import ChunkEncoder, encode_response
from .upstream_call import error_hint, final_call, wire_target

__all__ = ["serve_translated"]

log = logging.getLogger("switchboard")

_JSON = [(b"content-type", b"application/json")]


async def serve_translated(
    rt: Runtime,
    wire: WireAPI,
    target: Target,
    auth: ResolvedAuth,
    body: dict[str, Any],
    scope: Scope,
    send: Send,
    reply: Reply,
) -> None:
    """Raises :class:`SwitchboardError` with messages not yet masked: the caller masks them at one place."""
    provider = target.provider
    creq = decode_request(body, target.upstream_model, provider.name)
    t = rt.client.timeouts
    async with Deadline(provider.name, *t.budget(creq.stream)):
        resp, wt = await _send(rt, wire, target, auth, creq, scope)
        if creq.stream:
            data = b""
        else:
            try:
                data = await resp.read()
            finally:
                await aclose_quietly(resp)
    if creq.stream:
        reply.started = True
        await _stream(wire, wt, resp, send, auth, target, creq.include_usage, reply, t.read)
        return
    try:
        answer = wire.decode_response(data, wt)
    except msgspec.DecodeError as exc:
        raise UpstreamUnreachable(
            f"{provider.name} answered with a body that is not valid JSON ({exc}); "
            "the answer was cut short or the baseUrl points at something else: retry, or check the baseUrl"
        ) from exc
    reply.started = True
    await send_json(send, 200, msgspec.json.encode(encode_response(answer, target.upstream_model)), _JSON)


async def _send(
    rt: Runtime, wire: WireAPI, target: Target, auth: ResolvedAuth, creq: Request, scope: Scope
) -> tuple[UpstreamResponse, WireTarget]:
    provider = target.provider
    for attempt in (1, 2):
        wt = wire_target(target, auth)
        call = await final_call(target, auth, wire.build(creq, wt), scope)
        resp = await rt.client.send("POST", call.url, call.headers, call.body, provider=provider.name)
        if resp.status < 400:
            return resp, wt
        try:
            err_body = await resp.read()
        finally:
            await aclose_quietly(resp)
        if resp.status == 401 and attempt == 1 and rt.credentials.after_unauthorized(provider.id):
            auth = await rt.credentials.resolve(provider, target.model)
            continue
        err = wire.error(wt, resp.status, err_body, resp.headers)
        err.message = error_hint(target, resp.status, auth.scrub(err.message))
        log.warning("upstream %s answered %s for %s", provider.id, resp.status, target.public_id)
        raise err
    raise AssertionError("unreachable")


async def _stream(
    wire: WireAPI,
    wt: WireTarget,
    resp: UpstreamResponse,
    send: Send,
    auth: ResolvedAuth,
    target: Target,
    include_usage: bool,
    reply: Reply,
    read: float,
) -> None:
    decoder = wire.stream_decoder(wt)
    encoder = ChunkEncoder(target.upstream_model, include_usage)
    await relay(
        send,
        resp,
        auth,
        lambda chunk: encoder.encode(decoder.feed(chunk)),
        lambda: encoder.finish(decoder.close()),
        encoder.error,
        provider=target.provider.name,
        read_timeout=read,
        client_gone=reply.client_gone,
    )
