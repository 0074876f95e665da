"""The Messages passthrough: the client's body to an Anthropic-speaking upstream, the answer's bytes back.

Edits, and only these: the model (a cloud adapter's variant of it; Claude on Vertex takes it in the URL
and ``anthropic_version`` in the body), the fields and betas the upstream refuses (:mod:`providers.betas`),
thinking blocks Switchboard wrapped for another API (they cannot be verified here), and for a Claude
Pro/Max token the headers and identity block Anthropic requires of it (as
:mod:`providers.wire.anthropic_messages` does). ``anthropic-version`` is the client's (default
``2023-06-01``).

Metered, :class:`PassthroughLeg` reads usage from the ``message_start`` and ``message_delta`` events (found by
substring, decoded only then) or the answer's ``usage``; input is ``input_tokens`` plus the cache reads
and writes (the canonical convention). A stream that ends without ``message_stop`` (or the upstream's
own ``error`` event) gets an in-stream ``error`` event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from providers.betas import allowed_betas, policy_for
from providers.canonical import Usage
from providers.credentials import ResolvedAuth
from providers.errors import SwitchboardError, UpstreamError, UpstreamUnreachable
from providers.request_facts import RequestFacts, facts_from_body
from providers.sse import EventSplitter
from providers.wire import anthropic_stream, google_vertex
from providers.wire.anthropic_messages import CLAUDE_CODE_IDENTITY, OAUTH_BETAS, OAUTH_HEADERS
from providers.wire.base import UpstreamCall
from providers.wire.claude_rules import oauth_token

from ..asgi import Scope
from ..metering import estimate_input_tokens
from ..router import Target
from ..upstream_call import wire_target
from .messages_out import error_envelope

__all__ = ["ClientHeaders", "PassthroughLeg"]

log = logging.getLogger("switchboard")

_VERSION = "2023-06-01"
_WRAPPED = "sbx1."


@dataclass(frozen=True, slots=True)
class ClientHeaders:
    version: str = _VERSION
    beta: str = ""
    session_id: str | None = None

    @classmethod
    def from_scope(cls, scope: Scope) -> ClientHeaders:
        version, beta, session = _VERSION, "", None
        for name, value in scope.get("headers", ()):
            if name == b"anthropic-version":
                version = value.decode("latin-1")
            elif name == b"anthropic-beta":
                beta = f"{beta},{value.decode('latin-1')}" if beta else value.decode("latin-1")
            elif name == b"x-claude-code-session-id":
                session = value.decode("latin-1")[:128]
        return cls(version, beta, session)


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class _Message(msgspec.Struct):
    usage: _Usage | None = None


class _Event(msgspec.Struct):
    type: str = ""
    message: _Message | None = None
    usage: _Usage | None = None


_ANSWER = msgspec.json.Decoder(_Message)
_EVENT = msgspec.json.Decoder(_Event)


class PassthroughLeg:
    """See the module docstring; a :class:`proxy.pipeline.Leg`."""

    __slots__ = (
        "_count",
        "_headers",
        "_meter",
        "_name",
        "_payload",
        "_raw",
        "_started",
        "_target",
        "_usage",
        "estimated",
        "facts",
        "stream",
    )

    def __init__(
        self,
        body: dict[str, Any],
        target: Target,
        auth: ResolvedAuth,
        client: ClientHeaders,
        *,
        count: bool,
        meter: bool,
    ) -> None:
        self._target = target
        self._name = target.provider.name
        self._count = count
        self._meter = meter
        self._started = False
        self._raw: dict[str, int] = {}
        self._usage: Usage | None = None
        self.estimated = False
        self.stream = body.get("stream") is True and not count
        policy = policy_for(target.provider.id)
        for field in policy.drop_fields:
            body.pop(field, None)
        if not policy.cache_control:
            body = msgspec.json.decode(msgspec.json.encode(body))  # a deep copy: the client's stays whole
            _strip_cache_control(body)
        _drop_foreign_thinking(body)
        self._headers = {"anthropic-version": client.version if policy.client_version else _VERSION}
        betas = allowed_betas(target.provider.id, client.beta)
        token = oauth_token(auth.headers)
        if token is not None:
            self._headers.update(OAUTH_HEADERS)
            self._headers["authorization"] = f"Bearer {token}"
            self._headers["x-api-key"] = ""
            betas = ",".join(dict.fromkeys([*filter(None, betas.split(",")), *OAUTH_BETAS]))
            _ensure_identity(body)
        configured = next((v for k, v in auth.headers.items() if k.lower() == "anthropic-beta"), "")
        if configured:
            betas = ",".join(dict.fromkeys([*filter(None, configured.split(",")), *filter(None, betas.split(","))]))
        self._headers["anthropic-beta"] = betas  # "" removes a header the credential carries
        self._payload = body
        self.facts: RequestFacts | None = None

    def call(self, auth: ResolvedAuth) -> UpstreamCall:
        target, body = self._target, self._payload
        wt = wire_target(target, auth)
        headers = dict(self._headers)
        if wt.vertex_raw_predict:
            headers.pop("anthropic-version")
            if self._count:
                body["model"] = wt.model_id
                url = wt.base_url.rstrip("/") + "/models/count-tokens:rawPredict"
            else:
                body.pop("model", None)
                url = google_vertex.raw_predict_url(wt, stream=self.stream)
            body["anthropic_version"] = google_vertex.ANTHROPIC_VERSION
        else:
            body["model"] = wt.model_id
            url = wt.base_url.rstrip("/") + ("/v1/messages/count_tokens" if self._count else "/v1/messages")
        payload = msgspec.json.encode(body)
        if target.provider.adapter:
            self.facts = facts_from_body(payload, "anthropic-messages")
        return UpstreamCall(url, payload, headers)

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        err = anthropic_stream.upstream_error(self._name, status, body, headers)
        if status == 529:
            err.status = 529  # Claude Code retries "overloaded" by this status; Anthropic's own
        return err

    def answer(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            answer = _ANSWER.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamUnreachable(
                f"{self._name} answered {status} with a body that is not a JSON object ({exc}); "
                "the answer was cut short or the baseUrl points at something else: retry, or check the baseUrl"
            ) from exc
        if self._meter:
            self._started = True
            if answer.usage is not None:
                self._merge(answer.usage)
        ctype = headers.get("content-type")
        return status, body, [(b"content-type", ctype.encode() if ctype else b"application/json")]

    def usage(self) -> Usage | None:
        if not self._started:
            return None
        raw = self._raw
        if not raw:
            self.estimated = True
            return Usage(input_tokens=estimate_input_tokens(len(msgspec.json.encode(self._payload))))
        read, write = raw.get("cache_read_input_tokens", 0), raw.get("cache_creation_input_tokens", 0)
        return Usage(
            input_tokens=raw.get("input_tokens", 0) + read + write,
            output_tokens=raw.get("output_tokens", 0),
            cache_read_tokens=read,
            cache_write_tokens=write,
        )

    def _merge(self, usage: _Usage) -> None:
        for field in _Usage.__struct_fields__:
            value = getattr(usage, field)
            if value is not None:
                self._raw[field] = value  # message_delta counts are cumulative: the last one wins

    def stream_steps(self) -> tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[Exception], bytes]]:
        splitter = EventSplitter()
        last = b""
        name = self._name
        meter = self._meter
        if meter:
            self._started = True

        def step(chunk: bytes) -> bytes:
            nonlocal last
            out = splitter.feed(chunk)
            if out:
                last = out
                if meter and (b'"message_start"' in out or b'"message_delta"' in out):
                    self._read_usage(out)
            return out

        def finish() -> bytes:
            rest = splitter.flush()
            if rest.strip():
                log.warning("%s's stream ended inside an event", name)
                return fail(UpstreamUnreachable(f"{name}: stream ended early inside an event; retry the request"))
            if b"message_stop" in last[-96:] or b"event: error" in last:
                return b""
            log.warning("%s's stream ended without message_stop", name)
            return fail(UpstreamUnreachable(f"{name}: stream ended early (no message_stop); retry the request"))

        def fail(exc: Exception) -> bytes:
            err = (
                exc if isinstance(exc, SwitchboardError) else UpstreamError(f"{name}: {type(exc).__name__}", status=502)
            )
            return b"event: error\ndata: " + msgspec.json.encode(error_envelope(err)) + b"\n\n"

        return step, finish, fail

    def _read_usage(self, out: bytes) -> None:
        for block in out.split(b"\n\n"):
            if b'"message_start"' not in block and b'"message_delta"' not in block:
                continue
            for line in block.splitlines():
                if line.startswith(b"data:"):
                    try:
                        ev = _EVENT.decode(line[5:])
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        continue
                    usage = ev.message.usage if ev.message is not None else ev.usage
                    if usage is not None:
                        self._merge(usage)


def _strip_cache_control(value: Any) -> None:
    if isinstance(value, dict):
        value.pop("cache_control", None)
        for v in value.values():
            _strip_cache_control(v)
    elif isinstance(value, list):
        for v in value:
            _strip_cache_control(v)


def _drop_foreign_thinking(body: dict[str, Any]) -> None:
    """Thinking Switchboard wrapped for another API: no Anthropic-speaking service can verify it.

    Copy-on-write: a fallback Target may need the client's messages as they were."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for i, msg in enumerate(messages):
        content = msg.get("content") if isinstance(msg, dict) and msg.get("role") == "assistant" else None
        if not isinstance(content, list):
            continue
        kept = [b for b in content if not _wrapped(b)]
        if len(kept) != len(content):
            if messages is body["messages"]:
                messages = body["messages"] = list(messages)
            messages[i] = {**msg, "content": kept}


def _wrapped(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    opaque = block.get("signature") if block.get("type") == "thinking" else block.get("data")
    return (
        block.get("type") in ("thinking", "redacted_thinking")
        and isinstance(opaque, str)
        and opaque.startswith(_WRAPPED)
    )


def _ensure_identity(body: dict[str, Any]) -> None:
    system = body.get("system")
    identity = {"type": "text", "text": CLAUDE_CODE_IDENTITY}
    if isinstance(system, str):
        if not system.startswith(CLAUDE_CODE_IDENTITY):
            body["system"] = [identity, {"type": "text", "text": system}] if system else [identity]
    elif isinstance(system, list):
        first = system[0] if system else None
        if not (isinstance(first, dict) and str(first.get("text", "")).startswith(CLAUDE_CODE_IDENTITY)):
            system.insert(0, identity)
    else:
        body["system"] = [identity]
