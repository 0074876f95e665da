"""Small pieces every OAuth flow shares: PKCE, reading a token endpoint's answer, the local callback server."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

__all__ = ["b64url", "failure_detail", "json_body", "pkce_pair", "seconds", "start_callback_server"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier (32 random bytes, base64url) and its S256 challenge (RFC 7636)."""
    verifier = b64url(secrets.token_bytes(32))
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def json_body(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def seconds(value: Any, default: float) -> float:
    """A duration an endpoint sent (``expires_in``, ``interval``); ``default`` when absent or not usable."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if number >= 0 else default


def failure_detail(resp: httpx.Response) -> str:
    """The endpoint's own words about a failure (OAuth ``error``/``error_description`` or a JSON error)."""
    data = json_body(resp)
    err = data.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err.get("code") or err.get("type") or "")
    desc = data.get("error_description") or data.get("detail")
    if isinstance(err, str):
        return f"{err}: {desc}" if desc else err
    return str(desc) if desc else resp.text[:200]


def start_callback_server(
    host: str, port: int, path: str, state: str, on_answer: Callable[[str, str], None], done_page: bytes
) -> ThreadingHTTPServer | None:
    """The local redirect target of a browser login, serving in a daemon thread.

    A redirect to ``path`` carrying ``state`` calls ``on_answer("callback", code)`` or
    ``on_answer("error", reason)``; any other state is refused (it belongs to another login attempt).
    None when the port is taken: the flow then relies on the pasted answer alone.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != path:
                self._reply(404, b"not found")
                return
            params = parse_qs(parts.query)
            if params.get("state", [None])[0] != state:
                self._reply(400, b"state mismatch: this answer belongs to another login attempt")
                return
            if params.get("error"):
                reason = params["error"][0]
                desc = params.get("error_description", [""])[0]
                on_answer("error", f"{reason}: {desc}" if desc else reason)
                self._reply(400, f"login failed: {reason}".encode())
                return
            code = params.get("code", [""])[0]
            if not code:
                self._reply(400, b"no authorization code")
                return
            on_answer("callback", code)
            self._reply(200, done_page, "text/html; charset=utf-8")

        def _reply(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError:
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server
