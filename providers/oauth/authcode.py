"""The OAuth authorization-code grant with PKCE, as the Codex and Claude logins speak it.

Each rule is written once here and each provider's specifics are data: a :class:`TokenClient` (token
endpoint, client id, form or JSON body, expiry margin, extra entry fields such as Codex's ``accountId``)
and a :class:`Callback` (where the local redirect target listens, what the terminal asks for).

* :func:`browser_code` runs the browser step: a local server receives the redirect while the terminal
  asks for the redirect URL (or the code) to be pasted, for a browser on another machine; whichever
  arrives first wins.
* :meth:`TokenClient.exchange` trades the code for tokens; :meth:`TokenClient.refresh` is the refresh
  grant the credential resolver calls (see :func:`providers.oauth.ensure_fresh`).

Login failures raise RuntimeError (the CLI prints them); refresh failures raise
:class:`~providers.oauth.base.RefreshFailed` when the provider refuses the refresh token, and the
request-path errors of :mod:`providers.errors` otherwise.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx

from ..errors import UpstreamError, UpstreamUnreachable
from .base import LoginUI, RefreshFailed
from .common import failure_detail, json_body, seconds, start_callback_server

__all__ = ["LOGIN_TIMEOUT", "Callback", "TokenClient", "browser_code", "code_from_paste"]

_Pasted = TypeVar("_Pasted")

#: How long the browser step waits for the callback or a pasted answer (seconds).
LOGIN_TIMEOUT = 600.0
_HTTP_TIMEOUT = 30.0
#: Assumed when a token answer names no lifetime (seconds).
_DEFAULT_LIFETIME = 3600.0
_DONE_PAGE = (
    b"<!doctype html><html><body><h1>Switchboard: login complete</h1>"
    b"<p>You can close this tab and go back to the terminal.</p></body></html>"
)


def _no_extras(data: dict[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class TokenClient:
    """One provider's token endpoint."""

    #: Names the provider in messages ("ChatGPT", "Claude").
    name: str
    client_id: str
    #: The endpoint, called on every use so tests can point it at a fake through the environment.
    token_url: Callable[[], str]
    #: Claude's endpoint takes JSON; the OAuth default (Codex) is a form.
    json_body: bool = False
    #: Subtracted from the token's lifetime, so a request never starts with a token about to lapse (ms).
    expiry_margin_ms: int = 0
    #: Flow-specific fields of the stored entry, read from the token answer; RuntimeError when absent.
    extras: Callable[[dict[str, Any]], dict[str, Any]] = field(default=_no_extras)

    def exchange(self, code: str, verifier: str, redirect_uri: str, **extra: str) -> dict[str, Any]:
        """The auth.json entry for an authorization code (``extra``: provider fields such as Claude's state)."""
        body = {
            "grant_type": "authorization_code",
            "client_id": self.client_id,
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
            **extra,
        }
        try:
            resp = self._post(body)
        except httpx.HTTPError as exc:
            raise RuntimeError(f"{self.name} login: could not reach {self.token_url()}: {exc}") from exc
        if resp.status_code >= 400:
            raise RuntimeError(
                f"{self.name} login: the token exchange failed: HTTP {resp.status_code} {failure_detail(resp)}"
            )
        try:
            return self.entry(json_body(resp), None)
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name} login: {exc}") from exc

    def refresh(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A new entry from ``entry``'s refresh token (the :meth:`OAuthFlow.refresh` contract)."""
        token = entry.get("refresh")
        if not isinstance(token, str) or not token:
            raise RefreshFailed("the stored login has no refresh token")
        body = {"grant_type": "refresh_token", "client_id": self.client_id, "refresh_token": token}
        try:
            resp = self._post(body)
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(f"{self.name} token refresh could not reach {self.token_url()}: {exc}") from exc
        if resp.status_code in (400, 401, 403):
            raise RefreshFailed(f"HTTP {resp.status_code} {failure_detail(resp)}".strip())
        if resp.status_code >= 400:
            raise UpstreamError(
                f"{self.name} token refresh failed: HTTP {resp.status_code} {failure_detail(resp)}", status=502
            )
        try:
            return self.entry(json_body(resp), token)
        except RuntimeError as exc:
            raise UpstreamError(f"{self.name} token refresh: {exc}", status=502) from exc

    def entry(self, data: dict[str, Any], old_refresh: str | None) -> dict[str, Any]:
        """The stored entry for a token answer; a refresh answer may omit the refresh token (kept)."""
        access = data.get("access_token")
        refresh = data.get("refresh_token") or old_refresh
        if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
            raise RuntimeError("the token answer carries no access_token/refresh_token")
        lifetime_ms = seconds(data.get("expires_in"), _DEFAULT_LIFETIME) * 1000
        return {
            "type": "oauth",
            "access": access,
            "refresh": refresh,
            "expires": int(time.time() * 1000 + lifetime_ms - self.expiry_margin_ms),
            **self.extras(data),
        }

    def _post(self, body: dict[str, str]) -> httpx.Response:
        with httpx.Client(timeout=_HTTP_TIMEOUT) as client:
            if self.json_body:
                return client.post(self.token_url(), json=body)
            return client.post(self.token_url(), data=body)


@dataclass(frozen=True)
class Callback:
    """Where a browser login's redirect lands, and what the terminal asks for meanwhile.

    The address is read from the environment on every use, so tests can point it at a free port.
    """

    #: Names the provider in messages ("ChatGPT", "Claude").
    name: str
    #: Shown as "Log in with your {account} account in the browser."
    account: str
    path: str
    #: The variables naming the address the server binds (default 127.0.0.1) and its port.
    host_env: str
    port_env: str
    default_port: int
    prompt: str
    #: Said when the port is taken, after "Could not listen on host:port for the browser's answer; ".
    paste_hint: str

    @property
    def host(self) -> str:
        return os.environ.get(self.host_env) or "127.0.0.1"

    @property
    def port(self) -> int:
        raw = (os.environ.get(self.port_env) or "").strip()
        return int(raw) if raw.isdigit() else self.default_port

    @property
    def redirect_uri(self) -> str:
        """Always ``localhost``, whatever address the server binds: the URI registered with the provider."""
        return f"http://localhost:{self.port}{self.path}"


def browser_code(
    ui: LoginUI, callback: Callback, state: str, authorize_url: str, on_paste: Callable[[str], _Pasted]
) -> str | _Pasted:
    """The authorization code from the browser's redirect or from what the user pasted, whichever comes first.

    ``on_paste`` turns a pasted answer into the code, or into what the flow does instead (Codex answers
    None when the user chose the device code).
    """
    answers: queue.Queue[tuple[str, str]] = queue.Queue()
    host, port = callback.host, callback.port
    server = start_callback_server(
        host,
        port,
        callback.path,
        state,
        lambda kind, value: answers.put((kind, value)),
        _DONE_PAGE,
    )
    if server is None:
        ui.say(f"Could not listen on {host}:{port} for the browser's answer; {callback.paste_hint}")
    try:
        ui.say(f"Log in with your {callback.account} account in the browser.")
        ui.open_url(authorize_url)
        if answers.empty():
            # The prompt runs in a daemon thread: a blocking read cannot be cancelled when the browser
            # answers first, so this thread waits for whichever comes first.
            threading.Thread(target=_ask_paste, args=(ui, callback.prompt, answers), daemon=True).start()
        return _wait_for_code(answers, callback.name, server is not None, on_paste)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def code_from_paste(text: str, state: str, name: str) -> str:
    """The code in a pasted redirect URL (query or fragment), ``code#state``, query string or bare code.

    A state that does not match this login attempt fails; a bare code carries none and is accepted.
    """
    text = text.strip()
    if not text:
        raise RuntimeError(f"{name} login cancelled: nothing was pasted")
    code: str | None
    got_state: str | None = None
    if "://" in text or text.startswith(("?", "/")) or "code=" in text:
        parts = urlsplit(text) if "://" in text or text.startswith("/") else None
        params = parse_qs(parts.query if parts is not None else text.lstrip("?"))
        if not params.get("code") and parts is not None and parts.fragment:
            params = parse_qs(parts.fragment)
        if params.get("error"):
            raise RuntimeError(f"{name} login failed: {params['error'][0]}")
        code = params["code"][0] if params.get("code") else None
        got_state = params["state"][0] if params.get("state") else None
        if code and got_state is None and "#" in code:
            # claude.ai shows "code#state" and some terminals paste it inside the redirect URL's query.
            code, got_state = code.split("#", 1)
    elif "#" in text:
        code, got_state = text.split("#", 1)
    else:
        code = text
    if not code:
        raise RuntimeError(f"{name} login: the pasted text carries no authorization code")
    if got_state and got_state != state:
        raise RuntimeError(f"{name} login: state mismatch (the pasted answer belongs to another login attempt)")
    return code


def _wait_for_code(
    answers: queue.Queue[tuple[str, str]], name: str, listening: bool, on_paste: Callable[[str], _Pasted]
) -> str | _Pasted:
    deadline = time.monotonic() + LOGIN_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"{name} login timed out: no answer from the browser and nothing was pasted")
        try:
            kind, value = answers.get(timeout=remaining)
        except queue.Empty:
            continue
        if kind == "callback":
            return value
        if kind == "error":
            raise RuntimeError(f"{name} login failed: {value}")
        if kind == "eof":
            if listening:
                continue  # nothing to paste: keep waiting for the browser
            raise RuntimeError(f"{name} login cancelled: no code or redirect URL was given")
        return on_paste(value)


def _ask_paste(ui: LoginUI, prompt: str, answers: queue.Queue[tuple[str, str]]) -> None:
    try:
        answer = ui.ask(prompt)
    except Exception:  # EOFError, or a terminal that went away: the browser may still answer
        answers.put(("eof", ""))
        return
    answers.put(("paste", answer.strip()) if answer.strip() else ("eof", ""))
