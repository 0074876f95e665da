"""The translated path: OpenAI chat in, another wire API upstream, through the canonical model.

Contract as for the passthrough (see :mod:`proxy.chat`): raises :class:`SwitchboardError` before the
first byte is sent; after it, failures become a final error event and ``[DONE]``.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from providers.credentials import ResolvedAuth
from providers.errors import SwitchboardError
from providers.transport import UpstreamResponse, aclose_quietly
from providers.wire.base import WireAPI, WireTarget

from .asgi import Scope, Send, send_json
from .router import Target
from .runtime import Runtime
from .surfaces.openai_chat_in import decode_request
from .surfaces.openai_chat_out import ChunkEncoder, encode_response
from .upstream_call import error_hint, final_call, wire_target

__all__ = ["serve_translated"]

log = logging.getLogger("switchboard")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_JSON = [(b"content-type", b"application/json")]


async def serve_translated(
    rt: Runtime, wire: WireAPI, target: Target, auth: ResolvedAuth, body: dict[str, Any], scope: Scope, send: Send
) -> None:
    provider = target.provider
    creq = decode_request(body, target.upstream_model, provider.name)
    for attempt in (1, 2):
        wt = wire_target(target, auth)
        call = await final_call(target, auth, wire.build(creq, wt), scope)
        resp = await rt.client.send("POST", call.url, call.headers, call.body)
        if resp.status < 400:
            break
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
    if creq.stream:
        await _stream(wire, wt, resp, send, target.upstream_model, creq.include_usage)
        return
    try:
        data = await resp.read()
    finally:
        await aclose_quietly(resp)
    answer = wire.decode_response(data, wt)
    await send_json(send, 200, msgspec.json.encode(encode_response(answer, target.upstream_model)), _JSON)


async def _stream(
    wire: WireAPI, wt: WireTarget, resp: UpstreamResponse, send: Send, model: str, include_usage: bool
) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
    decoder = wire.stream_decoder(wt)
    encoder = ChunkEncoder(model, include_usage)
    try:
        async for chunk in resp.chunks():
            out = encoder.encode(decoder.feed(chunk))
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
        tail = encoder.finish(decoder.close())
    except SwitchboardError as exc:
        log.warning("stream from upstream broke off: %s", exc.message)
        tail = encoder.error(exc)
    except Exception as exc:
        # A malformed upstream event must end the stream cleanly, not kill the connection.
        log.exception("could not translate the upstream stream")
        tail = encoder.error(exc)
    finally:
        await aclose_quietly(resp)
    await send({"type": "http.response.body", "body": tail, "more_body": False})
