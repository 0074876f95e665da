"""A fake Amazon Bedrock runtime: a real HTTP server on 127.0.0.1 speaking Converse and ConverseStream.

``POST /model/{modelId}/converse`` answers JSON like the real API (``output.message.content``,
``stopReason``, ``usage``, ``metrics``); ``/converse-stream`` answers real AWS event-stream frames,
encoded here by hand (prelude: total length, headers length, prelude CRC32; string headers
``:event-type``, ``:content-type``, ``:message-type``; JSON payload; message CRC32).

Every request is authenticated as Bedrock does: ``Authorization: Bearer`` for a configured bearer token,
or a SigV4 signature recomputed here independently from the AWS SigV4 documentation (canonical request
from the method, the raw path as received, query, signed headers and the body hash; string to sign; the
HMAC signing-key chain). A signature that does not verify gets 403 ``InvalidSignatureException``. The
model id decoded from the path is checked too.

What the fake model says: two parallel ``toolUse`` blocks when tools are offered and the last user turn
has no tool results; a summary of the tool results when it has; a note about an image when one is sent;
else an echo of the last user text. With thinking requested, a signed reasoning block comes first, and a
replayed reasoning block must carry the signature the fake issued.

:meth:`FakeBedrock.push` queues answers: ``Action("error", status, body, headers)`` (an HTTP error with
``x-amzn-errortype``), ``Action("exception", body="throttlingException", after_events=N)`` (an
exception frame after N event frames).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.fakes.server import Action, FakeServer

__all__ = [
    "Action",
    "BedrockRecorded",
    "FakeBedrock",
    "SignatureError",
    "encode_frame",
    "event_frame",
    "exception_frame",
    "fixture_streams",
    "sign",
    "stream_frames",
    "verify_sigv4",
]

_PATH = re.compile(r"^/model/([^/]+)/(converse|converse-stream)$")
_MODEL_ID = re.compile(r"^(arn:aws[\w-]*:bedrock:[a-z0-9-]+:\d{12}:[a-z-]+/[A-Za-z0-9.:_-]+|[a-z0-9.:-]+)$")
_TOP_LEVEL = {"messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields", "requestMetadata"}
_BLOCK_KEYS = {"text", "image", "toolUse", "toolResult", "reasoningContent", "cachePoint"}
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


class SignatureError(Exception):
    pass


@dataclass
class BedrockRecorded:
    raw_path: str
    model_id: str
    action: str
    headers: dict[str, str]
    body: Any
    #: "sigv4" | "bearer" | "none"
    auth: str
    access_key: str | None = None
    region: str | None = None
    signed_headers: list[str] = field(default_factory=list)


def sign(text: str) -> str:
    return "bsig_" + hashlib.sha256(text.encode()).hexdigest()[:32]


# --- AWS event-stream encoding ------------------------------------------------------------------


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message; all header values are strings (type 7)."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack(">B", len(raw_name)) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(headers, json.dumps(payload).encode())


def exception_frame(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode_frame(headers, json.dumps({"message": message}).encode())


def stream_frames(answer: dict[str, Any]) -> list[bytes]:
    """The ConverseStream frames that carry a Converse ``answer``, deltas split as Bedrock splits them."""
    frames = [event_frame("messageStart", {"role": "assistant"})]
    for index, block in enumerate(answer["output"]["message"]["content"]):
        if "text" in block:
            text = block["text"]
            for part in (text[: len(text) // 2], text[len(text) // 2 :]):
                frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": part}}))
        elif "toolUse" in block:
            use = block["toolUse"]
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            frames.append(event_frame("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            args = json.dumps(use["input"])
            for part in (args[:5], args[5:]):
                delta = {"toolUse": {"input": part}}
                frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        elif "reasoningContent" in block:
            reasoning = block["reasoningContent"]
            deltas: list[dict[str, Any]] = []
            if "redactedContent" in reasoning:
                deltas.append({"redactedContent": reasoning["redactedContent"]})
            else:
                text = reasoning["reasoningText"]["text"]
                deltas += [{"text": text[:7]}, {"text": text[7:]}]
                deltas.append({"signature": reasoning["reasoningText"]["signature"]})
            for delta in deltas:
                payload = {"contentBlockIndex": index, "delta": {"reasoningContent": delta}}
                frames.append(event_frame("contentBlockDelta", payload))
        frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
    frames.append(event_frame("messageStop", {"stopReason": answer["stopReason"]}))
    frames.append(event_frame("metadata", {"usage": answer["usage"], "metrics": answer["metrics"]}))
    return frames


# --- SigV4, recomputed by hand (AWS "Create a signed AWS API request") ----------------------------


def _uri_encode(text: str, *, keep_slash: bool) -> str:
    out = []
    for byte in text.encode():
        if byte in _UNRESERVED or (keep_slash and byte == ord("/")):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def verify_sigv4(
    method: str,
    raw_path: str,
    headers: dict[str, str],
    body: bytes,
    secrets: dict[str, tuple[str, str | None]],
    service: str = "bedrock",
) -> tuple[str, str, list[str]]:
    """(access key, region, signed headers) of a request whose signature verifies, else SignatureError."""
    auth = headers.get("authorization", "")
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        auth,
    )
    if match is None:
        raise SignatureError(f"malformed Authorization header {auth[:60]!r}")
    access_key, date, region, signed_service, signed, signature = match.groups()
    if access_key not in secrets:
        raise SignatureError(f"The security token included in the request is invalid ({access_key})")
    secret, token = secrets[access_key]
    if signed_service != service:
        raise SignatureError(f"credential scope names service {signed_service!r}, not {service!r}")
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names or names != sorted(names):
        raise SignatureError(f"SignedHeaders must be sorted and include host and x-amz-date: {signed}")
    amz_date = headers.get("x-amz-date", "")
    when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    if not amz_date.startswith(date) or abs((dt.datetime.now(dt.UTC) - when).total_seconds()) > 300:
        raise SignatureError("Signature expired or x-amz-date does not match the credential scope")
    if token is not None and ("x-amz-security-token" not in names or headers["x-amz-security-token"] != token):
        raise SignatureError("The security token included in the request is invalid (session token)")
    path, _, query = raw_path.partition("?")
    # Every service but S3 URI-encodes the (already encoded) path segments a second time.
    canonical_uri = _uri_encode(path, keep_slash=True)
    pairs = sorted(
        (_uri_encode(unquote(k), keep_slash=False), _uri_encode(unquote(v), keep_slash=False))
        for k, _, v in (p.partition("=") for p in query.split("&") if p)
    )
    canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
    canonical_headers = "".join(f"{n}:{' '.join(headers.get(n, '').split())}\n" for n in names)
    payload_hash = hashlib.sha256(body).hexdigest()
    canonical = "\n".join([method, canonical_uri, canonical_query, canonical_headers, signed, payload_hash])
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), date), region), service), "aws4_request")
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError(
            "The request signature we calculated does not match the signature you provided. "
            f"Canonical request was:\n{canonical}"
        )
    return access_key, region, names


# --- the server ----------------------------------------------------------------------------------


class FakeBedrock(FakeServer):
    def __init__(
        self,
        credentials: dict[str, tuple[str, str | None]] | None = None,
        bearer_tokens: set[str] | None = None,
        *,
        allow_anonymous: bool = False,
    ) -> None:
        super().__init__()
        #: access key id → (secret key, session token or None)
        default: dict[str, tuple[str, str | None]] = {"AKIDFAKE000EXAMPLE": ("fake-secret", None)}
        self.credentials = credentials if credentials is not None else default
        self.bearer_tokens = bearer_tokens or set()
        self.allow_anonymous = allow_anonymous
        self.rejected: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        match = _PATH.match(request.raw_path.partition("?")[0])
        if request.method != "POST" or match is None:
            return _error(404, "UnknownOperationException", f"no route for {request.method} {request.raw_path}")
        model_id, action = unquote(match.group(1)), match.group(2)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        record = BedrockRecorded(request.raw_path, model_id, action, headers, body, "none")
        self.requests.append(record)
        refused = self._authenticate(request.method, request.raw_path, headers, raw, record)
        if refused is not None:
            return refused
        if not _MODEL_ID.match(model_id):
            return _error(400, "ValidationException", f"The provided model identifier is invalid: {model_id}")
        problem = _check_body(body)
        if problem:
            return _error(400, "ValidationException", problem)
        played = await self.play(request, action_ := self.next_action())
        if played is not None:
            return played
        answer = _answer(body)
        if action == "converse":
            return web.json_response(answer, headers={"x-amzn-requestid": "req-fake-0123"})
        frames = stream_frames(answer)
        if action_ is not None and action_.kind == "exception":
            frames = [*frames[: action_.after_events], exception_frame(action_.body, "Too many requests, slow down.")]
        # Frames cross TCP writes, as they do over a real network.
        halves = (part for frame in frames for part in (frame[: len(frame) // 2], frame[len(frame) // 2 :]))
        return await self.stream(request, halves, None, b"", "application/vnd.amazon.eventstream")

    def _authenticate(
        self, method: str, raw_path: str, headers: dict[str, str], raw: bytes, record: BedrockRecorded
    ) -> web.Response | None:
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer "):
            if auth.removeprefix("Bearer ") in self.bearer_tokens:
                record.auth = "bearer"
                return None
            return _error(403, "UnrecognizedClientException", "Invalid API Key format: bearer token not recognised")
        if not auth:
            if self.allow_anonymous:
                return None
            return _error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        try:
            record.access_key, record.region, record.signed_headers = verify_sigv4(
                method, raw_path, headers, raw, self.credentials
            )
        except (SignatureError, ValueError, KeyError) as exc:
            self.rejected.append(str(exc))
            return _error(403, "InvalidSignatureException", str(exc))
        record.auth = "sigv4"
        return None


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status, headers={"x-amzn-errortype": f"{kind}:http://fake/"})


def _check_body(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    unknown = set(body) - _TOP_LEVEL
    if unknown or "modelId" in body:
        return f"unknown fields: {sorted(unknown)}"
    messages = body.get("messages") or []
    if not messages or messages[0]["role"] != "user":
        return "A conversation must start with a user message."
    cache_points = sum(1 for b in body.get("system") or () if "cachePoint" in b)
    uses_tools = False
    for i, msg in enumerate(messages):
        if i and messages[i - 1]["role"] == msg["role"]:
            return "A conversation must alternate between user and assistant roles."
        for block in msg["content"]:
            if len(block) != 1 or not set(block) <= _BLOCK_KEYS:
                return f"messages.{i}: invalid content block {sorted(block)}"
            cache_points += "cachePoint" in block
            uses_tools = uses_tools or "toolUse" in block or "toolResult" in block
            problem = _check_block(block, messages, i)
            if problem:
                return f"messages.{i}: {problem}"
    if uses_tools and "toolConfig" not in body:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    if cache_points > 4:
        return "too many cache points"
    return None


def _check_block(block: dict[str, Any], messages: list[dict[str, Any]], i: int) -> str | None:
    if "text" in block and not block["text"].strip():
        return "The text field in the ContentBlock object is blank."
    if "image" in block:
        image = block["image"]
        if image.get("format") not in ("png", "jpeg", "gif", "webp"):
            return "image format must be png, jpeg, gif or webp"
        base64.b64decode(image["source"]["bytes"], validate=True)
    if "toolUse" in block:
        use_id = block["toolUse"]["toolUseId"]
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", use_id):
            return f"invalid toolUseId {use_id!r}"
        answered = i + 1 < len(messages) and any(
            b.get("toolResult", {}).get("toolUseId") == use_id for b in messages[i + 1]["content"]
        )
        if not answered and i + 1 < len(messages):
            return f"toolUse {use_id} has no toolResult in the next message"
    if "reasoningContent" in block:
        text = block["reasoningContent"].get("reasoningText")
        if text is not None and text.get("signature") != sign(text.get("text", "")):
            return "reasoning signature does not verify"
    return None


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    last = body["messages"][-1]["content"]
    content: list[dict[str, Any]] = []
    thinking = (body.get("additionalModelRequestFields") or {}).get("thinking") or {}
    if thinking.get("type") in ("enabled", "adaptive"):
        thought = f"The user sent {len(body['messages'])} message(s); I answer plainly."
        content.append({"reasoningContent": {"reasoningText": {"text": thought, "signature": sign(thought)}}})
    results = [b["toolResult"] for b in last if "toolResult" in b]
    tools = (body.get("toolConfig") or {}).get("tools") or []
    stop = "end_turn"
    if tools and not results:
        name = tools[0]["toolSpec"]["name"]
        for n, city in enumerate(("Tokyo", "Paris")):
            content.append({"toolUse": {"toolUseId": f"tooluse_{n}abc", "name": name, "input": {"city": city}}})
        stop = "tool_use"
    elif results:
        texts = [c.get("text", "") for r in results for c in r["content"]]
        content.append({"text": "Results: " + "; ".join(texts)})
    elif any("image" in b for b in last):
        fmt = next(b["image"]["format"] for b in last if "image" in b)
        content.append({"text": f"I see a {fmt} image."})
    else:
        text = " ".join(b["text"] for b in last if "text" in b)
        content.append({"text": f"Echo: {text}"})
    cached = any("cachePoint" in b for m in body["messages"] for b in m["content"])
    usage = {"inputTokens": 21, "outputTokens": 9, "totalTokens": 30}
    if cached:
        usage.update(cacheReadInputTokens=5, cacheWriteInputTokens=3, totalTokens=38)
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage,
        "metrics": {"latencyMs": 12},
    }


def fixture_streams() -> dict[str, bytes]:
    """The committed stream fixtures (``tests/fixtures/bedrock/*.bin``), as this encoder produces them."""
    text = _answer({"messages": [{"role": "user", "content": [{"text": "hello there"}]}]})
    tools = _answer(
        {
            "messages": [{"role": "user", "content": [{"text": "weather?"}, {"cachePoint": {"type": "default"}}]}],
            "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {}}}}]},
            "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        }
    )
    frames = stream_frames(text)
    redacted = [
        event_frame("messageStart", {"role": "assistant"}),
        event_frame(
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": "b3BhcXVl"}}},
        ),
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "ok"}}),
        event_frame("contentBlockStop", {"contentBlockIndex": 1}),
        event_frame("messageStop", {"stopReason": "max_tokens"}),
    ]
    throttled = [*frames[:2], exception_frame("throttlingException", "Too many requests, slow down.")]
    return {
        "text_stream.bin": b"".join(frames),
        "tool_reasoning_stream.bin": b"".join(stream_frames(tools)),
        "redacted_stream.bin": b"".join(redacted),
        "throttled_stream.bin": b"".join(throttled),
    }
