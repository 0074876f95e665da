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
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx

from .authcode import Callback, TokenClient, browser_code, code_from_paste
from .base import LoginUI
from .common import failure_detail, json_body, pkce_pair, seconds

__all__ = ["CLIENT_ID", "FLOW", "CodexFlow", "account_id_from_token", "decode_jwt_claims", "pkce_pair"]

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
SCOPE = "openid profile email offline_access"
DEFAULT_AUTH_BASE = "https://auth.openai.com"
DEFAULT_CALLBACK_PORT = 1455
CALLBACK_PATH = "/auth/callback"
JWT_CLAIM = "https://api.openai.com/auth"
_HTTP_TIMEOUT = 30.0
#: How long the device flow polls before giving up (seconds).
DEVICE_TIMEOUT = 15 * 60.0
_DEFAULT_INTERVAL = 5.0
#: Added to the polling interval on ``slow_down`` when the server names no interval (RFC 8628).
SLOW_DOWN_STEP = 5.0
_PENDING = frozenset({"deviceauth_authorization_pending", "authorization_pending"})
_DEVICE_CHOICES = ("d", "device")


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
        return _CALLBACK.port

    def redirect_uri(self) -> str:
        return _CALLBACK.redirect_uri

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

        def on_paste(text: str) -> str | None:
            return None if text.lower() in _DEVICE_CHOICES else code_from_paste(text, state, "ChatGPT")

        code = browser_code(ui, _CALLBACK, state, self.authorize_url(challenge, state), on_paste)
        if code is None:
            return self.device_login(ui)
        entry = _TOKENS.exchange(code, verifier, self.redirect_uri())
        ui.say("Logged in to ChatGPT.")
        return entry

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
            interval = seconds(data.get("interval"), _DEFAULT_INTERVAL)
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
                    interval = seconds(json_body(resp).get("interval"), interval + SLOW_DOWN_STEP)
                    continue
                if resp.status_code in (403, 404) or code in _PENDING:
                    continue
                raise RuntimeError(f"ChatGPT device login failed: HTTP {resp.status_code} {failure_detail(resp)}")
        auth_code, verifier = granted.get("authorization_code"), granted.get("code_verifier")
        if not isinstance(auth_code, str) or not isinstance(verifier, str):
            raise RuntimeError("ChatGPT device login: the answer carries no authorization_code/code_verifier")
        entry = _TOKENS.exchange(auth_code, verifier, f"{base}/deviceauth/callback")
        ui.say("Logged in to ChatGPT.")
        return entry

    def refresh(self, entry: dict[str, Any]) -> dict[str, Any]:
        return _TOKENS.refresh(entry)


def _account_extra(data: dict[str, Any]) -> dict[str, Any]:
    """Codex requests name the ChatGPT account: read it from the access token (or the id token)."""
    account = account_id_from_token(data["access_token"])
    if account is None and isinstance(data.get("id_token"), str):
        account = account_id_from_token(data["id_token"])
    if account is None:
        raise RuntimeError("the token carries no ChatGPT account id (is this a ChatGPT account?)")
    return {"accountId": account}


_CALLBACK = Callback(
    name="ChatGPT",
    account="ChatGPT",
    path=CALLBACK_PATH,
    host_env="SWITCHBOARD_CODEX_CALLBACK_HOST",
    port_env="SWITCHBOARD_CODEX_CALLBACK_PORT",
    default_port=DEFAULT_CALLBACK_PORT,
    prompt="Paste the redirect URL (or the code), or type 'd' for a device code: ",
    paste_hint="paste the redirect URL instead.",
)
_TOKENS = TokenClient(
    name="ChatGPT",
    client_id=CLIENT_ID,
    token_url=lambda: f"{CodexFlow.auth_base()}/oauth/token",
    extras=_account_extra,
)
FLOW = CodexFlow()


def _error_code(resp: httpx.Response) -> str | None:
    data = json_body(resp)
    err = data.get("error")
    if isinstance(err, dict):
        err = err.get("code") or err.get("type")
    if isinstance(err, str):
        return err
    code = data.get("code")
    return code if isinstance(code, str) else None
