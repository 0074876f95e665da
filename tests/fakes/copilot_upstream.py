"""Fakes for GitHub Copilot: GitHub's device flow and Copilot token exchange, and the Copilot API.

:class:`FakeGitHub` plays both ``https://{domain}`` (``/login/device/code``, ``/login/oauth/access_token``) and
``https://api.{domain}`` (``/copilot_internal/v2/token``). Device polls are answered from ``poll_answers``
(``authorization_pending``, ``slow_down``...) and then with the access token. The exchange accepts the GitHub
tokens in ``github_tokens`` and hands out numbered Copilot tokens carrying ``proxy-ep``.

:class:`FakeCopilot` is :class:`~tests.fakes.openai_upstream.FakeOpenAI` (chat completions) plus the model
list in Copilot's shape and the ``/models/{id}/policy`` endpoint; it accepts only the Copilot tokens in
``tokens`` (401 otherwise) when that set is not empty. Claude models (``/v1/messages``) and GPT-5 models
(``/responses``) are answered by the handlers of a :class:`FakeAnthropic` (``anthropic``, checking
``anthropic.api_key`` as the bearer token) and a :class:`FakeResponses` (``responses``) served on the same port.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI, Recorded
from tests.fakes.responses_upstream import FakeResponses
from tests.fakes.server import FakeServer

DEVICE_CODE = "dev-code-123"
USER_CODE = "ABCD-1234"
PROXY_EP = "proxy.individual.githubcopilot.com"


def copilot_token(n: int, proxy_ep: str | None = PROXY_EP) -> str:
    token = f"tid=fake{n};exp={int(time.time()) + 1800};sku=copilot_individual"
    return token + (f";proxy-ep={proxy_ep};" if proxy_ep else ";")


class FakeGitHub(FakeServer):
    def __init__(self, github_token: str = "gho_fake_github_token_0123") -> None:
        super().__init__()
        self.github_token = github_token
        self.github_tokens: set[str] = {github_token}
        #: Answers to the device polls before the token is handed out (each a dict body).
        self.poll_answers: list[dict[str, Any]] = []
        self.poll_times: list[float] = []
        self.interval: float = 1
        self.verification_uri = "https://github.com/login/device"
        self.exchanges = 0
        #: Seconds until the handed-out Copilot tokens expire.
        self.token_lifetime = 1800
        self.proxy_ep: str | None = PROXY_EP
        self.issued: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/login/device/code", self._device_code)
        app.router.add_post("/login/oauth/access_token", self._access_token)
        app.router.add_get("/copilot_internal/v2/token", self._copilot_token)

    async def _device_code(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append(Recorded("POST", request.path, dict(request.headers), form))
        body = {
            "device_code": DEVICE_CODE,
            "user_code": USER_CODE,
            "verification_uri": self.verification_uri,
            "interval": self.interval,
            "expires_in": 900,
        }
        return web.json_response(body)

    async def _access_token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append(Recorded("POST", request.path, dict(request.headers), form))
        self.poll_times.append(time.monotonic())
        if form.get("device_code") != DEVICE_CODE:
            return web.json_response({"error": "bad_verification_code"})
        if self.poll_answers:
            return web.json_response(self.poll_answers.pop(0))  # GitHub answers 200 with an "error" field
        return web.json_response({"access_token": self.github_token, "token_type": "bearer", "scope": "read:user"})

    async def _copilot_token(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded("GET", request.path, dict(request.headers), None))
        auth = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if auth not in self.github_tokens:
            return web.json_response({"message": "Bad credentials"}, status=401)
        self.exchanges += 1
        token = copilot_token(self.exchanges, self.proxy_ep)
        self.issued.append(token)
        return web.json_response(
            {"token": token, "expires_at": int(time.time()) + self.token_lifetime, "refresh_in": 1500}
        )


class FakeCopilot(FakeOpenAI):
    def __init__(self, models: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        #: Rows of GET /models in Copilot's shape.
        self.model_rows = models if models is not None else default_model_rows()
        #: Copilot tokens accepted on chat (empty: any).
        self.tokens: set[str] = set()
        self.enabled: list[str] = []
        # Their handlers run in this server; their own loops and ports stay unused.
        self.anthropic = FakeAnthropic(api_key="")
        self.responses = FakeResponses()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/models/{model_id}/policy", self._policy)
        app.router.add_get("/models", self._copilot_models)
        app.router.add_post("/chat/completions", self._guarded_chat)
        app.router.add_post("/v1/messages", self.anthropic._messages)
        app.router.add_post("/responses", self.responses._responses)

    def stop(self) -> None:
        super().stop()
        for unused in (self.anthropic, self.responses):
            unused.discard()

    async def _policy(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(Recorded("POST", request.path, dict(request.headers), body))
        self.enabled.append(request.match_info["model_id"])
        return web.json_response({"state": "enabled"})

    async def _copilot_models(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded("GET", request.path, dict(request.headers), None))
        return web.json_response({"object": "list", "data": self.model_rows})

    async def _guarded_chat(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if self.tokens and auth not in self.tokens:
            self.requests.append(Recorded("POST", request.path, dict(request.headers), None))
            return web.json_response(
                {"error": {"message": "unauthorized: token expired", "type": "invalid_request_error"}}, status=401
            )
        return await self._chat(request)


def default_model_rows() -> list[dict[str, Any]]:
    def row(model_id: str, picker: bool = True, policy: str = "enabled", tools: bool | None = True) -> dict[str, Any]:
        supports: dict[str, Any] = {"streaming": True}
        if tools is not None:
            supports["tool_calls"] = tools
        return {
            "id": model_id,
            "model_picker_enabled": picker,
            "policy": {"state": policy},
            "capabilities": {"supports": supports},
        }

    return [
        row("gpt-4.1"),
        row("claude-sonnet-4.5"),
        row("gpt-5.2", tools=None),  # no tool_calls flag: kept
        row("text-embedding-3-small", picker=False),
        row("o1-disabled", policy="disabled"),
        row("no-tools", tools=False),
    ]
