"""``switchboard login openai-codex``: ChatGPT Plus/Pro (Codex) through OpenAI's OAuth.

Facts: ``reference/provider-facts.md`` §8 "OpenAI Codex". Two ways in:

* **Browser (default):** PKCE (S256) authorization code. A local server on ``127.0.0.1:1455``
  (``/auth/callback``) receives ``code`` + ``state``; at the same time the terminal asks for the redirect URL
  (or the bare code) to be pasted, for a browser on another machine. Whichever arrives first wins. Answering
  ``d`` to that prompt switches to the device code.
* **Device code** (``SWITCHBOARD_LOGIN_DEVICE=1``, or ``d`` at the prompt): the user opens
  ``{auth}/codex/device`` and types the code shown; the token endpoint is polled until they did.

Stored entry: ``{"type": "oauth", "access", "refresh", "expires": <ms epoch>, "accountId"}``; the account id is
the access token's ``https://api.openai.com/auth`` → ``chatgpt_account_id`` claim.

Environment (tests point these at fakes):

* ``SWITCHBOARD_CODEX_AUTH_BASE`` — default ``https://auth.openai.com`` (authorize, token, device endpoints);
* ``SWITCHBOARD_CODEX_CALLBACK_PORT`` — default ``1455``; ``SWITCHBOARD_CODEX_CALLBACK_HOST`` — default
  ``127.0.0.1`` (the address the callback server binds; the redirect URI always names ``localhost``);
* ``SWITCHBOARD_LOGIN_DEVICE=1`` — use the device code directly.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import secrets
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from ..errors import UpstreamError, UpstreamUnreachable
from .base import LoginUI, RefreshFailed
from .common import failure_detail, json_body, pkce_pair, start_callback_server

__all__ = ["CLIENT_ID", "FLOW", "CodexFlow", "account_id_from_token", "decode_jwt_claims", "pkce_pair"]

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
SCOPE = "openid profile email offline_access"
DEFAULT_AUTH_BASE = "https://auth.openai.com"
DEFAULT_CALLBACK_PORT = 1455
CALLBACK_PATH = "/auth/callback"
JWT_CLAIM = "https://api.openai.com/auth"
_HTTP_TIMEOUT = 30.0
#: How long the browser flow waits for the callback or a pasted answer (seconds).
LOGIN_TIMEOUT = 600.0
#: How long the device flow polls before giving up (seconds).
DEVICE_TIMEOUT = 15 * 60.0
_DEFAULT_INTERVAL = 5.0
#: Added to the polling interval on ``slow_down`` when the server names no interval (RFC 8628).
SLOW_DOWN_STEP = 5.0
_PENDING = frozenset({"deviceauth_authorization_pending", "authorization_pending"})

_PASTE_PROMPT = "Paste the redirect URL (or the code), or type 'd' for a device code: "
_DONE_PAGE = (
    b"<!doctype html><html><body><h1>Switchboard: login complete</h1>"
    b"<p>You can close this tab and go back to the terminal.</p></body></html>"
)


# --- tokens -----------------------------------------------------------------------------------


def decode_jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT (not verified: it is our own token, only read for the account id)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def account_id_from_token(token: str) -> str | None:
    claims = decode_jwt_claims(token)
    auth = claims.get(JWT_CLAIM) if claims else None
    account = auth.get("chatgpt_account_id") if isinstance(auth, dict) else None
    return account if isinstance(account, str) and account else None


# --- the flow ---------------------------------------------------------------------------------


class CodexFlow:
    provider_id = "openai-codex"
    label = "ChatGPT Plus/Pro (Codex)"

    # endpoints (read from the environment on every use, so tests can point them at fakes)

    @staticmethod
    def auth_base() -> str:
        return (os.environ.get("SWITCHBOARD_CODEX_AUTH_BASE") or DEFAULT_AUTH_BASE).rstrip("/")

    @staticmethod
    def callback_port() -> int:
        raw = os.environ.get("SWITCHBOARD_CODEX_CALLBACK_PORT") or ""
        return int(raw) if raw.isdigit() else DEFAULT_CALLBACK_PORT

    def redirect_uri(self) -> str:
        return f"http://localhost:{self.callback_port()}{CALLBACK_PATH}"

    def authorize_url(self, challenge: str, state: str) -> str:
        params = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": self.redirect_uri(),
            "scope": SCOPE,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
            "id_token_add_organizations": "true",
            "codex_cli_simplified_flow": "true",
            "originator": "switchboard",
        }
        return f"{self.auth_base()}/oauth/authorize?{urlencode(params)}"

    # login

    def login(self, ui: LoginUI) -> dict[str, Any]:
        if os.environ.get("SWITCHBOARD_LOGIN_DEVICE", "").strip().lower() in ("1", "true", "yes"):
            return self.device_login(ui)
        return self.browser_login(ui)

    def browser_login(self, ui: LoginUI) -> dict[str, Any]:
        verifier, challenge = pkce_pair()
        state = secrets.token_hex(16)
        answers: queue.Queue[tuple[str, str]] = queue.Queue()
        server = _start_callback_server(state, answers)
        if server is None:
            ui.say(
                f"Could not listen on 127.0.0.1:{self.callback_port()} for the browser's answer; "
                "paste the redirect URL instead."
            )
        try:
            ui.say("Log in with your ChatGPT account in the browser.")
            ui.open_url(self.authorize_url(challenge, state))
            if answers.empty():
                threading.Thread(target=_ask_paste, args=(ui, answers), daemon=True).start()
            code = self._wait_for_code(answers, state, server is not None)
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
        if code is None:
            return self.device_login(ui)
        entry = self._exchange(code, verifier, self.redirect_uri())
        ui.say("Logged in to ChatGPT.")
        return entry

    def _wait_for_code(self, answers: queue.Queue[tuple[str, str]], state: str, listening: bool) -> str | None:
        """The authorization code (None: the user chose the device code)."""
        deadline = time.monotonic() + LOGIN_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError("ChatGPT login timed out: no answer from the browser and nothing was pasted")
            try:
                kind, value = answers.get(timeout=remaining)
            except queue.Empty:
                continue
            if kind == "callback":
                return value
            if kind == "error":
                raise RuntimeError(f"ChatGPT login failed: {value}")
            if kind == "eof":
                if listening:
                    continue  # nothing to paste: keep waiting for the browser
                raise RuntimeError("ChatGPT login cancelled: no redirect URL or code was given")
            # kind == "paste"
            if value.lower() in ("d", "device"):
                return None
            return _code_from_paste(value, state)

    # device code

    def device_login(self, ui: LoginUI) -> dict[str, Any]:
        base = self.auth_base()
        with httpx.Client(timeout=_HTTP_TIMEOUT) as client:
            resp = client.post(f"{base}/api/accounts/deviceauth/usercode", json={"client_id": CLIENT_ID})
            if resp.status_code >= 400:
                raise RuntimeError(
                    f"ChatGPT device login could not start: HTTP {resp.status_code} {failure_detail(resp)}"
                )
            data = json_body(resp)
            device_auth_id, user_code = data.get("device_auth_id"), data.get("user_code") or data.get("usercode")
            if not isinstance(device_auth_id, str) or not isinstance(user_code, str):
                raise RuntimeError("ChatGPT device login: the answer carries no device_auth_id/user_code")
            interval = _seconds(data.get("interval"), _DEFAULT_INTERVAL)
            ui.open_url(f"{base}/codex/device")
            ui.say(f"Open {base}/codex/device and enter the code: {user_code}")
            deadline = time.monotonic() + DEVICE_TIMEOUT
            while True:
                if time.monotonic() >= deadline:
                    raise RuntimeError("ChatGPT device login timed out; run the login again")
                time.sleep(interval)
                resp = client.post(
                    f"{base}/api/accounts/deviceauth/token",
                    json={"device_auth_id": device_auth_id, "user_code": user_code},
                )
                if resp.status_code == 200:
                    granted = json_body(resp)
                    break
                code = _error_code(resp)
                if code == "slow_down":
                    interval = _seconds(json_body(resp).get("interval"), interval + SLOW_DOWN_STEP)
                    continue
                if resp.status_code in (403, 404) or code in _PENDING:
                    continue
                raise RuntimeError(f"ChatGPT device login failed: HTTP {resp.status_code} {failure_detail(resp)}")
        auth_code, verifier = granted.get("authorization_code"), granted.get("code_verifier")
        if not isinstance(auth_code, str) or not isinstance(verifier, str):
            raise RuntimeError("ChatGPT device login: the answer carries no authorization_code/code_verifier")
        entry = self._exchange(auth_code, verifier, f"{base}/deviceauth/callback")
        ui.say("Logged in to ChatGPT.")
        return entry

    # token endpoint

    def _exchange(self, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
        }
        with httpx.Client(timeout=_HTTP_TIMEOUT) as client:
            resp = client.post(f"{self.auth_base()}/oauth/token", data=form)
        if resp.status_code >= 400:
            raise RuntimeError(
                f"ChatGPT login: the token exchange failed: HTTP {resp.status_code} {failure_detail(resp)}"
            )
        return _entry(json_body(resp), None)

    def refresh(self, entry: dict[str, Any]) -> dict[str, Any]:
        token = entry.get("refresh")
        if not isinstance(token, str) or not token:
            raise RefreshFailed("the stored login has no refresh token")
        form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": CLIENT_ID}
        try:
            with httpx.Client(timeout=_HTTP_TIMEOUT) as client:
                resp = client.post(f"{self.auth_base()}/oauth/token", data=form)
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(f"ChatGPT token refresh could not reach {self.auth_base()}: {exc}") from exc
        if resp.status_code in (400, 401, 403):
            raise RefreshFailed(f"HTTP {resp.status_code} {failure_detail(resp)}".strip())
        if resp.status_code >= 400:
            raise UpstreamError(
                f"ChatGPT token refresh failed: HTTP {resp.status_code} {failure_detail(resp)}", status=502
            )
        return _entry(json_body(resp), token)


FLOW = CodexFlow()


def _entry(data: dict[str, Any], old_refresh: str | None) -> dict[str, Any]:
    access = data.get("access_token")
    refresh = data.get("refresh_token") or old_refresh
    if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
        raise RuntimeError("ChatGPT login: the token answer carries no access_token/refresh_token")
    account = account_id_from_token(access)
    if account is None and isinstance(data.get("id_token"), str):
        account = account_id_from_token(data["id_token"])
    if account is None:
        raise RuntimeError("ChatGPT login: the token carries no ChatGPT account id (is this a ChatGPT account?)")
    expires_in = _seconds(data.get("expires_in"), 3600.0)
    return {
        "type": "oauth",
        "access": access,
        "refresh": refresh,
        "expires": int(time.time() * 1000 + expires_in * 1000),
        "accountId": account,
    }


def _error_code(resp: httpx.Response) -> str | None:
    data = json_body(resp)
    err = data.get("error")
    if isinstance(err, dict):
        err = err.get("code") or err.get("type")
    if isinstance(err, str):
        return err
    code = data.get("code")
    return code if isinstance(code, str) else None


def _seconds(value: Any, default: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return seconds if seconds >= 0 else default


def _code_from_paste(text: str, state: str) -> str:
    """The code in a pasted redirect URL, ``code#state``, query string or bare code; a wrong state fails."""
    text = text.strip()
    if not text:
        raise RuntimeError("ChatGPT login cancelled: nothing was pasted")
    got_state: str | None = None
    code: str | None
    if "://" in text or text.startswith(("?", "/")) or "code=" in text:
        query = urlsplit(text).query if "://" in text or text.startswith("/") else text.lstrip("?")
        params = parse_qs(query)
        if params.get("error"):
            raise RuntimeError(f"ChatGPT login failed: {params['error'][0]}")
        code = params["code"][0] if params.get("code") else None
        got_state = params["state"][0] if params.get("state") else None
    elif "#" in text:
        code, got_state = text.split("#", 1)
    else:
        code = text
    if not code:
        raise RuntimeError("ChatGPT login: the pasted text carries no authorization code")
    if got_state is not None and got_state != state:
        raise RuntimeError("ChatGPT login: state mismatch (the pasted URL belongs to another login attempt)")
    return code


def _ask_paste(ui: LoginUI, answers: queue.Queue[tuple[str, str]]) -> None:
    try:
        answer = ui.ask(_PASTE_PROMPT)
    except EOFError:
        answers.put(("eof", ""))
        return
    except Exception as exc:
        answers.put(("eof", str(exc)))
        return
    answers.put(("paste", answer.strip()) if answer.strip() else ("eof", ""))


def _start_callback_server(state: str, answers: queue.Queue[tuple[str, str]]) -> ThreadingHTTPServer | None:
    host = os.environ.get("SWITCHBOARD_CODEX_CALLBACK_HOST") or "127.0.0.1"
    return start_callback_server(
        host,
        CodexFlow.callback_port(),
        CALLBACK_PATH,
        state,
        lambda kind, value: answers.put((kind, value)),
        _DONE_PAGE,
    )
