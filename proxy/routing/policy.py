"""The one rule for what happens after a failed upstream attempt: retry it, try the next target, or answer.

Only while nothing was sent to the client: once the answer's first byte left (``reply.started``) nothing
is retried, and a stream that fails ends with its error event (:mod:`proxy.streaming`). Then, by what
the attempt got:

=====================================================  ==========================================================
failure                                                what happens
=====================================================  ==========================================================
connection error, timeout before the first byte,       **retryable**: counts toward the target's cooldown; a
408, 409, 429, 500, 502, 503, 504, 529                 ``retry-after`` starts a cooldown of that length. Then the
                                                       same target again (after the backoff) while it has
                                                       ``retries.attempts`` left and is not cooling down; else
                                                       the next target; a target cooling down from a
                                                       ``retry-after`` ≤ ``retries.retry_after_cap`` is waited
                                                       for when no other target is left.
401, 403 (the target's credential), or no credential   **next target** (one bad key must not sink the route);
                                                       counts toward the cooldown. Never retried.
the prompt does not fit (the upstream's context-       **next target whose context window is larger**, when
length error: 400/413 saying so)                       ``context_window_fallback`` is on; no cooldown.
anything else (400, 404, 422, a request the target's   **answered** to the client as it is.
API cannot express)
=====================================================  ==========================================================

When the last target failed, the client gets that target's error. Backoff before a retry of the same
target: ``backoff * 2^(n-1)`` capped at ``max_backoff``, times a random 50-100% (jitter), and at least
the ``retry-after`` the upstream asked for.
"""

from __future__ import annotations

import enum
import random
import re

from providers.errors import MissingCredentials, SwitchboardError, UpstreamError, UpstreamTimeout, UpstreamUnreachable

from .config import RetryConfig

__all__ = ["RETRYABLE", "Verdict", "backoff", "is_context_error", "verdict"]

#: Upstream statuses worth another try (529: Anthropic overloaded).
RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
#: How OpenAI ("maximum context length is …", code context_length_exceeded), Anthropic ("prompt is too
#: long: 208310 tokens > 200000 maximum", "input length and `max_tokens` exceed context limit"), Gemini
#: ("input token count … exceeds the maximum number of tokens") and Bedrock ("Input is too long for
#: requested model", "too many input tokens") say that a prompt does not fit.
_CONTEXT = re.compile(
    r"context.{0,12}(length|window|limit)|prompt is too long|input is too long|too many (input )?tokens"
    r"|exceeds the maximum number of tokens|maximum context length",
    re.IGNORECASE,
)


class Verdict(enum.Enum):
    RETRY = "retry"  # retryable: the same target again if it may, else the next one
    NEXT = "next"  # the next target (a refused credential)
    BIGGER = "bigger"  # the next target with a larger context window
    ANSWER = "answer"  # the client gets this error


def is_context_error(exc: SwitchboardError) -> bool:
    """The upstream said the prompt does not fit its context window."""
    if not isinstance(exc, UpstreamError) or exc.status not in (400, 413):
        return False
    return "context_length" in (exc.code or "") or _CONTEXT.search(exc.message) is not None


def verdict(exc: SwitchboardError, status: int, context_fallback: bool) -> Verdict:
    """What follows a failed attempt; ``status`` is the upstream's own (0: none), before any mapping
    (Anthropic's 529 reaches the client as 503)."""
    if isinstance(exc, UpstreamTimeout | UpstreamUnreachable):
        return Verdict.RETRY
    if isinstance(exc, MissingCredentials):
        return Verdict.NEXT
    if not isinstance(exc, UpstreamError):
        return Verdict.ANSWER
    code = status or exc.status
    if code in RETRYABLE:
        return Verdict.RETRY
    if code in (401, 403):
        return Verdict.NEXT
    if context_fallback and is_context_error(exc):
        return Verdict.BIGGER
    return Verdict.ANSWER


def backoff(config: RetryConfig, retry: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2…) of the same target."""
    delay = min(config.max_backoff, config.backoff * 2.0 ** (retry - 1)) * rng.uniform(0.5, 1.0)
    return max(delay, retry_after) if retry_after is not None else delay
