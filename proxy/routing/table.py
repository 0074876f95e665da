"""The configured routes, checked against the registry at start, and what one request may try.

:func:`check_routes` runs when the server starts (a bad route stops it, naming the key path:
``config.json: routes.smart.targets[1]: unknown provider 'anthropc'; did you mean 'anthropic'?``).
:func:`candidates` turns a request's model and its per-request ``fallbacks`` into the named targets it
may reach, which the allow-list checks (:class:`proxy.pipeline.Admit`) and routing then orders.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path

from providers.errors import ConfigError, InvalidRequest, SwitchboardError
from providers.registry import Registry

from ..router import Router, Target, check_kind
from .config import RouteConfig

__all__ = ["MAX_FALLBACKS", "candidates", "check_routes", "take_fallbacks"]

#: Per-request ``fallbacks`` accepted at most (OpenRouter's ``models`` allows a few too).
MAX_FALLBACKS = 5


def take_fallbacks(req: dict[str, object]) -> tuple[str, ...]:
    """Remove and check a request body's ``fallbacks`` (``extra_body={"fallbacks": [...]}`` in the openai
    SDK): a list of at most :data:`MAX_FALLBACKS` model names. It never goes upstream."""
    raw = req.pop("fallbacks", None)
    if raw is None:
        return ()
    if (
        not isinstance(raw, list)
        or len(raw) > MAX_FALLBACKS
        or not all(isinstance(m, str) and 0 < len(m) <= 256 for m in raw)
    ):
        raise InvalidRequest(
            f"'fallbacks' must be a list of at most {MAX_FALLBACKS} model names tried in order when the model "
            'fails, e.g. ["groq/llama-3.3-70b-versatile", "cerebras/llama-3.3-70b"]',
            param="fallbacks",
        )
    return tuple(raw)


def candidates(
    router: Router,
    routes: Mapping[str, RouteConfig],
    requested: str,
    fallbacks: Sequence[str],
    kind: str,
    path: str,
) -> list[tuple[str, Target]]:
    """Every target a request may reach, each with the name the client gave for it (the route's name for
    a route's targets): the model's (a route's, in its order), then each fallback's. A name that does not
    resolve is the client's error (404/400 naming it); duplicates are dropped."""
    out: list[tuple[str, Target]] = []
    seen: set[str] = set()
    for i, name in enumerate((requested, *fallbacks)):
        route = routes.get(name)
        for target_name in route.targets if route is not None else (name,):
            try:
                target = router.resolve(target_name)
                check_kind(target, kind, path)
            except SwitchboardError as exc:
                if i and route is None:
                    exc.message, exc.param = f"fallbacks[{i - 1}]: {exc.message}", "fallbacks"
                raise
            if target.public_id not in seen:
                seen.add(target.public_id)
                out.append((name, target))
    return out


def check_routes(routes: Mapping[str, RouteConfig], aliases: Mapping[str, str], registry: Registry, path: Path) -> None:
    """Raise :class:`ConfigError` for the first route that cannot work, naming its key path."""
    router = Router(registry, aliases, lambda _p: True)
    for name, route in routes.items():
        where = f"{path}: routes.{name}"
        if not name or len(name) > 256:
            raise ConfigError(f"{where}: a route name is 1-256 characters, used as the request's 'model'")
        if name in aliases:
            raise ConfigError(f"{where}: {name!r} is also an alias; rename the route or remove the alias")
        head, sep, _ = name.partition("/")
        if sep and registry.get(head) is not None:
            raise ConfigError(f"{where}: {name!r} looks like a {head} model; give the route a name without '/'")
        _check_weights(where, route)
        kinds: set[str] = set()
        seen: set[str] = set()
        for i, target_name in enumerate(route.targets):
            at = f"{where}.targets[{i}]"
            kinds.add(_check_target(at, target_name, routes, router, registry))
            if target_name in seen:
                raise ConfigError(f"{at}: {target_name!r} is listed twice")
            seen.add(target_name)
        if len(kinds) > 1:
            raise ConfigError(f"{where}.targets: mixes chat and embedding models; a route serves one kind")


def _check_weights(where: str, route: RouteConfig) -> None:
    weights = route.weights
    if route.strategy == "weighted":
        if weights is None or len(weights) != len(route.targets):
            given = "none" if weights is None else str(len(weights))
            raise ConfigError(
                f"{where}.weights: strategy 'weighted' needs one weight per target ({len(route.targets)}), "
                f'got {given}; e.g. "weights": [{", ".join(["1"] * len(route.targets))}]'
            )
        for i, w in enumerate(weights):
            if not w > 0:
                raise ConfigError(f"{where}.weights[{i}]: {w} is not a positive number")
    elif weights is not None:
        raise ConfigError(f"{where}.weights: only strategy 'weighted' uses weights (this route is {route.strategy!r})")


def _check_target(at: str, name: str, routes: Mapping[str, RouteConfig], router: Router, registry: Registry) -> str:
    """The target's kind; raises naming what is wrong with it."""
    if name in routes:
        raise ConfigError(f"{at}: {name!r} is a route; routes do not nest, list its targets instead")
    head, sep, rest = router.unalias(name).partition("/")
    provider = registry.get(head) if sep and rest else None
    if provider is None:
        if not sep or not rest:
            raise ConfigError(f"{at}: {name!r} names no provider; use 'provider/model-id' (e.g. 'openai/gpt-4o')")
        close = registry.close_provider_ids(head)
        hint = f"; did you mean {close[0]!r}?" if close else " (run 'switchboard providers' to list them)"
        raise ConfigError(f"{at}: unknown provider {head!r}{hint}")
    model = provider.model(rest)
    if model is None and provider.models:
        close = difflib.get_close_matches(rest, [m.id for m in provider.models], n=3, cutoff=0.5)
        hint = "; did you mean " + ", ".join(repr(f"{head}/{c}") for c in close) + "?" if close else ""
        raise ConfigError(
            f"{at}: unknown model {rest!r} of provider {head!r}{hint} ('switchboard models {head}' lists them)"
        )
    return model.kind if model is not None else "chat"
