"""What the pipeline knows of one request as it goes, and who may watch it end.

:class:`Outcome` is created when a request arrives (before authentication) and filled in by the
pipeline: the caller, the model asked for, each upstream :class:`Attempt`, the status the client got,
when its first byte left. Its consumers read it, never write it:

* :meth:`proxy.pipeline.Steps.finish` (the gateway's usage ledger and limits) for admitted requests;
* an :class:`Observer` (metrics, traces, the access log) for every request, refused ones included.

With ``tracing.capture_content`` on (the observer's :attr:`Observer.capture_content`) the outcome also
keeps a bounded copy of the request body and of the answer's bytes (:class:`Capture`); off, its
``capture`` stays None and the pipeline copies nothing.

Every answer carries ``x-request-id`` (the client's when it sent a usable one, else a new one), and once a
Target was tried ``x-switchboard-target`` (the provider/model that answered, or was last tried) and
``x-switchboard-attempts`` (upstream requests made); :meth:`Outcome.headers` gives them.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from providers.canonical import Usage

    from .asgi import Scope
    from .pipeline import Caller, Leg
    from .router import Target

__all__ = [
    "CAPTURE_LIMIT",
    "Attempt",
    "Capture",
    "Observer",
    "Outcome",
    "new_request_id",
    "request_id_from",
    "retry_after_seconds",
]

_REQUEST_IDS = itertools.count(1)
#: Per process: ids stay unique across replicas and restarts without a random draw (a syscall) per request.
_PROCESS = secrets.token_hex(6)
#: A client's own id is kept when it is this tame (it goes into logs, headers and the ledger as it is).
_USABLE_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")


def new_request_id() -> str:
    return f"req_{_PROCESS}{next(_REQUEST_IDS):010x}"


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``x-request-id`` when it is 1-128 characters of ``A-Za-z0-9._:/+=@-``, else a new id."""
    for name, value in headers:
        if name == b"x-request-id":
            if _USABLE_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return new_request_id()


def retry_after_seconds(value: str | None, value_ms: str | None = None) -> float | None:
    """``retry-after`` (seconds or an HTTP date) or OpenAI's ``retry-after-ms``, as seconds ≥ 0; None when
    absent or unreadable."""
    if value_ms:
        try:
            return max(0.0, float(value_ms) / 1000.0)
        except ValueError:
            pass
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Attempt:
    """One upstream request: a Target tried once (a retry or a fallback is another Attempt)."""

    __slots__ = ("ended", "error_type", "first_byte", "retry_after", "started", "status", "target")

    def __init__(self, target: Target) -> None:
        self.target = target
        self.started = time.perf_counter()
        #: When the upstream's answer head arrived (perf_counter); None: it never did.
        self.first_byte: float | None = None
        #: When the attempt was over: its answer relayed, or its failure known.
        self.ended: float | None = None
        #: The upstream's status (0: no answer: connection error, timeout, client gone).
        self.status = 0
        #: Why it failed, when it did: the error's code (``rate_limit_exceeded``, ``upstream_timeout``…).
        self.error_type: str | None = None
        #: Seconds the upstream asked to wait (``retry-after``), when it did.
        self.retry_after: float | None = None


#: Bytes kept of a request body and of an answer when contents are captured (each).
CAPTURE_LIMIT = 256 * 1024


class Capture:
    """The request body and the bytes the client got, kept for an observer that records contents.

    Bounded: a request body over :data:`CAPTURE_LIMIT` is not copied at all (a JSON prefix says nothing),
    an answer keeps its first :data:`CAPTURE_LIMIT` bytes (a stream's prefix still holds whole events);
    ``request_truncated`` and ``answer_truncated`` say so. Parsed only when the request is over, by the
    observer (:mod:`proxy.telemetry.content`).
    """

    __slots__ = ("answer", "answer_truncated", "request", "request_truncated")

    def __init__(self) -> None:
        self.request: bytes | None = None
        self.request_truncated = False
        self.answer = bytearray()
        self.answer_truncated = False

    def keep_request(self, body: bytes | bytearray) -> None:
        if len(body) > CAPTURE_LIMIT:
            self.request_truncated = True
        else:
            self.request = bytes(body)

    def keep_answer(self, data: bytes) -> None:
        room = CAPTURE_LIMIT - len(self.answer)
        if len(data) > room:
            self.answer_truncated = True
            data = data[: max(room, 0)]
        self.answer += data

    def stream_steps(
        self, step: Callable[[bytes], bytes], finish: Callable[[], bytes], mask: Callable[[bytes], bytes] | None
    ) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
        """``step`` and ``finish`` that also keep what they give the client, masked as the client gets it
        (:func:`proxy.streaming.relay` masks after ``step``)."""

        def kept(out: bytes) -> bytes:
            if out and not self.answer_truncated:
                self.keep_answer(mask(out) if mask is not None else out)
            return out

        return (lambda chunk: kept(step(chunk))), (lambda: kept(finish()))


class Outcome:
    """How a request went; see the module docstring. Times are ``time.perf_counter()`` values."""

    __slots__ = (
        "attempts",
        "caller",
        "capture",
        "ended",
        "error_type",
        "first_byte",
        "leg",
        "request_id",
        "requested",
        "started",
        "status",
        "stream",
        "surface",
        "target",
        "trace",
        "waited",
    )

    def __init__(self, surface: str, request_id: str) -> None:
        self.started = time.perf_counter()
        self.surface = surface
        self.request_id = request_id
        #: Who called (set once :meth:`Steps.authenticate` accepted them).
        self.caller: Caller | None = None
        #: The model name the client sent (set once the body was decoded).
        self.requested: str | None = None
        #: The Target last tried (the one that answered, when one did); None: none was reached.
        self.target: Target | None = None
        #: Every upstream request made, in order.
        self.attempts: list[Attempt] = []
        #: Seconds spent waiting between attempts (backoff), not Switchboard's own work.
        self.waited = 0.0
        #: When the answer's head went to the client (perf_counter); None: nothing was sent.
        self.first_byte: float | None = None
        #: When the last byte went (or the request ended otherwise).
        self.ended: float | None = None
        #: The client's status: the answer's, the error's, 499 for a client gone, 503 for a shutdown.
        self.status = 500
        #: The code of the error the client got (``invalid_api_key``, ``rate_limit_exceeded``…), if any.
        self.error_type: str | None = None
        #: The client asked for a stream (set once the leg was built).
        self.stream = False
        #: The leg of the last Target tried (its usage), None when no request was built.
        self.leg: Leg | None = None
        #: An observer's per-request state (a trace span), opaque to the pipeline.
        self.trace: object = None
        #: The request's and the answer's bytes, only when the observer records contents.
        self.capture: Capture | None = None

    def usage(self) -> Usage | None:
        """The tokens of the last Target's exchange, as its leg read them (None: nothing was answered)."""
        return self.leg.usage() if self.leg is not None else None

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The headers every answer carries (see the module docstring)."""
        out = [(b"x-request-id", self.request_id.encode())]
        if self.target is not None:
            out.append((b"x-switchboard-target", self.target.public_id.encode()))
            out.append((b"x-switchboard-attempts", str(len(self.attempts)).encode()))
        return out


class Observer(Protocol):
    """Watches every request (metrics, traces, the access log). Both calls must be cheap, must not block
    and must not raise: they run on the request path of every request."""

    #: Record message contents: the pipeline then keeps the request's and the answer's bytes in
    #: :attr:`Outcome.capture` (read once per request, before ``started``).
    capture_content: bool

    def started(self, outcome: Outcome, scope: Scope) -> None:
        """The request arrived (``outcome`` has its surface and request id; ``scope`` its headers)."""
        ...

    def ended(self, outcome: Outcome) -> None:
        """The request is over, however it ended; ``outcome`` is complete."""
        ...
