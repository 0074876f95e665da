"""The scaffold every fake upstream shares: a real aiohttp server on 127.0.0.1 in its own thread.

Subclasses add their routes in :meth:`FakeServer.routes` and record what they receive in ``requests``;
tests queue special answers with :meth:`FakeServer.push`. The kinds every fake understands are played
here once (:meth:`FakeServer.play`: ``error``, ``hang``, ``raw``; :meth:`FakeServer.stream`: ``break``,
``slow``); a fake adds its wire's own kinds and keeps its wire's own error bodies.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

#: The content type of an SSE answer.
SSE = "text/event-stream"
#: Between the chunks of a ``raw`` answer: each reaches the client as its own TCP write.
_RAW_GAP = 0.005
#: Before each event of a ``slow`` stream that names no interval.
_SLOW_GAP = 0.025
#: How often a ``hang`` looks whether the client is still there.
_HANG_POLL = 0.05


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Action:
    """A special answer for the next request (see each fake's docstring for the kinds it adds)."""

    kind: str  # "error" | "hang" | "break" | "raw" | "slow", or a kind one fake adds
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    after_events: int = 0
    chunks: list[bytes] = field(default_factory=list)


def free_port() -> int:
    """A port nothing listens on, for tests that need a dead address or hand a port to a subprocess.

    Fake servers do not use it: they keep the socket they bound (see :class:`FakeServer`), so no other
    process can take the port between choosing it and listening on it.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeServer:
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.actions: deque[Action] = deque()
        #: Set when a client leaves in the middle of a stream (the proxy must not keep reading upstream).
        self.disconnected = threading.Event()
        # Bound here and handed to aiohttp as is: the port is known at once and never released and re-bound.
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        #: Set by a subclass that serves HTTPS.
        self.ssl_context: ssl.SSLContext | None = None
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def last(self) -> Any:
        return self.requests[-1]

    def push(self, action: Action) -> None:
        self.actions.append(action)

    async def record(self, request: web.Request) -> Any:
        """Read and record a request; its body as :func:`read_body` gives it."""
        body = await read_body(request)
        self.requests.append(Recorded(request.method, request.path, dict(request.headers), body))
        return body

    def next_action(self, *kinds: str) -> Action | None:
        """The queued action, taken off the queue; with ``kinds``, only if it is one of them (else left)."""
        if not self.actions or (kinds and self.actions[0].kind not in kinds):
            return None
        return self.actions.popleft()

    async def play(self, request: web.Request, action: Action | None) -> web.StreamResponse | None:
        """Play the kinds every fake shares; None: the fake answers as usual (after a ``hang``, too).

        ``error`` answers the queued status, JSON body and headers as they are (a test writes the wire's
        own error body); ``hang`` answers nothing for ``seconds`` or until the client leaves, so a
        stopping fake never waits on it; ``raw`` streams the queued bytes as they are.
        """
        if action is None:
            return None
        if action.kind == "error":
            return web.json_response(action.body, status=action.status, headers=action.headers)
        if action.kind == "hang":
            await _hang(request, action.seconds)
        if action.kind == "raw":
            resp = web.StreamResponse(status=200, headers={"Content-Type": SSE})
            await resp.prepare(request)
            for chunk in action.chunks:
                await resp.write(chunk)
                await asyncio.sleep(_RAW_GAP)
            await resp.write_eof()
            return resp
        return None

    async def stream(
        self,
        request: web.Request,
        frames: Iterable[bytes],
        action: Action | None,
        torn: bytes,
        content_type: str = SSE + "; charset=utf-8",
    ) -> web.StreamResponse:
        """Stream ``frames``; ``break`` sends ``torn`` (half a frame of this wire) instead of frame
        ``after_events`` and drops the connection, as a crashed upstream does; ``slow`` waits ``seconds``
        before each frame. A client that leaves sets :attr:`disconnected`."""
        resp = web.StreamResponse(status=200, headers={"Content-Type": content_type})
        await resp.prepare(request)
        kind = action.kind if action is not None else None
        try:
            for n, frame in enumerate(frames):
                if action is not None and kind == "break" and n == action.after_events:
                    await resp.write(torn)
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if action is not None and kind == "slow":
                    await asyncio.sleep(action.seconds or _SLOW_GAP)
                await resp.write(frame)
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        await resp.write_eof()
        return resp

    def start(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._sock.close()

    def discard(self) -> None:
        """Release a fake that was never started (one whose handlers another fake serves on its own loop)."""
        self._loop.close()
        self._sock.close()

    async def _start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock, ssl_context=self.ssl_context).start()


async def read_body(request: web.Request) -> Any:
    """The request's JSON body, or its raw bytes when it is not JSON (the fake then answers 400)."""
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


async def _hang(request: web.Request, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and request.transport is not None and not request.transport.is_closing():
        await asyncio.sleep(_HANG_POLL)
