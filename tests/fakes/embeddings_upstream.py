"""Fake embedding endpoints of every provider Switchboard embeds through, on one real HTTP server.

Each route speaks its provider's own wire format, checks its credential the way that provider does and
refuses what the real API refuses (its limits, unknown fields), with the provider's own error body:

* ``POST /v1/embeddings`` — OpenAI (``Authorization: Bearer``): ``input`` a string, strings, token ids or
  token-id lists; ``encoding_format`` ``float``/``base64``; ``dimensions``; answers OpenAI's list with
  ``usage``. ``/openai/v1/embeddings?api-version=`` — Azure's v1 endpoint (``api-key``; the body's model
  must be a known deployment). ``/mistral/v1/embeddings`` — Mistral: only its own fields
  (``output_dimension``, no ``dimensions``/``user``), else 422 like Mistral.
* ``POST /v1beta/models/{model}:batchEmbedContents`` — Gemini (``x-goog-api-key``): at most 100 requests,
  each naming ``models/{model}``; answers ``{"embeddings": [{"values"}]}`` without usage.
* ``POST /v1/publishers/google/models/{model}:predict`` — Vertex express mode (``x-goog-api-key``): at most
  250 instances, one for ``gemini-embedding-*``; answers ``predictions[].embeddings.{values, statistics}``.
* ``POST /model/{modelId}/invoke`` — Bedrock, SigV4 verified (:func:`tests.fakes.bedrock_upstream.verify_sigv4`):
  Titan V2 ``{"inputText", "dimensions", "normalize"}`` → ``{"embedding", "inputTextTokenCount",
  "embeddingsByType"}``; Cohere v3 ``{"texts" (≤ 96), "input_type"}`` → ``{"embeddings", "id",
  "response_type": "embeddings_floats", "texts"}`` with ``x-amzn-bedrock-input-token-count``.

Vectors are :func:`vector` of the text: multiples of 1/256, exact in float32, so a base64 answer decodes
to the same numbers. Fake token counts are :func:`tokens` (one per whitespace-separated word).
:attr:`FakeEmbeddings.gate` holds Bedrock calls until ``n`` are in flight (or all ``total`` arrived), so a
test sees the proxy's concurrency without timing; :attr:`max_in_flight` is the most seen at once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import time
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.fakes.bedrock_upstream import SignatureError, verify_sigv4
from tests.fakes.server import Action, FakeServer, Recorded

__all__ = ["Action", "FakeEmbeddings", "tokens", "vector"]

DEFAULT_DIMS = 8
_MISTRAL_FIELDS = {"model", "input", "encoding_format", "output_dimension", "output_dtype", "metadata"}
_GATE_WAIT = 2.0


def vector(text: str, dims: int = DEFAULT_DIMS) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [((digest[i % 32] + i) % 256 - 128) / 256 for i in range(dims)]


def tokens(text: str) -> int:
    return len(text.split())


def _token_text(ids: list[int]) -> str:
    return "tok:" + ",".join(map(str, ids))


class FakeEmbeddings(FakeServer):
    def __init__(
        self,
        *,
        openai_key: str = "sk-openai",
        azure_key: str = "azure-key",
        deployments: tuple[str, ...] = ("emb-small",),
        google_key: str = "gm-test-key-0123456789",
        mistral_key: str = "mistral-key",
        aws: dict[str, tuple[str, str | None]] | None = None,
    ) -> None:
        super().__init__()
        self.openai_key = openai_key
        self.azure_key = azure_key
        self.deployments = deployments
        self.google_key = google_key
        self.mistral_key = mistral_key
        self.aws = aws if aws is not None else {"AKIDSTATIC0000000XYZ": ("static-secret", None)}
        #: (in flight to wait for, total calls expected) for Bedrock calls; None: answer at once.
        self.gate: tuple[int, int] | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._arrived = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/embeddings", self._openai)
        app.router.add_post("/openai/v1/embeddings", self._azure)
        app.router.add_post("/mistral/v1/embeddings", self._mistral)
        app.router.add_post("/v1beta/models/{call}", self._gemini)
        app.router.add_post("/v1/publishers/google/models/{call}", self._vertex)
        app.router.add_post("/model/{model}/invoke", self._bedrock)

    async def _take(self, request: web.Request) -> tuple[Any, web.StreamResponse | None]:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        self.requests.append(Recorded(request.method, request.path_qs, dict(request.headers), body))
        return body, await self.play(request, self.next_action())

    # --- OpenAI-shaped ------------------------------------------------------------------------

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body, played = await self._take(request)
        if request.headers.get("Authorization") != f"Bearer {self.openai_key}":
            return _openai_error(401, "Incorrect API key provided: sk-o****", "invalid_api_key")
        return played or _openai_answer(body, body.get("model"))

    async def _azure(self, request: web.Request) -> web.StreamResponse:
        body, played = await self._take(request)
        if request.headers.get("api-key") != self.azure_key:
            return _openai_error(401, "Access denied due to invalid subscription key.", "401")
        if not request.query.get("api-version"):
            return _openai_error(400, "Missing required query parameter: api-version", "BadRequest")
        if body.get("model") not in self.deployments:
            return _openai_error(404, "The API deployment for this resource does not exist.", "DeploymentNotFound")
        return played or _openai_answer(body, body["model"])

    async def _mistral(self, request: web.Request) -> web.StreamResponse:
        body, played = await self._take(request)
        if request.headers.get("Authorization") != f"Bearer {self.mistral_key}":
            return web.json_response({"message": "Unauthorized", "request_id": "x"}, status=401)
        extra = sorted(set(body) - _MISTRAL_FIELDS)
        if extra:
            detail = [
                {"type": "extra_forbidden", "loc": ["body", k], "msg": "Extra inputs are not permitted"} for k in extra
            ]
            return web.json_response(
                {"object": "error", "message": {"detail": detail}, "type": "invalid_request_error"}, status=422
            )
        if "output_dimension" in body:
            body = {**body, "dimensions": body["output_dimension"]}
        return played or _openai_answer(body, body["model"])

    # --- Google -------------------------------------------------------------------------------

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        body, played = await self._take(request)
        model, _, method = unquote(request.match_info["call"]).partition(":")
        if request.headers.get("x-goog-api-key") != self.google_key:
            return _google_error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT")
        if method != "batchEmbedContents":
            return _google_error(404, f"method {method} not found", "NOT_FOUND")
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _google_error(400, "* BatchEmbedContentsRequest.requests: must not be empty", "INVALID_ARGUMENT")
        if len(requests) > 100:
            return _google_error(
                400,
                "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch",
                "INVALID_ARGUMENT",
            )
        values = []
        for r in requests:
            if r.get("model") != f"models/{model}":
                return _google_error(
                    400, f"Model in request ({r.get('model')}) does not match models/{model}", "INVALID_ARGUMENT"
                )
            text = "".join(p["text"] for p in r["content"]["parts"])
            values.append({"values": vector(text, r.get("outputDimensionality", DEFAULT_DIMS))})
        return played or web.json_response({"embeddings": values})

    async def _vertex(self, request: web.Request) -> web.StreamResponse:
        body, played = await self._take(request)
        model, _, method = unquote(request.match_info["call"]).partition(":")
        if request.headers.get("x-goog-api-key") != self.google_key:
            return _google_error(401, "API keys are not supported by this API.", "UNAUTHENTICATED")
        instances = body.get("instances")
        if method != "predict" or not isinstance(instances, list) or not instances:
            return _google_error(400, "Invalid predict request: 'instances' is required", "INVALID_ARGUMENT")
        limit = 1 if model.startswith("gemini-embedding") else 250
        if len(instances) > limit:
            return _google_error(
                400, f"Unable to submit request because {model} supports up to {limit} instances", "INVALID_ARGUMENT"
            )
        dims = (body.get("parameters") or {}).get("outputDimensionality", DEFAULT_DIMS)
        predictions = [
            {
                "embeddings": {
                    "values": vector(i["content"], dims),
                    "statistics": {"token_count": tokens(i["content"]), "truncated": False},
                }
            }
            for i in instances
        ]
        return played or web.json_response({"predictions": predictions, "metadata": {"billableCharacterCount": 1}})

    # --- Bedrock ------------------------------------------------------------------------------

    async def _bedrock(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        model = unquote(request.match_info["model"])
        body: Any = json.loads(raw)
        self.requests.append(Recorded(request.method, request.raw_path, headers, body))
        try:
            verify_sigv4("POST", request.raw_path, headers, raw, self.aws)
        except (SignatureError, ValueError, KeyError) as exc:
            return _aws_error(403, "InvalidSignatureException", str(exc))
        self.in_flight += 1
        self._arrived += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._wait_gate()
            played = await self.play(request, self.next_action())
            return played or _bedrock_answer(model, body)
        finally:
            self.in_flight -= 1

    async def _wait_gate(self) -> None:
        if self.gate is None:
            return
        wanted, total = self.gate
        deadline = time.monotonic() + _GATE_WAIT
        while self.in_flight < wanted and self._arrived < total and time.monotonic() < deadline:
            await asyncio.sleep(0.005)


def _bedrock_answer(model: str, body: dict[str, Any]) -> web.Response:
    if "titan-embed" in model:
        text = body.get("inputText")
        if not isinstance(text, str) or set(body) - {"inputText", "dimensions", "normalize", "embeddingTypes"}:
            return _aws_error(
                400, "ValidationException", "Malformed input request: extraneous key or missing inputText"
            )
        vec = vector(text, body.get("dimensions", DEFAULT_DIMS))
        return web.json_response(
            {"embedding": vec, "inputTextTokenCount": tokens(text), "embeddingsByType": {"float": vec}}
        )
    if "cohere.embed" in model:
        texts = body.get("texts")
        if body.get("input_type") not in ("search_document", "search_query", "classification", "clustering"):
            return _aws_error(400, "ValidationException", "Malformed input request: input_type is required")
        if not isinstance(texts, list) or len(texts) > 96:
            return _aws_error(400, "ValidationException", "Malformed input request: texts must have at most 96 items")
        answer = {
            "embeddings": [vector(t, 1024 // 128) for t in texts],
            "id": "emb-1",
            "response_type": "embeddings_floats",
            "texts": texts,
        }
        count = sum(tokens(t) for t in texts)
        return web.json_response(answer, headers={"x-amzn-bedrock-input-token-count": str(count)})
    return _aws_error(400, "ValidationException", f"The provided model identifier is invalid: {model}")


def _openai_answer(body: dict[str, Any], model: Any) -> web.Response:
    value = body.get("input")
    items = (
        [value]
        if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], int))
        else value
    )
    dims = body.get("dimensions") or DEFAULT_DIMS
    data = []
    count = 0
    for i, item in enumerate(items):
        text = item if isinstance(item, str) else _token_text(item)
        count += tokens(item) if isinstance(item, str) else len(item)
        vec = vector(text, dims)
        emb: Any = (
            base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            if body.get("encoding_format") == "base64"
            else vec
        )
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return web.json_response(
        {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": count, "total_tokens": count}}
    )


def _openai_error(status: int, message: str, code: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}, status=status
    )


def _google_error(status: int, message: str, code: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message, "status": code}}, status=status)


def _aws_error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status, headers={"x-amzn-errortype": f"{kind}:http://fake/"})
