"""The admin API under ``/admin/v1``: virtual keys, usage and request records. Master key only.

::

    POST   /admin/v1/keys                 201 the key's view and "key" (its plaintext, shown this once)
    GET    /admin/v1/keys                 {"object": "list", "data": [view, ...]}
    GET    /admin/v1/keys/{id}            view
    PATCH  /admin/v1/keys/{id}            view after the change (null clears a limit; "disabled": true)
    DELETE /admin/v1/keys/{id}            {"id": ..., "deleted": true}
    POST   /admin/v1/keys/{id}/rotate     view and the new "key"; the old one stops working at once
    GET    /admin/v1/usage?group_by=key|model|provider|day&since=7d|YYYY-MM-DD&key=ID
    GET    /admin/v1/usage/daily?by=model|provider&since=30d&key=ID   per UTC day and model (or provider)
    GET    /admin/v1/requests?key=ID&limit=N
    GET    /admin/v1/providers            each provider's credential status (what 'switchboard doctor' says)

The master key comes as ``Authorization: Bearer``, ``x-api-key`` or ``api-key``; anything else is 401
``invalid_api_key``, a virtual key 403. The dashboard (:mod:`proxy.ui`) calls the same API with its
session cookie instead: then every request but GET also needs the session's CSRF token in
``x-csrf-token`` and an ``Origin`` naming this host (403 ``csrf_failed`` otherwise). With no master key
configured the whole API answers 404 saying how to turn it on. Handlers are thin: validation and the work
are :class:`KeyService`'s; errors are :class:`SwitchboardError`\\ s, which the app renders as the OpenAI
envelope.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, Router, delete, get, patch, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from providers.errors import InvalidRequest, NotFound

from ..ui.doctor import provider_status
from ..ui.session import CSRF_HEADER, check_csrf, read_cookie, same_origin, verify
from .contract import KEY_PREFIX, GatewayError, hash_key
from .periods import iso
from .service import decode_patch, decode_spec, stack_by
from .timeparse import parse_since

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["admin_router", "dashboard_key", "gateway_of"]

_OFF = (
    "the admin API is on when a master key is set (SWITCHBOARD_MASTER_KEY or master_key in config.json); "
    "set one and restart Switchboard"
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_NEEDS_MASTER = (
    "the admin API needs the master key: send it as 'Authorization: Bearer <master key>' "
    "(the value of SWITCHBOARD_MASTER_KEY or master_key in config.json)"
)


def admin_router() -> Router:
    """A new router per app: litestar binds a registered router to its app."""
    return Router(
        path="/admin/v1",
        route_handlers=[
            create_key,
            list_keys,
            get_key,
            update_key,
            delete_key,
            rotate_key,
            usage,
            usage_daily,
            requests,
            providers,
        ],
        guards=[_master_only],
    )


@post("/keys", status_code=201)
async def create_key(request: Request[Any, Any, Any]) -> dict[str, Any]:
    gw = _gateway(request)
    record, plaintext = await gw.service.create(decode_spec(await _body(request)))
    return {**gw.service.view(record, 0.0, time.time()), "key": plaintext}


@get("/keys")
async def list_keys(request: Request[Any, Any, Any]) -> dict[str, Any]:
    gw = _gateway(request)
    return {"object": "list", "data": await gw.service.views(await gw.service.list())}


@get("/keys/{key_id:str}")
async def get_key(request: Request[Any, Any, Any]) -> dict[str, Any]:
    key_id = _key_id(request)
    gw = _gateway(request)
    return (await gw.service.views([await gw.service.get(key_id)]))[0]


@patch("/keys/{key_id:str}")
async def update_key(request: Request[Any, Any, Any]) -> dict[str, Any]:
    key_id = _key_id(request)
    gw = _gateway(request)
    record = await gw.service.update(key_id, decode_patch(await _body(request)))
    return (await gw.service.views([record]))[0]


@delete("/keys/{key_id:str}", status_code=200)
async def delete_key(request: Request[Any, Any, Any]) -> dict[str, Any]:
    key_id = _key_id(request)
    await _gateway(request).service.delete(key_id)
    return {"id": key_id, "deleted": True}


@post("/keys/{key_id:str}/rotate", status_code=200)
async def rotate_key(request: Request[Any, Any, Any]) -> dict[str, Any]:
    key_id = _key_id(request)
    gw = _gateway(request)
    plaintext = await gw.service.rotate(key_id)
    view = (await gw.service.views([await gw.service.get(key_id)]))[0]
    return {**view, "key": plaintext}


@get("/usage")
async def usage(request: Request[Any, Any, Any]) -> dict[str, Any]:
    gw = _gateway(request)
    q = request.query_params
    group_by = q.get("group_by") or "key"
    start = parse_since(q.get("since") or "30d", time.time())
    # Records still queued in the ledger belong in the answer: write them first.
    await gw.ledger.flush()
    rows = await gw.service.usage(group_by, start, q.get("key") or None)
    return {
        "object": "list",
        "group_by": group_by,
        "since": iso(start),
        "data": [msgspec.structs.asdict(r) for r in rows],
    }


@get("/usage/daily")
async def usage_daily(request: Request[Any, Any, Any]) -> dict[str, Any]:
    gw = _gateway(request)
    q = request.query_params
    by = stack_by(q.get("by") or "model")
    start = parse_since(q.get("since") or "30d", time.time())
    from .store import daily_usage  # SQLAlchemy loads only when the gateway is on

    await gw.ledger.flush()
    rows = await daily_usage(gw.store, by, start, q.get("key") or None)
    return {"object": "list", "by": by, "since": iso(start), "data": [msgspec.structs.asdict(r) for r in rows]}


@get("/providers", sync_to_thread=False)
def providers(request: Request[Any, Any, Any]) -> dict[str, Any]:
    _gateway(request)
    return {"object": "list", **provider_status(request.app.state.runtime)}


@get("/requests")
async def requests(request: Request[Any, Any, Any]) -> dict[str, Any]:
    gw = _gateway(request)
    q = request.query_params
    raw_limit = q.get("limit") or "50"
    try:
        limit = int(raw_limit)
    except ValueError:
        raise InvalidRequest(
            f"limit must be a whole number from 1 to 1000; got {raw_limit[:20]!r}", param="limit"
        ) from None
    await gw.ledger.flush()
    records = await gw.service.requests(q.get("key") or None, limit)
    return {"object": "list", "data": [{**msgspec.structs.asdict(r), "time": iso(r.ts)} for r in records]}


async def _master_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    gw = _gateway(connection)
    token = _token(connection)
    if token is not None and gw.is_master(token):
        return
    if token is None and (cookie := read_cookie(connection.headers)) is not None:
        _dashboard_session(connection, gw, cookie)
        return
    # Only a key that exists is told it lacks the right; an unknown one is simply not a key (401). The
    # key cache answers (bounded store lookups), so invented keys cannot flood the database from here.
    if token is not None and token.startswith(KEY_PREFIX) and await gw.keys.find(hash_key(token)) is not None:
        raise GatewayError(
            "this virtual key cannot use the admin API, which needs the master key "
            "(SWITCHBOARD_MASTER_KEY or master_key in config.json)",
            status=403,
            code="master_key_required",
        )
    raise GatewayError(_NEEDS_MASTER, status=401, code="invalid_api_key")


def dashboard_key(gw: Gateway) -> bytes:
    """The key signing the dashboard's session cookies, derived from the master key."""
    return gw.derive_key(b"switchboard dashboard session v1")


def _dashboard_session(connection: ASGIConnection[Any, Any, Any, Any], gw: Gateway, cookie: str) -> None:
    """Let the dashboard's session in: a valid cookie, and for a change its CSRF token and our Origin."""
    key = dashboard_key(gw)
    session = verify(key, cookie)
    if session is None:
        raise GatewayError(
            "the dashboard session has expired or is not valid; log in again at /ui",
            status=401,
            code="session_expired",
        )
    if connection.scope.get("method") in _SAFE_METHODS:
        return
    if not same_origin(connection.headers):
        raise GatewayError(
            "this change comes from another site (its Origin is not this host) and was refused; make changes "
            "from the dashboard page at /ui (behind a proxy that rewrites Host, have it send X-Forwarded-Host)",
            status=403,
            code="csrf_failed",
        )
    if not check_csrf(key, session, connection.headers.get(CSRF_HEADER)):
        raise GatewayError(
            f"this change lacks the dashboard's CSRF token ({CSRF_HEADER} header) or it does not match the "
            "session; reload the page at /ui",
            status=403,
            code="csrf_failed",
        )


def gateway_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Gateway | None:
    gw: Gateway | None = connection.app.state.runtime.gateway
    return gw


def _gateway(connection: ASGIConnection[Any, Any, Any, Any]) -> Gateway:
    gw = gateway_of(connection)
    if gw is None:
        raise NotFound(_OFF, code="not_found")
    return gw


def _key_id(request: Request[Any, Any, Any]) -> str:
    # From path_params rather than the signature: litestar deprecates parameters inferred from names.
    return str(request.path_params["key_id"])


def _token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    headers = connection.headers
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in ("x-api-key", "api-key"):
        value = (headers.get(name) or "").strip()
        if value:
            return value
    return None


async def _body(request: Request[Any, Any, Any]) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON ({exc}); send a JSON object", param="body") from exc
