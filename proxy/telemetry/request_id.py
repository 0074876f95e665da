"""``x-request-id`` on the answers of every route the pipeline does not serve (models, health, admin,
/metrics, the dashboard, 404s…): the client's when it sent a usable one, else a new one.

The pipeline's surfaces put it on their answers themselves (:meth:`proxy.outcome.Outcome.headers`); their
paths never reach this wrapper (:class:`proxy.surface_routes.SurfaceDispatch` takes them first), so a stream's
chunks pay nothing here. An answer that already carries the header keeps it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..outcome import request_id_from

__all__ = ["RequestIds"]

Message = MutableMapping[str, Any]
App = Callable[..., Awaitable[None]]

_HEADER = b"x-request-id"


class RequestIds:
    """The raw ASGI wrapper adding the header (see the module docstring)."""

    __slots__ = ("_app",)

    def __init__(self, app: App) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"]).encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                if not any(bytes(name).lower() == _HEADER for name, _ in headers):
                    headers.append((_HEADER, request_id))
                    message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_with_id)
