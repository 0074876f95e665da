"""``/ui``: the gateway's dashboard, served by Switchboard itself.

::

    GET  /ui                 the page (static HTML; its script calls the admin API under /admin/v1)
    GET  /ui/static/{name}   the page's script, style sheet and icon (package data, read once at import)
    GET  /ui/session         {"authenticated": bool, "csrf": token, "expires_at": ISO} for the page's script
    POST /ui/login           {"master_key": "..."} → the session cookie; attempts limited per client address
    POST /ui/logout          clears the cookie (CSRF token and Origin checked)

Every answer carries a strict Content-Security-Policy (``default-src 'self'``): nothing is loaded from
another host, and no inline script or style runs. Without a master key the page says how to turn the
gateway on. The session itself is :mod:`proxy.ui.session`; the admin API accepts it (see
:mod:`proxy.gateway.admin`).
"""

from __future__ import annotations

import hashlib
import time
from importlib import resources
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post

from providers.errors import InvalidRequest, NotFound

from ..gateway.admin import dashboard_key, gateway_of
from ..gateway.contract import GatewayError
from ..gateway.periods import iso
from .session import (
    CSRF_HEADER,
    LoginLimiter,
    check_csrf,
    cookie_header,
    csrf_token,
    expired_cookie_header,
    issue,
    read_cookie,
    same_origin,
    verify,
)

__all__ = ["ui_router"]

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "content-security-policy": _CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_OFF = (
    "The dashboard is part of the team gateway, which is on when a master key is set: set "
    "SWITCHBOARD_MASTER_KEY (or master_key in config.json) to a long random value and restart Switchboard, "
    "then open /ui again and log in with that key."
)


class _Asset(msgspec.Struct, frozen=True):
    body: bytes
    media_type: str
    etag: str


def _load_assets() -> dict[str, _Asset]:
    """Every file under ``static/``, read once: no file is read per request."""
    out: dict[str, _Asset] = {}
    for entry in resources.files("proxy.ui").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _TYPES:
            body = entry.read_bytes()
            out[entry.name] = _Asset(body, _TYPES[suffix], '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
    return out


_ASSETS = _load_assets()


def ui_router() -> Router:
    """A new router per app (litestar binds a router to its app), with its own login limiter."""
    limiter = LoginLimiter()

    @get("/", sync_to_thread=False)
    def page(request: Request[Any, Any, Any]) -> Response[bytes]:
        if gateway_of(request) is None:
            return _off_page()
        return _asset(request, "index.html")

    @get("/static/{name:str}", sync_to_thread=False)
    def static(request: Request[Any, Any, Any]) -> Response[bytes]:
        return _asset(request, str(request.path_params["name"]))

    @get("/session", sync_to_thread=False)
    def session_state(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        key = dashboard_key(_gateway(request))
        session = verify(key, read_cookie(request.headers))
        if session is None:
            return _json({"authenticated": False})
        return _json({"authenticated": True, "csrf": csrf_token(key, session), "expires_at": iso(session.expires)})

    @post("/login", status_code=200)
    async def login(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        gw = _gateway(request)
        if not same_origin(request.headers):
            raise GatewayError(
                "a login must come from the dashboard page itself (its Origin is not this host); open /ui (behind "
                "a proxy that rewrites Host, have it send X-Forwarded-Host)",
                status=403,
                code="csrf_failed",
            )
        client = request.client.host if request.client is not None else "unknown"
        now = time.time()
        wait = limiter.retry_after(client, now)
        if wait is not None:
            raise GatewayError(
                f"too many failed logins from this address; try again in {int(wait) + 1} seconds",
                status=429,
                code="rate_limit_exceeded",
                headers={"retry-after": str(int(wait) + 1)},
            )
        master_key = _master_key_field(await request.body())
        if not gw.is_master(master_key):
            limiter.failed(client, now)
            raise GatewayError(
                "that is not the master key; use the value of SWITCHBOARD_MASTER_KEY (or master_key in config.json)",
                status=401,
                code="invalid_api_key",
            )
        limiter.succeeded(client)
        key = dashboard_key(gw)
        value, session = issue(key, now)
        body = {"authenticated": True, "csrf": csrf_token(key, session), "expires_at": iso(session.expires)}
        return _json(body, cookie=cookie_header(value, secure=_https(request)))

    @post("/logout", status_code=200)
    async def logout(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        key = dashboard_key(_gateway(request))
        session = verify(key, read_cookie(request.headers))
        if session is not None and not (
            same_origin(request.headers) and check_csrf(key, session, request.headers.get(CSRF_HEADER))
        ):
            raise GatewayError(
                f"logging out needs the dashboard's CSRF token ({CSRF_HEADER}) from this site; use the page's "
                "Log out button",
                status=403,
                code="csrf_failed",
            )
        return _json({"authenticated": False}, cookie=expired_cookie_header(secure=_https(request)))

    return Router(
        path="/ui",
        route_handlers=[page, static, session_state, login, logout],
        response_headers=_SECURITY_HEADERS,
        # A login body is one short JSON object.
        request_max_body_size=4096,
    )


def _gateway(request: Request[Any, Any, Any]) -> Any:
    gw = gateway_of(request)
    if gw is None:
        raise NotFound(_OFF, code="not_found")
    return gw


def _asset(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    asset = _ASSETS.get(name)
    if asset is None:
        raise NotFound(f"the dashboard has no file {name[:80]!r}; open /ui", code="not_found")
    # Revalidated on every load (no-cache), so a new version of Switchboard never runs an old script.
    headers = {"etag": asset.etag, "cache-control": "no-cache"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def _off_page() -> Response[bytes]:
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Switchboard dashboard is off</title>"
        '<link rel=stylesheet href="/ui/static/app.css"></head><body class=off><main class="card off-card">'
        f"<h1>The dashboard is off</h1><p>{_OFF}</p></main></body></html>"
    )
    return Response(body.encode(), status_code=404, media_type=_TYPES[".html"], headers={"cache-control": "no-cache"})


def _json(body: dict[str, Any], cookie: str | None = None) -> Response[dict[str, Any]]:
    headers = {"cache-control": "no-store"}
    if cookie is not None:
        headers["set-cookie"] = cookie
    return Response(body, headers=headers)


def _https(request: Request[Any, Any, Any]) -> bool:
    """Whether the browser reached us over https (directly, or through a proxy that terminated TLS): then
    the cookie is ``Secure``. A forged header only makes the forger's own browser drop the cookie."""
    forwarded = (request.headers.get("x-forwarded-proto") or "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _master_key_field(raw: bytes) -> str:
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        data = None
    value = data.get("master_key") if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise InvalidRequest('send {"master_key": "<the master key>"} as JSON', param="master_key")
    return value
