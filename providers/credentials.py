"""Credential resolution: which key a provider's request carries, and where it came from.

The order, first match wins (``providers.md``, "Resolution Order"), implemented once in
:meth:`Credentials._first_source`:

1. ``switchboard serve --api-key PROVIDER=KEY`` (a literal)
2. ``auth.json`` entry: ``{"type": "api_key", "key": <key value>}`` or ``{"type": "oauth", "access": ...}``
3. the provider's environment variable(s), first non-empty (``ANTHROPIC_OAUTH_TOKEN`` before
   ``ANTHROPIC_API_KEY``)
4. the ``apiKey`` of the provider in ``models.json``
5. nothing needed: a ``models.json`` provider without ``apiKey`` nor ``authHeader`` (a local Ollama)

The first source that holds something is the one used: a stored ``auth.json`` key owns its provider, and
when it does not resolve the request fails with a message saying so instead of silently falling back to
3 or 4. Resolving a request (:meth:`Credentials.resolve`) and answering whether a provider is usable
(:meth:`Credentials.available`, :meth:`Credentials.source_of`) pick the source the same way; only the
first runs a ``!command``. A provider with a cloud adapter (:mod:`providers.cloud`) hands what this order
found (or None) to the adapter, which may fall back on its ambient chain. An OAuth token
for an ``x-api-key`` provider (Anthropic) is sent as ``Authorization: Bearer``.

Key values in 2 and 4 go through :mod:`providers.keyvalue` (``!command``, ``$NAME``, env var name, literal).
An ``auth.json`` entry may carry ``"env": {...}``: provider-scoped values (e.g. ``CLOUDFLARE_ACCOUNT_ID``)
that win over the process environment.

Resolution runs once per provider and is cached (``!command`` may take seconds; the hot path must not
touch files); concurrent first requests share one resolution. A stored OAuth login is refreshed when its
access token expires within :data:`providers.oauth.REFRESH_MARGIN_MS`, both at resolution and on the hot
path (a cached auth whose token enters the margin is dropped, so the next request resolves, and refreshes,
again).
``auth.json`` is read once per change: a file that does not parse (invalid JSON or UTF-8,
empty, not an object) leaves the last good content in use (none at start: the other sources still
work), logs one ERROR naming the file and the problem, and shows in :attr:`Credentials.auth_problem`
(``/healthz``, ``switchboard doctor``) until the file is fixed. :meth:`Credentials.invalidate` drops the
cache when a config file changes; :meth:`Credentials.after_unauthorized` drops one provider's entry and
its cached ``!command`` output so the next request resolves again (an upstream 401 after a key rotation).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .authstore import AuthStore
from .cloud import adapter_for
from .errors import ConfigError, MissingCredentials
from .fixes import missing_credentials_message
from .keyvalue import Origin, aresolve_key_value, forget_command, is_configured
from .models_json import command_origin
from .oauth import REFRESH_MARGIN_MS, ensure_fresh, flow_for, needs_refresh
from .provider_env import fill_placeholders, scoped_env
from .registry import Model, Provider, default_auth
from .resolved import AdapterState, ResolvedAuth

__all__ = ["Credentials", "ResolvedAuth"]

log = logging.getLogger("switchboard")

#: A cached auth is dropped this long before its OAuth access token expires (the refresh margin).
_AUTH_HEADER_NAMES = ("authorization", "x-api-key", "x-goog-api-key", "api-key")


@dataclass(frozen=True, slots=True)
class _Source:
    """The first source of the resolution order that holds something for a provider."""

    #: "--api-key", "auth.json", "auth.json (oauth)", "env NAME", "models.json" or "none needed".
    name: str
    #: The literal key (``--api-key``, env) or the key value to resolve (auth.json, models.json).
    value: str | None
    #: The provider's environment: the process's with the auth.json entry's ``env`` over it.
    env: Mapping[str, str]
    #: The auth.json entry's ``env`` alone.
    scoped: dict[str, str]
    entry: dict[str, Any] | None


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
        #: cache key → the resolution in progress, which concurrent first requests share.
        self._resolving: dict[str, asyncio.Task[ResolvedAuth]] = {}
        #: provider id → the adapter state of its last resolution, offered to the next one (after a reload).
        self._previous: dict[str, AdapterState] = {}
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
        self._remember_states(list(self._cache.items()))
        self._cache.clear()
        self._auth_data = None
        self._load_auth()

    def after_unauthorized(self, provider_id: str) -> bool:
        """Forget a provider's resolved key; True if resolving again may give another key."""
        adapter_name = self._cloud.get(provider_id)
        cached = self._cache.get(provider_id)
        if adapter_name is not None and cached is not None and adapter_for(adapter_name).forget(cached):
            return True  # a revoked short-lived token: dropped from the state, the retry fetches a new one
        resolved = self._cache.get(provider_id)
        self._drop(provider_id)
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
        if expires is not None and expires - REFRESH_MARGIN_MS <= time.time() * 1000:
            self._drop(provider_id)
            return None
        return hit

    def _drop(self, provider_id: str) -> None:
        dropped = [k for k in self._cache if k == provider_id or k.startswith(provider_id + "\0")]
        self._remember_states([(k, self._cache.pop(k)) for k in dropped])
        self._auth_data = None

    def _remember_states(self, dropped: list[tuple[str, ResolvedAuth]]) -> None:
        for ckey, auth in dropped:
            if auth.state is not None and "\0" not in ckey:
                self._previous[ckey] = auth.state

    async def resolve(self, provider: Provider, model: Model | None = None) -> ResolvedAuth:
        """Resolve (or return the cached) auth for ``provider`` (and ``model``, when it has its own base URL
        or headers); raises :class:`MissingCredentials`."""
        ckey = _cache_key(provider.id, model)
        hit = self.cached(provider.id, model)
        if hit is not None:
            return hit
        task = self._resolving.get(ckey)
        if task is None:
            # One resolution for concurrent first requests: one !command run, one token fetch.
            task = asyncio.ensure_future(self._resolve_now(provider, model, ckey))
            self._resolving[ckey] = task
            task.add_done_callback(_retrieve)
        # Shielded: a client that goes away must not cancel the resolution others wait for.
        return await asyncio.shield(task)

    async def _resolve_now(self, provider: Provider, model: Model | None, ckey: str) -> ResolvedAuth:
        try:
            if ckey != provider.id:
                assert model is not None
                resolved_auth = await self._for_model(await self.resolve(provider), provider, model)
            else:
                resolved_auth = await self._for_provider(provider)
            self._cache[ckey] = resolved_auth
            return resolved_auth
        finally:
            # Inside the task, so no later request (nor another event loop) can find it finished.
            if self._resolving.get(ckey) is asyncio.current_task():
                del self._resolving[ckey]

    async def _for_provider(self, provider: Provider) -> ResolvedAuth:
        if provider.adapter:
            return await self._for_cloud(provider)
        key, source, key_value, scoped = await self._find_key(provider)
        env = {**self._env(), **scoped}
        base_url = fill_placeholders(provider, provider.base_url, env)
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
            scoped = scoped_env(self._auth_entry(provider.id))
        env = {**self._env(), **scoped}
        previous = self._previous.pop(provider.id, None)
        resolved = await adapter_for(provider.adapter).resolve(provider, key, source, env, previous)
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
        base_url = fill_placeholders(provider, model.base_url, env) if model.base_url else base.base_url
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
        found = self._first_source(p)
        usable = found is not None and self._configured(p, found)
        if p.adapter:
            env = found.env if found is not None else {**self._env(), **scoped_env(self._auth_entry(p.id))}
            adapter = adapter_for(p.adapter)
            if not adapter.available(p, usable, env):
                return None
            return adapter.describe(p, usable, env) or (found.name if usable and found is not None else None)
        return found.name if usable and found is not None else None

    def _first_source(self, p: Provider) -> _Source | None:
        """The resolution order (see the module docstring), in one place: the first source that holds
        something for ``p``, without resolving it."""
        entry = self._auth_entry(p.id)
        scoped = scoped_env(entry)
        process = self._env()
        env = {**process, **scoped}
        if p.id in self._cli:
            return _Source("--api-key", self._cli[p.id], env, scoped, entry)
        if entry is not None:
            if entry.get("type") == "oauth":
                if isinstance(entry.get("access"), str) and entry["access"]:
                    return _Source("auth.json (oauth)", None, env, scoped, entry)
            elif isinstance(entry.get("key"), str) and entry["key"]:
                return _Source("auth.json", entry["key"], env, scoped, entry)
        for name in p.env_vars:
            if process.get(name):
                return _Source(f"env {name}", process[name], env, scoped, entry)
        if p.config_api_key is not None:
            return _Source("models.json", p.config_api_key, env, scoped, entry)
        if p.origin == "models.json" and not p.auth_header:
            return _Source("none needed", None, env, scoped, entry)  # a local server such as Ollama
        return None

    def _configured(self, p: Provider, found: _Source) -> bool:
        """Whether ``found`` would resolve, judged without running a command (a ``!command`` counts)."""
        if any(not found.env.get(n) for n in p.url_env):
            return False
        if found.name in ("auth.json", "models.json") and found.value is not None:
            return is_configured(found.value, found.env)
        return True

    async def _find_key(self, p: Provider) -> tuple[str | None, str, str | None, dict[str, str]]:
        """The key from the first source of the order, resolved; raises :class:`MissingCredentials`."""
        found = self._first_source(p)
        if found is None:
            raise self._missing(p)
        if found.name == "auth.json (oauth)":
            assert found.entry is not None
            return await self._oauth_access(p, found.entry), found.name, None, found.scoped
        if found.name == "auth.json":
            assert found.value is not None
            key = await aresolve_key_value(found.value, env=found.env, source=self._auth_origin)
            if key is None:
                raise self._missing(p)
            return key, found.name, found.value, found.scoped
        if found.name == "models.json":
            assert found.value is not None
            merged = self._value_env(found.value, found.env)
            key = await aresolve_key_value(found.value, env=merged, source=self._models_origin())
            if not key:
                raise self._missing(p)
            return key, found.name, found.value, found.scoped
        return found.value, found.name, None, found.scoped  # --api-key, env, none needed

    def _missing(self, p: Provider) -> MissingCredentials:
        env, raw = self._env(), self._load_auth().get(p.id)
        return MissingCredentials(missing_credentials_message(p, self._store.path, self._models_json, env, raw))

    async def _oauth_access(self, p: Provider, entry: dict[str, Any]) -> str:
        """The stored login's access token, refreshed first when it expires within the margin (or the
        upstream refused it)."""
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
        if not isinstance(access, str) or not access:
            raise MissingCredentials(f"the stored {p.name} login has no access token; run 'switchboard login {p.id}'")
        return access

    def _models_origin(self) -> Origin | None:
        return command_origin(self._models_json) if self._models_json is not None else None

    def _value_env(self, value: str, env: Mapping[str, str]) -> Mapping[str, str]:
        """The environment a models.json value resolves in. A ``!command`` gets auth.json's ``env``
        entries only when auth.json may run commands itself: whoever could write that file must not set
        PATH (say) for a command from a file they could not write."""
        if value.startswith("!") and self._auth_origin.refusal is not None:
            return self._env()
        return env


def _retrieve(task: asyncio.Task[ResolvedAuth]) -> None:
    """Retrieve a resolution's exception even when every request waiting for it has gone."""
    if not task.cancelled():
        task.exception()


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
