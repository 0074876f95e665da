"""The legs of ``POST /v1/embeddings`` (see :class:`proxy.pipeline.Leg`), one per way to an upstream.

* :class:`ShapedLeg` — OpenAI-shaped upstreams: the body with its edits, the answer relayed as bytes (its
  ``usage`` read when metered); :class:`DeferredShapedLeg` builds one on its first call, for Targets the
  pipeline sends through ``translate`` (Azure's, OpenAI's ``openai-responses`` models).
* :class:`TranslatedLeg` — one upstream call of a translated request (a slice of its texts).
* :class:`FanOutLeg` — several such calls, :data:`CONCURRENCY` at a time, joined in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import msgspec

from providers.canonical import Usage
from providers.credentials import ResolvedAuth
from providers.embeddings import OpenAIShaped, openai_shaped
from providers.embeddings.base import EmbedBatch, EmbeddingAPI, EmbedRequest, encode_openai, estimate_tokens
from providers.errors import SwitchboardError, UpstreamUnreachable
from providers.request_facts import RequestFacts
from providers.wire import openai_completions
from providers.wire.base import UpstreamCall

from ..router import Target
from ..upstream_call import wire_target
from .embeddings_in import EmbedBody

__all__ = ["CONCURRENCY", "DeferredShapedLeg", "FanOutLeg", "ShapedLeg", "TranslatedLeg", "shaped_leg"]

#: Upstream calls of one request in flight at once (a Titan batch is one call per text).
CONCURRENCY = 4
_JSON = [(b"content-type", b"application/json")]

Headers = list[tuple[bytes, bytes]]


def shaped_leg(req: EmbedBody, target: Target, auth: ResolvedAuth, release: bool, meter: bool) -> ShapedLeg:
    provider = target.provider
    shaped = openai_shaped(provider.id, provider.adapter)
    body = req.body if release else dict(req.body)
    # A cloud adapter names the upstream model through the credential (Azure's deployment).
    model = wire_target(target, auth).model_id if provider.adapter else target.upstream_model
    shaped.adapt(body, model, provider.name)
    facts = RequestFacts() if provider.adapter else None
    leg = ShapedLeg(provider.name, shaped, msgspec.json.encode(body), facts, req.estimate, meter)
    if release:
        req.body = {}
    return leg


class ShapedLeg:
    """The body relayed with its edits, the answer relayed as bytes (its usage read when metered)."""

    __slots__ = ("_estimate", "_meter", "_name", "_payload", "_shaped", "_tokens", "estimated", "facts", "started")

    stream = False

    def __init__(
        self, name: str, shaped: OpenAIShaped, payload: bytes, facts: RequestFacts | None, estimate: int, meter: bool
    ) -> None:
        self._name = name
        self._shaped = shaped
        self._payload = payload
        self.facts = facts
        self._estimate = estimate
        self._meter = meter
        self._tokens: int | None = None
        self.estimated = False
        self.started = False

    def call(self, auth: ResolvedAuth) -> UpstreamCall:
        return UpstreamCall(self._shaped.url(auth.base_url), self._payload)

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return openai_completions.upstream_error(self._name, status, body, headers)

    def answer(self, status: int, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes, Headers]:
        try:
            tokens = self._shaped.read_usage(body)  # also checks the body is a JSON object
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamUnreachable(
                f"{self._name} answered {status} with a body that is not an embeddings answer ({exc}); "
                "retry, or check the baseUrl"
            ) from exc
        self.started = True
        self._tokens = tokens
        ctype = headers.get("content-type")
        return status, body, [(b"content-type", ctype.encode() if ctype else b"application/json")]

    def stream_steps(self) -> tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[Exception], bytes]]:
        raise AssertionError("embeddings are never streamed")

    def usage(self) -> Usage | None:
        if not (self._meter and self.started):
            return None
        self.estimated = self._tokens is None
        return Usage(input_tokens=self._tokens if self._tokens is not None else self._estimate)


class DeferredShapedLeg:
    """A :class:`ShapedLeg` for a Target the pipeline sends through ``translate`` (Azure's models, OpenAI's
    ``openai-responses`` ones), which has no credential yet: built on the first :meth:`call`."""

    __slots__ = ("_leg", "_release", "_req", "_target", "estimated", "facts")

    stream = False

    def __init__(self, req: EmbedBody, target: Target, release: bool) -> None:
        self._req = req
        self._target = target
        self._release = release
        self._leg: ShapedLeg | None = None
        self.facts = RequestFacts() if target.provider.adapter else None
        self.estimated = False

    def _built(self, auth: ResolvedAuth) -> ShapedLeg:
        if self._leg is None:
            self._leg = shaped_leg(self._req, self._target, auth, self._release, meter=True)
        return self._leg

    def call(self, auth: ResolvedAuth) -> UpstreamCall:
        return self._built(auth).call(auth)

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return openai_completions.upstream_error(self._target.provider.name, status, body, headers)

    def answer(self, status: int, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes, Headers]:
        assert self._leg is not None
        return self._leg.answer(status, body, headers)

    def stream_steps(self) -> tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[Exception], bytes]]:
        raise AssertionError("embeddings are never streamed")

    def usage(self) -> Usage | None:
        if self._leg is None:
            return None
        usage = self._leg.usage()
        self.estimated = self._leg.estimated
        return usage


# --- translated upstreams -------------------------------------------------------------------


class TranslatedLeg:
    """One upstream call of a translated request: a slice of its texts."""

    __slots__ = ("_api", "_batch", "_req", "_target", "_texts", "_wt", "estimated", "facts")

    stream = False

    def __init__(self, api: EmbeddingAPI, target: Target, req: EmbedRequest, texts: list[str]) -> None:
        self._api = api
        self._target = target
        self._req = req
        self._texts = texts
        self._batch: EmbedBatch | None = None
        self.estimated = False
        # Adapters read facts, never bodies; an embedding has none of the chat facts they weigh.
        self.facts = RequestFacts() if target.provider.adapter else None

    def call(self, auth: ResolvedAuth) -> UpstreamCall:
        self._wt = wire_target(self._target, auth)
        self._api.check(self._req, self._wt)
        return self._api.build(self._texts, self._req, self._wt)

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return self._api.error(self._wt, status, body, headers)

    def decode(self, body: bytes, headers: Mapping[str, str]) -> EmbedBatch:
        batch = self._api.decode(body, headers, len(self._texts), self._wt)
        if batch.input_tokens is None:
            batch.input_tokens = estimate_tokens(self._texts)
            self.estimated = True
        self._batch = batch
        return batch

    def answer(self, status: int, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes, Headers]:
        batch = self.decode(body, headers)
        tokens = batch.input_tokens or 0
        return 200, encode_openai(batch.vectors, self._req.encoding_format, self._target.upstream_model, tokens), _JSON

    def stream_steps(self) -> tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[Exception], bytes]]:
        raise AssertionError("embeddings are never streamed")

    def usage(self) -> Usage | None:
        batch = self._batch
        return Usage(input_tokens=batch.input_tokens or 0) if batch is not None else None


class FanOutLeg:
    """Several upstream calls for one request, sent :data:`CONCURRENCY` at a time and joined in order.

    The pipeline never calls :meth:`call`, :meth:`answer` or :meth:`stream_steps` on it: the embeddings
    surface's pipeline (:mod:`proxy.embeddings`) sends its :attr:`parts` (each a :class:`TranslatedLeg`)
    and calls :meth:`run`.
    """

    __slots__ = ("_encoding", "_model", "_tokens", "estimated", "facts", "parts")

    stream = False

    def __init__(self, parts: list[TranslatedLeg]) -> None:
        self.parts = parts
        self.facts = parts[0].facts
        self._encoding = parts[0]._req.encoding_format
        self._model = parts[0]._target.upstream_model
        self._tokens: int | None = None
        self.estimated = False

    async def run(self, send_one: Callable[[TranslatedLeg], Awaitable[tuple[bytes, Mapping[str, str]]]]) -> bytes:
        """The joined answer; the first failure cancels the calls still running and is raised."""
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(part: TranslatedLeg) -> EmbedBatch:
            async with gate:
                body, headers = await send_one(part)
            return part.decode(body, headers)

        tasks = [asyncio.ensure_future(one(part)) for part in self.parts]
        try:
            batches = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        self._tokens = sum(b.input_tokens or 0 for b in batches)
        self.estimated = any(p.estimated for p in self.parts)
        vectors = [v for b in batches for v in b.vectors]
        return encode_openai(vectors, self._encoding, self._model, self._tokens)

    def call(self, auth: ResolvedAuth) -> UpstreamCall:
        raise AssertionError("a fan-out leg is sent by its parts")

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        raise AssertionError("a fan-out leg is sent by its parts")

    def answer(self, status: int, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes, Headers]:
        raise AssertionError("a fan-out leg is sent by its parts")

    def stream_steps(self) -> tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[Exception], bytes]]:
        raise AssertionError("embeddings are never streamed")

    def usage(self) -> Usage | None:
        return Usage(input_tokens=self._tokens) if self._tokens is not None else None
