"""How a streamed answer goes out and how it ends, for both branches of :mod:`proxy.pipeline`.

The stream contract: once ``http.response.start`` is sent, the stream always ends with ``data: [DONE]``.
An upstream failure, an upstream stream cut short, an upstream that stops sending complete events for
``timeouts.read`` seconds, and a server shutdown each become one final ``data: {"error": ...}`` event
followed by ``[DONE]``; a half-received event is never forwarded. Only a client disconnect ends the
stream without a last word (nobody is listening). Every forwarded byte goes through the credential's
mask, so a provider echoing the key in an error event does not hand it to the client.

The passthrough and translated legs differ only in what they make of a chunk (``step``), of the end
(``finish``) and of an error (``fail``); :func:`relay` is the one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType

from providers.credentials import ResolvedAuth
from providers.errors import ServerShuttingDown, SwitchboardError, UpstreamTimeout
from providers.transport import UpstreamResponse, aclose_quietly

from .asgi import DisconnectWatch, Send

__all__ = ["DONE", "SSE_HEADERS", "Deadline", "Reply", "relay"]

log = logging.getLogger("switchboard")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
DONE = b"data: [DONE]\n\n"


class Reply:
    """What a handler knows of its own answer, so a cancellation can tell what may still be sent."""

    __slots__ = ("started", "watch")

    def __init__(self) -> None:
        #: ``http.response.start`` was sent (or is about to be): an error can no longer be an envelope.
        self.started = False
        self.watch: DisconnectWatch | None = None

    def client_gone(self) -> bool:
        return self.watch is not None and self.watch.fired


class Deadline:
    """The upstream part of a request must be over within ``seconds``, however slowly bytes trickle.

    A class rather than a generator-based context manager: it is entered on every request.
    """

    __slots__ = ("_provider", "_seconds", "_setting", "_timeout")

    def __init__(self, provider: str, seconds: float, setting: str) -> None:
        self._provider = provider
        self._seconds = seconds
        self._setting = setting
        self._timeout = asyncio.timeout(seconds)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as timeout:
            log.warning("%s did not answer within %gs (%s)", self._provider, self._seconds, self._setting)
            raise UpstreamTimeout(
                f"{self._provider} did not answer within {self._seconds:g}s; "
                f"retry, or raise {self._setting} in the server config"
            ) from timeout


class _EventClock:
    """Cancels the task when no complete event went out for ``seconds``.

    A byte-level read timeout lets an upstream dripping one byte at a time hold a request forever. The
    timer is re-armed lazily: a forwarded event only stores the time, and the timer, when due, checks
    it; so the hot loop pays one clock read per chunk. Time spent handing bytes to a slow client does
    not count against the provider.
    """

    __slots__ = ("_handle", "_seconds", "_task", "busy", "expired", "last", "loop")

    def __init__(self, seconds: float) -> None:
        self.loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._seconds = seconds
        self.last = self.loop.time()
        self.busy = False
        self.expired = False
        self._handle = self.loop.call_at(self.last + seconds, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        due = (now if self.busy else self.last) + self._seconds
        if due > now:
            self._handle = self.loop.call_at(due, self._check)
            return
        self.expired = True
        if self._task is not None:
            self._task.cancel()

    def stop(self) -> None:
        self._handle.cancel()


async def relay(
    send: Send,
    resp: UpstreamResponse,
    auth: ResolvedAuth,
    step: Callable[[bytes], bytes],
    finish: Callable[[], bytes],
    fail: Callable[[Exception], bytes],
    *,
    provider: str,
    read_timeout: float,
    client_gone: Callable[[], bool],
    headers: list[tuple[bytes, bytes]] = SSE_HEADERS,
) -> None:
    """Stream ``resp`` to the client: ``step`` turns upstream bytes into complete client events (or b""),
    ``finish`` gives the last bytes of a stream that ended, ``fail`` the error event and ``[DONE]``.

    Raises only ``CancelledError`` (after sending the shutdown event when the client is still there).
    """
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    # Bound once: a provider with no secret long enough to mask pays nothing per chunk.
    masked = auth.mask.data if auth.mask else None
    # When the transport can tell, without waiting, that the body is complete (UpstreamResponse.ended),
    # the last chunk's bytes go out with the stream's end in one send (one write to the socket less).
    read_chunk, ended = resp.read_chunk, resp.ended
    last = b""
    clock = _EventClock(read_timeout)
    loop = clock.loop
    try:
        try:
            while chunk := await read_chunk():
                out = step(chunk)
                if out:
                    if masked is not None:
                        out = masked(out)
                    if last:  # held back, yet more came: the transport's "ended" was wrong; keep the order
                        out, last = last + out, b""
                    if ended():
                        last = out
                        continue
                    clock.busy = True
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                    clock.busy = False
                    clock.last = loop.time()
            tail = finish()
        finally:
            clock.stop()
            await aclose_quietly(resp)
    except asyncio.CancelledError:
        if not clock.expired:
            if not client_gone():
                log.warning("stream to the client ended by server shutdown")
                with contextlib.suppress(Exception):
                    words = fail(ServerShuttingDown())
                    await send({"type": "http.response.body", "body": last + words, "more_body": False})
            raise
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        log.warning("%s sent no complete event for %gs; stream ended", provider, read_timeout)
        tail = fail(
            UpstreamTimeout(
                f"{provider} sent no complete stream event within {read_timeout:g}s; "
                "retry, or raise timeouts.read in the server config"
            )
        )
    except SwitchboardError as exc:
        exc.message = auth.scrub(exc.message)
        log.warning("stream from upstream broke off: %s", exc.message)
        tail = fail(exc)
    except Exception as exc:
        # A malformed upstream event must end the stream cleanly, not kill the connection.
        log.exception("could not relay the upstream stream")
        tail = fail(exc)
    if masked is not None:
        tail = masked(tail)
    await send({"type": "http.response.body", "body": last + tail if last else tail, "more_body": False})
