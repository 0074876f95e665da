"""The litestar application: thin handlers over the :class:`Runtime` created in the lifespan.

Chat completions is a raw ASGI handler (the hot path skips framework request/response objects); the
rest are ordinary litestar handlers. Every error, including unknown routes and unexpected exceptions,
is answered with the OpenAI error envelope.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, asgi, get
from litestar.exceptions import HTTPException
from litestar.types import Receive, Scope, Send

from providers.errors import InvalidRequest, SwitchboardError

from .asgi import hide_paths
from .chat import handle_chat_completions
from .config import Paths, ServerConfig
from .models import get_model, list_models
from .runtime import Runtime

__all__ = ["create_app"]

log = logging.getLogger("switchboard")


def _rt(request: Request[Any, Any, Any]) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


@asgi(path=["/v1/chat/completions", "/chat/completions"], copy_scope=False)
async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    rt: Runtime = scope["litestar_app"].state.runtime
    await handle_chat_completions(rt, scope, receive, send)  # type: ignore[arg-type]


@get(path=["/v1/models", "/models"], sync_to_thread=False)
def models_list(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"object": "list", "data": list_models(_rt(request))}


@get(path=["/v1/models/{model_id:path}", "/models/{model_id:path}"], sync_to_thread=False)
def models_get(request: Request[Any, Any, Any]) -> dict[str, Any]:
    # Read from path_params rather than the signature: ids contain "/" and ":".
    return get_model(_rt(request), str(request.path_params["model_id"]).lstrip("/"))


@get(path="/healthz", sync_to_thread=False)
def healthz(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Always 200 while the process serves: a broken config file keeps the last good state in use, so a
    liveness probe must not restart the proxy over it; ``"degraded"`` and ``problems`` say what to fix."""
    rt = _rt(request)
    problems = [hide_paths(p) for p in rt.problems()]
    if not problems:
        return {"status": "ok", "providers": len(rt.registry)}
    return {"status": "degraded", "providers": len(rt.registry), "problems": problems}


def _error_response(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, SwitchboardError):
        err = exc
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        detail = exc.detail
        if status == 404:
            detail = "no such endpoint; Switchboard serves /v1/chat/completions, /v1/models and /healthz"
        elif status == 405:
            detail = "method not allowed on this endpoint"
        err = InvalidRequest(detail, status=status, code="not_found" if status == 404 else None)
    else:
        log.exception("unexpected error")
        err = SwitchboardError("internal error in Switchboard; see the server log", code="internal_error")
    envelope = err.envelope()
    envelope["error"]["message"] = hide_paths(err.message)
    return Response(envelope, status_code=err.status, headers=err.headers or None)


def _settle_heap() -> None:
    """Move what start-up built (catalog, registry, imported modules) out of the collector's reach.

    Those objects live as long as the process; without this, each full collection walks them all (~50k
    objects, 40-60 ms), which was the whole of the passthrough's p99 at one connection. Cycles made by
    requests are still collected, and a reload's replaced registry is freed by refcount. The thresholds
    stay CPython's: a larger young generation (tried: 50,000) makes fewer but longer pauses, and the
    p99 is the longest pause a request meets.
    """
    gc.collect()
    gc.freeze()


def create_app(paths: Paths, config: ServerConfig, cli_keys: Mapping[str, str] | None = None) -> Litestar:
    runtime = Runtime(paths, config, cli_keys)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.runtime = runtime
        await runtime.start()
        _settle_heap()
        try:
            yield
        finally:
            await runtime.stop()

    app = Litestar(
        route_handlers=[chat_completions, models_list, models_get, healthz],
        lifespan=[lifespan],
        exception_handlers={Exception: _error_response},
        openapi_config=None,
        logging_config=None,
    )
    app.state.runtime = runtime
    return app
