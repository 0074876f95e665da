"""What metrics, traces and the access log all read of a finished request, worked out in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.canonical import Usage
from providers.pricing import cost_for

if TYPE_CHECKING:
    from ..pipeline import Caller
    from ..router import Target

__all__ = ["OTHER_MODEL", "Facts", "key_id_of", "operation_of", "target_labels"]

#: The model label of a Target the catalog and models.json do not list (its name came from a client).
OTHER_MODEL = "other"

#: The GenAI semantic conventions' ``gen_ai.operation.name`` of each surface.
_OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "chat",
    "/v1/messages": "chat",
    "/v1/messages/count_tokens": "count_tokens",
    "/v1/embeddings": "embeddings",
    "/v1/completions": "text_completion",
}


def operation_of(surface: str) -> str:
    return _OPERATIONS.get(surface, "chat")


def target_labels(target: Target | None) -> tuple[str, str]:
    """``(provider, model)`` as metric labels: bounded by the registry, never a client's string. A model
    the catalog does not know (``provider/anything`` routes to it) is :data:`OTHER_MODEL`."""
    if target is None:
        return "none", "none"
    return target.provider.id, target.upstream_model if target.model is not None else OTHER_MODEL


def key_id_of(caller: Caller | None) -> str | None:
    """The virtual key's id (``master`` for the master key); None without the gateway. Never the key."""
    if caller is None:
        return None
    from ..gateway.steps import GatewayCaller  # here: the gateway's modules load only when it is used

    if isinstance(caller, GatewayCaller):
        return caller.key.id if caller.key is not None else "master"
    return None


class Facts:
    """A finished request's usage (:meth:`Outcome.usage`) and its cost in US dollars."""

    __slots__ = ("cost", "usage")

    def __init__(self, target: Target | None, usage: Usage | None) -> None:
        self.usage = usage
        self.cost = cost_for(target.model if target is not None else None, usage)
