"""The scaffold every fake upstream shares: a real aiohttp server on 127.0.0.1 in its own thread.

Subclasses add their routes in :meth:`FakeServer.routes` and record what they receive in ``requests``;
tests queue special answers with :meth:`FakeServer.push`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import deque
from typing import Any, Self

from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeServer:
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.actions: deque[Any] = deque()
        self.port = free_port()
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

    async def _start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()


async def read_body(request: web.Request) -> Any:
    """The request's JSON body, or its raw bytes when it is not JSON (the fake then answers 400)."""
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw
