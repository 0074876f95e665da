"""The one request pipeline: every inbound surface and every upstream go through :meth:`Pipeline.handle`.

::

    steps.authenticate    who is calling, from the headers                 (gateway: virtual keys)
    surface.decode        the client's bytes → the surface's request (body freed before the upstream call)
    route                 the model name → a Target (router); a route's name or per-request
                          ``fallbacks`` → every Target it may reach (proxy.routing)
    steps.admit           allow-lists (every Target that may be tried), rate limits, budget
                          reservation                                      (gateway)
    routing.run           the Targets in the route's strategy's order, minus those cooling down or
                          too small; a plain model name skips it (one exchange, unless retries are on)
    for each attempt — a retry or a fallback only while nothing was sent to the client
    (proxy.routing.policy says which failure leads where):
      credentials         flag → auth.json → env → models.json
      build               native API: surface.passthrough (body edits);   else: surface.canonical → wire.build
      finalize            the cloud adapter signs or authorizes            (proxy.upstream_call.final_call)
      send                one shared client; a 401 re-resolves the credential once and resends
      decode / encode     native: bytes relayed as they are;  else: wire decoder → surface encoder
    steps.finish          once per admitted request, however it ended: usage, cost, ledger with every
                          attempt, settling the reservations (gateway)

Contract of :meth:`Pipeline.handle`: always answers (never raises to the server, except the cancellation
of a server shutdown, after its last word). Before the first byte every failure is an OpenAI error
envelope with its status; after it, a final ``data: {"error": ...}`` event and ``data: [DONE]`` (see
:mod:`proxy.streaming`). A client disconnect cancels the upstream request. A non-streaming request has
``timeouts.total`` for the whole upstream exchange, a stream ``timeouts.read`` for its headers. Every
message that may quote the provider is masked with the credential's secrets here, at one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Generic, TypeVar

from providers.credentials import ResolvedAuth
from providers.errors import InvalidRequest, NotImplementedYet, ServerShuttingDown, SwitchboardError
from providers.transport import UpstreamResponse, aclose_quietly
from providers.wire import translating_wire
from providers.wire.base import WireAPI

from .asgi import DisconnectWatch, Receive, Scope, Send, hide_paths, read_body_buffer, send_json
from .metering import estimate_input_tokens
from .outcome import Attempt, Capture, Outcome, request_id_from, retry_after_seconds
from .pipeline_contract import Admit, Caller, Headers, Leg, Steps, Surface
from .router import Target, check_kind
from .runtime import Runtime
from .streaming import SSE_HEADERS, Deadline, Reply, relay
from .upstream_call import error_hint, final_call, merged_headers

__all__ = ["Admit", "Attempt", "Caller", "Leg", "Outcome", "Pipeline", "Steps", "Surface"]

log = logging.getLogger("switchboard")

_JSON = [(b"content-type", b"application/json")]
In = TypeVar("In")


class Pipeline(Generic[In]):
    """One surface's way through the steps; the steps themselves are the Runtime's (``rt.steps``)."""

    __slots__ = ("kind", "surface")

    def __init__(self, surface: Surface[In], kind: str = "chat") -> None:
        self.surface = surface
        #: The kind of model the surface serves ("chat", "embedding"): another kind is a 400 on ``model``.
        self.kind = kind

    async def handle(self, rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = Outcome(self.surface.path, request_id_from(scope["headers"]))
        observer = rt.observer
        if observer is not None:
            if observer.capture_content:  # tracing.capture_content: keep the bytes (else nothing is copied)
                outcome.capture = Capture()
            observer.started(outcome, scope)
        try:
            await self._handle(rt, scope, receive, send, outcome)
        finally:
            if outcome.ended is None:
                outcome.ended = time.perf_counter()
            if observer is not None:
                observer.ended(outcome)

    async def _handle(self, rt: Runtime, scope: Scope, receive: Receive, send: Send, outcome: Outcome) -> None:
        if scope["method"] != "POST":
            await self._send_error(send, InvalidRequest(f"use POST for {self.surface.path}", status=405), outcome)
            return
        reply = Reply()
        try:
            # From the headers alone: a refused client costs no body read.
            caller = outcome.caller = await rt.steps.authenticate(scope)
            # Decoded straight from one buffer and not kept: a large body (base64 images) peaks near its size.
            body = await read_body_buffer(receive, scope)
            body_len = len(body)
            if outcome.capture is not None:  # a copy: the buffer itself is freed right after decode
                outcome.capture.keep_request(body)
            req = self.surface.decode(body)
            del body
            reply.watch = DisconnectWatch(receive, scope)
            await self._serve(rt, scope, caller, req, body_len, send, reply, outcome)
        except SwitchboardError as exc:
            log.debug("request failed: %s %s", exc.status, exc.message)
            await self._send_error(send, exc, outcome)
        except asyncio.CancelledError:
            if reply.client_gone():
                outcome.status = 499
                log.debug("client disconnected; upstream request cancelled")
            elif not reply.started:
                # The server is stopping (it cancels what outlives timeouts.shutdown); a stream already
                # ended with its last event in proxy.streaming.
                with contextlib.suppress(Exception):
                    await self._send_error(send, ServerShuttingDown(), outcome)
            # Answered as well as it can be: ending normally keeps the server's log free of a traceback.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            if reply.watch is not None:
                reply.watch.stop()

    async def _send_error(self, send: Send, exc: SwitchboardError, outcome: Outcome) -> None:
        outcome.status = exc.status
        outcome.error_type = exc.code or exc.type
        exc.message = hide_paths(exc.message)
        headers = [*_JSON, *outcome.headers(), *((k.encode(), v.encode()) for k, v in exc.headers.items())]
        await send_json(send, exc.status, self.surface.error_body(exc), headers)

    async def _serve(
        self,
        rt: Runtime,
        scope: Scope,
        caller: Caller,
        req: In,
        body_len: int,
        send: Send,
        reply: Reply,
        outcome: Outcome,
    ) -> None:
        steps, surface, routing = rt.steps, self.surface, rt.routing
        requested = outcome.requested = surface.model(req)
        cands = routing.candidates(requested, surface.fallbacks(req), self.kind, surface.path)
        if cands is None:  # a plain model name: the hot path
            routed = rt.router.resolve(requested)
            check_kind(routed, self.kind, surface.path)
            route = None
        else:
            routed = cands[0][1]
            route = requested if requested in routing.routes else None
        max_output = surface.max_output(req)
        admit = Admit(surface.path, requested, routed, body_len, max_output, cands or (), route)
        ticket = await steps.admit(caller, admit)
        outcome.target = routed
        try:
            if cands is None and not routing.retries_plain:
                await self._exchange(rt, scope, req, routed, send, reply, outcome, release=True)
                return

            async def exchange(target: Target, release: bool) -> None:
                outcome.target = target
                await self._exchange(rt, scope, req, target, send, reply, outcome, release=release)

            await routing.run(
                requested,
                cands or ((requested, routed),),
                exchange,
                reply,
                outcome,
                estimate_input_tokens(body_len),
                max_output if max_output is not None else (routed.model.max_tokens if routed.model is not None else 0),
                watch=cands is not None,
            )
        except SwitchboardError as exc:
            outcome.status = exc.status
            raise
        except asyncio.CancelledError:
            outcome.status = 499 if reply.client_gone() else 503
            raise
        finally:
            outcome.ended = time.perf_counter()
            steps.finish(caller, ticket, outcome)

    async def _exchange(
        self,
        rt: Runtime,
        scope: Scope,
        req: In,
        target: Target,
        send: Send,
        reply: Reply,
        outcome: Outcome,
        *,
        release: bool,
    ) -> None:
        provider = target.provider
        wire = _wire_for(target, self.surface.native_api)
        auth = rt.credentials.cached(provider.id, target.model) or await rt.credentials.resolve(provider, target.model)
        attempt = Attempt(target)
        outcome.attempts.append(attempt)
        try:
            leg = outcome.leg = self._build(req, target, auth, wire, release, rt.meter)
            outcome.stream = leg.stream
            t = rt.client.timeouts
            async with Deadline(provider.name, *t.budget(leg.stream)):
                resp, auth = await _send(rt, scope, target, auth, leg, attempt)
                if not leg.stream:
                    try:
                        data = await resp.read()
                    finally:
                        await aclose_quietly(resp)
            if leg.stream:
                reply.started = True
                outcome.status = 200
                outcome.first_byte = time.perf_counter()
                step, finish, fail = leg.stream_steps()
                if outcome.capture is not None:  # also keep what the client gets (wrapped only then)
                    step, finish = outcome.capture.stream_steps(step, finish, auth.mask.data if auth.mask else None)
                try:
                    await relay(
                        send,
                        resp,
                        auth,
                        step,
                        finish,
                        fail,
                        provider=provider.name,
                        read_timeout=t.read,
                        client_gone=reply.client_gone,
                        headers=[*SSE_HEADERS, *outcome.headers()],
                    )
                finally:
                    attempt.ended = time.perf_counter()
                return
            status, body, headers = leg.answer(resp.status, data, resp.headers)
        except SwitchboardError as exc:
            # The one place a message that may quote the provider's answer is masked (and then cut).
            exc.message = auth.scrub(exc.message)
            attempt.ended = time.perf_counter()
            attempt.error_type = exc.code or exc.type
            raise
        except BaseException:
            attempt.ended = time.perf_counter()
            raise
        attempt.ended = time.perf_counter()
        await self._answer(send, reply, outcome, status, body, headers)

    async def _answer(
        self, send: Send, reply: Reply, outcome: Outcome, status: int, body: bytes, headers: Headers
    ) -> None:
        """A whole (non-streamed) answer to the client, with the headers every answer carries."""
        reply.started = True
        outcome.status = status
        outcome.first_byte = time.perf_counter()
        if outcome.capture is not None:
            outcome.capture.keep_answer(body)
        await send_json(send, status, body, [*headers, *outcome.headers()])

    def _build(
        self, req: In, target: Target, auth: ResolvedAuth, wire: WireAPI | None, release: bool, meter: bool
    ) -> Leg:
        if wire is None:
            return self.surface.passthrough(req, target, auth, release, meter=meter)
        return self.surface.translate(req, target, wire, release)


def _wire_for(target: Target, native_api: str) -> WireAPI | None:
    """The wire module that translates to ``target`` (None: the surface's own API, the passthrough)."""
    if target.api == native_api:
        return None
    wire = translating_wire(target.api)
    if wire is None:
        raise NotImplementedYet(
            f"{target.public_id} speaks the {target.api} API, which Switchboard reaches only through "
            "its cloud adapter; declare a wire API the provider speaks itself (e.g. openai-completions) "
            "in models.json"
        )
    return wire


async def _send(
    rt: Runtime, scope: Scope, target: Target, auth: ResolvedAuth, leg: Leg, attempt: Attempt | None = None
) -> tuple[UpstreamResponse, ResolvedAuth]:
    """The upstream's answer (< 400) and the credential that got it; a 401 re-resolves it once.
    ``attempt`` gets the upstream's status, when its head arrived and the ``retry-after`` it asked for."""
    provider = target.provider
    for round_ in (1, 2):
        call = leg.call(auth)
        headers: Mapping[str, str]
        if provider.adapter:
            call = await final_call(target, auth, call, scope, leg.facts)
            headers = call.headers
        elif call.headers:
            headers = merged_headers(auth, call.headers)  # no adapter: no other step, nothing to await
        else:
            headers = auth.headers  # nothing to merge: no copy
        resp = await rt.client.send("POST", call.url, headers, call.body, provider=provider.name)
        if attempt is not None:
            attempt.status = resp.status
            attempt.first_byte = time.perf_counter()
        if resp.status < 400:
            return resp, auth
        try:
            err_body = await resp.read()
        finally:
            await aclose_quietly(resp)
        if resp.status == 401 and round_ == 1 and rt.credentials.after_unauthorized(provider.id):
            # A !command key may have been rotated: run it again once.
            auth = await rt.credentials.resolve(provider, target.model)
            continue
        if attempt is not None:
            h = resp.headers
            attempt.retry_after = retry_after_seconds(h.get("retry-after"), h.get("retry-after-ms"))
        err = leg.error(resp.status, err_body, resp.headers)
        err.message = error_hint(target, resp.status, auth.scrub(err.message))
        log.warning("upstream %s answered %s for %s", provider.id, resp.status, target.public_id)
        raise err
    raise AssertionError("unreachable")
