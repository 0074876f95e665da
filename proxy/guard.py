"""The checks in front of every route: who may be served at all, before any framework code runs.

A browser is the attacker here. A page on any site can POST a ``text/plain`` body to
``http://127.0.0.1:8642`` without a CORS preflight (spending the user's credits), and a page whose DNS
name was rebound to 127.0.0.1 is same-origin with the proxy and can read the answers. So:

- a POST must say ``Content-Type: application/json`` (a cross-site form or simple ``fetch`` cannot
  send that without a preflight, and no CORS header is ever granted) → else 415;
- bound to a loopback address, the ``Host`` header must be a loopback name or address, or one of
  ``allowed_hosts`` from config.json (a rebound page sends its own name) → else 421; bound elsewhere
  the check applies only when ``allowed_hosts`` is set; ``"*"`` switches it off;
- a body larger than ``max_body_mb`` is refused from its ``Content-Length`` before it is read (413);
  a chunked body is counted as it is received.

This is on the hot path: one pass over the header list, bytes comparisons, and a small set of host
header values already accepted; nothing is allocated for an accepted request with a Content-Length.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import msgspec

from providers.errors import InvalidRequest, SwitchboardError

from .asgi import Receive, Scope, Send
from .outcome import request_id_from

__all__ = ["Guard", "is_loopback"]

#: The wrapped app (litestar's own ASGI types are narrower TypedDicts than these plain mappings).
App = Callable[..., Awaitable[None]]

_JSON_TYPE = b"application/json"
#: Host header values already accepted; bounded so a client sending random names cannot grow it.
_ACCEPTED_CACHE = 64


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or name, IPv6 with or without brackets) is loopback-only."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """The raw ASGI wrapper around the whole app; see the module docstring for what it refuses."""

    __slots__ = ("_accepted", "_app", "_check_host", "_extra_hosts", "_max_body", "_too_large", "_too_large_body")

    def __init__(self, app: App, *, bind_host: str, allowed_hosts: Iterable[str] | None, max_body: int) -> None:
        self._app = app
        names = [h.strip().lower() for h in allowed_hosts] if allowed_hosts is not None else None
        self._check_host = ("*" not in names) if names is not None else is_loopback(bind_host)
        self._extra_hosts = frozenset(_normalise(h).encode("idna") for h in names or ())
        self._accepted: set[bytes] = set()
        self._max_body = max_body
        self._too_large = InvalidRequest(
            f"the request body is larger than {max_body / 1024 / 1024:g} MiB; send a smaller body, "
            "or raise max_body_mb in the server's config.json",
            status=413,
            code="request_too_large",
        )
        self._too_large_body = _envelope(self._too_large)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        host = ctype = length = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"content-type":
                ctype = value
            elif name == b"content-length":
                length = value
        # HTTP/1.0 may omit Host; browsers never do, so a request without one is not a rebound page.
        if self._check_host and host is not None and host not in self._accepted:
            if not self._host_allowed(host):
                await _reject(scope, send, 421, _MISDIRECTED)
                return
            if len(self._accepted) < _ACCEPTED_CACHE:
                self._accepted.add(host)
        if scope["method"] == "POST":
            if ctype != _JSON_TYPE and (ctype is None or ctype.partition(b";")[0].strip().lower() != _JSON_TYPE):
                await _reject(scope, send, 415, _NOT_JSON)
                return
            if length is None:
                receive = _Capped(receive, self._max_body, self._too_large.message)
            elif int(length) > self._max_body:
                await _reject(scope, send, 413, self._too_large_body)
                return
        await self._app(scope, receive, send)

    def _host_allowed(self, host: bytes) -> bool:
        # "[v6]:port" or "name:port": the port follows the bracket, or the only colon.
        name = (host[: host.find(b"]") + 1] if host.startswith(b"[") else host.partition(b":")[0]).lower()
        if name in self._extra_hosts or name == b"localhost" or name.endswith(b".localhost") or name == b"[::1]":
            return True
        if not name.startswith(b"127."):
            return False
        parts = name.split(b".")
        return len(parts) == 4 and all(p.isdigit() and int(p) <= 255 for p in parts)


class _Capped:
    """``receive`` for a body without Content-Length: refuses it once it grows past the limit."""

    __slots__ = ("_left", "_receive", "_too_large")

    def __init__(self, receive: Receive, limit: int, too_large: str) -> None:
        self._receive = receive
        self._left = limit
        self._too_large = too_large

    async def __call__(self) -> MutableMapping[str, Any]:
        msg = await self._receive()
        self._left -= len(msg.get("body", b""))
        if self._left < 0:
            # Raised from receive() so the body reader answers it like any other request error.
            raise InvalidRequest(self._too_large, status=413, code="request_too_large")
        return msg


def _normalise(host: str) -> str:
    """An ``allowed_hosts`` entry as it appears in a Host header without its port."""
    if host.count(":") == 1:  # "name:port"; the Host header's port is not compared
        host = host.partition(":")[0]
    host = host.rstrip(".")
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _envelope(exc: SwitchboardError) -> bytes:
    return msgspec.json.encode(exc.envelope())


async def _reject(scope: Scope, send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", _JSON_TYPE), (b"x-request-id", request_id_from(scope["headers"]).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_NOT_JSON = _envelope(
    InvalidRequest(
        "the request body must be JSON: send the header 'Content-Type: application/json'",
        status=415,
        code="unsupported_media_type",
    )
)
_MISDIRECTED = _envelope(
    InvalidRequest(
        "this server does not answer to that Host name (a page on another site may be trying to reach it); "
        "connect via localhost or 127.0.0.1, or add the name to allowed_hosts in the server's config.json",
        status=421,
        code="misdirected_request",
    )
)
