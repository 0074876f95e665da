"""A fake Claude (Anthropic) OAuth server: the authorize page and the JSON token endpoint.

``GET /oauth/authorize`` checks the parameters a real login sends and redirects (302) to the
``redirect_uri`` with ``code`` and ``state``, without following it. ``POST /v1/oauth/token`` takes JSON:

* ``authorization_code``: the code must be one it issued, ``state`` must equal the ``code_verifier``, and
  SHA-256(``code_verifier``) base64url must equal the ``code_challenge`` the authorize request carried;
* ``refresh_token``: the refresh token must be live; it is rotated (the old one dies).

Tokens look like real ones (``sk-ant-oat01-...`` / ``sk-ant-ort01-...``). Every token request body is kept in
``bodies``; ``on_issue(access)`` is called for each new access token (tests hand it to the fake backend);
``refresh_gate``, when set, holds each refresh grant until the test opens it (at most 10 s), so that a test can
make concurrent refreshes overlap without timing; ``refresh_status`` makes it answer that status instead.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.server import FakeServer, read_body

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class FakeClaudeAuth(FakeServer):
    def __init__(self, expires_in: int = 28800) -> None:
        super().__init__()
        self.expires_in = expires_in
        self.bodies: list[Any] = []
        self.authorize_params: list[dict[str, str]] = []
        #: code → (challenge, redirect_uri)
        self.codes: dict[str, tuple[str, str]] = {}
        self.refresh_tokens: set[str] = set()
        self.issued: list[str] = []
        self.on_issue: Callable[[str], None] | None = None
        self.refresh_gate: threading.Event | None = None
        #: Refresh grants received (counted before the gate).
        self.refresh_requests = 0
        #: When set, the refresh grant answers this status (an ``invalid_grant`` error body).
        self.refresh_status: int | None = None
        self._n = itertools.count(1)

    @property
    def authorize_url(self) -> str:
        return self.url + "/oauth/authorize"

    @property
    def token_url(self) -> str:
        return self.url + "/v1/oauth/token"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/oauth/authorize", self._authorize)
        app.router.add_post("/v1/oauth/token", self._token)

    def issue(self) -> dict[str, Any]:
        n = next(self._n)
        access, refresh = f"sk-ant-oat01-access-{n:04d}-xyz", f"sk-ant-ort01-refresh-{n:04d}-xyz"
        self.issued.append(access)
        self.refresh_tokens.add(refresh)
        if self.on_issue is not None:
            self.on_issue(access)
        return {
            "token_type": "Bearer",
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.expires_in,
            "scope": "user:inference user:profile",
        }

    def grant_code(self, challenge: str, redirect_uri: str) -> str:
        code = f"authcode-{next(self._n):04d}"
        self.codes[code] = (challenge, redirect_uri)
        return code

    async def _authorize(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.authorize_params.append(q)
        required = {"code": "true", "client_id": CLIENT_ID, "response_type": "code", "code_challenge_method": "S256"}
        for name, value in required.items():
            if q.get(name) != value:
                return web.Response(status=400, text=f"bad {name}")
        if not q.get("code_challenge") or not q.get("state") or not q.get("redirect_uri") or not q.get("scope"):
            return web.Response(status=400, text="missing parameter")
        code = self.grant_code(q["code_challenge"], q["redirect_uri"])
        location = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
        return web.Response(status=302, headers={"Location": location})

    async def _token(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("application/json"):
            return _err(400, "invalid_request", "expected a JSON body")
        body = await read_body(request)
        self.bodies.append(body)
        if not isinstance(body, dict) or body.get("client_id") != CLIENT_ID:
            return _err(400, "invalid_client", "unknown client_id")
        grant = body.get("grant_type")
        if grant == "authorization_code":
            granted = self.codes.pop(str(body.get("code")), None)
            if granted is None:
                return _err(400, "invalid_grant", "unknown or used code")
            challenge, redirect_uri = granted
            verifier = str(body.get("code_verifier") or "")
            if s256(verifier) != challenge:
                return _err(400, "invalid_grant", "code_verifier does not match the challenge")
            if body.get("state") != verifier:
                return _err(400, "invalid_grant", "state mismatch")
            if body.get("redirect_uri") != redirect_uri:
                return _err(400, "invalid_grant", "redirect_uri mismatch")
            return web.json_response(self.issue())
        if grant == "refresh_token":
            self.refresh_requests += 1
            if self.refresh_gate is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.refresh_gate.wait, 10)
            if self.refresh_status is not None:
                return _err(self.refresh_status, "invalid_grant", "refused by the test")
            token = str(body.get("refresh_token"))
            if token not in self.refresh_tokens:
                return _err(400, "invalid_grant", "refresh token revoked")
            self.refresh_tokens.discard(token)
            return web.json_response(self.issue())
        return _err(400, "unsupported_grant_type", str(grant))


def _err(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)
