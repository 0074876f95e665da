"""The litestar application: thin handlers over the :class:`Runtime` created in the lifespan.

The inbound surfaces (chat completions, Responses, Messages, embeddings, legacy completions) are not
litestar routes: :class:`proxy.surface_routes.SurfaceDispatch`, the first thing inside the app, hands their
paths straight to the pipeline. The rest are ordinary litestar handlers. Every error, including unknown
routes and unexpected exceptions, is answered with the OpenAI error envelope.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

from litestar import Litestar, Request, Response, get, head
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp

from providers.errors import InvalidRequest, NotFound, SwitchboardError

from .asgi import hide_paths
from .config import Paths, ServerConfig
from .gateway.admin import admin_router
from .messages import anthropic_model_list
from .models import get_model, list_models
from .responses import response_not_stored
from .runtime import Runtime
from .surface_routes import SurfaceDispatch
from .telemetry.request_id import RequestIds
from .ui.routes import ui_router

__all__ = ["create_app"]

log = logging.getLogger("switchboard")


def _rt(request: Request[Any, Any, Any]) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


@get(path=["/v1/responses/{response_id:str}", "/responses/{response_id:str}"])
async def responses_get(request: Request[Any, Any, Any]) -> None:
    """Switchboard keeps no responses (stateless, ``store: false``): a clear 404 saying what to send."""
    rt = _rt(request)
    if rt.gateway is not None:
        from .gateway.steps import bearer_token

        await rt.gateway.steps.caller(bearer_token(request.scope["headers"]))
    raise response_not_stored()


@get(path=["/v1/models", "/models"])
async def models_list(request: Request[Any, Any, Any]) -> dict[str, Any]:
    rt = _rt(request)
    entries = list_models(rt)
    if rt.gateway is not None:
        # With the gateway on, a virtual key sees only the models it may use.
        from .gateway.steps import bearer_token, entry_allowed

        caller = await rt.gateway.steps.caller(bearer_token(request.scope["headers"]))
        if caller.key is not None:
            entries = [e for e in entries if entry_allowed(caller.key, e)]
    if "anthropic-version" in request.headers:
        # Anthropic's SDKs and Claude Code read the list in Anthropic's shape.
        return anthropic_model_list(entries)
    return {"object": "list", "data": entries}


@get(path=["/v1/models/{model_id:path}", "/models/{model_id:path}"])
async def models_get(request: Request[Any, Any, Any]) -> dict[str, Any]:
    rt = _rt(request)
    # Read from path_params rather than the signature: ids contain "/" and ":".
    entry = get_model(rt, str(request.path_params["model_id"]).lstrip("/"))
    if rt.gateway is not None:
        from .gateway.steps import bearer_token, entry_allowed

        caller = await rt.gateway.steps.caller(bearer_token(request.scope["headers"]))
        if caller.key is not None and not entry_allowed(caller.key, entry):
            raise NotFound(f"model {entry['id']!r} is not available to this key", code="model_not_found")
    return entry


@get(path="/healthz", sync_to_thread=False)
def healthz(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Always 200 while the process serves: a broken config file keeps the last good state in use, so a
    liveness probe must not restart the proxy over it; ``"degraded"`` and ``problems`` say what to fix."""
    rt = _rt(request)
    problems = [hide_paths(p) for p in rt.problems()]
    if not problems:
        return {"status": "ok", "providers": len(rt.registry)}
    return {"status": "degraded", "providers": len(rt.registry), "problems": problems}


@get(path="/metrics")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus's text format (:mod:`proxy.telemetry.metrics`, :mod:`proxy.telemetry.scrape`)."""
    rt = _rt(request)
    telemetry = rt.telemetry
    if telemetry is None or telemetry.metrics is None:
        raise NotFound(
            'metrics are off: set "metrics": {"enabled": true} in config.json and restart Switchboard',
            code="not_found",
        )
    from prometheus_client import CONTENT_TYPE_LATEST

    from .gateway.steps import bearer_token
    from .telemetry.scrape import may_scrape, render

    if not may_scrape(bearer_token(request.scope["headers"]), telemetry.metrics_token, rt.gateway):
        who = "the master key or the metrics token" if rt.gateway is not None else "the metrics token"
        raise InvalidRequest(
            f"GET /metrics needs {who} (metrics.token in config.json): send 'Authorization: Bearer <token>'",
            status=401,
            code="invalid_api_key",
            headers={"www-authenticate": "Bearer"},
        )
    body = await render(
        telemetry.metrics, registry=rt.registry, routing=rt.routing, gateway=rt.gateway, per_key=telemetry.per_key
    )
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@head(path=["/", "/healthz"], sync_to_thread=False)
def probe() -> None:
    """200 with no body: Claude Code probes ``HEAD /`` before its first request, load balancers
    ``HEAD /healthz``."""


#: Every endpoint, for the 404 that lists them (each also served without the /v1 prefix).
_ENDPOINTS = (
    "POST /v1/chat/completions, POST /v1/completions, POST /v1/responses, GET /v1/responses/{id}, "
    "POST /v1/messages, POST /v1/messages/count_tokens, POST /v1/embeddings, GET /v1/models, "
    "GET /v1/models/{id}, GET /healthz, GET /metrics"
)
#: Longest request path quoted back in a 404.
_MAX_QUOTED_PATH = 200


def _quoted_path(request: Request[Any, Any, Any]) -> str:
    path = str(request.scope.get("path", ""))
    return path if len(path) <= _MAX_QUOTED_PATH else path[:_MAX_QUOTED_PATH] + "..."


def _no_such_endpoint(request: Request[Any, Any, Any]) -> str:
    """The 404 for an unknown path: it names the method and path, so a client that reports "not found"
    as a missing model still shows what was asked, and lists what is served."""
    return (
        f"Switchboard has no endpoint {request.method} {_quoted_path(request)}; it serves {_ENDPOINTS} (each "
        "also without /v1) and, with a master key (SWITCHBOARD_MASTER_KEY), the admin API under /admin/v1 and the "
        "dashboard at /ui. "
        "Check the client's base URL: http://<host>:<port>/v1 for OpenAI clients, http://<host>:<port> for "
        "Anthropic's"
    )


def _error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, SwitchboardError):
        err = exc
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        detail = exc.detail
        headers = None
        if status == 404:
            detail = _no_such_endpoint(request)
        elif status == 405:
            allow = (exc.headers or {}).get("allow", "")
            detail = f"{request.method} is not allowed on {_quoted_path(request)}"
            if allow:
                detail += f"; it answers {allow}"
                headers = {"allow": allow}  # a 405 must say what is allowed (RFC 9110)
        err = InvalidRequest(detail, status=status, code="not_found" if status == 404 else None, headers=headers)
    else:
        log.exception("unexpected error")
        err = SwitchboardError("internal error in Switchboard; see the server log", code="internal_error")
    envelope = err.envelope()
    envelope["error"]["message"] = hide_paths(err.message)
    return Response(envelope, status_code=err.status, headers=err.headers or None)


#: Young objects allowed before a collection (CPython's default: 700). See :func:`_settle_heap`.
YOUNG_GENERATION = 10_000


def _settle_heap() -> None:
    """Move what start-up built (catalog, registry, imported modules) out of the collector's reach, and
    let the young generation hold the requests in flight.

    Start-up's objects live as long as the process; without the freeze, each full collection walks them
    all (~50k objects, 40-60 ms), which was the whole of the passthrough's p99 at one connection.

    A served request leaves no reference cycle (``tests/test_pipeline.py`` checks it), so the young
    generation holds only live objects of the requests in flight, and a collection finds nothing to free.
    At CPython's threshold of 700 those objects set one off every ~9 requests at 32 connections (17.7 us
    a request in collections, measured with gc.callbacks); at 10,000 one ran in 20 s of load, and the
    translated stream served 16% more requests. A pause walks at most the young objects (~1.5 ms at
    10,000); the p99 at one connection stayed under 1 ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION, *gc.get_threshold()[1:])


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
            if runtime.telemetry is not None:
                # Flushing spans may wait on the collector: not on the event loop.
                await asyncio.to_thread(runtime.telemetry.close)

    app = Litestar(
        route_handlers=[
            responses_get,
            models_list,
            models_get,
            healthz,
            metrics,
            probe,
            admin_router(),
            ui_router(),
        ],
        lifespan=[lifespan],
        exception_handlers={Exception: _error_response},
        openapi_config=None,
        logging_config=None,
    )
    app.state.runtime = runtime
    # Outside litestar's routing, so that its 404s and 405s get the header too; the surfaces' paths go
    # straight to the pipeline, which sets the header itself.
    app.asgi_handler = cast(ASGIApp, SurfaceDispatch(RequestIds(app.asgi_handler), runtime))
    return app
