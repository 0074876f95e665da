"""The uvicorn server, built one way for ``switchboard serve`` and for the tests.

uvicorn leaves three things open that matter once the port is reachable, handled here:

- **Slow or idle clients.** uvicorn closes idle keep-alive connections but has no limit on how long a
  request head may take, so connections that send nothing, or half a head, stay open forever and use
  up file descriptors. :class:`_EdgeProtocol` closes a connection that has not completed a request
  head within ``timeouts.request_head``.
- **Too many connections.** Past ``max_connections`` (default: derived from the open-file limit) a
  new connection gets a 503 envelope and is closed at once, so the process keeps descriptors for the
  upstream connections and files it needs and ``/healthz`` answers again as soon as others close.
- **Stopping.** On SIGTERM/SIGINT the server stops accepting, lets requests finish for up to
  ``timeouts.shutdown`` seconds, then cancels the rest (the chat handlers turn that cancellation into
  a final error event, or a 503); a second signal cuts the wait to zero.

uvicorn's own plain-text 400 for malformed HTTP is answered with the OpenAI envelope instead.
The protocol is pinned to httptools (the fast one): the hooks below are written against it.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import cast

import msgspec
import uvicorn
from litestar import Litestar
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from providers.errors import InvalidRequest, SwitchboardError

from .asgi import DISCONNECT_EXTENSION
from .config import ServerConfig
from .guard import Guard

__all__ = ["EdgeServer", "build_server", "connection_limit"]

log = logging.getLogger("switchboard")

#: Descriptors kept free for the listening socket, auth/config files, DNS and logging.
_FD_RESERVE = 64
_CANCEL_MSG = "Task cancelled, timeout graceful shutdown exceeded"
_REFUSAL_WARNING_EVERY = 60.0
#: How long cancelled requests get to write their final error event before the loop is closed.
_AFTER_CANCEL = 5.0


def _raw_response(status: int, reason: bytes, exc: SwitchboardError) -> bytes:
    body = msgspec.json.encode(exc.envelope())
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
    return head % (status, reason, len(body)) + body


_BAD_HTTP = _raw_response(
    400,
    b"Bad Request",
    InvalidRequest("the request is not valid HTTP/1.1; send a well-formed request", code="invalid_http"),
)
_BUSY = _raw_response(
    503,
    b"Service Unavailable",
    SwitchboardError(
        "Switchboard has too many open connections; retry shortly (the limit is max_connections in config.json)",
        status=503,
        code="too_many_connections",
    ),
)


class _EdgeProtocol(HttpToolsProtocol):
    """httptools' protocol with a request-head deadline, a connection cap and an enveloped 400."""

    # Set per server by _protocol_class (uvicorn instantiates the class itself).
    head_timeout: float = 10.0
    max_connections: int = 1024
    #: Loop time of the last "too many connections" warning: one a minute, not one per connection.
    last_refusal_warning: float = -_REFUSAL_WARNING_EVERY

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        #: What the running request asked to be told when the connection is lost (DisconnectWatch).
        self._on_lost: Callable[[], None] | None = None
        self._refused = len(self.connections) >= self.max_connections
        if self._refused:
            # Never registered: the server is not waiting for it, and its descriptor is freed now.
            transport.write(_BUSY)
            transport.close()
            self.transport = transport
            now = self.loop.time()
            if now - type(self).last_refusal_warning >= _REFUSAL_WARNING_EVERY:
                type(self).last_refusal_warning = now
                log.warning(
                    "refusing connections: %d are open, the limit is max_connections=%d in config.json",
                    len(self.connections),
                    self.max_connections,
                )
            return
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if not self._refused:
            super().connection_lost(exc)
            callback, self._on_lost = self._on_lost, None
            if callback is not None and self.cycle is not None and not self.cycle.response_complete:
                callback()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None:
            cycle.transport = cast(asyncio.Transport, _HeadHolder(self.transport, self.loop))
            # The same dict the cycle holds; its task starts on the next loop iteration.
            self.scope["extensions"] = {DISCONNECT_EXTENSION: self._watch_connection}  # type: ignore[dict-item]

    def _watch_connection(self, callback: Callable[[], None]) -> Callable[[], None]:
        """:data:`proxy.asgi.DISCONNECT_EXTENSION`: ``callback`` runs if the connection is lost before
        the response is complete; the returned function withdraws it."""
        cycle = self.cycle
        if cycle is not None and cycle.disconnected:
            self.loop.call_soon(callback)
            return _nothing
        self._on_lost = callback

        def withdraw() -> None:
            if self._on_lost is callback:
                self._on_lost = None

        return withdraw

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn armed its keep-alive timer only when no pipelined request is waiting; that timer is
        # cancelled by the first byte of a next request, so the head deadline starts again here too.
        if self.timeout_keep_alive_task is not None and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def send_400_response(self, msg: str) -> None:
        self.transport.write(_BAD_HTTP)
        self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            log.debug("closing a connection that sent no complete request head within %gs", self.head_timeout)
            self.transport.close()


def _nothing() -> None:
    return None


class _HeadHolder:
    """One response's transport: the response head (its first write) waits for the body's first write, or
    for the end of the current loop iteration, whichever comes first, so a head and a body that are ready
    together leave in one write: one system call and one wake-up of the client fewer per request. A head
    whose body is not ready (a stream waiting for its first event) still leaves within the iteration.
    """

    __slots__ = ("_handle", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop: asyncio.AbstractEventLoop | None = loop
        self._held = b""
        #: The head's deadline (end of the iteration); None before the head and once it left.
        self._handle: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        if self._held:
            # The body's first bytes: out together with the head.
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            held, self._held = self._held, b""
            self._transport.write(held + data)
        elif self._loop is not None and not data.startswith(b"HTTP/1.1 100 "):
            # The head (an interim "100 Continue" goes as it is and the head after it is held).
            self._held = data
            self._handle = self._loop.call_soon(self._flush)
            self._loop = None
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        self._handle = None
        held, self._held = self._held, b""
        if held:
            self._transport.write(held)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


def _protocol_class(head_timeout: float, max_connections: int) -> type[_EdgeProtocol]:
    return type(
        "EdgeProtocol",
        (_EdgeProtocol,),
        {"head_timeout": head_timeout, "max_connections": max_connections},
    )


def connection_limit(configured: int | None) -> int:
    """``max_connections`` from config.json, or what the open-file limit allows.

    The soft limit is raised to the hard one first. Each client connection may hold one upstream
    connection too, so half of what is left after the reserve goes to clients.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if configured is not None:
        return configured
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, (soft - _FD_RESERVE) // 2)


class EdgeServer(uvicorn.Server):
    """uvicorn's server with a bounded, logged graceful shutdown that a second signal cuts short."""

    def __init__(self, config: uvicorn.Config, shutdown_timeout: float) -> None:
        super().__init__(config)
        self.shutdown_timeout = shutdown_timeout
        self.cut_short = False
        self.stopped = False
        self._cut: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.stopped:
            return
        if self.should_exit:
            # uvicorn would only force-exit on a second SIGINT (skipping the app's own shutdown);
            # both signals end the waiting instead, and the app still closes its resources.
            log.info("second %s: ending in-flight requests now", signal.Signals(sig).name)
            self.cut_short = True
            if self._cut is not None:
                # A signal handler runs between two bytecodes of whatever the loop was doing.
                self._cut[0].call_soon_threadsafe(self._cut[1].set)
            return
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        timeout = self.shutdown_timeout
        busy = len(self.server_state.tasks)
        if busy:
            log.info("shutting down: waiting up to %gs for %d requests", timeout, busy)
        else:
            log.info("shutting down")
        await self._wait_for_requests(timeout)
        tasks = list(self.server_state.tasks)
        if tasks:
            log.warning("shutting down: ending %d requests that did not finish in time", len(tasks))
            for task in tasks:
                task.cancel(msg=_CANCEL_MSG)
            await asyncio.wait(tasks, timeout=_AFTER_CANCEL)
        await self.lifespan.shutdown()
        self.stopped = True

    async def _wait_for_requests(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        self._cut = (loop, event)
        if self.cut_short:
            return
        cut = asyncio.ensure_future(event.wait())
        deadline = loop.time() + seconds
        try:
            while self.server_state.tasks and not cut.done() and (left := deadline - loop.time()) > 0:
                await asyncio.wait({*self.server_state.tasks, cut}, timeout=left, return_when="FIRST_COMPLETED")
        finally:
            cut.cancel()


def build_server(app: Litestar, config: ServerConfig, host: str, port: int) -> EdgeServer:
    """The server ``switchboard serve`` runs; tests call it with a pre-bound socket."""
    max_connections = connection_limit(config.max_connections)
    guarded = Guard(
        app,
        bind_host=host,
        allowed_hosts=config.allowed_hosts,
        max_body=int(config.max_body_mb * 1024 * 1024),
    )
    return EdgeServer(
        uvicorn.Config(
            guarded,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            loop="auto",
            http=_protocol_class(config.timeouts.request_head, max_connections),
            server_header=False,
            date_header=False,
        ),
        config.timeouts.shutdown,
    )
