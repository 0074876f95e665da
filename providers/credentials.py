"""Credential resolution: which key a provider's request carries, and where it came from.

The order, first match wins (``providers.md``, "Resolution Order"):

1. ``switchboard serve --api-key PROVIDER=KEY`` (a literal)
2. ``auth.json`` entry: ``{"type": "api_key", "key": <key value>}`` or ``{"type": "oauth", "access": ...}``
3. the provider's environment variable(s), first non-empty (``ANTHROPIC_OAUTH_TOKEN`` before
   ``ANTHROPIC_API_KEY``)
4. the ``apiKey`` of the provider in ``models.json``

A stored ``auth.json`` key owns its provider: when it does not resolve, the request fails with a message
saying so instead of silently falling back to 3 or 4. :meth:`Credentials.available` and
:meth:`Credentials.source_of` follow the same steps without running any ``!command``. An OAuth token
for an ``x-api-key`` provider (Anthropic) is sent as ``Authorization: Bearer``.

Key values in 2 and 4 go through :mod:`providers.keyvalue` (``!command``, ``$NAME``, env var name, literal).
An ``auth.json`` entry may carry ``"env": {...}``: provider-scoped values (e.g. ``CLOUDFLARE_ACCOUNT_ID``)
that win over the process environment.

Resolution runs once per provider and is cached (``!command`` may take seconds; the hot path must not
touch files). ``auth.json`` is read once per change: a file that does not parse (invalid JSON or UTF-8,
empty, not an object) leaves the last good content in use (none at start: the other sources still
work), logs one ERROR naming the file and the problem, and shows in :attr:`Credentials.auth_problem`
(``/healthz``, ``switchboard doctor``) until the file is fixed. :meth:`Credentials.invalidate` drops the
cache when a config file changes; :meth:`Credentials.after_unauthorized` drops one provider's entry and
its cached ``!command`` output so the next request resolves again (an upstream 401 after a key rotation).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .authstore import AuthStore
from .errors import ConfigError, MissingCredentials
from .keyvalue import Origin, aresolve_key_value, forget_command, is_configured
from .masking import Mask, url_password
from .models_json import command_origin
from .oauth import ensure_fresh, flow_for, needs_refresh
from .registry import Model, Provider, default_auth

if TYPE_CHECKING:
    from .cloud.base import CloudAdapter

__all__ = ["Credentials", "ResolvedAuth"]

log = logging.getLogger("switchboard")

_OAUTH_MARGIN_MS = 60_000
_AUTH_HEADER_NAMES = ("authorization", "x-api-key", "x-goog-api-key", "api-key")
_PLACEHOLDER = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class ResolvedAuth:
    """What a request to one provider carries: the base URL with placeholders filled, and headers."""

    base_url: str
    headers: Mapping[str, str]
    #: Where the key came from, for `switchboard doctor` and logs ("env OPENAI_API_KEY"); never the key.
    source: str
    #: The raw key value that produced the key, so a 401 can forget a cached ``!command``.
    key_value: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    #: Every secret the headers carry: the key, and header values that came from ``$VAR``/``!command``.
    secrets: tuple[str, ...] = ()
    #: The key itself, for a model whose wire API wants it in another header.
    key: str | None = field(default=None, repr=False)

    _mask: Mask | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def mask(self) -> Mask:
        """The secrets' masks, built on first use (most requests never need them)."""
        mask = self._mask
        if mask is None:
            mask = Mask((*self.secrets, *url_password(self.base_url)))
            object.__setattr__(self, "_mask", mask)
        return mask

    def scrub(self, message: str) -> str:
        """``message`` with any secret this auth sends masked (providers echo rejected keys), then cut."""
        return self.mask.text(message)


class Credentials:
    def __init__(
        self,
        auth_store: AuthStore,
        *,
        cli_keys: Mapping[str, str] | None = None,
        models_json_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._store = auth_store
        self._cli = dict(cli_keys or {})
        self._models_json = models_json_path
        self._environ = environ
        self._cache: dict[str, ResolvedAuth] = {}
        #: provider id → adapter name, for providers resolved through a cloud adapter.
        self._cloud: dict[str, str] = {}
        #: provider id → when its OAuth access token expires (ms epoch); cached auth is dropped before then.
        self._expires: dict[str, float] = {}
        #: providers whose next resolution must refresh their OAuth token (the upstream answered 401).
        self._force_refresh: set[str] = set()
        self._auth_data: dict[str, Any] | None = None
        #: The last auth.json content that parsed, and the verdict on the read it came from.
        self._auth_good: dict[str, Any] = {}
        self._auth_origin = Origin(auth_store.path, f"{auth_store.path} has not been read")
        self._auth_problem: str | None = None

    @property
    def auth_path(self) -> Path:
        return self._store.path

    @property
    def auth_problem(self) -> str | None:
        """Why ``auth.json`` as it is on disk is not in use (and what is instead), or None."""
        self._load_auth()
        return self._auth_problem

    def invalidate(self) -> None:
        """A config file changed: forget what was resolved and re-read ``auth.json`` now, so that a broken
        file is reported when it changes, not at the next request."""
        self._cache.clear()
        self._auth_data = None
        self._load_auth()

    def after_unauthorized(self, provider_id: str) -> bool:
        """Forget a provider's resolved key; True if resolving again may give another key."""
        adapter_name = self._cloud.get(provider_id)
        if adapter_name is not None:
            # A revoked or rotated short-lived token: the adapter drops it and the retry fetches a new one.
            forget = getattr(adapter_for(adapter_name), "forget", None)
            if forget is not None and forget(provider_id):
                return True
        resolved = self._cache.pop(provider_id, None)
        for key in [k for k in self._cache if k.startswith(provider_id + "\0")]:
            del self._cache[key]
        self._auth_data = None
        if resolved is not None and resolved.source == "auth.json (oauth)" and flow_for(provider_id) is not None:
            self._force_refresh.add(provider_id)  # the token may have been revoked early: refresh once
            return True
        if resolved is not None and resolved.key_value and resolved.key_value.startswith("!"):
            forget_command(resolved.key_value)
            return True
        return False

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def _auth_entry(self, provider_id: str) -> dict[str, Any] | None:
        entry = self._load_auth().get(provider_id)
        return entry if isinstance(entry, dict) else None

    def _load_auth(self) -> dict[str, Any]:
        if self._auth_data is not None:
            return self._auth_data
        try:
            data, origin = self._store.read_checked()
        except ConfigError as exc:
            kept = "the last good version is in use" if self._auth_good else "no credentials from it are used"
            problem = f"{exc.message}; fix or remove it: {kept}"
            if problem != self._auth_problem:
                log.error("%s", problem)
            self._auth_problem = problem
            self._auth_data = self._auth_good
            return self._auth_good
        if self._auth_problem is not None:
            log.info("%s is valid again and in use", self._store.path)
        self._auth_problem = None
        self._auth_good, self._auth_origin, self._auth_data = data, origin, data
        return data

    def cached(self, provider_id: str, model: Model | None = None) -> ResolvedAuth | None:
        """The hot path: a dict lookup (plus a clock read for OAuth tokens)."""
        hit = self._cache.get(_cache_key(provider_id, model))
        expires = self._expires.get(provider_id) if hit is not None and self._expires else None
        if expires is not None and expires - _OAUTH_MARGIN_MS <= time.time() * 1000:
            self._drop(provider_id)
            return None
        return hit

    def _drop(self, provider_id: str) -> None:
        self._cache.pop(provider_id, None)
        for key in [k for k in self._cache if k.startswith(provider_id + "\0")]:
            del self._cache[key]
        self._auth_data = None

    async def resolve(self, provider: Provider, model: Model | None = None) -> ResolvedAuth:
        """Resolve (or return the cached) auth for ``provider`` (and ``model``, when it has its own base URL
        or headers); raises :class:`MissingCredentials`."""
        ckey = _cache_key(provider.id, model)
        hit = self.cached(provider.id, model)
        if hit is not None:
            return hit
        if ckey != provider.id:
            assert model is not None
            resolved_auth = await self._for_model(await self.resolve(provider), provider, model)
        else:
            resolved_auth = await self._for_provider(provider)
        self._cache[ckey] = resolved_auth
        return resolved_auth

    async def _for_provider(self, provider: Provider) -> ResolvedAuth:
        if provider.adapter and not provider.pending:
            return await self._for_cloud(provider)
        key, source, key_value, scoped = await self._find_key(provider)
        env = {**self._env(), **scoped}
        base_url = _fill_placeholders(provider, provider.base_url, env)
        headers: dict[str, str] = {"content-type": "application/json"}
        secrets = [key] if key else []
        await self._resolve_headers(provider, provider.headers, env, headers, secrets)
        if key is not None:
            headers.update(_auth_headers(provider, provider.auth, key, source))
        return ResolvedAuth(base_url, headers, source, key_value, scoped, tuple(secrets), key)

    async def _for_cloud(self, provider: Provider) -> ResolvedAuth:
        """A cloud provider: the ordinary order finds a key if there is one; the adapter does the rest."""
        try:
            key, source, key_value, scoped = await self._find_key(provider)
        except MissingCredentials:
            key, source, key_value = None, "ambient", None
            scoped = _scoped_env(self._auth_entry(provider.id))
        env = {**self._env(), **scoped}
        resolved = await adapter_for(provider.adapter).resolve(provider, key, source, env)
        self._cloud[provider.id] = provider.adapter
        # Headers configured in models.json (inline BYOK for the Cloudflare gateway, say) resolve here like
        # any key value; what the adapter set wins over a configured header of the same name.
        headers: dict[str, str] = {}
        secrets = list(resolved.secrets)
        await self._resolve_headers(provider, provider.headers, env, headers, secrets)
        for name, value in resolved.headers.items():
            for same in [h for h in headers if h.lower() == name.lower()]:
                del headers[same]
            headers[name] = value
        return replace(
            resolved,
            headers=headers,
            secrets=tuple(secrets),
            key_value=key_value,
            extra_env={**scoped, **resolved.extra_env},
        )

    async def _for_model(self, base: ResolvedAuth, provider: Provider, model: Model) -> ResolvedAuth:
        env = {**self._env(), **base.extra_env}
        base_url = _fill_placeholders(provider, model.base_url, env) if model.base_url else base.base_url
        headers = dict(base.headers)
        if base.key is not None and model.api and model.api != provider.api and not provider.auth_header:
            # The model speaks another wire API than its provider (an OpenCode model over Anthropic
            # Messages, say): the key travels the way that API expects.
            for name in _AUTH_HEADER_NAMES:
                headers.pop(name, None)
            headers.update(_auth_headers(provider, default_auth(model.api), base.key, base.source))
        secrets = list(base.secrets)
        await self._resolve_headers(provider, model.headers, env, headers, secrets)
        return replace(base, base_url=base_url, headers=headers, secrets=tuple(secrets))

    async def _resolve_headers(
        self, p: Provider, raw: Mapping[str, str], env: Mapping[str, str], out: dict[str, str], secrets: list[str]
    ) -> None:
        for name, value in raw.items():
            resolved = await aresolve_key_value(value, env=self._value_env(value, env), source=self._models_origin())
            if resolved is None:
                raise MissingCredentials(
                    f"header {name!r} of provider {p.id!r} did not resolve; check its value in "
                    f"{self._models_json or 'models.json'}"
                )
            out[name] = resolved
            if resolved != value:
                secrets.append(resolved)

    def available(self, provider: Provider) -> bool:
        """Whether ``provider`` has a credential, without running any ``!command``."""
        return self._locate(provider) is not None

    def source_of(self, provider: Provider) -> str | None:
        """Where the credential would come from (``--api-key``, ``auth.json``, ``env X``...), never the key."""
        return self._locate(provider)

    def _locate(self, p: Provider) -> str | None:
        if p.adapter and not p.pending:
            merged = {**self._env(), **_scoped_env(self._auth_entry(p.id))}
            found = self._locate_key(p)
            adapter = adapter_for(p.adapter)
            if not adapter.available(p, found is not None, merged):
                return None
            return adapter.describe(p, found is not None, merged) or found
        return self._locate_key(p)

    def _locate_key(self, p: Provider) -> str | None:
        # Mirrors _find_key step by step, but never runs a command: a !command counts as configured.
        env = self._env()
        entry = self._auth_entry(p.id)
        merged = {**env, **_scoped_env(entry)}
        if any(not merged.get(n) for n in p.url_env):
            return None
        if p.id in self._cli:
            return "--api-key"
        if entry is not None:
            if entry.get("type") == "oauth":
                if isinstance(entry.get("access"), str) and entry["access"]:
                    return "auth.json (oauth)"
            elif isinstance(entry.get("key"), str) and entry["key"]:
                # A stored key owns the provider: when it cannot resolve, resolve() fails rather than
                # falling back to the env var, so it is not available either.
                return "auth.json" if is_configured(entry["key"], merged) else None
        for name in p.env_vars:
            if env.get(name):
                return f"env {name}"
        if p.config_api_key is not None:
            return "models.json" if is_configured(p.config_api_key, merged) else None
        if p.origin == "models.json" and not p.auth_header:
            return "none needed"
        return None

    async def _find_key(self, p: Provider) -> tuple[str | None, str, str | None, dict[str, str]]:
        env = self._env()
        entry = self._auth_entry(p.id)
        scoped = _scoped_env(entry)
        if p.id in self._cli:
            return self._cli[p.id], "--api-key", None, scoped
        if entry is not None:
            found = await self._from_auth_entry(p, entry, {**env, **scoped})
            if found is not None:
                return found[0], found[1], found[2], scoped
        for name in p.env_vars:
            if env.get(name):
                return env[name], f"env {name}", None, scoped
        if p.config_api_key is not None:
            merged = self._value_env(p.config_api_key, {**env, **scoped})
            key = await aresolve_key_value(p.config_api_key, env=merged, source=self._models_origin())
            if key:
                return key, "models.json", p.config_api_key, scoped
        if p.origin == "models.json" and p.config_api_key is None and not p.auth_header:
            return None, "none needed", None, scoped  # a local server such as Ollama
        raise MissingCredentials(_missing_message(p, self._store.path, self._models_json))

    async def _from_auth_entry(
        self, p: Provider, entry: dict[str, Any], env: Mapping[str, str]
    ) -> tuple[str, str, str | None] | None:
        if entry.get("type") == "oauth":
            force = p.id in self._force_refresh
            self._force_refresh.discard(p.id)
            if (force or needs_refresh(entry)) and flow_for(p.id) is not None:
                # Refreshed under the auth.json lock, shared with every process using the file.
                entry = await ensure_fresh(self._store, p.id, force=force)
                self._auth_data = None
            expires = entry.get("expires")
            if isinstance(expires, int | float) and expires <= time.time() * 1000:
                raise MissingCredentials(f"the stored {p.name} login has expired; run 'switchboard login {p.id}' again")
            if isinstance(expires, int | float):
                self._expires[p.id] = float(expires)
            access = entry.get("access")
            return (access, "auth.json (oauth)", None) if isinstance(access, str) and access else None
        value = entry.get("key")
        if not isinstance(value, str) or not value:
            return None
        key = await aresolve_key_value(value, env=env, source=self._auth_origin)
        if key is None:
            raise MissingCredentials(
                f"the {p.id!r} key in {self._store.path} did not resolve (a !command failed or printed "
                "nothing, or a referenced environment variable is unset); fix the entry or run "
                f"'switchboard login {p.id}'"
            )
        return key, "auth.json", value

    def _models_origin(self) -> Origin | None:
        return command_origin(self._models_json) if self._models_json is not None else None

    def _value_env(self, value: str, env: Mapping[str, str]) -> Mapping[str, str]:
        """The environment a models.json value resolves in. A ``!command`` gets auth.json's ``env``
        entries only when auth.json may run commands itself: whoever could write that file must not set
        PATH (say) for a command from a file they could not write."""
        if value.startswith("!") and self._auth_origin.refusal is not None:
            return self._env()
        return env


def adapter_for(name: str) -> CloudAdapter:
    from .cloud import adapter_for as load  # cloud adapters import this module; import them late

    return load(name)


def _scoped_env(entry: Mapping[str, Any] | None) -> dict[str, str]:
    scoped = entry.get("env") if entry is not None else None
    return {str(k): str(v) for k, v in scoped.items()} if isinstance(scoped, dict) else {}


def _auth_headers(p: Provider, style: str, key: str, source: str) -> dict[str, str]:
    if p.auth_header or style == "bearer":
        return {"authorization": f"Bearer {key}"}
    if style == "x-api-key":
        # An OAuth access token (a stored login, ANTHROPIC_OAUTH_TOKEN, or an "sk-ant-oat" token given
        # any other way) is a bearer token; Anthropic rejects it as x-api-key.
        if source == "auth.json (oauth)" or "OAUTH" in source or "sk-ant-oat" in key:
            return {"authorization": f"Bearer {key}"}
        return {"x-api-key": key}
    if style == "x-goog-api-key":
        return {"x-goog-api-key": key}
    if style == "api-key":
        return {"api-key": key}
    return {}


def _cache_key(provider_id: str, model: Model | None) -> str:
    if model is None or (not model.base_url and not model.headers and not model.api):
        return provider_id
    return f"{provider_id}\0{model.id}"


def _fill_placeholders(p: Provider, url: str, env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        value = env.get(m.group(1))
        if not value:
            raise MissingCredentials(
                f'{p.name} needs {m.group(1)}: set it in the environment, or under "env" in the '
                f"{p.id!r} entry of auth.json"
            )
        return value

    return _PLACEHOLDER.sub(sub, url)


def _missing_message(p: Provider, auth_path: Path, models_json: Path | None) -> str:
    unresolved = (
        f"the apiKey of providers.{p.id} in {models_json} did not resolve (a !command failed or printed "
        "nothing, or a referenced environment variable is unset)"
    )
    if p.origin == "models.json":
        if p.config_api_key is not None:
            return f"no API key for {p.id!r}: {unresolved}; fix it"
        return f"no API key for {p.id!r} (authHeader is true): set providers.{p.id}.apiKey in {models_json}"
    ways = []
    if p.env_vars:
        ways.append("set " + " or ".join(p.env_vars))
    ways.append(f"run 'switchboard login {p.id}'")
    ways.append(f"add it to {auth_path}")
    ways.append(f"or start with 'switchboard serve --api-key {p.id}=...'")
    message = f"no credentials for {p.name} ({p.id}): " + ", ".join(ways)
    if p.config_api_key is not None:
        message += f"; {unresolved}"
    return message
