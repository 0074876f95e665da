"""``POST /v1/embeddings``: OpenAI's embeddings surface on :mod:`proxy.pipeline`, to every provider.

Its decode is :mod:`proxy.surfaces.embeddings_in`, its legs :mod:`proxy.surfaces.embeddings_legs`.

* OpenAI-shaped upstreams (``openai-completions``, OpenAI's and Azure's ``openai-responses`` models):
  the client's body with ``model`` replaced (Mistral: its field names, :mod:`providers.embeddings.mistral`),
  the answer relayed as bytes (``ShapedLeg``).
* Gemini, Vertex and Bedrock: translated by :mod:`providers.embeddings` (``TranslatedLeg``). The texts are
  split by the provider's per-call limit; one call goes through the pipeline as any leg does; several
  (Titan's one text per call, Vertex's ``gemini-embedding-001``, more than 96 texts for Cohere) are sent
  :data:`CONCURRENCY` at a time by a ``FanOutLeg``, each call through the pipeline's own send (credential
  headers, the cloud adapter's signature, one re-resolution after a 401, the provider's error with the
  adapter's hint), and joined in order with ``index`` the text's position. The first failure cancels the
  calls still running and is the answer; a client that leaves cancels them all. Floats become base64
  here (little-endian float32, as OpenAI encodes) when the client asks for it, which the openai SDK does
  by default.

Usage: the provider's input-token count where it gives one; else ``ceil(UTF-8 bytes / 4)`` per text
(:func:`providers.embeddings.base.estimate_tokens`), which :meth:`usage` marks ``estimated``.

A model the catalog marks ``"kind": "chat"`` is refused with a 400 naming ``model``; ``kind`` is read
from the catalog or ``models.json`` only (a discovered or unknown id is tried).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import msgspec

from providers.credentials import ResolvedAuth
from providers.embeddings import OPENAI_SHAPED_APIS, translating_embeddings
from providers.embeddings.base import EmbeddingAPI
from providers.errors import InvalidRequest, NotImplementedYet, SwitchboardError
from providers.transport import aclose_quietly
from providers.wire.base import WireAPI

from .asgi import Receive, Scope, Send
from .pipeline import Attempt, Leg, Outcome, Pipeline, _send
from .router import Target
from .routing.table import take_fallbacks
from .runtime import Runtime
from .streaming import Deadline, Reply
from .surfaces.embeddings_in import EmbedBody, decode_embeddings
from .surfaces.embeddings_legs import CONCURRENCY, DeferredShapedLeg, FanOutLeg, TranslatedLeg, shaped_leg

__all__ = ["CONCURRENCY", "Embeddings", "handle_embeddings"]

_JSON = [(b"content-type", b"application/json")]


class Embeddings:
    """The OpenAI embeddings surface (see :class:`proxy.pipeline.Surface`)."""

    path = "/v1/embeddings"
    native_api = "openai-completions"

    def decode(self, body: bytearray) -> EmbedBody:
        return decode_embeddings(body)

    def model(self, req: EmbedBody) -> str:
        return req.model

    def fallbacks(self, req: EmbedBody) -> tuple[str, ...]:
        return take_fallbacks(req.body)

    def max_output(self, req: EmbedBody) -> int | None:
        return 0  # an embedding generates no tokens

    def passthrough(self, req: EmbedBody, target: Target, auth: ResolvedAuth, release: bool, *, meter: bool) -> Leg:
        return shaped_leg(req, target, auth, release, meter)

    def translate(self, req: EmbedBody, target: Target, wire: WireAPI, release: bool) -> Leg:
        # ``wire`` is the chat wire module: embeddings have their own (providers/embeddings/).
        if target.api in OPENAI_SHAPED_APIS:
            return DeferredShapedLeg(req, target, release)
        api, texts = _translating(req, target)
        return TranslatedLeg(api, target, req.request(), texts)

    def fan_out(self, req: EmbedBody, target: Target) -> FanOutLeg | None:
        """A leg of several upstream calls, when the texts exceed the provider's per-call limit."""
        if target.api in OPENAI_SHAPED_APIS or req.texts is None:
            return None
        api = translating_embeddings(target.api)
        if api is None:
            return None
        size = api.limit(target.upstream_model)
        if len(req.texts) <= size:
            return None
        api, texts = _translating(req, target)
        ereq = req.request()
        return FanOutLeg([TranslatedLeg(api, target, ereq, texts[i : i + size]) for i in range(0, len(texts), size)])

    def error_body(self, exc: SwitchboardError) -> bytes:
        return msgspec.json.encode(exc.envelope())


def _translating(req: EmbedBody, target: Target) -> tuple[EmbeddingAPI, list[str]]:
    api = translating_embeddings(target.api)
    if api is None:
        raise NotImplementedYet(
            f"{target.public_id} speaks the {target.api} API, for which Switchboard has no embeddings "
            "translation; use an OpenAI-compatible, Gemini, Vertex AI, Bedrock, Azure or Mistral embedding model"
        )
    if req.texts is None:
        raise InvalidRequest(
            f"{target.public_id} embeds text: token ids reach only OpenAI-compatible providers; send 'input' "
            "as a string or a list of strings",
            param="input",
        )
    return api, req.texts


class _EmbeddingsPipeline(Pipeline[EmbedBody]):
    """The pipeline, with one more way to a Target: several upstream calls for one request.

    A request whose texts fit one call takes :meth:`Pipeline._exchange` unchanged. Otherwise the
    :class:`FanOutLeg` sends each part with the pipeline's own :func:`proxy.pipeline._send` (credential
    headers, the adapter's ``final_call``, a 401 re-resolving the credential once, the provider's error
    with the adapter's hint and the credential masked), within the same ``timeouts.total`` for the whole
    exchange, and its message is masked here as the pipeline masks it.
    """

    __slots__ = ("_embeddings",)

    def __init__(self, surface: Embeddings) -> None:
        super().__init__(surface, kind="embedding")
        self._embeddings = surface

    async def _exchange(
        self,
        rt: Runtime,
        scope: Scope,
        req: EmbedBody,
        target: Target,
        send: Send,
        reply: Reply,
        outcome: Outcome,
        *,
        release: bool,
    ) -> None:
        leg = self._embeddings.fan_out(req, target)
        if leg is None:
            await super()._exchange(rt, scope, req, target, send, reply, outcome, release=release)
            return
        provider = target.provider
        auth = rt.credentials.cached(provider.id, target.model) or await rt.credentials.resolve(provider, target.model)
        outcome.leg = leg
        attempt = Attempt(target)
        outcome.attempts.append(attempt)

        async def send_one(part: TranslatedLeg) -> tuple[bytes, Mapping[str, str]]:
            resp, _ = await _send(rt, scope, target, auth, part, attempt)
            try:
                return await resp.read(), resp.headers
            finally:
                await aclose_quietly(resp)

        try:
            async with Deadline(provider.name, *rt.client.timeouts.budget(False)):
                body = await leg.run(send_one)
        except SwitchboardError as exc:
            exc.message = auth.scrub(exc.message)
            attempt.error_type = exc.code or exc.type
            raise
        finally:
            attempt.ended = time.perf_counter()
        await self._answer(send, reply, outcome, 200, body, _JSON)


_PIPELINE = _EmbeddingsPipeline(Embeddings())


async def handle_embeddings(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await _PIPELINE.handle(rt, scope, receive, send)
