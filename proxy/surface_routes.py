"""The inbound surfaces' paths, and the ASGI app that sends them straight to their handlers.

The surfaces are raw ASGI handlers on :mod:`proxy.pipeline`; they need nothing of the web framework
(routing by exact path, no parameters, their own error envelopes). :class:`SurfaceDispatch` sits in front
of litestar and hands each surface path to its handler with one dictionary lookup; every other path (the
models list, health, the admin API, the dashboard, unknown paths) goes on to litestar. Measured on the
streamed rows of ``bench/``: the framework's router, exception middleware and its wrapper around every
``send`` cost about as much per request as the whole translation of a stream.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from providers.errors import SwitchboardError

from .asgi import Receive, Scope, Send, send_error
from .chat import handle_chat_completions
from .completions import handle_completions
from .embeddings import handle_embeddings
from .messages import handle_count_tokens, handle_messages
from .responses import handle_responses

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["SURFACES", "SurfaceDispatch", "surface_paths"]

log = logging.getLogger("switchboard")

Handler = Callable[["Runtime", Scope, Receive, Send], Awaitable[None]]

#: Each surface's path; each is also served without the ``/v1`` prefix.
SURFACES: dict[str, Handler] = {
    "/v1/chat/completions": handle_chat_completions,
    "/v1/completions": handle_completions,
    "/v1/responses": handle_responses,
    "/v1/messages": handle_messages,
    "/v1/messages/count_tokens": handle_count_tokens,
    "/v1/embeddings": handle_embeddings,
}


def surface_paths() -> dict[str, Handler]:
    """Every path a surface answers on: ``/v1/x`` and ``/x``."""
    table = dict(SURFACES)
    table.update({path.removeprefix("/v1"): handler for path, handler in SURFACES.items()})
    return table


_INTERNAL = "internal error in Switchboard; see the server log"


class SurfaceDispatch:
    """ASGI app: surface paths to their handlers, the rest to ``app`` (see the module docstring)."""

    __slots__ = ("_app", "_runtime", "_table")

    def __init__(self, app: Callable[..., Awaitable[None]], runtime: Runtime) -> None:
        self._app = app
        self._runtime = runtime
        self._table = surface_paths()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self._table.get(scope["path"])
            if handler is not None:
                try:
                    await handler(self._runtime, scope, receive, send)
                except Exception:
                    # The handlers answer every failure themselves; this is a bug. Answered in the surface's
                    # usual envelope when nothing was sent yet (else the server closes the connection).
                    log.exception("unexpected error")
                    with contextlib.suppress(Exception):
                        await send_error(send, SwitchboardError(_INTERNAL, code="internal_error"))
                return
        await self._app(scope, receive, send)
