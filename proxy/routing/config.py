"""The routing settings of ``config.json``: ``routes``, ``retries``, ``cooldown``, ``context_window_fallback``.

Parsed strictly with the rest of the server config (:class:`proxy.config.ServerConfig`); what msgspec
cannot check alone (targets that exist, weights that match them) is checked against the registry at start
by :func:`proxy.routing.table.check_routes`, with the key path in the message. Example::

    "routes": {
      "smart": {"targets": ["anthropic/claude-sonnet-4-5", "bedrock-eu/eu.anthropic.claude-sonnet-4-5-20250929-v1:0"],
                "strategy": "fallback"},
      "cheap": {"targets": ["groq/llama-3.3-70b-versatile", "cerebras/llama-3.3-70b"], "strategy": "weighted",
                "weights": [3, 1]}
    },
    "retries": {"attempts": 2, "backoff": 0.5, "max_backoff": 8, "retry_after_cap": 30},
    "cooldown": {"failures": 3, "window": 60, "seconds": 30},
    "context_window_fallback": true
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["CooldownConfig", "RetryConfig", "RouteConfig", "Strategy"]

Strategy = Literal["fallback", "weighted", "least-busy", "latency", "cost"]
_Positive = Annotated[float, msgspec.Meta(gt=0)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class RouteConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    #: ``provider/model`` names (or aliases), tried as the strategy orders them; the rest are fallbacks.
    targets: Annotated[list[str], msgspec.Meta(min_length=1, max_length=16)]
    strategy: Strategy = "fallback"
    #: ``weighted`` only: one positive number per target.
    weights: list[float] | None = None
    #: ``latency`` only: targets within this fraction of the fastest (0.2: 20% slower) share the traffic.
    tolerance: _NonNegative = 0.2


class RetryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    #: Upstream requests per target for one client request (1: no retry of the same target). Default 1:
    #: the usual clients (openai and anthropic SDKs) retry on their own, and retries multiply.
    attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1
    #: Seconds before the first retry; doubled each time, with jitter (a random 50-100% of it).
    backoff: _Positive = 0.5
    max_backoff: _Positive = 8.0
    #: The longest ``retry-after`` waited for; a longer one moves on to the next target (or answers).
    retry_after_cap: _NonNegative = 30.0


class CooldownConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    #: Failures (retryable ones and refused credentials) within ``window`` seconds that start a cooldown.
    failures: Annotated[int, msgspec.Meta(ge=1)] = 3
    window: _Positive = 60.0
    #: How long a target is skipped after ``failures``; a ``retry-after`` sets its own length instead.
    seconds: _Positive = 30.0
