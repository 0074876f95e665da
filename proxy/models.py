"""``GET /v1/models`` and ``switchboard models``: the models of every provider that has credentials.

Entries are OpenAI ``model`` objects (``id``, ``object``, ``created``, ``owned_by``) with Switchboard's
catalog facts added; credentials never appear, only whether a provider is usable. A route
(:mod:`proxy.routing`) is a model too (``owned_by: "switchboard"`` and its ``route``: strategy and
targets), listed while one of its targets is usable, with what every target can do: the smallest
context window and output, the input kinds and reasoning all of them have, the highest prices.
"""

from __future__ import annotations

from typing import Any

from providers.errors import NotFound, SwitchboardError
from providers.registry import Model, Provider

from .runtime import Runtime

__all__ = ["get_model", "list_models", "model_entry", "route_entry"]


def model_entry(provider: Provider, model: Model, created: int) -> dict[str, Any]:
    return {
        "id": f"{provider.id}/{model.id}",
        "object": "model",
        "created": created,
        "owned_by": provider.id,
        "name": model.name,
        "provider": provider.id,
        "api": model.api or provider.api,
        "context_window": model.context_window,
        "max_tokens": model.max_tokens,
        "kind": model.kind,
        "reasoning": model.reasoning,
        "input": list(model.input),
        "pricing": {
            "input": model.cost.input,
            "output": model.cost.output,
            "cache_read": model.cost.cache_read,
            "cache_write": model.cost.cache_write,
            "unit": "USD per million tokens",
        },
        "source": model.source,
    }


def list_models(rt: Runtime, provider_id: str | None = None) -> list[dict[str, Any]]:
    created = int(rt.started)
    out: list[dict[str, Any]] = []
    for provider in rt.registry:
        if provider_id is not None and provider.id != provider_id:
            continue
        if not rt.credentials.available(provider):
            continue
        out.extend(model_entry(provider, m, created) for m in provider.models)
    if provider_id is None:
        out.extend(e for name in rt.routing.routes if (e := route_entry(rt, name, created)) is not None)
        for alias, target in rt.config.aliases.items():
            try:
                resolved = rt.router.resolve(alias)
            except Exception:  # noqa: S112 - an alias to an unusable provider is simply not listed
                continue
            if rt.credentials.available(resolved.provider):
                out.append(
                    {
                        "id": alias,
                        "object": "model",
                        "created": created,
                        "owned_by": resolved.provider.id,
                        "alias_of": target,
                    }
                )
    return out


def route_entry(rt: Runtime, name: str, created: int) -> dict[str, Any] | None:
    """A route as a model; None while none of its targets is usable."""
    route = rt.routing.routes[name]
    models: list[Model] = []
    usable = False
    for target_name in route.targets:
        try:
            target = rt.router.resolve(target_name)
        except SwitchboardError:
            continue
        usable = usable or rt.credentials.available(target.provider)
        models.append(target.model or Model(id=target.upstream_model, name=target.upstream_model))
    if not usable or not models:
        return None
    first = models[0]
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "switchboard",
        "name": name,
        "route": {"strategy": route.strategy, "targets": list(route.targets)},
        "context_window": min(m.context_window for m in models),
        "max_tokens": min(m.max_tokens for m in models),
        "kind": first.kind,
        "reasoning": all(m.reasoning for m in models),
        "input": [kind for kind in first.input if all(kind in m.input for m in models)],
        # The most a request may cost: the highest price among the targets.
        "pricing": {
            "input": max(m.cost.input for m in models),
            "output": max(m.cost.output for m in models),
            "cache_read": max(m.cost.cache_read for m in models),
            "cache_write": max(m.cost.cache_write for m in models),
            "unit": "USD per million tokens",
        },
        "source": "route",
    }


def get_model(rt: Runtime, model_id: str) -> dict[str, Any]:
    if model_id in rt.routing.routes:
        entry = route_entry(rt, model_id, int(rt.started))
        if entry is None:
            raise NotFound(f"route {model_id!r}: none of its targets has credentials", param="model")
        return entry
    target = rt.router.resolve(model_id)
    if not rt.credentials.available(target.provider):
        raise NotFound(f"model {model_id!r}: provider {target.provider.id!r} has no credentials", param="model")
    model = target.model or Model(id=target.upstream_model, name=target.upstream_model, source="passthrough")
    entry = model_entry(target.provider, model, int(rt.started))
    if model_id in rt.config.aliases:
        entry["id"] = model_id
        entry["alias_of"] = rt.config.aliases[model_id]
    return entry
