"""The contract every translating wire module fulfils.

A wire module (``anthropic_messages``, ``google_generative_ai``, ``openai_responses``) exposes one
object satisfying :class:`WireAPI`. The dispatcher calls, in order:

1. :meth:`WireAPI.build` — canonical :class:`Request` → the upstream call (URL, body, extra headers).
   May raise :class:`InvalidRequest` (400) for a parameter the upstream cannot honour, naming the
   parameter and the provider; never touches the network.
2. the transport sends it with the credential headers plus ``UpstreamCall.headers``.
3. on status ≥ 400: :meth:`WireAPI.error` turns the body into a :class:`SwitchboardError` with the
   right status (Anthropic's 529 overloaded → 503; 429 keeps ``retry-after``).
4. on success, not streaming: :meth:`WireAPI.decode_response` → :class:`Response`.
   streaming: :meth:`WireAPI.stream_decoder` → a decoder fed raw upstream bytes (split anywhere),
   returning canonical events; an error event from the upstream becomes a :class:`StreamError`. A
   decoder that is also a :class:`SplicingDecoder` can hand text deltas over still as JSON.

Modules never import ``proxy/`` and never do I/O.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..canonical import Event, Request, Response
from ..errors import SwitchboardError
from ..registry import Compat, Model
from ..sse import TextRun

__all__ = ["SplicingDecoder", "StreamDecoder", "UpstreamCall", "WireAPI", "WireTarget"]


@dataclass(frozen=True, slots=True)
class WireTarget:
    provider_id: str
    provider_name: str
    #: The provider's base URL with placeholders filled (the model's own base URL when it has one).
    base_url: str
    #: The upstream model id.
    model_id: str
    #: Catalog facts (limits, reasoning flag); None for an id the catalog does not know.
    model: Model | None
    compat: Compat
    #: The credential headers that will be sent (read-only; to detect e.g. OAuth tokens).
    auth_headers: Mapping[str, str] = field(default_factory=dict)
    #: Claude on Vertex AI: the Messages body for ``rawPredict`` / ``streamRawPredict`` at
    #: ``{base_url}/models/{model}:{method}`` (:mod:`providers.wire.google_vertex`), set by the Vertex adapter.
    vertex_raw_predict: bool = False


@dataclass(slots=True)
class UpstreamCall:
    url: str
    body: bytes
    #: Added to (and overriding) the credential headers; a value of "" removes that header.
    headers: dict[str, str] = field(default_factory=dict)


class StreamDecoder(Protocol):
    def feed(self, chunk: bytes) -> list[Event]: ...

    def close(self) -> list[Event]:
        """Events still pending at end of stream; a stream cut short yields a StreamError."""
        ...


class SplicingDecoder(abc.ABC):
    """A :class:`StreamDecoder` that can leave text deltas as JSON, for an encoder that writes JSON.

    :meth:`feed_spliced` is :meth:`feed` with runs of consecutive plain text deltas given as one
    :class:`~providers.sse.TextRun` of their JSON string contents (see :func:`providers.sse.is_json_text`)
    in place of their ``TextDelta`` events; every other event is canonical, in the same order. The
    translated leg (:meth:`proxy.translated.TranslatedLeg.stream_steps`) calls it, instead of
    :meth:`feed`, when its encoder is a ``proxy.translated.SplicingEncoder``; one stream uses one of the two.

    Declared by subclassing: a nominal ``isinstance`` costs nothing per request, where one against a
    runtime-checkable Protocol costs microseconds.
    """

    __slots__ = ()

    @abc.abstractmethod
    def feed(self, chunk: bytes) -> list[Event]: ...

    @abc.abstractmethod
    def feed_spliced(self, chunk: bytes) -> list[Event | TextRun]: ...

    @abc.abstractmethod
    def close(self) -> list[Event]: ...


class WireAPI(Protocol):
    name: str

    def build(self, req: Request, target: WireTarget) -> UpstreamCall: ...

    def decode_response(self, body: bytes, target: WireTarget) -> Response: ...

    def stream_decoder(self, target: WireTarget) -> StreamDecoder: ...

    def error(self, target: WireTarget, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError: ...
