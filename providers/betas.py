"""Which ``anthropic-beta`` values and Messages body fields each Anthropic-speaking upstream accepts.

The Messages passthrough (``proxy/messages.py``) forwards a client's body and beta header with only the
needed edits. Anthropic takes every beta it has published; the services that copy its API (Claude on
Vertex and Bedrock, MiniMax, Kimi For Coding, gateways) answer 400 to a beta or a field they do not know,
and Claude Code sends several on every request. So each upstream has a row here: the betas it takes
(``"*"``: all), the body fields to drop (``context_management`` needs the context-management beta, which
only Anthropic has), whether it takes ``cache_control`` and whether it serves ``count_tokens``.

Rows are data, keyed by provider id; an id without a row (a models.json provider speaking the API) gets
:data:`_DEFAULT`: no betas, the beta-only fields dropped, ``cache_control`` kept (ignored where there is
no cache, refused nowhere we know of). Vertex lists the betas Google documents for Claude; Bedrock's are
for the ``anthropic_beta`` body field of the Converse/InvokeModel path and are read by whoever builds it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BetaPolicy", "allowed_betas", "policy_for"]

#: Body fields that exist only behind a beta Anthropic alone serves.
_BETA_FIELDS = ("context_management", "container", "mcp_servers")


@dataclass(frozen=True, slots=True)
class BetaPolicy:
    #: Betas passed on; ``("*",)`` passes every one.
    betas: tuple[str, ...] = ()
    #: Top-level body fields removed before the body goes upstream.
    drop_fields: tuple[str, ...] = _BETA_FIELDS
    #: False: every ``cache_control`` is removed from the body (a service that refuses it).
    cache_control: bool = True
    #: The client's ``anthropic-version`` is forwarded (else ``2023-06-01``, what the copies document).
    client_version: bool = False
    #: The upstream serves Anthropic's ``count_tokens`` (Vertex: ``count-tokens:rawPredict``).
    count_tokens: bool = False


_ALL = ("*",)
_VERTEX_BETAS = (
    "interleaved-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "fine-grained-tool-streaming-2025-05-14",
    "token-efficient-tools-2025-02-19",
    "output-128k-2025-02-19",
)
_BEDROCK_BETAS = (
    "interleaved-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "token-efficient-tools-2025-02-19",
    "output-128k-2025-02-19",
    "computer-use-2025-01-24",
)
_DEFAULT = BetaPolicy()

_POLICIES: dict[str, BetaPolicy] = {
    "anthropic": BetaPolicy(betas=_ALL, drop_fields=(), client_version=True, count_tokens=True),
    "google-vertex": BetaPolicy(betas=_VERTEX_BETAS, count_tokens=True),
    "amazon-bedrock": BetaPolicy(betas=_BEDROCK_BETAS),
    # Anthropic-compatible services: they document thinking and tools, no betas.
    "minimax": BetaPolicy(),
    "minimax-cn": BetaPolicy(),
    "kimi-coding": BetaPolicy(),
    # A gateway in front of Anthropic itself passes betas through.
    "cloudflare-ai-gateway": BetaPolicy(betas=_ALL, drop_fields=(), client_version=True, count_tokens=True),
}


def policy_for(provider_id: str) -> BetaPolicy:
    return _POLICIES.get(provider_id, _DEFAULT)


def allowed_betas(provider_id: str, header: str | None) -> str:
    """The comma-separated ``anthropic-beta`` value to send ``provider_id`` ("" when none is left)."""
    if not header:
        return ""
    allowed = policy_for(provider_id).betas
    wanted = [b.strip() for b in header.split(",") if b.strip()]
    if allowed != _ALL:
        wanted = [b for b in wanted if b in allowed]
    return ",".join(dict.fromkeys(wanted))
