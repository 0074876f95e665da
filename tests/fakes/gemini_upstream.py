"""A fake Gemini API: a real HTTP server on 127.0.0.1 (aiohttp.web in its own thread).

It answers ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse`` like
generativelanguage.googleapis.com: camelCase ``GenerateContentResponse`` objects (``modelVersion``,
``responseId``, ``usageMetadata``), SSE ``data:`` events framed with CRLF, each a whole response chunk,
usage in the last; Google error bodies ``{"error": {"code", "message", "status", "details"}}``.

Like the real API it checks ``x-goog-api-key`` (missing → 403 PERMISSION_DENIED, unknown → 400
API_KEY_INVALID) and rejects what Gemini rejects: unknown fields anywhere in the request (e.g.
``additionalProperties`` in a function schema), an OBJECT schema without properties, a part with two
kinds of data, and on Gemini 3 models a replayed function call without its ``thoughtSignature``.

What the fake model says: two parallel ``functionCall`` parts when tools are offered and the user just
spoke (a ``thoughtSignature`` on the first when thoughts are requested), a ``thought: true`` part first
when ``includeThoughts`` is on, a summary of the function responses after tool results, a mention of
an image, otherwise an echo. Tests queue special answers with :meth:`FakeGemini.push`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from tests.fakes.server import SSE, Action, FakeServer, Recorded, read_body

__all__ = ["Action", "FakeGemini", "Recorded"]

_REQUEST_FIELDS = {"contents", "tools", "toolConfig", "systemInstruction", "generationConfig", "safetySettings"}
_GENERATION_FIELDS = {
    "temperature",
    "topP",
    "topK",
    "maxOutputTokens",
    "stopSequences",
    "candidateCount",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "thinkingConfig",
}
_SCHEMA_FIELDS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "properties",
    "required",
    "anyOf",
    "propertyOrdering",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "minimum",
    "maximum",
    "pattern",
    "example",
    "default",
}
_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
_PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}
_PART_FIELDS = _PART_DATA | {"thought", "thoughtSignature"}


class InvalidArgument(Exception):
    pass


class FakeGemini(FakeServer):
    def __init__(self, api_key: str = "gm-test-key") -> None:
        super().__init__()
        self.api_key = api_key
        self._signatures = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{call}", self._generate)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body: Any = await read_body(request)
        self.requests.append(Recorded("POST", request.path_qs, dict(request.headers), body))
        model, _, method = request.match_info["call"].partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, f"Method {method!r} not found", "NOT_FOUND")
        key = request.headers.get("x-goog-api-key")
        if not key:
            return _error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
                "PERMISSION_DENIED",
            )
        if key != self.api_key:
            reason = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            return _error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", [reason])
        played = await self.play(request, action := self.next_action())
        if played is not None:
            return played
        try:
            _validate(body, model)
        except InvalidArgument as exc:
            return _error(400, str(exc), "INVALID_ARGUMENT")
        stream = method == "streamGenerateContent"
        if stream and request.query.get("alt") != "sse":
            return _error(400, "this fake only speaks alt=sse streams", "INVALID_ARGUMENT")
        chunks = [action.body] if action is not None and action.kind == "reply" else self._answer(body, model)
        if not stream:
            return web.json_response(_merge(chunks))
        return await self.stream(request, sse_frames(chunks), action, b'data: {"candidates": [{"content": {"par', SSE)

    def _answer(self, body: dict[str, Any], model: str) -> list[dict[str, Any]]:
        """The reply as stream chunks (merged into one response when not streaming)."""
        config = _get(body, "generationConfig") or {}
        thinking = _get(_get(config, "thinkingConfig") or {}, "includeThoughts") is True
        contents = body["contents"]
        last = contents[-1]
        parts: list[dict[str, Any]] = []
        if thinking:
            parts.append({"text": f"**Considering** the request ({len(contents)} turns).", "thought": True})
        responses = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
        if body.get("tools") and last["role"] == "user" and not responses:
            names = [d["name"] for t in body["tools"] for d in t.get("functionDeclarations", [])]
            for i, city in enumerate(("Paris", "Tokyo")):
                part: dict[str, Any] = {"functionCall": {"name": names[i % len(names)], "args": {"city": city}}}
                if thinking and i == 0:
                    self._signatures += 1
                    part["thoughtSignature"] = base64.b64encode(f"sig-{self._signatures}".encode()).decode()
                parts.append(part)
        elif responses:
            summary = "; ".join(f"{r['name']}={json.dumps(r['response'])}" for r in responses)
            parts.append({"text": f"Tool results: {summary}"})
        elif any("inlineData" in p or "fileData" in p for p in last["parts"]):
            kinds = [(p.get("inlineData") or p.get("fileData") or {}).get("mimeType", "text") for p in last["parts"]]
            parts.append({"text": f"I see an image among: {', '.join(kinds)}"})
        else:
            text = " ".join(p["text"] for p in last["parts"] if "text" in p)
            parts.append({"text": f"Echo: {text}"})
        return _chunks(parts, model, thinking)


def sse_frames(chunks: list[dict[str, Any]]) -> list[bytes]:
    """Gemini's SSE framing (``alt=sse``), CRLF line ends as Google sends them."""
    return [b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n" for chunk in chunks]


def _error(status: int, message: str, code: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    err: dict[str, Any] = {"code": status, "message": message, "status": code}
    if details:
        err["details"] = details
    return web.json_response({"error": err}, status=status)


def _chunks(parts: list[dict[str, Any]], model: str, thinking: bool) -> list[dict[str, Any]]:
    """Split text parts by word, one part per chunk, as the real stream does."""
    pieces: list[dict[str, Any]] = []
    for part in parts:
        if "text" in part and not part.get("thought"):
            words = part["text"].split(" ")
            pieces += [{"text": w + (" " if i < len(words) - 1 else "")} for i, w in enumerate(words)]
        else:
            pieces.append(part)
    calls = any("functionCall" in p for p in pieces)
    out = []
    for n, piece in enumerate(pieces):
        chunk: dict[str, Any] = {
            "candidates": [{"content": {"parts": [piece], "role": "model"}, "index": 0}],
            "modelVersion": model,
            "responseId": "fake-resp-001",
        }
        if n == len(pieces) - 1:
            chunk["candidates"][0]["finishReason"] = "STOP"
            chunk["usageMetadata"] = {
                "promptTokenCount": 12,
                "candidatesTokenCount": 9 if not calls else 14,
                "totalTokenCount": 21 + (5 if thinking else 0) + (5 if calls else 0),
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}],
                **({"thoughtsTokenCount": 5} if thinking else {}),
            }
        out.append(chunk)
    return out


def _merge(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streaming answer: the chunks' parts in one candidate (adjacent text joined)."""
    merged = json.loads(json.dumps(chunks[-1]))
    if not merged.get("candidates"):
        return merged
    parts: list[dict[str, Any]] = []
    for chunk in chunks:
        for part in ((chunk.get("candidates") or [{}])[0].get("content") or {}).get("parts", []):
            prev = parts[-1] if parts else None
            if prev and set(part) == {"text"} and set(prev) == {"text"}:
                prev["text"] += part["text"]
            else:
                parts.append(dict(part))
    merged["candidates"][0].setdefault("content", {"role": "model"})["parts"] = parts
    return merged


def _validate(body: Any, model: str) -> None:
    if not isinstance(body, dict):
        raise InvalidArgument("Invalid JSON payload received.")
    _known(body, _REQUEST_FIELDS, "")
    contents = body.get("contents")
    if not contents:
        raise InvalidArgument("* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(contents):
        _validate_content(content, f"contents[{i}]", model)
    for i, tool in enumerate(body.get("tools") or []):
        _known(tool, {"functionDeclarations"}, f"tools[{i}]")
        for j, decl in enumerate(tool.get("functionDeclarations") or []):
            where = f"tools[{i}].function_declarations[{j}]"
            _known(decl, {"name", "description", "parameters"}, where)
            if "parameters" in decl:
                _validate_schema(decl["parameters"], where + ".parameters")
    config = body.get("generationConfig") or {}
    _known(config, _GENERATION_FIELDS, "generation_config")
    thinking = config.get("thinkingConfig") or {}
    _known(thinking, {"thinkingBudget", "thinkingLevel", "includeThoughts"}, "generation_config.thinking_config")
    if "thinkingBudget" in thinking and "thinkingLevel" in thinking:
        raise InvalidArgument("You can only set only one of thinking budget and thinking level.")
    if "responseSchema" in config:
        _validate_schema(config["responseSchema"], "generation_config.response_schema")
    if "systemInstruction" in body:
        _validate_content({"role": "user", **body["systemInstruction"]}, "system_instruction", model)


def _validate_content(content: dict[str, Any], where: str, model: str) -> None:
    _known(content, {"role", "parts"}, where)
    if content.get("role") not in ("user", "model"):
        raise InvalidArgument(f"* GenerateContentRequest.{where}.role: Please use a valid role: user, model.")
    calls = 0
    for k, part in enumerate(content.get("parts") or []):
        _known(part, _PART_FIELDS, f"{where}.parts[{k}]")
        if len(_PART_DATA & set(part)) != 1:
            raise InvalidArgument(f"* GenerateContentRequest.{where}.parts[{k}].data: required oneof field 'data'")
        if "functionCall" in part:
            _known(part["functionCall"], {"name", "args", "id"}, f"{where}.parts[{k}].function_call")
            if calls == 0 and model.startswith("gemini-3") and "thoughtSignature" not in part:
                raise InvalidArgument(
                    f"Function call is missing a thought_signature in functionCall parts. This is required for "
                    f"tools to work correctly. Additional data, function call `default_api:"
                    f"{part['functionCall']['name']}` , position {k + 1}."
                )
            calls += 1
        if "functionResponse" in part:
            _known(part["functionResponse"], {"name", "response", "id"}, f"{where}.parts[{k}].function_response")


def _validate_schema(schema: Any, where: str) -> None:
    _known(schema, _SCHEMA_FIELDS, where)
    if "type" in schema and str(schema["type"]).upper() not in _TYPES:
        raise InvalidArgument(
            f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.Type), {schema['type']!r}"
        )
    if schema.get("type") == "OBJECT" and "properties" in schema and not schema["properties"]:
        raise InvalidArgument(f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type")
    for name, sub in (schema.get("properties") or {}).items():
        _validate_schema(sub, f"{where}.properties[{name}].value")
    if "items" in schema:
        _validate_schema(schema["items"], f"{where}.items")
    for n, sub in enumerate(schema.get("anyOf") or []):
        _validate_schema(sub, f"{where}.any_of[{n}]")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _get(obj: dict[str, Any], camel: str) -> Any:
    """A field by its JSON name or its proto (snake_case) name, as the real API reads both."""
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return obj.get(camel, obj.get(snake))


def _known(obj: Any, allowed: set[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"Invalid value at '{where}': expected an object")
    for key in obj:
        if key not in allowed and _camel(key) not in allowed:  # proto JSON takes both spellings
            raise InvalidArgument(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
            )
