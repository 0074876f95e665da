"""Model addressing: the ``model`` a client sends → the provider and upstream model id to use.

Rules, in order:

1. An alias from the server config is replaced by its target (``"fast": "groq/llama-3.3-70b-versatile"``).
2. ``provider/model-id``: the text before the first ``/`` names a known provider; the rest is the upstream
   id, which may itself contain ``/`` and ``:`` (``openrouter/anthropic/claude-sonnet-4.5``,
   ``cloudflare-workers-ai/@cf/meta/llama-3.1-8b-instruct``). An id the catalog does not know still
   passes through to that provider.
3. A bare id (or one whose first segment is no provider, ``meta-llama/Llama-3.3-70B-Instruct``) goes to
   the provider that has credentials and lists that id, when exactly one does. A bare Anthropic id
   (``claude-…``, what Claude Code sends) goes to the ``anthropic`` provider when it has credentials,
   even when others (Bedrock, Vertex, OpenRouter) list it too; an alias still wins (rule 1).

Results are cached per model string; :meth:`Router.rebuild` is called when the registry or credentials
change. The cache is reached by any client string, so it is bounded in entries and in key length (longer
names are refused before any lookup), holds only names that resolved to a model the catalog or an alias
knows (a typo or an invented id costs a lookup each time, not a slot), and messages quote a name cut short.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from providers.cloud import adapter_for
from providers.errors import InvalidRequest, NotFound
from providers.registry import Compat, Model, Provider, Registry

__all__ = ["MAX_MODEL_LENGTH", "Router", "Target", "check_kind"]

#: Longest model name accepted: real ids (Bedrock ARNs, OpenRouter paths) stay under ~150 characters.
MAX_MODEL_LENGTH = 256
_CACHE_LIMIT = 4096
#: Bare ids with this prefix are Anthropic's own names: they go to this provider when it is configured.
_ANTHROPIC, _ANTHROPIC_PREFIX = "anthropic", "claude-"
#: How much of a client's model name an error message quotes.
_QUOTED = 80


@dataclass(frozen=True, slots=True)
class Target:
    provider: Provider
    upstream_model: str
    model: Model | None
    api: str
    compat: Compat
    #: ``provider/upstream-model``: read on every request (routing, headers, metrics), so made once.
    public_id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_id", f"{self.provider.id}/{self.upstream_model}")


class Router:
    def __init__(
        self,
        registry: Registry,
        aliases: Mapping[str, str],
        has_credentials: Callable[[Provider], bool],
    ) -> None:
        self._registry = registry
        self._aliases = dict(aliases)
        self._has_credentials = has_credentials
        self._cache: dict[str, Target] = {}
        #: Counts rebuilds: what was resolved before another generation may resolve differently now.
        self.generation = 0

    @property
    def registry(self) -> Registry:
        return self._registry

    def rebuild(self, registry: Registry | None = None) -> None:
        if registry is not None:
            self._registry = registry
        self._cache.clear()
        self.generation += 1

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def resolve(self, name: str) -> Target:
        """Raises :class:`NotFound` (404, with close matches) or :class:`InvalidRequest` (ambiguous, too long)."""
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        if len(name) > MAX_MODEL_LENGTH:
            raise InvalidRequest(
                f"'model' is {len(name)} characters long; model ids are at most {MAX_MODEL_LENGTH} "
                "(use 'provider/model-id'; GET /v1/models lists them)",
                param="model",
            )
        target = self._resolve(name)
        if target.model is not None or name in self._aliases:
            if len(self._cache) >= _CACHE_LIMIT:
                del self._cache[next(iter(self._cache))]  # the oldest entry
            self._cache[name] = target
        return target

    def _resolve(self, name: str) -> Target:
        if not name:
            raise InvalidRequest("'model' must be a non-empty string such as 'openai/gpt-4o'", param="model")
        name = self.unalias(name)
        head, sep, rest = name.partition("/")
        if sep and rest:
            provider = self._registry.get(head)
            if provider is not None:
                return _target(provider, rest)
        return self._resolve_bare(name)

    def unalias(self, name: str) -> str:
        """``name`` with aliases followed (itself when it is none); raises :class:`InvalidRequest` on a loop."""
        seen = {name}
        while name in self._aliases:
            name = self._aliases[name]
            if name in seen:
                raise InvalidRequest(f"alias loop in the server config involving {_quote(name)}", param="model")
            seen.add(name)
        return name

    def _resolve_bare(self, name: str) -> Target:
        if name.startswith(_ANTHROPIC_PREFIX):
            anthropic = self._registry.get(_ANTHROPIC)
            if anthropic is not None and self._has_credentials(anthropic):
                return _target(anthropic, name)
        owners = [p for p in self._registry if p.model(name) is not None and self._has_credentials(p)]
        if len(owners) == 1:
            return _target(owners[0], name)
        if len(owners) > 1:
            choices = ", ".join(f"{p.id}/{name}" for p in owners)
            raise InvalidRequest(
                f"model {_quote(name)} is offered by several configured providers; name one: {choices}",
                param="model",
                code="ambiguous_model",
            )
        raise NotFound(self._not_found_message(name), param="model")

    def _not_found_message(self, name: str) -> str:
        head, sep, _ = name.partition("/")
        configured = [p for p in self._registry if self._has_credentials(p)]
        candidates = [f"{p.id}/{m.id}" for p in configured for m in p.models]
        candidates += list(self._aliases)
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
        if sep and not close:
            close = [f"{pid}/..." for pid in self._registry.close_provider_ids(head)]
        msg = f"unknown model {_quote(name)}: use 'provider/model-id' (GET /v1/models lists what is available)"
        if not configured:
            msg += "; no provider has credentials yet (run 'switchboard models' to see which env vars to set)"
        if close:
            msg += "; did you mean " + ", ".join(repr(c) for c in close) + "?"
        return msg


def _quote(name: str) -> str:
    return repr(name) if len(name) <= _QUOTED else repr(name[:_QUOTED]) + f"... ({len(name)} characters)"


def _target(provider: Provider, upstream_model: str) -> Target:
    model = provider.model(upstream_model)
    if provider.adapter:
        api = adapter_for(provider.adapter).api_for(provider, upstream_model, model)
    else:
        api = (model.api if model else None) or provider.api
    compat = provider.compat.merged(model.compat) if model and model.compat else provider.compat
    return Target(provider, upstream_model, model, api, compat)


def check_kind(target: Target, kind: str, path: str) -> None:
    """Refuse (400, ``model``) a model the catalog or models.json says is of another kind than ``kind``."""
    model = target.model
    if model is None or model.source == "discovered" or model.kind == kind:
        return
    others = [m.id for m in target.provider.models if m.kind == kind][:3]
    hint = f"; {target.provider.id} has e.g. " + ", ".join(repr(f"{target.provider.id}/{m}") for m in others)
    raise InvalidRequest(
        f"{target.public_id} is {'an embedding' if model.kind == 'embedding' else 'a chat'} model and {path} "
        f"needs {'an embedding' if kind == 'embedding' else 'a chat'} model (GET /v1/models lists them)"
        f"{hint if others else ''}",
        param="model",
        code="model_not_supported",
    )
