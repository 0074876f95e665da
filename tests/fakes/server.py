"""The scaffold every fake upstream shares: a real aiohttp server on 127.0.0.1 in its own thread.

Subclasses add their routes in :meth:`FakeServer.routes` and record what they receive in ``requests``;
tests queue special answers with :meth:`FakeServer.push`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
from collections import deque
from typing import Any, Self

from aiohttp import web


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
        self.actions: deque[Any] = deque()
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

    def push(self, action: Any) -> None:
        self.actions.append(action)

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
