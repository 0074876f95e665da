"""Fakes for ChatGPT Plus/Pro (Codex): OpenAI's OAuth server and the ChatGPT Codex backend.

:class:`FakeCodexAuth` (``auth.openai.com``):

* ``GET /oauth/authorize`` checks the PKCE parameters, remembers the S256 challenge under a new code and
  redirects (302) to ``redirect_uri?code=...&state=...``, as the real page does after the user logs in;
* ``POST /oauth/token`` (form-urlencoded): ``authorization_code`` (the ``code_verifier`` must hash to the
  challenge, ``redirect_uri`` must match) and ``refresh_token`` (rotated; a revoked or unknown one is 400
  ``invalid_grant``). Access tokens are real unsigned JWTs carrying the ChatGPT account id and ``exp``;
* the device code: ``POST /api/accounts/deviceauth/usercode`` and ``.../deviceauth/token``, answering
  from :attr:`FakeCodexAuth.device_script` (``"forbidden"`` 403, ``"pending"``, ``"slow_down"``, ``"ok"``).

:class:`FakeCodex` (``chatgpt.com/backend-api``): ``POST .../codex/responses`` requires a valid, unexpired
bearer JWT whose account claim equals the ``chatgpt-account-id`` header, ``store: false``, ``stream: true``,
``instructions`` and no ``max_output_tokens`` (answering ``{"detail": ...}`` like the real backend), then
answers with the OpenAI Responses fake's logic (:class:`tests.fakes.responses_upstream.FakeResponses`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

from aiohttp import web

from tests.fakes.responses_upstream import FakeResponses, stream_events
from tests.fakes.server import Action, FakeServer, read_body

__all__ = ["CLAIM", "CLIENT_ID", "Action", "FakeCodex", "FakeCodexAuth", "make_jwt"]

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
CLAIM = "https://api.openai.com/auth"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict[str, Any]) -> str:
    """An unsigned JWT (``alg: none``) with ``claims`` as its payload."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def jwt_claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def access_token(account_id: str, expires_in: float = 3600) -> str:
    return make_jwt(
        {
            "exp": int(time.time() + expires_in),
            "jti": secrets.token_hex(8),
            CLAIM: {"chatgpt_account_id": account_id, "chatgpt_plan_type": "plus"},
        }
    )


class FakeCodexAuth(FakeServer):
    def __init__(self, account_id: str = "acct-1234") -> None:
        super().__init__()
        self.account_id = account_id
        self.expires_in = 3600
        #: code -> (S256 challenge, redirect_uri)
        self.codes: dict[str, tuple[str, str]] = {}
        self.refresh_tokens: set[str] = set()
        self.issued: list[str] = []
        self.authorize_params: list[dict[str, str]] = []
        self.token_forms: list[dict[str, str]] = []
        self.device_script: list[str] = ["ok"]
        self.device_polls: list[tuple[float, str]] = []
        self.device_user_code = "ABCD-1234"
        self.device_interval = "0.05"
        self.refresh_status: int | None = None  # force an answer status to the refresh grant

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/oauth/authorize", self._authorize)
        app.router.add_post("/oauth/token", self._token)
        app.router.add_post("/api/accounts/deviceauth/usercode", self._usercode)
        app.router.add_post("/api/accounts/deviceauth/token", self._device_token)

    def issue(self) -> dict[str, Any]:
        """A fresh token answer (also used by tests to seed auth.json)."""
        access = access_token(self.account_id, self.expires_in)
        refresh = "rt_" + secrets.token_urlsafe(16)
        self.refresh_tokens.add(refresh)
        self.issued.append(access)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "id_token": make_jwt({CLAIM: {"chatgpt_account_id": self.account_id}}),
            "expires_in": self.expires_in,
            "token_type": "Bearer",
        }

    async def _authorize(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.authorize_params.append(q)
        required = ("response_type", "client_id", "redirect_uri", "scope", "code_challenge", "state")
        missing = [k for k in required if not q.get(k)]
        if missing or q["client_id"] != CLIENT_ID or q["response_type"] != "code":
            return web.json_response({"error": "invalid_request", "missing": missing}, status=400)
        if q.get("code_challenge_method") != "S256":
            return web.json_response({"error": "invalid_request", "error_description": "S256 only"}, status=400)
        code = "ac_" + secrets.token_urlsafe(12)
        self.codes[code] = (q["code_challenge"], q["redirect_uri"])
        location = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
        raise web.HTTPFound(location)

    async def _token(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("application/x-www-form-urlencoded"):
            return web.json_response({"error": "invalid_request", "error_description": "form bodies only"}, status=400)
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        self.token_forms.append(form)
        if form.get("client_id") != CLIENT_ID:
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            known = self.codes.pop(form.get("code", ""), None)
            if known is None:
                return web.json_response({"error": "invalid_grant", "error_description": "unknown code"}, status=400)
            challenge, redirect_uri = known
            verifier = form.get("code_verifier", "")
            if _b64(hashlib.sha256(verifier.encode()).digest()) != challenge:
                return web.json_response({"error": "invalid_grant", "error_description": "PKCE failed"}, status=400)
            if form.get("redirect_uri") != redirect_uri:
                return web.json_response({"error": "invalid_grant", "error_description": "redirect_uri"}, status=400)
            return web.json_response(self.issue())
        if grant == "refresh_token":
            if self.refresh_status is not None:
                return web.json_response({"error": "server_error"}, status=self.refresh_status)
            token = form.get("refresh_token", "")
            if token not in self.refresh_tokens:
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "refresh token revoked"}, status=400
                )
            self.refresh_tokens.discard(token)  # rotated
            return web.json_response(self.issue())
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    async def _usercode(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        if not isinstance(body, dict) or body.get("client_id") != CLIENT_ID:
            return web.json_response({"error": "invalid_client"}, status=400)
        return web.json_response(
            {"device_auth_id": "dev_1", "user_code": self.device_user_code, "interval": self.device_interval}
        )

    async def _device_token(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        if not isinstance(body, dict) or body.get("device_auth_id") != "dev_1":
            return web.json_response({"error": "invalid_request"}, status=400)
        if body.get("user_code") != self.device_user_code:
            return web.json_response({"error": "invalid_request"}, status=400)
        step = self.device_script.pop(0) if self.device_script else "ok"
        self.device_polls.append((time.monotonic(), step))
        if step == "forbidden":
            return web.json_response({"error": {"message": "not yet", "code": "forbidden"}}, status=403)
        if step == "pending":
            return web.json_response({"error": {"code": "deviceauth_authorization_pending"}}, status=400)
        if step == "slow_down":
            return web.json_response({"error": "slow_down"}, status=400)
        if step == "denied":
            return web.json_response({"error": "access_denied", "error_description": "user said no"}, status=400)
        verifier = _b64(secrets.token_bytes(32))
        code = "ac_" + secrets.token_urlsafe(12)
        self.codes[code] = (_b64(hashlib.sha256(verifier.encode()).digest()), f"{self.url}/deviceauth/callback")
        return web.json_response({"authorization_code": code, "code_verifier": verifier})


class FakeCodex(FakeServer):
    """The ChatGPT Codex backend; ``rejected_keys`` are answered 401 even when valid."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = FakeResponses(reasoning_models=("gpt-5.4", "gpt-5.5", "gpt-5.4-mini"))
        self.rejected_keys: set[str] = set()

    def stop(self) -> None:
        super().stop()
        self.inner.discard()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{prefix:.*}codex/responses", self._responses)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        claims = jwt_claims(token) if token else None
        if claims is None or token in self.rejected_keys:
            return web.json_response({"detail": "Could not parse your authentication token."}, status=401)
        if claims.get("exp", 0) <= time.time():
            err = {"message": "Provided authentication token is expired.", "code": "token_expired"}
            return web.json_response({"error": err}, status=401)
        account = request.headers.get("chatgpt-account-id")
        if not account or account != (claims.get(CLAIM) or {}).get("chatgpt_account_id"):
            return web.json_response({"detail": "chatgpt-account-id missing or not this token's"}, status=403)
        if not isinstance(body, dict):
            return web.json_response({"detail": "Invalid JSON"}, status=400)
        if body.get("store") is not False:
            return web.json_response({"detail": "Store must be set to false"}, status=400)
        if body.get("stream") is not True:
            return web.json_response({"detail": "Stream must be set to true"}, status=400)
        if not isinstance(body.get("instructions"), str):
            return web.json_response({"detail": "Instructions are required"}, status=400)
        if "max_output_tokens" in body:
            return web.json_response({"detail": "Unsupported parameter: max_output_tokens"}, status=400)
        problem = self.inner._check(body)
        if problem is not None:
            return problem
        played = await self.play(request, action := self.next_action())
        if played is not None:
            return played
        events = stream_events(self.inner._respond(body))
        return await self.inner._stream(request, events, action)
