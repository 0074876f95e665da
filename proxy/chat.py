"""``POST /v1/chat/completions``: the OpenAI chat surface.

Contract: always answers (never raises to the server). Before the first byte every failure is an OpenAI
error envelope with its status; after it, a final ``data: {"error": ...}`` event and ``data: [DONE]``.
A client disconnect cancels the upstream request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from providers.credentials import ResolvedAuth
from providers.errors import InvalidRequest, NotImplementedYet, SwitchboardError
from providers.registry import IMPLEMENTED_APIS
from providers.sse import EventSplitter, encode_event
from providers.transport import UpstreamResponse, aclose_quietly
from providers.wire import openai_completions, translating_wire
from providers.wire.base import UpstreamCall

from .asgi import DisconnectWatch, Receive, Scope, Send, read_body, send_error, send_json
from .router import Target
from .runtime import Runtime
from .translated import serve_translated
from .upstream_call import error_hint, final_call

__all__ = ["handle_chat_completions"]

log = logging.getLogger("switchboard")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"


async def handle_chat_completions(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["method"] != "POST":
        await send_error(send, InvalidRequest("use POST for /v1/chat/completions", status=405))
        return
    watch: DisconnectWatch | None = None
    try:
        body = await read_body(receive)
        watch = DisconnectWatch(receive)
        await _serve(rt, scope, body, send)
    except SwitchboardError as exc:
        log.debug("chat request failed: %s %s", exc.status, exc.message)
        await send_error(send, exc)
    except asyncio.CancelledError:
        if watch is None or not watch.fired:
            raise
        # The client left; the upstream response was closed on the way out.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        log.debug("client disconnected; upstream request cancelled")
    finally:
        if watch is not None:
            watch.stop()


def _decode(body: bytes) -> dict[str, Any]:
    try:
        req = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON ({exc})") from exc
    if not isinstance(req, dict):
        raise InvalidRequest("the request body must be a JSON object")
    if not isinstance(req.get("model"), str):
        raise InvalidRequest("'model' is required: a string such as 'openai/gpt-4o'", param="model")
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is required: a non-empty array of messages", param="messages")
    return req


async def _serve(rt: Runtime, scope: Scope, body: bytes, send: Send) -> None:
    req = _decode(body)
    target = rt.router.resolve(req["model"])
    provider = target.provider
    if provider.pending or target.api not in IMPLEMENTED_APIS:
        raise NotImplementedYet(
            provider.pending
            or f"{target.public_id} speaks the {target.api} API, which this build cannot translate to yet; "
            "providers speaking OpenAI chat completions work today"
        )
    auth = rt.credentials.cached(provider.id, target.model) or await rt.credentials.resolve(provider, target.model)
    if target.api != "openai-completions":
        wire = translating_wire(target.api)
        assert wire is not None  # IMPLEMENTED_APIS lists only APIs with a module
        await serve_translated(rt, wire, target, auth, req, scope, send)
        return
    openai_completions.adapt_request(req, target.upstream_model, target.compat, target.model)
    payload = msgspec.json.encode(req)
    resp = await _send_upstream(rt, scope, target, auth, payload)
    if req.get("stream") is True:
        await _stream(resp, send)
        return
    try:
        data = await resp.read()
    finally:
        await aclose_quietly(resp)
    ctype = resp.headers.get("content-type", "application/json").encode()
    await send_json(send, resp.status, data, [(b"content-type", ctype)])


async def _send_upstream(
    rt: Runtime, scope: Scope, target: Target, auth: ResolvedAuth, payload: bytes
) -> UpstreamResponse:
    provider = target.provider
    for attempt in (1, 2):
        url = openai_completions.chat_url(auth.base_url)
        if provider.adapter:
            call = await final_call(target, auth, UpstreamCall(url, payload), scope)
            resp = await rt.client.send("POST", call.url, call.headers, call.body)
        else:
            resp = await rt.client.send("POST", url, auth.headers, payload)
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


async def _stream(resp: UpstreamResponse, send: Send) -> None:
    await send({"type": "http.response.start", "status": resp.status, "headers": _SSE_HEADERS})
    splitter = EventSplitter()
    tail = b""
    try:
        async for chunk in resp.chunks():
            out = splitter.feed(chunk)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
        rest = splitter.flush()
        if rest.strip():
            tail = rest + b"\n\n"  # an unterminated final event still counts
    except SwitchboardError as exc:
        log.warning("stream from upstream broke off: %s", exc.message)
        tail = encode_event(msgspec.json.encode(exc.envelope())) + _DONE
    finally:
        await aclose_quietly(resp)
    await send({"type": "http.response.body", "body": tail, "more_body": False})
