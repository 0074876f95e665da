"""A mixin for the fake upstreams: the raw request target of every request the fake receives.

Mixed in before a fake (``class Recording(RawPaths, FakeGemini)``), it records ``request.raw_path`` (path
and query exactly as they came off the wire, before any routing) for matched routes and 404s alike, so
a test can assert that nothing reached another endpoint.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["RawPaths"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RawPaths:
    raw_paths: list[str]

    def routes(self, app: web.Application) -> None:
        self.raw_paths = []

        @web.middleware
        async def record(request: web.Request, handler: _Handler) -> web.StreamResponse:
            self.raw_paths.append(request.raw_path)
            return await handler(request)

        app.middlewares.append(record)
        super().routes(app)  # type: ignore[misc]
