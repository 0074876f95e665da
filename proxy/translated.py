"""The translated branch of the pipeline: a wire module upstream, the surface's encoders toward the client.

:class:`TranslatedLeg` is the :class:`proxy.pipeline.Leg` for a Target whose API is not the surface's
own: the canonical request is built by the wire module, the answer (or stream) is decoded by it and
encoded by the surface. A stream that ends without the wire API's terminal event gets the decoder's own
error event. Errors are raised unmasked: the pipeline masks them at one place.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import msgspec

from providers.canonical import Event, Request, Response, Usage
from providers.credentials import ResolvedAuth
from providers.errors import SwitchboardError, UpstreamUnreachable
from providers.request_facts import facts_from_request
from providers.sse import TextRun
from providers.wire.base import SplicingDecoder, StreamDecoder, UpstreamCall, WireAPI, WireTarget

from .metering import estimate_output_tokens
from .router import Target
from .upstream_call import wire_target

__all__ = ["SplicingEncoder", "StreamEncoder", "TranslatedLeg"]

_JSON = [(b"content-type", b"application/json")]


class StreamEncoder(Protocol):
    """Canonical events → the client's stream bytes, one instance per response (a surface's encode)."""

    def encode(self, events: list[Event]) -> bytes: ...

    def finish(self, events: list[Event]) -> bytes:
        """The last bytes: pending events and the surface's end of stream."""
        ...

    def error(self, exc: Exception) -> bytes:
        """The final error event and end of stream (b"" when the stream already ended)."""
        ...

    def usage(self) -> Usage | None: ...


class SplicingEncoder(abc.ABC):
    """A :class:`StreamEncoder` whose :meth:`encode` also takes the :class:`TextRun` items of a
    :class:`~providers.wire.base.SplicingDecoder` (text deltas whose text is still the upstream's JSON
    string content) and writes them out as a canonical ``TextDelta`` of the same text would be, byte for
    byte. With such a decoder, :class:`TranslatedLeg` feeds it ``feed_spliced``'s items.

    Declared by subclassing, as :class:`~providers.wire.base.SplicingDecoder` is (a nominal ``isinstance``).
    """

    __slots__ = ()

    @abc.abstractmethod
    def encode(self, events: Sequence[Event | TextRun]) -> bytes: ...

    @abc.abstractmethod
    def finish(self, events: Sequence[Event | TextRun]) -> bytes: ...

    @abc.abstractmethod
    def error(self, exc: Exception) -> bytes: ...

    @abc.abstractmethod
    def usage(self) -> Usage | None: ...


class TranslatedLeg:
    __slots__ = (
        "_creq",
        "_decoder",
        "_encoder",
        "_encoder_for",
        "_last",
        "_relayed",
        "_respond",
        "_target",
        "_usage",
        "_wire",
        "_wt",
        "estimated",
        "facts",
        "stream",
    )

    def __init__(
        self,
        wire: WireAPI,
        target: Target,
        creq: Request,
        respond: Callable[[Response, str], bytes],
        encoder_for: Callable[[str, bool], StreamEncoder],
    ) -> None:
        self._wire = wire
        self._target = target
        self._creq = creq
        self._respond = respond
        self._encoder_for = encoder_for
        self._wt: WireTarget | None = None
        self._decoder: StreamDecoder | None = None
        self._encoder: StreamEncoder | None = None
        self._usage: Usage | None = None
        #: For a cloud adapter, read once from the canonical request (adapters never decode bodies).
        self.facts = facts_from_request(creq) if target.provider.adapter else None
        self.stream = creq.stream
        #: :meth:`usage` was counted from what was forwarded (a stream cut before the upstream's usage).
        self.estimated = False
        self._relayed = 0
        self._last = b""

    def call(self, auth: ResolvedAuth) -> UpstreamCall:
        # Per attempt: a re-resolved credential may carry another base URL or headers.
        self._wt = wire_target(self._target, auth)
        return self._wire.build(self._creq, self._wt)

    def _sent_to(self) -> WireTarget:
        assert self._wt is not None, "call() precedes every answer"
        return self._wt

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return self._wire.error(self._sent_to(), status, body, headers)

    def answer(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            answer = self._wire.decode_response(body, self._sent_to())
        except msgspec.DecodeError as exc:
            name = self._target.provider.name
            raise UpstreamUnreachable(
                f"{name} answered with a body that is not valid JSON ({exc}); "
                "the answer was cut short or the baseUrl points at something else: retry, or check the baseUrl"
            ) from exc
        self._usage = answer.usage
        return 200, self._respond(answer, self._target.upstream_model), _JSON

    def stream_steps(
        self,
    ) -> tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[Exception], bytes]]:
        decoder = self._decoder = self._wire.stream_decoder(self._sent_to())
        encoder = self._encoder = self._encoder_for(self._target.upstream_model, self._creq.include_usage)
        close, finish = decoder.close, encoder.finish
        step: Callable[[bytes], bytes]
        if isinstance(decoder, SplicingDecoder) and isinstance(encoder, SplicingEncoder):
            # Text deltas go from the upstream's JSON to the client's without being decoded (see
            # SplicingEncoder); every other event is canonical as usual.
            feed_spliced, splice = decoder.feed_spliced, encoder.encode

            def step(chunk: bytes) -> bytes:
                return splice(feed_spliced(chunk))

        else:
            feed, encode = decoder.feed, encoder.encode

            def step(chunk: bytes) -> bytes:
                return encode(feed(chunk))

        def counted(chunk: bytes) -> bytes:
            # What was forwarded, for the usage of a stream cut before the upstream's own count.
            out = step(chunk)
            if out:
                self._relayed += len(out)
                self._last = out
            return out

        return counted, lambda: finish(close()), encoder.error

    def usage(self) -> Usage | None:
        """The upstream's usage; for a stream cut before its output count, that count estimated from
        the bytes forwarded (:func:`proxy.metering.estimate_output_tokens`) and :attr:`estimated` set."""
        if self._encoder is None:
            return self._usage
        usage = self._encoder.usage()
        if (usage is not None and usage.output_tokens > 0) or self._relayed == 0:
            return usage
        self.estimated = True
        output = estimate_output_tokens(self._relayed, self._last)
        if usage is None:
            return Usage(output_tokens=output)
        return Usage(usage.input_tokens, output, usage.cache_read_tokens, usage.cache_write_tokens)
