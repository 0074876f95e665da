"""Fakes for the example extension ``examples/switchboard-acme``: Acme's API and its device-code login.

:class:`FakeAcmeAuth` is an RFC 8628 authorization server: ``POST /oauth/device/code`` hands out a device
and a user code; ``POST /device`` (form ``user_code``) is the user approving it in a browser;
``POST /oauth/token`` answers device polls (``slow_down`` once after ``slow_down_after`` pending polls,
``authorization_pending`` until approved, then tokens, RFC 8628 §3.5: errors with status 400) and refresh
grants (rotating the refresh token; ``invalid_grant`` for an unknown one). Every access token it issues
becomes valid at the :class:`FakeAcme` it was given.

:class:`FakeAcme` speaks the ``acme-ndjson`` wire API (``POST /v1/generate``, see
``switchboard_acme.wire``): the answer is the words ``Acme says: `` followed by the last user turn's words,
cut at ``limit`` words (``stop_reason: "limit"``); usage counts words. A bearer token not in ``tokens``
gets a 401 in Acme's error shape.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, Recorded

_DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class FakeAcme(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        #: Bearer tokens accepted (the auth server adds those it issues).
        self.tokens: set[str] = set()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/generate", self._generate)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return web.json_response({"error": {"message": "invalid or expired token", "kind": "auth"}}, status=401)
        if not isinstance(body, dict) or not isinstance(body.get("prompt_turns"), list):
            return web.json_response({"error": {"message": "prompt_turns is required", "kind": "request"}}, status=400)
        users = [t["text"] for t in body["prompt_turns"] if t.get("speaker") == "user"]
        words = ["Acme", "says:", *(users[-1].split() if users else [])]
        limit = body.get("limit")
        cut = isinstance(limit, int) and len(words) > limit
        words = words[:limit] if cut else words
        stop = "limit" if cut else "end"
        prompt = sum(len(str(t.get("text", "")).split()) for t in body["prompt_turns"])
        usage = {"prompt": prompt, "completion": len(words)}
        if not body.get("stream"):
            return web.json_response({"id": "gen-1", "text": " ".join(words), "stop_reason": stop, "usage": usage})
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        lines = [json.dumps({"delta": p}).encode() + b"\n" for p in pieces]
        lines.append(json.dumps({"done": True, "stop_reason": stop, "usage": usage}).encode() + b"\n")
        return await self.stream(request, lines, None, b'{"delta": "to', "application/x-ndjson")


class FakeAcmeAuth(FakeServer):
    def __init__(self, api: FakeAcme) -> None:
        super().__init__()
        self.api = api
        #: device code → {"user_code", "approved"}
        self.devices: dict[str, dict[str, Any]] = {}
        #: refresh token → still valid
        self.refresh_tokens: dict[str, bool] = {}
        #: The ``error`` (or "token") of every device poll answered, in order.
        self.poll_answers: list[str] = []
        self.refreshes = 0
        self.slow_down_after = 1
        self.interval = 0.05
        #: The interval a ``slow_down`` answer asks for (the flow must keep to it).
        self.slow_interval = 0.3
        #: When each device poll arrived (monotonic seconds).
        self.poll_times: list[float] = []
        self.expires_in = 3600

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/oauth/device/code", self._device_code)
        app.router.add_post("/device", self._approve)
        app.router.add_post("/oauth/token", self._token)

    def issue(self) -> dict[str, Any]:
        """A fresh token pair, valid at the API."""
        access, refresh = f"acme-at-{secrets.token_hex(8)}", f"acme-rt-{secrets.token_hex(8)}"
        self.api.tokens.add(access)
        self.refresh_tokens[refresh] = True
        return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": self.expires_in}

    async def _device_code(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append(Recorded("POST", request.path, dict(request.headers), form))
        if form.get("client_id") != "switchboard-acme":
            return web.json_response({"error": "invalid_client"}, status=401)
        device, user = secrets.token_hex(8), f"ACME-{secrets.randbelow(9000) + 1000}"
        self.devices[device] = {"user_code": user, "approved": False}
        return web.json_response(
            {
                "device_code": device,
                "user_code": user,
                "verification_uri": f"{self.url}/device",
                "verification_uri_complete": f"{self.url}/device?user_code={user}",
                "expires_in": 600,
                "interval": self.interval,
            }
        )

    async def _approve(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        for device in self.devices.values():
            if device["user_code"] == form.get("user_code"):
                device["approved"] = True
                return web.Response(text="approved; return to your terminal")
        return web.Response(status=404, text="unknown code")

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append(Recorded("POST", request.path, dict(request.headers), form))
        if form.get("grant_type") == "refresh_token":
            refresh = str(form.get("refresh_token"))
            if not self.refresh_tokens.get(refresh):
                return web.json_response({"error": "invalid_grant"}, status=400)
            self.refresh_tokens[refresh] = False  # rotated: each refresh token works once
            self.refreshes += 1
            return web.json_response(self.issue())
        if form.get("grant_type") != _DEVICE_GRANT:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        device = self.devices.get(str(form.get("device_code")))
        if device is None:
            return web.json_response({"error": "invalid_grant"}, status=400)
        self.poll_times.append(time.monotonic())
        if not device["approved"]:
            pending = self.poll_answers.count("authorization_pending")
            if pending >= self.slow_down_after and "slow_down" not in self.poll_answers:
                self.poll_answers.append("slow_down")
                return web.json_response({"error": "slow_down", "interval": self.slow_interval}, status=400)
            self.poll_answers.append("authorization_pending")
            return web.json_response({"error": "authorization_pending"}, status=400)
        self.poll_answers.append("token")
        del self.devices[str(form.get("device_code"))]
        return web.json_response(self.issue())
