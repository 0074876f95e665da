"""The one request pipeline: every inbound surface and every upstream go through :meth:`Pipeline.handle`.

::

    steps.authenticate    who is calling, from the headers                 (hook; no-op today)
    surface.decode        the client's bytes → the surface's request (body freed before the upstream call)
    route                 the model name → a Target (router)
    steps.admit           allow-lists, rate limits, budgets                (hook; no-op today)
    steps.targets         the Targets to try, in order                     (hook; the routed one today)
    for each Target — a fallback only while nothing was sent to the client:
      credentials         flag → auth.json → env → models.json
      build               native API: surface.passthrough (body edits);   else: surface.canonical → wire.build
      finalize            the cloud adapter signs or authorizes            (proxy.upstream_call.final_call)
      send                one shared client; a 401 re-resolves the credential once and resends
      decode / encode     native: bytes relayed as they are;  else: wire decoder → surface encoder
    steps.record          tokens (and later cost) of the exchange           (hook; no-op today)

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
from collections.abc import Callable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from providers.canonical import Request, Response, Usage
from providers.credentials import ResolvedAuth
from providers.errors import InvalidRequest, NotImplementedYet, ServerShuttingDown, SwitchboardError
from providers.request_facts import RequestFacts
from providers.transport import UpstreamResponse, aclose_quietly
from providers.wire import translating_wire
from providers.wire.base import UpstreamCall, WireAPI

from .asgi import DisconnectWatch, Receive, Scope, Send, read_body_buffer, send_error, send_json
from .router import Target
from .runtime import Runtime
from .streaming import Deadline, Reply, relay
from .translated import StreamEncoder, TranslatedLeg
from .upstream_call import error_hint, final_call

__all__ = ["Caller", "Leg", "Pipeline", "Steps", "Surface"]

log = logging.getLogger("switchboard")

Headers = list[tuple[bytes, bytes]]
In = TypeVar("In")


class Leg(Protocol):
    """One request's way to one Target, made by the pipeline's build step (passthrough or translated).

    The pipeline calls :meth:`call` before each send (again after a 401, with the re-resolved
    credential), :meth:`error` for an answer ≥ 400, then :meth:`answer` or :meth:`stream_steps`. Each may
    raise :class:`SwitchboardError`, whose message the pipeline masks; none does I/O.
    """

    stream: bool
    #: What a cloud adapter may need of the request, read once when the leg was built (None: no adapter).
    facts: RequestFacts | None

    def call(self, auth: ResolvedAuth) -> UpstreamCall:
        """The upstream request; its ``headers`` are added to the credential's (none: sent as they are)."""
        ...

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError: ...

    def answer(self, status: int, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes, Headers]:
        """A non-streamed upstream answer → the client's status, body and headers."""
        ...

    def stream_steps(
        self,
    ) -> tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[Exception], bytes]]:
        """``step``, ``finish`` and ``fail`` for :func:`proxy.streaming.relay`."""
        ...

    def usage(self) -> Usage | None:
        """What the exchange consumed, once it is over (None: not read on this branch)."""
        ...


class Surface(Protocol[In]):
    """An inbound API: its decode (client bytes → request) and its encode (answers → client bytes).

    A new surface (OpenAI Responses, Anthropic Messages) is one object with these members; the pipeline
    around it stays the same.
    """

    #: The path, for messages ("/v1/chat/completions").
    path: str
    #: The upstream wire API this surface speaks itself: a Target on it takes the passthrough branch.
    native_api: str

    def decode(self, body: bytearray) -> In:
        """The request, validated enough to route; raises :class:`InvalidRequest`."""
        ...

    def model(self, req: In) -> str: ...

    def passthrough(self, req: In, target: Target, auth: ResolvedAuth, release: bool) -> Leg:
        """The native branch: the body with only the needed edits, bytes relayed back unparsed. ``auth``
        is the Target's credential (a cloud adapter may name another upstream model through it, such as
        Azure's deployment). ``release``: no other Target will need ``req``, free it now (it is as large
        as the body)."""
        ...

    def canonical(self, req: In, target: Target, release: bool) -> Request:
        """The translated branch's input; raises :class:`InvalidRequest` naming the parameter."""
        ...

    def encode_response(self, answer: Response, model: str) -> bytes:
        """A canonical answer → the client's JSON body."""
        ...

    def stream_encoder(self, model: str, include_usage: bool) -> StreamEncoder: ...


class Caller:
    """Who sent the request, as client authentication will establish it (anonymous until then)."""

    __slots__ = ()


_ANONYMOUS = Caller()


class Steps:
    """The pipeline's cross-cutting steps, each a no-op here; later work overrides one method, not a path.

    * :meth:`authenticate` runs before the body is read; raises :class:`SwitchboardError` (401) to refuse.
    * :meth:`admit` runs once the model is known; raises (403 allow-list, 429 limits) to refuse.
    * :meth:`targets` gives the Targets to try in order (retries, fallbacks); the pipeline moves to the
      next one only while nothing was sent to the client and :meth:`fall_back` accepts the error.
    * :meth:`record` receives the usage of every answered exchange (the stream's, once it ended); it
      must not block: queue the write.
    """

    async def authenticate(self, scope: Scope) -> Caller:
        return _ANONYMOUS

    async def admit(self, caller: Caller, model: str) -> None:
        return None

    def targets(self, caller: Caller, routed: Target) -> Sequence[Target]:
        return (routed,)

    def fall_back(self, caller: Caller, target: Target, error: SwitchboardError) -> bool:
        return True

    def record(self, caller: Caller, target: Target, usage: Usage | None) -> None:
        return None


class Pipeline(Generic[In]):
    __slots__ = ("steps", "surface")

    def __init__(self, surface: Surface[In], steps: Steps | None = None) -> None:
        self.surface = surface
        self.steps = steps or Steps()

    async def handle(self, rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_error(send, InvalidRequest(f"use POST for {self.surface.path}", status=405))
            return
        reply = Reply()
        try:
            # From the headers alone: a refused client costs no body read.
            caller = await self.steps.authenticate(scope)
            # Decoded straight from one buffer and not kept: a large body (base64 images) peaks near its size.
            req = self.surface.decode(await read_body_buffer(receive, scope))
            reply.watch = DisconnectWatch(receive)
            await self._serve(rt, scope, caller, req, send, reply)
        except SwitchboardError as exc:
            log.debug("request failed: %s %s", exc.status, exc.message)
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

    async def _serve(self, rt: Runtime, scope: Scope, caller: Caller, req: In, send: Send, reply: Reply) -> None:
        steps = self.steps
        routed = rt.router.resolve(self.surface.model(req))
        await steps.admit(caller, routed.public_id)
        targets = steps.targets(caller, routed)
        last = len(targets) - 1
        for i, target in enumerate(targets):
            try:
                leg = await self._exchange(rt, scope, req, target, send, reply, release=i == last)
            except SwitchboardError as exc:
                if reply.started or i == last or not steps.fall_back(caller, target, exc):
                    raise
                log.info("%s failed (%s); trying %s", target.public_id, exc.status, targets[i + 1].public_id)
                continue
            steps.record(caller, target, leg.usage())
            return

    async def _exchange(
        self, rt: Runtime, scope: Scope, req: In, target: Target, send: Send, reply: Reply, *, release: bool
    ) -> Leg:
        provider = target.provider
        wire = _wire_for(target, self.surface.native_api)
        auth = rt.credentials.cached(provider.id, target.model) or await rt.credentials.resolve(provider, target.model)
        try:
            leg = self._build(req, target, auth, wire, release)
            t = rt.client.timeouts
            async with Deadline(provider.name, *t.budget(leg.stream)):
                resp, auth = await _send(rt, scope, target, auth, leg)
                if not leg.stream:
                    try:
                        data = await resp.read()
                    finally:
                        await aclose_quietly(resp)
            if leg.stream:
                reply.started = True
                step, finish, fail = leg.stream_steps()
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
                )
                return leg
            status, body, headers = leg.answer(resp.status, data, resp.headers)
        except SwitchboardError as exc:
            # The one place a message that may quote the provider's answer is masked (and then cut).
            exc.message = auth.scrub(exc.message)
            raise
        reply.started = True
        await send_json(send, status, body, headers)
        return leg

    def _build(self, req: In, target: Target, auth: ResolvedAuth, wire: WireAPI | None, release: bool) -> Leg:
        surface = self.surface
        if wire is None:
            return surface.passthrough(req, target, auth, release)
        creq = surface.canonical(req, target, release)
        return TranslatedLeg(wire, target, creq, surface.encode_response, surface.stream_encoder)


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
    rt: Runtime, scope: Scope, target: Target, auth: ResolvedAuth, leg: Leg
) -> tuple[UpstreamResponse, ResolvedAuth]:
    """The upstream's answer (< 400) and the credential that got it; a 401 re-resolves it once."""
    provider = target.provider
    for attempt in (1, 2):
        call = leg.call(auth)
        headers: Mapping[str, str]
        if provider.adapter or call.headers:
            call = await final_call(target, auth, call, scope, leg.facts)
            headers = call.headers
        else:
            headers = auth.headers  # nothing to merge: no copy
        resp = await rt.client.send("POST", call.url, headers, call.body, provider=provider.name)
        if resp.status < 400:
            return resp, auth
        try:
            err_body = await resp.read()
        finally:
            await aclose_quietly(resp)
        if resp.status == 401 and attempt == 1 and rt.credentials.after_unauthorized(provider.id):
            # A !command key may have been rotated: run it again once.
            auth = await rt.credentials.resolve(provider, target.model)
            continue
        err = leg.error(resp.status, err_body, resp.headers)
        err.message = error_hint(target, resp.status, auth.scrub(err.message))
        log.warning("upstream %s answered %s for %s", provider.id, resp.status, target.public_id)
        raise err
    raise AssertionError("unreachable")
