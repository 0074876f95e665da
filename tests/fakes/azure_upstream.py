"""A fake Azure OpenAI resource and a fake Microsoft Entra ID authority, real servers on 127.0.0.1.

:class:`FakeAzure` checks what Azure checks before a model answers: the path (``/openai/v1/responses``,
``/openai/v1/chat/completions``; else 404 "Resource not found"), the ``api-version`` query (400), the
``api-key`` header or an Entra ``Authorization: Bearer`` token it knows (401 with Azure's access-denied body),
and that the body's ``model`` names a deployment (404 ``DeploymentNotFound``). The answer itself comes from
the OpenAI fakes, composed rather than copied: the request is forwarded to a :class:`FakeResponses` or
:class:`FakeOpenAI` running alongside, and their answer (JSON or SSE) is streamed back unchanged.

:class:`FakeEntraAuthority` serves OpenID discovery and the v2.0 token endpoint (client-credentials grant)
over HTTPS with a self-signed certificate for 127.0.0.1 written to :attr:`FakeEntraAuthority.ca_file`, since
MSAL only talks to https authorities.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import secrets
import ssl
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.responses_upstream import FakeResponses
from tests.fakes.server import FakeServer

__all__ = ["AzureRecorded", "FakeAzure", "FakeEntraAuthority"]

ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
    "active subscription and use a correct regional API endpoint for your resource."
)
_INNER_KEY = "azure-fake-inner"


@dataclass
class AzureRecorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class FakeAzure(FakeServer):
    def __init__(self, keys: tuple[str, ...] = ("azure-key",), deployments: tuple[str, ...] = ()) -> None:
        super().__init__()
        #: Accepted ``api-key`` values and Entra access tokens.
        self.keys = set(keys)
        self.tokens: Collection[str] = set()
        #: Deployment names that exist; empty accepts any.
        self.deployments = set(deployments)
        self.api_version = "v1"
        self.responses = FakeResponses()
        self.chat = FakeOpenAI()
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> Self:
        self.responses.start()
        self.chat.start()
        return super().start()

    def stop(self) -> None:
        if self._session is not None:
            asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result(10)
        super().stop()
        self.responses.stop()
        self.chat.stop()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/openai/v1/responses", self._responses)
        app.router.add_post("/openai/v1/chat/completions", self._chat)
        app.router.add_route("*", "/{rest:.*}", self._not_found)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, self.responses.url + "/v1/responses")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, self.chat.url + "/v1/chat/completions")

    async def _not_found(self, request: web.Request) -> web.Response:
        self.requests.append(
            AzureRecorded(request.method, request.path, dict(request.query), dict(request.headers), None)
        )
        return _azure_error(404, "404", "Resource not found")

    async def _handle(self, request: web.Request, inner_url: str) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        self.requests.append(AzureRecorded("POST", request.path, dict(request.query), dict(request.headers), body))
        version = request.query.get("api-version")
        if version != self.api_version:
            return _azure_error(400, "BadRequest", "API version not supported")
        if not self._authorized(request):
            return _azure_error(401, "401", ACCESS_DENIED)
        if self.deployments and (not isinstance(body, dict) or body.get("model") not in self.deployments):
            message = (
                "The API deployment for this resource does not exist. If you created the deployment within the "
                "last 5 minutes, please wait a moment and try again."
            )
            return _azure_error(404, "DeploymentNotFound", message)
        return await self._forward(request, inner_url, raw)

    def _authorized(self, request: web.Request) -> bool:
        key = request.headers.get("api-key")
        if key is not None:
            return key in self.keys
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth.removeprefix("Bearer ") in self.tokens

    async def _forward(self, request: web.Request, url: str, raw: bytes) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Authorization": f"Bearer {_INNER_KEY}", "Content-Type": "application/json"}
        async with self._session.post(url, data=raw, headers=headers) as upstream:
            ctype = upstream.headers.get("Content-Type", "application/json")
            resp = web.StreamResponse(status=upstream.status, headers={"Content-Type": ctype})
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp


def _azure_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class FakeEntraAuthority(FakeServer):
    """``https://127.0.0.1:<port>/<tenant>``: OpenID configuration and client-credentials tokens."""

    def __init__(self, directory: Path, tenant: str, client_id: str, secret: str, expires_in: int = 3600) -> None:
        super().__init__()
        self.tenant, self.client_id, self.secret = tenant, client_id, secret
        self.expires_in = expires_in
        #: When set, the token endpoint waits until it is opened (at most 10 s) and records in ``gated`` whether
        #: it was opened in time: a test opens it from the client's event loop, which must not be blocked.
        self.gate: threading.Event | None = None
        self.gated: list[bool] = []
        #: Every access token issued, in order.
        self.issued: list[str] = []
        self.ca_file = directory / "entra-ca.pem"
        self.ssl_context = _self_signed(directory, self.ca_file)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._openid)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)

    async def _openid(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        self.requests.append(("GET", request.path, None))
        if tenant != self.tenant:
            return _closing(web.json_response({"error": "invalid_tenant"}, status=400))
        base = f"{self.url}/{tenant}"
        return _closing(
            web.json_response(
                {
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "jwks_uri": f"{base}/discovery/v2.0/keys",
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                }
            )
        )

    async def _token(self, request: web.Request) -> web.Response:
        return _closing(await self._answer_token(request))

    async def _answer_token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append(("POST", request.path, form))
        if self.gate is not None:
            self.gated.append(await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 10))
        if form.get("grant_type") != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", "AADSTS70003: the grant type is not supported.")
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.secret:
            return _aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if form.get("scope") != "https://cognitiveservices.azure.com/.default":
            return _aad_error(400, "invalid_scope", f"AADSTS70011: the scope {form.get('scope')!r} is not valid.")
        token = f"entra-{len(self.issued)}-{secrets.token_hex(8)}"
        self.issued.append(token)
        body = {"token_type": "Bearer", "expires_in": self.expires_in, "ext_expires_in": self.expires_in}
        return web.json_response({**body, "access_token": token})


def _closing(resp: web.Response) -> web.Response:
    # No keep-alive: azure-identity's pooled TLS connections would outlive the server's event loop.
    resp.force_close()
    return resp


def _aad_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description, "error_codes": [0]}, status=status)


def _self_signed(directory: Path, ca_file: Path) -> ssl.SSLContext:
    """A certificate for 127.0.0.1 that is its own CA; clients trust it through ``ca_file``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake entra authority")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "entra-key.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca_file, key_file)
    return context
