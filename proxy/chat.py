"""``POST /v1/chat/completions``: the OpenAI chat surface.

Contract: always answers (never raises to the server, except the cancellation of a server shutdown,
after its last word). Before the first byte every failure is an OpenAI error envelope with its status;
after it, a final ``data: {"error": ...}`` event and ``data: [DONE]`` (see :mod:`proxy.streaming`).
A client disconnect cancels the upstream request. A non-streaming request has ``timeouts.total`` for
the whole upstream exchange; a 200 whose body is not JSON is a 502, not a success.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec

from providers.credentials import ResolvedAuth
from providers.errors import (
    InvalidRequest,
    NotImplementedYet,
    ServerShuttingDown,
    SwitchboardError,
    UpstreamUnreachable,
)
from providers.registry import IMPLEMENTED_APIS
from providers.sse import EventSplitter, encode_event
from providers.transport import UpstreamResponse, aclose_quietly
from providers.wire import openai_completions, translating_wire
from providers.wire.base import UpstreamCall

from .asgi import DisconnectWatch, Receive, Scope, Send, read_body_buffer, send_error, send_json
from .router import Target
from .runtime import Runtime
from .streaming import DONE, Deadline, Reply, relay
from .surfaces.openai_chat_types import decode_body
from .translated import serve_translated
from .upstream_call import error_hint, final_call

__all__ = ["handle_chat_completions"]

log = logging.getLogger("switchboard")


class _AnyObject(msgspec.Struct):
    """Decoding into a struct without fields checks the JSON's syntax while skipping its content."""


async def handle_chat_completions(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["method"] != "POST":
        await send_error(send, InvalidRequest("use POST for /v1/chat/completions", status=405))
        return
    reply = Reply()
    try:
        # Decoded straight from one buffer and not kept: a large body (base64 images) peaks near its size.
        req = _decode(await read_body_buffer(receive, scope))
        reply.watch = DisconnectWatch(receive)
        await _serve(rt, scope, req, send, reply)
    except SwitchboardError as exc:
        log.debug("chat request failed: %s %s", exc.status, exc.message)
        await send_error(send, exc)
    except asyncio.CancelledError:
        if reply.client_gone():
            log.debug("client disconnected; upstream request cancelled")
        elif not reply.started:
            # The server is stopping (it cancels what outlives timeouts.shutdown); a stream already
            # ended with its last event in proxy.streaming.
            with contextlib.suppress(Exception):
                await send_error(send, ServerShuttingDown())
        # Answered as well as it can be: ending normally keeps the server's log free of a traceback.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
    finally:
        if reply.watch is not None:
            reply.watch.stop()


def _decode(body: bytes | bytearray) -> dict[str, Any]:
    # Bounded nesting, valid UTF-8, a sane 'model' and 'messages'; the translated path types the rest.
    return decode_body(body)


async def _serve(rt: Runtime, scope: Scope, req: dict[str, Any], send: Send, reply: Reply) -> None:
    target = rt.router.resolve(req["model"])
    provider = target.provider
    if provider.pending or target.api not in IMPLEMENTED_APIS:
        raise NotImplementedYet(
            provider.pending
            or f"{target.public_id} speaks the {target.api} API, which this build cannot translate to yet; "
            "providers speaking OpenAI chat completions work today"
        )
    auth = rt.credentials.cached(provider.id, target.model) or await rt.credentials.resolve(provider, target.model)
    try:
        if target.api != "openai-completions":
            wire = translating_wire(target.api)
            assert wire is not None  # IMPLEMENTED_APIS lists only APIs with a module
            await serve_translated(rt, wire, target, auth, req, scope, send, reply)
            return
        await _passthrough(rt, scope, target, auth, req, send, reply)
    except SwitchboardError as exc:
        # The one place a message that may quote the provider's answer is masked (and then cut).
        exc.message = auth.scrub(exc.message)
        raise


async def _passthrough(
    rt: Runtime, scope: Scope, target: Target, auth: ResolvedAuth, req: dict[str, Any], send: Send, reply: Reply
) -> None:
    openai_completions.adapt_request(req, target.upstream_model, target.compat, target.model)
    payload = msgspec.json.encode(req)
    stream = req.get("stream") is True
    req.clear()  # as large as the body: free it before the upstream call, not after the answer
    t = rt.client.timeouts
    name = target.provider.name
    if stream:
        async with Deadline(name, *t.budget(stream=True)):
            resp = await _send_upstream(rt, scope, target, auth, payload)
        reply.started = True
        await _stream(resp, send, auth, name, t.read, reply)
        return
    async with Deadline(name, *t.budget(stream=False)):
        resp = await _send_upstream(rt, scope, target, auth, payload)
        try:
            data = await resp.read()
        finally:
            await aclose_quietly(resp)
    try:
        msgspec.json.decode(data, type=_AnyObject)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("%s answered %s with a body that is not a JSON object: %s", name, resp.status, exc)
        raise UpstreamUnreachable(
            f"{name} answered {resp.status} with a body that is not a JSON object ({exc}); "
            "the answer was cut short or the baseUrl points at something else: retry, or check the baseUrl"
        ) from exc
    ctype = resp.headers.get("content-type", "application/json").encode()
    reply.started = True
    await send_json(send, resp.status, data, [(b"content-type", ctype)])


async def _send_upstream(
    rt: Runtime, scope: Scope, target: Target, auth: ResolvedAuth, payload: bytes
) -> UpstreamResponse:
    provider = target.provider
    for attempt in (1, 2):
        url = openai_completions.chat_url(auth.base_url)
        if provider.adapter:
            call = await final_call(target, auth, UpstreamCall(url, payload), scope)
            resp = await rt.client.send("POST", call.url, call.headers, call.body, provider=provider.name)
        else:
            resp = await rt.client.send("POST", url, auth.headers, payload, provider=provider.name)
        if resp.status < 400:
            return resp
        try:
            err_body = await resp.read()
        finally:
            await aclose_quietly(resp)
        if resp.status == 401 and attempt == 1 and rt.credentials.after_unauthorized(provider.id):
            # A !command key may have been rotated: run it again once.
            auth = await rt.credentials.resolve(provider, target.model)
            continue
        err = openai_completions.upstream_error(provider.name, resp.status, err_body, resp.headers)
        err.message = error_hint(target, resp.status, auth.scrub(err.message))
        log.warning("upstream %s answered %s for %s", provider.id, resp.status, target.public_id)
        raise err
    raise AssertionError("unreachable")


async def _stream(resp: UpstreamResponse, send: Send, auth: ResolvedAuth, name: str, read: float, reply: Reply) -> None:
    """The passthrough stream: complete events forwarded as they are, never parsed.

    Whether the provider finished is read off the tail of the last bytes forwarded (``[DONE]``), so
    the per-chunk cost stays one boundary check.
    """
    splitter = EventSplitter()
    last = b""

    def step(chunk: bytes) -> bytes:
        nonlocal last
        out = splitter.feed(chunk)
        if out:
            last = out
        return out

    def finish() -> bytes:
        rest = splitter.flush().strip()
        if rest.endswith(b"[DONE]") and rest.startswith(b"data:"):
            return DONE  # the last event lacked its blank line; nothing else was held back
        if not rest and last[-16:].rstrip(b"\r\n").endswith(b"[DONE]"):
            return b""
        cut = " inside an event" if rest else " without data: [DONE]"
        log.warning("%s's stream ended early%s", name, cut)
        return fail(
            UpstreamUnreachable(f"{name}: stream ended early{cut} (the answer is incomplete); retry the request")
        )

    def fail(exc: Exception) -> bytes:
        err = exc if isinstance(exc, SwitchboardError) else UpstreamUnreachable(f"{name}: {type(exc).__name__}")
        return encode_event(msgspec.json.encode(err.envelope())) + DONE

    await relay(send, resp, auth, step, finish, fail, provider=name, read_timeout=read, client_gone=reply.client_gone)
