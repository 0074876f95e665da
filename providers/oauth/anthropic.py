"""``switchboard login anthropic``: Claude Pro/Max through Anthropic's OAuth.

Facts: ``reference/provider-facts.md`` §8 "Anthropic Claude Pro/Max". PKCE (S256) authorization code,
with ``state`` = the PKCE verifier. A local server on ``127.0.0.1:53692`` (``/callback``) receives
``code`` + ``state``; at the same time the terminal asks for the code to be pasted (the bare code, the
``code#state`` string claude.ai shows, or the full redirect URL), for a browser on another machine.
Whichever arrives first wins.

Token endpoint bodies are JSON. Stored entry: ``{"type": "oauth", "access", "refresh", "expires"}`` with
``expires = now + expires_in*1000 - 5 min`` (ms epoch). Requests with the token are shaped by
:mod:`providers.wire.anthropic_messages` (Bearer, Claude Code betas and system prompt prefix).

Environment (tests point these at fakes):

* ``SWITCHBOARD_CLAUDE_AUTHORIZE_URL`` — default ``https://claude.ai/oauth/authorize``;
* ``SWITCHBOARD_CLAUDE_TOKEN_URL`` — default ``https://platform.claude.com/v1/oauth/token``;
* ``SWITCHBOARD_CLAUDE_CALLBACK_PORT`` — default ``53692``; ``SWITCHBOARD_CLAUDE_CALLBACK_HOST`` — default
  ``127.0.0.1`` (the address the callback server binds; the redirect URI always names ``localhost``).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from ..errors import UpstreamError, UpstreamUnreachable
from .base import LoginUI, RefreshFailed
from .common import failure_detail, json_body, pkce_pair, start_callback_server

__all__ = ["CLIENT_ID", "FLOW", "ClaudeFlow", "code_from_paste", "pkce_pair"]

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
SCOPES = "org:create_api_key user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload"
DEFAULT_AUTHORIZE_URL = "https://claude.ai/oauth/authorize"
DEFAULT_TOKEN_URL = "https://platform.claude.com/v1/oauth/token"  # noqa: S105 (a URL, not a secret)
DEFAULT_CALLBACK_PORT = 53692
CALLBACK_PATH = "/callback"
#: Subtracted from the token's lifetime so a request never starts with a token about to lapse (ms).
EXPIRY_MARGIN_MS = 5 * 60 * 1000
_HTTP_TIMEOUT = 30.0
#: How long the login waits for the callback or a pasted answer (seconds).
LOGIN_TIMEOUT = 600.0

_PASTE_PROMPT = "Paste the authorization code (or the redirect URL): "
_DONE_PAGE = (
    b"<!doctype html><html><body><h1>Switchboard: login complete</h1>"
    b"<p>You can close this tab and go back to the terminal.</p></body></html>"
)


class ClaudeFlow:
    provider_id = "anthropic"
    label = "Claude Pro/Max"

    # endpoints (read from the environment on every use, so tests can point them at fakes)

    @staticmethod
    def authorize_endpoint() -> str:
        return os.environ.get("SWITCHBOARD_CLAUDE_AUTHORIZE_URL") or DEFAULT_AUTHORIZE_URL

    @staticmethod
    def token_endpoint() -> str:
        return os.environ.get("SWITCHBOARD_CLAUDE_TOKEN_URL") or DEFAULT_TOKEN_URL

    @staticmethod
    def callback_port() -> int:
        raw = (os.environ.get("SWITCHBOARD_CLAUDE_CALLBACK_PORT") or "").strip()
        return int(raw) if raw.isdigit() else DEFAULT_CALLBACK_PORT

    def redirect_uri(self) -> str:
        return f"http://localhost:{self.callback_port()}{CALLBACK_PATH}"

    def authorize_url(self, verifier: str, challenge: str) -> str:
        params = {
            "code": "true",
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": self.redirect_uri(),
            "scope": SCOPES,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": verifier,
        }
        endpoint = self.authorize_endpoint()
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"

    # login

    def login(self, ui: LoginUI) -> dict[str, Any]:
        verifier, challenge = pkce_pair()
        answers: queue.Queue[tuple[str, str, str]] = queue.Queue()
        server = _start_callback_server(verifier, answers)
        if server is None:
            ui.say(
                f"Could not listen on 127.0.0.1:{self.callback_port()} for the browser's answer; "
                "paste the code shown after logging in instead."
            )
        try:
            ui.say("Log in with your Claude Pro/Max account in the browser.")
            ui.open_url(self.authorize_url(verifier, challenge))
            if answers.empty():
                # The prompt runs in a daemon thread: a blocking read cannot be cancelled when the browser
                # answers first, so the main thread waits for whichever comes first.
                threading.Thread(target=_ask_paste, args=(ui, answers), daemon=True).start()
            code, state = _wait_for_code(answers, verifier, server is not None)
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
        entry = self._exchange(code, state, verifier)
        ui.say("Logged in to Claude.")
        return entry

    # token endpoint

    def _exchange(self, code: str, state: str, verifier: str) -> dict[str, Any]:
        body = {
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "code": code,
            "state": state,
            "redirect_uri": self.redirect_uri(),
            "code_verifier": verifier,
        }
        try:
            with httpx.Client(timeout=_HTTP_TIMEOUT) as client:
                resp = client.post(self.token_endpoint(), json=body)
        except httpx.HTTPError as exc:
            raise RuntimeError(f"Claude login: could not reach {self.token_endpoint()}: {exc}") from exc
        if resp.status_code >= 400:
            raise RuntimeError(
                f"Claude login: the token exchange failed: HTTP {resp.status_code} {failure_detail(resp)}"
            )
        return _entry(json_body(resp), None)

    def refresh(self, entry: dict[str, Any]) -> dict[str, Any]:
        token = entry.get("refresh")
        if not isinstance(token, str) or not token:
            raise RefreshFailed("the stored login has no refresh token")
        body = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": token}
        try:
            with httpx.Client(timeout=_HTTP_TIMEOUT) as client:
                resp = client.post(self.token_endpoint(), json=body)
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(f"Claude token refresh could not reach {self.token_endpoint()}: {exc}") from exc
        if resp.status_code in (400, 401, 403):
            raise RefreshFailed(f"HTTP {resp.status_code} {failure_detail(resp)}".strip())
        if resp.status_code >= 400:
            raise UpstreamError(
                f"Claude token refresh failed: HTTP {resp.status_code} {failure_detail(resp)}", status=502
            )
        try:
            return _entry(json_body(resp), token)
        except RuntimeError as exc:
            raise UpstreamError(f"Claude token refresh: {exc}", status=502) from exc


FLOW = ClaudeFlow()


def _entry(data: dict[str, Any], old_refresh: str | None) -> dict[str, Any]:
    access = data.get("access_token")
    refresh = data.get("refresh_token") or old_refresh
    if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
        raise RuntimeError("the token answer carries no access_token/refresh_token")
    try:
        expires_in = float(data.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600.0
    return {
        "type": "oauth",
        "access": access,
        "refresh": refresh,
        "expires": int(time.time() * 1000 + expires_in * 1000 - EXPIRY_MARGIN_MS),
    }


def code_from_paste(text: str, verifier: str) -> tuple[str, str]:
    """(code, state) from a pasted redirect URL, ``code#state``, query string or bare code.

    A bare code gets the verifier as its state (the state *is* the verifier); a state that does not
    match this login attempt fails.
    """
    text = text.strip()
    if not text:
        raise RuntimeError("Claude login cancelled: nothing was pasted")
    code: str | None
    state: str | None = None
    if "://" in text or text.startswith(("?", "/")) or "code=" in text:
        parts = urlsplit(text) if "://" in text or text.startswith("/") else None
        query = parts.query if parts is not None else text.lstrip("?")
        params = parse_qs(query)
        if not params.get("code") and parts is not None and parts.fragment:
            params = parse_qs(parts.fragment)
        if params.get("error"):
            raise RuntimeError(f"Claude login failed: {params['error'][0]}")
        code = params["code"][0] if params.get("code") else None
        state = params["state"][0] if params.get("state") else None
        if code and state is None and "#" in code:
            code, state = code.split("#", 1)
    elif "#" in text:
        code, state = text.split("#", 1)
    else:
        code = text
    if not code:
        raise RuntimeError("Claude login: the pasted text carries no authorization code")
    if state and state != verifier:
        raise RuntimeError("Claude login: state mismatch (the pasted code belongs to another login attempt)")
    return code, verifier


def _wait_for_code(answers: queue.Queue[tuple[str, str, str]], verifier: str, listening: bool) -> tuple[str, str]:
    deadline = time.monotonic() + LOGIN_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError("Claude login timed out: no answer from the browser and nothing was pasted")
        try:
            kind, value, state = answers.get(timeout=remaining)
        except queue.Empty:
            continue
        if kind == "callback":
            return value, state
        if kind == "error":
            raise RuntimeError(f"Claude login failed: {value}")
        if kind == "eof":
            if listening:
                continue  # nothing to paste: keep waiting for the browser
            raise RuntimeError("Claude login cancelled: no code or redirect URL was given")
        return code_from_paste(value, verifier)


def _ask_paste(ui: LoginUI, answers: queue.Queue[tuple[str, str, str]]) -> None:
    try:
        answer = ui.ask(_PASTE_PROMPT)
    except Exception:  # EOFError, or a terminal that went away: the browser may still answer
        answers.put(("eof", "", ""))
        return
    answers.put(("paste", answer.strip(), "") if answer.strip() else ("eof", "", ""))


def _start_callback_server(verifier: str, answers: queue.Queue[tuple[str, str, str]]) -> ThreadingHTTPServer | None:
    host = os.environ.get("SWITCHBOARD_CLAUDE_CALLBACK_HOST") or "127.0.0.1"
    # Claude's state is the PKCE verifier.
    return start_callback_server(
        host,
        ClaudeFlow.callback_port(),
        CALLBACK_PATH,
        verifier,
        lambda kind, value: answers.put((kind, value, verifier)),
        _DONE_PAGE,
    )
