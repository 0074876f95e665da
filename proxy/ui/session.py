"""The dashboard's login session: a stateless signed cookie, a CSRF token bound to it, and a limit on
login attempts per client address.

The cookie is ``v1.<expires>.<nonce>.<mac>``: an expiry (epoch seconds), 128 random bits and an
HMAC-SHA256 over both, keyed with a key derived from the master key. Nothing is kept on the server, so
every replica sharing the master key accepts it, and changing the master key logs everyone out. The
cookie never holds the master key nor anything it could be recovered from.

The CSRF token is another HMAC of the same nonce (under another label): the page's JavaScript sends it
in ``x-csrf-token`` with every state-changing request; a page on another site can neither read it
nor send the cookie (``SameSite=Strict``). The ``Origin`` (or ``Referer``) must also name this host.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "LIFETIME",
    "LoginLimiter",
    "Session",
    "check_csrf",
    "cookie_header",
    "csrf_token",
    "expired_cookie_header",
    "issue",
    "read_cookie",
    "same_origin",
    "verify",
]

COOKIE = "switchboard_session"
CSRF_HEADER = "x-csrf-token"
#: A session lasts 8 hours (a working day); then the master key is asked for again.
LIFETIME = 8 * 3600
_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class Session:
    expires: int
    nonce: str


def issue(key: bytes, now: float | None = None) -> tuple[str, Session]:
    """A new cookie value and its session."""
    expires = int(time.time() if now is None else now) + LIFETIME
    nonce = secrets.token_urlsafe(16)
    body = f"{_VERSION}.{expires}.{nonce}"
    return f"{body}.{_mac(key, body)}", Session(expires, nonce)


def verify(key: bytes, value: str | None, now: float | None = None) -> Session | None:
    """The session the cookie carries, or None (absent, forged, from another master key, expired)."""
    if not value or len(value) > 200:
        return None
    parts = value.split(".")
    if len(parts) != 4 or parts[0] != _VERSION:
        return None
    body = ".".join(parts[:3])
    if not hmac.compare_digest(parts[3], _mac(key, body)):
        return None
    try:
        expires = int(parts[1])
    except ValueError:
        return None
    if expires <= (time.time() if now is None else now):
        return None
    return Session(expires, parts[2])


def csrf_token(key: bytes, session: Session) -> str:
    return _mac(key, f"csrf.{session.nonce}")


def check_csrf(key: bytes, session: Session, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(sent.encode(), csrf_token(key, session).encode())


def read_cookie(headers: Mapping[str, str]) -> str | None:
    """This cookie's value from the ``Cookie`` header (litestar's parser would also accept it, but the
    admin guard reads raw headers)."""
    raw = headers.get("cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def same_origin(headers: Mapping[str, str]) -> bool:
    """Whether the request's ``Origin`` (else ``Referer``) names the host it was sent to.

    Hosts are compared, not schemes: behind a TLS-terminating proxy the page's origin is https while
    the request reaching Switchboard is http. A proxy that rewrites ``Host`` passes the browser's in
    ``X-Forwarded-Host``, which is accepted too: a page on another site cannot set that header without
    a CORS preflight, which Switchboard never grants. A browser sends ``Origin`` on every POST, PATCH
    and DELETE, so a request naming neither is refused.
    """
    origin = headers.get("origin") or headers.get("referer")
    if not origin or origin == "null":
        return False
    sent = urlsplit(origin).netloc.lower()
    host = (headers.get("host") or "").strip().lower()
    forwarded = (headers.get("x-forwarded-host") or "").split(",")[0].strip().lower()
    return bool(sent) and sent in (host, forwarded)


def cookie_header(value: str, *, secure: bool) -> str:
    return _cookie(value, LIFETIME, secure)


def expired_cookie_header(*, secure: bool) -> str:
    return _cookie("", 0, secure)


def _cookie(value: str, max_age: int, secure: bool) -> str:
    attrs = [f"{COOKIE}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        attrs.append("Secure")
    return "; ".join(attrs)


def _mac(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class LoginLimiter:
    """Failed logins per client address: after :attr:`attempts` failures within :attr:`window`
    seconds, further attempts from that address are refused until the oldest failure ages out.

    Kept per process (a replica counts its own); the table is bounded so that a flood from many
    addresses cannot grow it without limit.
    """

    def __init__(self, attempts: int = 5, window: float = 300.0, max_clients: int = 10_000) -> None:
        self.attempts = attempts
        self.window = window
        self._max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str, now: float) -> float | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        seen = self._recent(client, now)
        if seen is None or len(seen) < self.attempts:
            return None
        return max(1.0, seen[0] + self.window - now)

    def failed(self, client: str, now: float) -> None:
        seen = self._recent(client, now)
        if seen is None:
            if len(self._failures) >= self._max_clients:
                self._prune(now)
            if len(self._failures) >= self._max_clients:
                # Still full of live entries: drop the oldest-inserted one rather than grow.
                self._failures.pop(next(iter(self._failures)))
            seen = self._failures[client] = deque()
        seen.append(now)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def _recent(self, client: str, now: float) -> deque[float] | None:
        seen = self._failures.get(client)
        if seen is None:
            return None
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if not seen:
            del self._failures[client]
            return None
        return seen

    def _prune(self, now: float) -> None:
        for client in list(self._failures):
            self._recent(client, now)
