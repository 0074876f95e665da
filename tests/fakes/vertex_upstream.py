"""A fake Google Vertex AI plus a fake Google OAuth token endpoint: one real HTTP server on 127.0.0.1.

``POST /token`` speaks the OAuth 2 token endpoint google-auth talks to: the service-account JWT-bearer
grant (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``; the assertion's RS256 signature is
checked with the account's public key, and its ``iss``, ``aud`` (Google's token endpoint, as google-auth
sets it whatever the ``token_uri``) and ``scope``) and the authorized-user
``refresh_token`` grant. It answers ``{"access_token", "expires_in", "token_type": "Bearer"}`` with
``expires_in`` = :attr:`FakeVertex.expires_in` and counts grants in :attr:`FakeVertex.token_requests`;
:attr:`FakeVertex.token_delay` slows it down so concurrent callers pile up.

``POST /v1/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:{method}`` (or, in express
mode, ``/v1/publishers/...``) answers like aiplatform.googleapis.com: the bearer token must be one this
fake issued and not expired (express mode: ``x-goog-api-key`` = :attr:`FakeVertex.api_key`), project and
location must be the expected ones. Publisher ``google`` with ``generateContent`` /
``streamGenerateContent?alt=sse`` answers as the fake Gemini does; publisher ``anthropic`` with
``rawPredict`` / ``streamRawPredict`` answers as the fake Anthropic does, after checking the Vertex body
(``anthropic_version: vertex-2023-10-16``, no ``model``). Errors are Google error bodies.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from google.auth import jwt

from tests.fakes import anthropic_upstream, gemini_upstream
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.server import SSE, Action, FakeServer, Recorded, read_body

__all__ = ["SCOPE", "Action", "FakeVertex", "Recorded", "VertexCall"]

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: The audience of a service-account assertion: Google's token endpoint, whatever token_uri it is posted to.
AUDIENCE = "https://oauth2.googleapis.com/token"


class VertexCall(Recorded):
    """A recorded model call with its resource path taken apart."""

    def __init__(self, recorded: Recorded, parts: dict[str, str | None]) -> None:
        super().__init__(recorded.method, recorded.path, recorded.headers, recorded.body)
        self.project = parts.get("project")
        self.location = parts.get("location")
        self.publisher = parts.get("publisher")
        self.model = parts.get("model")
        self.method_name = parts.get("method")


class FakeVertex(FakeServer):
    def __init__(
        self,
        *,
        project: str = "test-project",
        location: str = "us-central1",
        client_email: str = "switchboard@test-project.iam.gserviceaccount.com",
        public_key_pem: bytes | None = None,
        api_key: str = "AQ.vertex-express-key",
    ) -> None:
        super().__init__()
        self.project = project
        self.location = location
        self.client_email = client_email
        self.public_key_pem = public_key_pem
        self.api_key = api_key
        #: authorized-user clients: client_id → (client_secret, refresh_token)
        self.users: dict[str, tuple[str, str]] = {}
        self.expires_in = 3600
        self.token_delay = 0.0
        self.token_requests: list[dict[str, Any]] = []
        self._issued: dict[str, float] = {}
        self._gemini = _borrowed(FakeGemini)
        self._anthropic = _borrowed(FakeAnthropic)

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def calls(self) -> list[VertexCall]:
        return [r for r in self.requests if isinstance(r, VertexCall)]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/{tail:.+}", self._model_call)

    # --- OAuth ---------------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append(form)
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        grant = form.get("grant_type")
        if grant == _JWT_GRANT:
            problem = self._check_assertion(str(form.get("assertion", "")))
        elif grant == "refresh_token":
            known = self.users.get(str(form.get("client_id")))
            ok = known is not None and known == (form.get("client_secret"), form.get("refresh_token"))
            problem = None if ok else "Bad Request: unknown client or refresh token"
        else:
            problem = f"Invalid grant_type: {grant}"
        if problem is not None:
            return web.json_response({"error": "invalid_grant", "error_description": problem}, status=400)
        token = f"ya29.fake-token-{len(self._issued) + 1}"
        self._issued[token] = time.time() + self.expires_in
        return web.json_response({"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"})

    def _check_assertion(self, assertion: str) -> str | None:
        if self.public_key_pem is None:
            return "this fake has no service-account key"
        try:
            claims = jwt.decode(assertion, certs=self.public_key_pem, audience=AUDIENCE)
        except ValueError as exc:
            return f"Invalid JWT Signature: {exc}"
        if claims.get("iss") != self.client_email:
            return f"Invalid JWT: iss {claims.get('iss')!r}"
        if claims.get("scope") != SCOPE:
            return f"Invalid JWT: scope {claims.get('scope')!r}"
        return None

    # --- Vertex ----------------------------------------------------------------------------------------

    async def _model_call(self, request: web.Request) -> web.StreamResponse:
        body: Any = await read_body(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        parts = _parse(request.match_info["tail"])
        call = VertexCall(Recorded("POST", request.path_qs, headers, body), parts)
        self.requests.append(call)
        refused = self._check_auth(headers, express=call.project is None) or self._check_scope(call)
        if refused is not None:
            return refused
        played = await self.play(request, self.next_action())
        if played is not None:
            return played
        if call.publisher == "google" and call.method_name in ("generateContent", "streamGenerateContent"):
            return await self._gemini_answer(request, call, body)
        if call.publisher == "anthropic" and call.method_name in ("rawPredict", "streamRawPredict"):
            return await self._anthropic_answer(request, call, body)
        return _error(404, f"Publisher model method {call.publisher}/{call.method_name} not found", "NOT_FOUND")

    def _check_auth(self, headers: dict[str, str], *, express: bool) -> web.Response | None:
        if express:
            if headers.get("x-goog-api-key") == self.api_key:
                return None
            return _error(
                401, "API keys are not supported by this API. Expected OAuth2 access token", "UNAUTHENTICATED"
            )
        token = headers.get("authorization", "").removeprefix("Bearer ")
        expiry = self._issued.get(token)
        if expiry is None or expiry < time.time():
            return _error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential.",
                "UNAUTHENTICATED",
            )
        return None

    def _check_scope(self, call: VertexCall) -> web.Response | None:
        if call.model is None or call.method_name is None:
            return _error(404, f"The requested URL {call.path} was not found on this server.", "NOT_FOUND")
        if call.project is not None and (call.project, call.location) != (self.project, self.location):
            return _error(
                403,
                f"Permission denied on resource project {call.project} (location {call.location}).",
                "PERMISSION_DENIED",
            )
        return None

    async def _gemini_answer(self, request: web.Request, call: VertexCall, body: Any) -> web.StreamResponse:
        assert call.model is not None
        try:
            gemini_upstream._validate(body, call.model)
        except gemini_upstream.InvalidArgument as exc:
            return _error(400, str(exc), "INVALID_ARGUMENT")
        chunks = self._gemini._answer(body, call.model)
        if call.method_name == "generateContent":
            return web.json_response(gemini_upstream._merge(chunks))
        if request.query.get("alt") != "sse":
            return _error(400, "this fake only speaks alt=sse streams", "INVALID_ARGUMENT")
        return await self.stream(request, gemini_upstream.sse_frames(chunks), None, b"", SSE)

    async def _anthropic_answer(self, request: web.Request, call: VertexCall, body: Any) -> web.StreamResponse:
        if not isinstance(body, dict) or "model" in body or body.get("anthropic_version") != "vertex-2023-10-16":
            return _anthropic_error(400, "anthropic_version: vertex-2023-10-16 is required and model is not allowed")
        if (call.method_name == "streamRawPredict") != (body.get("stream") is True):
            return _anthropic_error(400, f"{call.method_name} does not match stream={body.get('stream')}")
        if "anthropic-version" in call.headers or "x-api-key" in call.headers:
            return _anthropic_error(400, "anthropic-version and x-api-key headers are not used on Vertex")
        messages_body = {k: v for k, v in body.items() if k != "anthropic_version"} | {"model": call.model}
        problems = anthropic_upstream.validate_request(messages_body) or anthropic_upstream._semantic_problems(
            messages_body
        )
        if problems:
            return _anthropic_error(400, problems[0])
        message = self._anthropic._answer(messages_body)
        if not body.get("stream"):
            return web.json_response(message)
        return await self.stream(request, anthropic_upstream.sse_frames(message), None, b"")


def _borrowed(cls: type[FakeServer]) -> Any:
    """An instance of another fake used only for its answer logic: it never serves, so its loop is closed."""
    fake = cls()
    fake.discard()
    return fake


def _parse(tail: str) -> dict[str, str | None]:
    """``projects/{p}/locations/{l}/publishers/{pub}/models/{model}:{method}`` (project part optional)."""
    segments = tail.split("/")
    out: dict[str, str | None] = {}
    if segments[:1] == ["projects"] and len(segments) >= 4 and segments[2] == "locations":
        out["project"], out["location"] = segments[1], segments[3]
        segments = segments[4:]
    if len(segments) == 4 and segments[0] == "publishers" and segments[2] == "models":
        out["publisher"] = segments[1]
        model, sep, method = segments[3].partition(":")
        out["model"], out["method"] = model, method if sep else None
    return out


def _error(status: int, message: str, code: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message, "status": code}}, status=status)


def _anthropic_error(status: int, message: str) -> web.Response:
    return web.json_response(anthropic_upstream.error_body("invalid_request_error", message), status=status)
