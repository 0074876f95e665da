"""A fake Cloudflare: Workers AI and AI Gateway on one real HTTP server on 127.0.0.1.

Routes, as Cloudflare serves them:

* ``POST /client/v4/accounts/{account}/ai/v1/chat/completions`` — Workers AI; ``Authorization: Bearer``
  must be the API token.
* ``POST /v1/{account}/{gateway}/compat/chat/completions`` — the gateway's Unified API (OpenAI chat).
* ``POST /v1/{account}/{gateway}/openai/responses`` — OpenAI passthrough (Responses).
* ``POST /v1/{account}/{gateway}/anthropic/v1/messages`` — Anthropic passthrough (Messages).

Gateway calls must carry ``cf-aig-authorization: Bearer <token>`` (401 otherwise). Like the gateway, the
fake then forwards the request to the upstream behind the route — the chat, Responses and Anthropic fakes
of this package, unstarted, their handlers called directly — without ``cf-aig-authorization`` and with
the upstream key: the request's own ``Authorization``/``x-api-key`` when it has one (inline BYOK), else
the key stored in the gateway (stored BYOK / unified billing). A wrong account or gateway id is a 404.

Each call is recorded as a :class:`CfRecorded`: what reached Cloudflare (path, lower-cased headers),
what the upstream received (headers) and the body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.responses_upstream import FakeResponses
from tests.fakes.server import FakeServer

__all__ = ["CfRecorded", "FakeCloudflare"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class CfRecorded:
    #: "workers-ai", "compat", "openai" or "anthropic".
    route: str
    path: str
    #: What Cloudflare received, lower-cased names.
    headers: dict[str, str]
    #: The inner fake that answered and the index of its own record of this call; read lazily, because a
    #: streamed answer reaches the client before the inner handler returns.
    inner: Any = None
    index: int = -1

    @property
    def body(self) -> Any:
        return self.inner.requests[self.index].body if self.inner is not None else None

    @property
    def upstream_headers(self) -> dict[str, str]:
        """What the upstream provider received from the gateway, lower-cased names."""
        return _lower(self.inner.requests[self.index].headers) if self.inner is not None else {}

    @property
    def affinity(self) -> str | None:
        return self.headers.get("x-session-affinity")


class FakeCloudflare(FakeServer):
    def __init__(
        self,
        account: str = "acct-0123",
        gateway: str = "gw-main",
        token: str = "cf-token-0123456789abcdef",
        stored_openai_key: str = "sk-openai-stored-0123",
        stored_anthropic_key: str = "sk-ant-stored-0123",
    ) -> None:
        super().__init__()
        self.account, self.gateway, self.token = account, gateway, token
        self.chat = FakeOpenAI()
        self.responses = FakeResponses()
        self.anthropic = FakeAnthropic(api_key=stored_anthropic_key)
        #: The upstream keys stored in the gateway, sent when a request brings none.
        self.stored = {
            "openai": ("authorization", f"Bearer {stored_openai_key}"),
            "anthropic": ("x-api-key", stored_anthropic_key),
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/client/v4/accounts/{account}/ai/v1/chat/completions", self._workers_ai)
        app.router.add_post("/v1/{account}/{gateway}/compat/chat/completions", self._gateway("compat"))
        app.router.add_post("/v1/{account}/{gateway}/openai/responses", self._gateway("openai"))
        app.router.add_post("/v1/{account}/{gateway}/anthropic/v1/messages", self._gateway("anthropic"))

    def stop(self) -> None:
        super().stop()
        for inner in (self.chat, self.responses, self.anthropic):
            inner.discard()  # never started: their handlers run on this server's loop

    async def _workers_ai(self, request: web.Request) -> web.StreamResponse:
        headers = _lower(request.headers)
        if request.match_info["account"] != self.account:
            return _cf_error(404, 7003, "Could not route to /client/v4/accounts/...: unknown account")
        if headers.get("authorization") != f"Bearer {self.token}":
            self.requests.append(CfRecorded("workers-ai", request.path, headers))
            return _cf_error(401, 10000, "Authentication error")
        return await self._forward("workers-ai", request, headers, dict(request.headers), self.chat._chat)

    def _gateway(self, route: str) -> _Handler:
        inner: dict[str, _Handler] = {
            "compat": self.chat._chat,
            "openai": self.responses._responses,
            "anthropic": self.anthropic._messages,
        }

        async def handle(request: web.Request) -> web.StreamResponse:
            headers = _lower(request.headers)
            if (request.match_info["account"], request.match_info["gateway"]) != (self.account, self.gateway):
                return _cf_error(404, 2001, "Gateway not found")
            if headers.get("cf-aig-authorization") != f"Bearer {self.token}":
                self.requests.append(CfRecorded(route, request.path, headers))
                return _cf_error(401, 2009, "Unauthorized")
            upstream = {k: v for k, v in request.headers.items() if k.lower() != "cf-aig-authorization"}
            byok = any(k.lower() in ("authorization", "x-api-key") for k in upstream)
            if not byok and route in self.stored:
                name, value = self.stored[route]
                upstream[name] = value
            return await self._forward(route, request, headers, upstream, inner[route])

        return handle

    async def _forward(
        self, route: str, request: web.Request, headers: dict[str, str], upstream: dict[str, str], handler: _Handler
    ) -> web.StreamResponse:
        target = {"workers-ai": self.chat, "compat": self.chat, "openai": self.responses, "anthropic": self.anthropic}
        inner = target[route]
        self.requests.append(CfRecorded(route, request.path, headers, inner, len(inner.requests)))
        return await handler(request.clone(headers=upstream))


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _cf_error(status: int, code: int, message: str) -> web.Response:
    body = {"success": False, "result": [], "messages": [], "errors": [{"code": code, "message": message}]}
    return web.json_response(body, status=status)
