"""Credential resolution: which key a provider's request carries, and where it came from.

The order, first match wins (``providers.md``, "Resolution Order"):

1. ``switchboard serve --api-key PROVIDER=KEY`` (a literal)
2. ``auth.json`` entry: ``{"type": "api_key", "key": <key value>}`` or ``{"type": "oauth", "access": ...}``
3. the provider's environment variable(s), first non-empty (``ANTHROPIC_OAUTH_TOKEN`` before
   ``ANTHROPIC_API_KEY``)
4. the ``apiKey`` of the provider in ``models.json``

Key values in 2 and 4 go through :mod:`providers.keyvalue` (``!command``, ``$NAME``, env var name, literal).
An ``auth.json`` entry may carry ``"env": {...}``: provider-scoped values (e.g. ``CLOUDFLARE_ACCOUNT_ID``)
that win over the process environment.

Resolution runs once per provider and is cached (``!command`` may take seconds; the hot path must not
touch files). :meth:`Credentials.invalidate` drops the cache when a config file changes;
:meth:`Credentials.after_unauthorized` drops one provider's entry and its cached ``!command`` output so
the next request resolves again (an upstream 401 after a key rotation).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .authstore import AuthStore
from .errors import MissingCredentials
from .keyvalue import aresolve_key_value, forget_command, is_configured
from .registry import Provider

__all__ = ["Credentials", "ResolvedAuth"]

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
        self._auth_data: dict[str, Any] | None = None

    @property
    def auth_path(self) -> Path:
        return self._store.path

    def invalidate(self) -> None:
        self._cache.clear()
        self._auth_data = None

    def after_unauthorized(self, provider_id: str) -> bool:
        """Forget a provider's resolved key; True if resolving again may give another key."""
        resolved = self._cache.pop(provider_id, None)
        self._auth_data = None
        if resolved is not None and resolved.key_value and resolved.key_value.startswith("!"):
            forget_command(resolved.key_value)
            return True
        return False

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def _auth_entry(self, provider_id: str) -> dict[str, Any] | None:
        if self._auth_data is None:
            self._auth_data = self._store.read()
        entry = self._auth_data.get(provider_id)
        return entry if isinstance(entry, dict) else None

    def cached(self, provider_id: str) -> ResolvedAuth | None:
        """The hot path: a dict lookup."""
        return self._cache.get(provider_id)

    async def resolve(self, provider: Provider) -> ResolvedAuth:
        """Resolve (or return the cached) auth for ``provider``; raises :class:`MissingCredentials`."""
        hit = self._cache.get(provider.id)
        if hit is not None:
            return hit
        key, source, key_value, scoped = await self._find_key(provider)
        env = {**self._env(), **scoped}
        base_url = _fill_placeholders(provider, env)
        headers: dict[str, str] = {"content-type": "application/json"}
        for name, value in provider.headers.items():
            resolved = await aresolve_key_value(value, env=env, source=self._source_file(provider))
            if resolved is None:
                raise MissingCredentials(
                    f"header {name!r} of provider {provider.id!r} did not resolve; check its value in "
                    f"{self._models_json or 'models.json'}"
                )
            headers[name] = resolved
        if key is not None:
            headers.update(_auth_headers(provider, key))
        resolved_auth = ResolvedAuth(base_url, headers, source, key_value, scoped)
        self._cache[provider.id] = resolved_auth
        return resolved_auth

    def available(self, provider: Provider) -> bool:
        """Whether ``provider`` has a credential, without running any ``!command``."""
        env = self._env()
        entry = self._auth_entry(provider.id)
        scoped = entry.get("env", {}) if entry else {}
        if any(not (scoped.get(n) or env.get(n)) for n in provider.url_env):
            return False
        if provider.id in self._cli:
            return True
        if entry is not None:
            if entry.get("type") == "oauth":
                return bool(entry.get("access"))
            if isinstance(entry.get("key"), str) and is_configured(entry["key"], env):
                return True
        if any(env.get(n) for n in provider.env_vars):
            return True
        if provider.config_api_key is not None:
            return is_configured(provider.config_api_key, env)
        return provider.origin == "models.json"

    def source_of(self, provider: Provider) -> str | None:
        """Where the credential would come from (``--api-key``, ``auth.json``, ``env X``...), never the key."""
        if not self.available(provider):
            return None
        env = self._env()
        if provider.id in self._cli:
            return "--api-key"
        entry = self._auth_entry(provider.id)
        if entry is not None and (entry.get("access") or entry.get("key")):
            return "auth.json (oauth)" if entry.get("type") == "oauth" else "auth.json"
        for name in provider.env_vars:
            if env.get(name):
                return f"env {name}"
        return "models.json" if provider.config_api_key is not None else "none needed"

    async def _find_key(self, p: Provider) -> tuple[str | None, str, str | None, dict[str, str]]:
        env = self._env()
        entry = self._auth_entry(p.id)
        scoped: dict[str, str] = {}
        if entry is not None and isinstance(entry.get("env"), dict):
            scoped = {str(k): str(v) for k, v in entry["env"].items()}
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
            key = await aresolve_key_value(p.config_api_key, env={**env, **scoped}, source=self._models_json)
            if key:
                return key, "models.json", p.config_api_key, scoped
        if p.origin == "models.json" and p.config_api_key is None:
            return None, "none needed", None, scoped  # a local server such as Ollama
        raise MissingCredentials(_missing_message(p, self._store.path, self._models_json))

    async def _from_auth_entry(
        self, p: Provider, entry: dict[str, Any], env: Mapping[str, str]
    ) -> tuple[str, str, str | None] | None:
        if entry.get("type") == "oauth":
            access = entry.get("access")
            expires = entry.get("expires")
            if isinstance(expires, int | float) and expires <= time.time() * 1000:
                raise MissingCredentials(f"the stored {p.name} login has expired; run 'switchboard login {p.id}' again")
            return (access, "auth.json (oauth)", None) if isinstance(access, str) and access else None
        value = entry.get("key")
        if not isinstance(value, str) or not value:
            return None
        key = await aresolve_key_value(value, env=env, source=self._store.path)
        if key is None:
            raise MissingCredentials(
                f"the {p.id!r} key in {self._store.path} did not resolve (a !command failed or printed "
                "nothing, or a referenced environment variable is unset); fix the entry or run "
                f"'switchboard login {p.id}'"
            )
        return key, "auth.json", value

    def _source_file(self, provider: Provider) -> Path | None:
        return self._models_json


def _auth_headers(p: Provider, key: str) -> dict[str, str]:
    if p.auth_header or p.auth == "bearer":
        return {"authorization": f"Bearer {key}"}
    if p.auth == "x-api-key":
        return {"x-api-key": key}
    if p.auth == "x-goog-api-key":
        return {"x-goog-api-key": key}
    if p.auth == "api-key":
        return {"api-key": key}
    return {}


def _fill_placeholders(p: Provider, env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        value = env.get(m.group(1))
        if not value:
            raise MissingCredentials(f"{p.name} needs {m.group(1)}: set it in the environment")
        return value

    return _PLACEHOLDER.sub(sub, p.base_url)


def _missing_message(p: Provider, auth_path: Path, models_json: Path | None) -> str:
    if p.origin == "models.json":
        return f"no API key for {p.id!r}: set providers.{p.id}.apiKey in {models_json}"
    ways = []
    if p.env_vars:
        ways.append("set " + " or ".join(p.env_vars))
    ways.append(f"run 'switchboard login {p.id}'")
    ways.append(f"add it to {auth_path}")
    ways.append(f"or start with 'switchboard serve --api-key {p.id}=...'")
    return f"no credentials for {p.name} ({p.id}): " + ", ".join(ways)
