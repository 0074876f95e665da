"""The contracts of :mod:`proxy.pipeline`: what a surface (:class:`Surface`) and the leg it builds for one
Target (:class:`Leg`) provide, and the cross-cutting :class:`Steps` (with :class:`Caller` and
:class:`Admit`) the gateway implements. The pipeline module re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from providers.canonical import Usage
from providers.credentials import ResolvedAuth
from providers.errors import SwitchboardError
from providers.request_facts import RequestFacts
from providers.wire.base import UpstreamCall, WireAPI

from .asgi import Scope
from .outcome import Outcome
from .router import Target

__all__ = ["Admit", "Caller", "Headers", "Leg", "Steps", "Surface"]

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
    #: :meth:`usage` was counted by Switchboard (a cut stream without the upstream's usage).
    estimated: bool

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

    def fallbacks(self, req: In) -> Sequence[str]:
        """The request's per-request ``fallbacks`` (model names), removed from it so that they never go
        upstream; raises :class:`InvalidRequest` naming ``fallbacks``. A surface without them: ``()``."""
        ...

    def max_output(self, req: In) -> int | None:
        """The output tokens the client allows (for budget reservations); None: not limited by it."""
        ...

    def passthrough(self, req: In, target: Target, auth: ResolvedAuth, release: bool, *, meter: bool) -> Leg:
        """The native branch: the body with only the needed edits, bytes relayed back unparsed. ``auth``
        is the Target's credential (a cloud adapter may name another upstream model through it, such as
        Azure's deployment). ``release``: no other Target will need ``req``, free it now (it is as large
        as the body). ``meter``: the leg must read the exchange's usage (and ask the upstream for it)."""
        ...

    def translate(self, req: In, target: Target, wire: WireAPI, release: bool) -> Leg:
        """The translated branch: for a chat-like surface a :class:`TranslatedLeg` (its canonical request,
        ``wire`` upstream, its encoders back); raises :class:`InvalidRequest` naming the parameter."""
        ...

    def error_body(self, exc: SwitchboardError) -> bytes:
        """An error before the first byte in the surface's own envelope (OpenAI's, Anthropic's)."""
        ...


class Caller:
    """Who sent the request, as :meth:`Steps.authenticate` established it (this base: anonymous)."""

    __slots__ = ()


_ANONYMOUS = Caller()


class Admit:
    """What :meth:`Steps.admit` may weigh: the client's model name, where it may route, the request's size.

    ``targets`` is every Target the request may reach, each with the name the client gave for it (the
    route's name for a route's Targets, each fallback's own); ``target`` is the first of them.
    """

    __slots__ = ("body_len", "max_output", "requested", "route", "surface", "target", "targets")

    def __init__(
        self,
        surface: str,
        requested: str,
        target: Target,
        body_len: int,
        max_output: int | None,
        targets: Sequence[tuple[str, Target]] = (),
        route: str | None = None,
    ) -> None:
        self.surface = surface
        self.requested = requested
        self.target = target
        self.body_len = body_len
        self.max_output = max_output
        self.targets = targets or ((requested, target),)
        #: The route asked for (None: a model name).
        self.route = route


class Steps:
    """The pipeline's cross-cutting steps, each a no-op here (the gateway's are :mod:`proxy.gateway.steps`).

    * :meth:`authenticate` runs before the body is read; raises :class:`SwitchboardError` (401) to refuse.
    * :meth:`admit` runs once the model is known; raises (403 allow-list, 429 limits) to refuse. What it
      returns (a reservation) goes to :meth:`finish`. Which Targets are tried, and when, is routing's
      (:mod:`proxy.routing`), within ``admit.targets``.
    * :meth:`finish` is called exactly once for every request :meth:`admit` let through, however it
      ended (answered, failed, cut, client gone, server stopping). It must not block or raise: queue
      the writes.
    """

    #: Legs read the exchange's usage (an OpenAI stream asks for its usage chunk). Off: not a byte parsed.
    meter = False

    async def authenticate(self, scope: Scope) -> Caller:
        return _ANONYMOUS

    async def admit(self, caller: Caller, admit: Admit) -> object:
        return None

    def finish(self, caller: Caller, ticket: object, outcome: Outcome) -> None:
        return None
