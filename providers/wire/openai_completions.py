"""Wire API ``openai-completions``: OpenAI chat completions and every server that speaks it.

Inbound OpenAI chat requests to such a provider take the fast path: the client's decoded body is edited
in place (model id and the provider's compat quirks) and re-encoded; unknown fields pass through
untouched; the answer's bytes are forwarded as they come.

Entry points:

* :func:`adapt_request` — apply the compat edits to a decoded request body (never raises).
* :func:`chat_url` — the upstream endpoint for a base URL.
* :func:`upstream_error` — an upstream error answer as :class:`UpstreamError` with the provider's message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ..canonical import Usage
from ..errors import UpstreamError
from ..registry import Compat, Model

__all__ = ["adapt_request", "chat_url", "chat_usage", "chunk_usage", "upstream_error"]

_RETRY_HEADERS = ("retry-after", "retry-after-ms", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")


def chat_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/chat/completions"


def adapt_request(body: dict[str, Any], upstream_model: str, compat: Compat, model: Model | None) -> None:
    """Edit ``body`` for the upstream: its model id, then only the fields its compat flags require."""
    body["model"] = upstream_model
    _adapt_max_tokens(body, compat)
    if not compat.supports_store:
        body.pop("store", None)
    if not compat.supports_developer_role:
        _downgrade_developer_role(body)
    if "reasoning_effort" in body:
        _convert_reasoning_effort(body, compat, model)
    if not compat.supports_strict_mode and "tools" in body:
        _drop_strict(body)
    if not compat.supports_usage_in_streaming:
        body.pop("stream_options", None)


def _adapt_max_tokens(body: dict[str, Any], compat: Compat) -> None:
    want = compat.max_tokens_field or "max_completion_tokens"
    other = "max_tokens" if want == "max_completion_tokens" else "max_completion_tokens"
    if other in body:
        value = body.pop(other)
        body.setdefault(want, value)


def _downgrade_developer_role(body: dict[str, Any]) -> None:
    for msg in body.get("messages") or ():
        if isinstance(msg, dict) and msg.get("role") == "developer":
            msg["role"] = "system"


def _convert_reasoning_effort(body: dict[str, Any], compat: Compat, model: Model | None) -> None:
    effort = body.pop("reasoning_effort")
    level_map = model.thinking_level_map if model else None
    if level_map is not None and isinstance(effort, str) and effort in level_map:
        effort = level_map[effort]
        if effort is None:
            return  # this model cannot honour that level; the provider default applies
    enabled = effort not in (None, "none", "off")
    fmt = compat.thinking_format or "openai"
    if fmt == "openai":
        if compat.supports_reasoning_effort:
            body["reasoning_effort"] = effort
    elif fmt == "openrouter":
        body.setdefault("reasoning", {"effort": effort if enabled else "none"})
    elif fmt in ("deepseek", "zai"):
        thinking: dict[str, Any] = {"type": "enabled" if enabled else "disabled"}
        if fmt == "zai" and enabled:
            thinking["clear_thinking"] = False
        body.setdefault("thinking", thinking)
        if enabled and compat.supports_reasoning_effort:
            body["reasoning_effort"] = effort
    elif fmt == "qwen":
        body.setdefault("enable_thinking", enabled)
    elif fmt == "qwen-chat-template":
        body.setdefault("chat_template_kwargs", {"enable_thinking": enabled, "preserve_thinking": True})
    elif fmt == "together":
        body.setdefault("reasoning", {"enabled": enabled})
        if enabled and compat.supports_reasoning_effort:
            body["reasoning_effort"] = effort


def _drop_strict(body: dict[str, Any]) -> None:
    for tool in body.get("tools") or ():
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict):
            fn.pop("strict", None)


def upstream_error(provider_name: str, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """The provider's own message, type and code, in our envelope, with rate-limit hints kept."""
    message, type_, code, param = _parse_error_body(body)
    if not message:
        message = f"HTTP {status}"
    if status in (401, 403):
        message += " (check the API key configured for this provider; 'switchboard models' lists what is set)"
    kept = {h: v for h in _RETRY_HEADERS if (v := headers.get(h))}
    return UpstreamError(
        f"{provider_name}: {message}", status=status, type_=type_, code=code, param=param, headers=kept
    )


def _parse_error_body(body: bytes) -> tuple[str, str | None, str | None, str | None]:
    # Uncut: the message is masked (the provider may echo the key) and only then cut, by the caller.
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text, None, None, None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # some gateways wrap the error in a list
    if not isinstance(data, dict):
        return str(data), None, None, None
    err = data.get("error", data)
    if isinstance(err, str):
        return err, None, None, None
    if not isinstance(err, dict):
        return str(err), None, None, None
    message = err.get("message") or err.get("detail") or data.get("detail") or data.get("message") or ""
    code = err.get("code")
    return (
        str(message),
        err.get("type") if isinstance(err.get("type"), str) else None,
        str(code) if code is not None else None,
        err.get("param") if isinstance(err.get("param"), str) else None,
    )


# --- usage: one reading of every dialect, for the passthrough's metering and the translating module ---


class _PromptDetails(msgspec.Struct):
    cached_tokens: float | None = None
    #: OpenRouter (and the translated path's own encoder): tokens written to the prompt cache.
    cache_write_tokens: float | None = None


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: float | None = None


class _ChatUsage(msgspec.Struct):
    """An OpenAI chat ``usage`` object and the fields compatible servers add to it.

    Counts are ``float`` so that a server writing ``12.0`` is still read (msgspec takes ints for floats).
    """

    prompt_tokens: float | None = None
    completion_tokens: float | None = None
    total_tokens: float | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None
    #: DeepSeek: prompt_tokens = hit + miss; the hits are cache reads.
    prompt_cache_hit_tokens: float | None = None
    prompt_cache_miss_tokens: float | None = None
    #: Anthropic-style counts some gateways (LiteLLM, Anthropic-compatible servers) add at the top level.
    cache_read_input_tokens: float | None = None
    cache_creation_input_tokens: float | None = None
    #: Moonshot (Kimi) reports cache reads at the top level.
    cached_tokens: float | None = None


_USAGE = msgspec.json.Decoder(_ChatUsage)


class _UsageChunk(msgspec.Struct):
    """A chat stream chunk reduced to its usage object (every other field skipped unparsed)."""

    usage: _ChatUsage | None = None


_USAGE_CHUNK = msgspec.json.Decoder(_UsageChunk)


def chat_usage(raw: bytes | msgspec.Raw) -> Usage | None:
    """An OpenAI chat ``usage`` object in the canonical convention (None: not a usage object).

    * input: ``prompt_tokens``, which OpenAI counts with its cached tokens. Servers that copy Anthropic's
      counts leave the cache out; that shows as ``total_tokens`` equal to prompt + cache + output (or a
      cache larger than the prompt), and then the cache is added.
    * output: ``completion_tokens``, which includes reasoning at OpenAI. xAI and Gemini's OpenAI endpoint
      count reasoning beside it; that shows as ``total_tokens`` equal to prompt + completion + reasoning
      (or reasoning larger than the completion), and then reasoning is added.
    """
    try:
        u = _USAGE.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return _canonical_usage(u)


def chunk_usage(data: bytes) -> Usage | None:
    """The usage of one chat stream chunk (its event's JSON), read as :func:`chat_usage` reads a usage
    object; None when the chunk has none (or is not JSON). One parse: a metered stream's last chunk."""
    try:
        u = _USAGE_CHUNK.decode(data).usage
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return _canonical_usage(u) if u is not None else None


def _canonical_usage(u: _ChatUsage) -> Usage:
    # Read on every metered request: absent and zero fields (most of them) cost a test, not a call.
    pd, cd = u.prompt_tokens_details, u.completion_tokens_details
    if u.prompt_tokens is not None:
        prompt = _n(u.prompt_tokens)
    else:
        prompt = _n(u.prompt_cache_hit_tokens) + _n(u.prompt_cache_miss_tokens)
    completion = _n(u.completion_tokens)
    total = _n(u.total_tokens)
    reasoning = _n(cd.reasoning_tokens) if cd is not None and cd.reasoning_tokens else 0
    cache_read = (
        (_n(pd.cached_tokens) if pd is not None and pd.cached_tokens else 0)
        or (_n(u.prompt_cache_hit_tokens) if u.prompt_cache_hit_tokens else 0)
        or (_n(u.cache_read_input_tokens) if u.cache_read_input_tokens else 0)
        or (_n(u.cached_tokens) if u.cached_tokens else 0)
    )
    cache_write = (_n(pd.cache_write_tokens) if pd is not None and pd.cache_write_tokens else 0) or (
        _n(u.cache_creation_input_tokens) if u.cache_creation_input_tokens else 0
    )
    cache = cache_read + cache_write
    output = completion
    if reasoning and (
        reasoning > completion or total in (prompt + completion + reasoning, prompt + cache + completion + reasoning)
    ):
        output = completion + reasoning
    inp = prompt
    if cache and (cache > prompt or total == prompt + cache + output):
        inp = prompt + cache
    return Usage(inp, output, cache_read, cache_write, reasoning)


def _n(value: float | None) -> int:
    return int(value) if value is not None and value > 0 else 0
