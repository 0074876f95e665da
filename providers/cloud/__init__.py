"""Cloud adapters, looked up by the name a provider row declares (``"adapter"`` in providers.json).

The names below are the built-in ones (:mod:`providers.builtins` registers them); an installed extension
adds its own through :mod:`providers.extensions`, and :func:`adapter_for` finds both the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import CloudAdapter

__all__ = ["adapter_for"]

_MODULES = {
    "bedrock": "providers.cloud.bedrock",
    "vertex": "providers.cloud.vertex",
    "azure": "providers.cloud.azure",
    "cloudflare": "providers.cloud.cloudflare",
    "codex": "providers.cloud.codex",
    "copilot": "providers.cloud.copilot",
}


def adapter_for(name: str) -> CloudAdapter:
    """The adapter called ``name``, imported on first use (boto3, google-auth and azure-identity are heavy);
    KeyError for a name no provider row may carry (rows are checked when registered)."""
    from ..extensions import active  # that module imports this package's contract

    return active().adapter(name)
