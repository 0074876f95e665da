"""How to make a provider usable: one text, for a request's 401 and for ``switchboard doctor``.

:func:`how_to_fix` looks at what is configured, in the resolution order's terms (see
:mod:`providers.credentials`), and answers with the first thing that applies:

0. an ``auth.json`` entry that is not a credential at all (``"openai": 5``) → fix or remove it;
1. a stored OAuth login that is not usable → log in again;
2. a stored ``auth.json`` key that does not resolve (its URL ids being set) → what it refers to;
3. a ``models.json`` provider → its ``apiKey`` (and any unset URL id);
4. otherwise the ways to give it a credential: the adapter's own advice (``gcloud auth ...``), the env
   vars, ``switchboard login`` (subscription or key), plus any unset URL id.

Never a secret: a literal key is shown as ``sk-…abcd``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .oauth import flow_for, login_ids
from .provider_env import scoped_env
from .registry import Provider

__all__ = ["describe_key_value", "how_to_fix", "mask_key", "missing_credentials_message", "takes_api_key"]

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_REFERENCE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")


def missing_credentials_message(
    p: Provider, auth_path: Path, models_json: Path | None, env: Mapping[str, str], entry: object
) -> str:
    """The 401 a request gets when ``p`` has no credential."""
    fix = how_to_fix(p, auth_path, models_json, env, entry)
    if p.origin == "models.json":
        return f"no API key for {p.id!r}: {fix}"
    return f"no credentials for {p.name} ({p.id}): {fix} (or start with 'switchboard serve --api-key {p.id}=...')"


def how_to_fix(p: Provider, auth_path: Path, models_json: Path | None, env: Mapping[str, str], raw: object) -> str:
    """What to do so that ``p`` becomes usable (see the module docstring for the order); ``raw`` is the
    provider's ``auth.json`` entry as stored, whatever its shape."""
    if raw is not None and not _is_credential(raw):
        return (
            f"the entry for {p.id!r} in {auth_path} is not a credential (expected "
            '{"type": "api_key", "key": "..."} or a login); fix or remove it, '
            f"or run 'switchboard login {p.id}'"
        )
    entry = raw if isinstance(raw, dict) else None
    merged = {**env, **scoped_env(entry)}
    missing_url = [n for n in p.url_env if not merged.get(n)]
    url_part = f"set {' and '.join(missing_url)}" if missing_url else ""
    if entry is not None and entry.get("type") == "oauth":
        return f"the stored login is not usable; run 'switchboard login {p.id}' again"
    if entry is not None and isinstance(entry.get("key"), str) and entry["key"] and not url_part:
        what = describe_key_value(entry["key"], merged)
        return (
            f"the key stored in {auth_path} ({what}) does not resolve; set what it refers to, "
            f"or run 'switchboard login {p.id}' again"
        )
    where = models_json or "models.json"
    if p.origin == "models.json":
        if p.config_api_key is not None:
            what = describe_key_value(p.config_api_key, merged)
            key_part = f"providers.{p.id}.apiKey in {where} did not resolve ({what}); make it resolve"
        else:
            key_part = f"set providers.{p.id}.apiKey in {where} (authHeader is true)"
        return f"{url_part}; {key_part}" if url_part else key_part
    return _ways(p, env, entry, merged, url_part)


def _is_credential(raw: object) -> bool:
    if not isinstance(raw, dict):
        return False
    if raw.get("type") == "oauth":
        return True
    return raw.get("key") is None or isinstance(raw.get("key"), str)


def takes_api_key(p: Provider) -> bool:
    """Whether storing an API key makes sense: a subscription-only provider (Codex, Copilot) takes none."""
    if p.id in login_ids():
        return any(name.endswith("_API_KEY") for name in p.env_vars)
    return bool(p.env_vars) or p.origin == "models.json"


def mask_key(key: str) -> str:
    """A hint that identifies a literal key without revealing it: ``sk-…abcd`` (``…`` when short)."""
    if len(key) < 16:
        return "…"
    return f"{key[:3]}…{key[-4:]}"


def describe_key_value(value: str, env: Mapping[str, str]) -> str:
    """How a stored key value resolves, never the secret itself."""
    if value.startswith("!"):
        return "a !command"
    refs = _REFERENCE.findall(value)
    if refs:
        return "from " + ", ".join(dict.fromkeys(r.strip("${}") for r in refs))
    if _ENV_NAME.match(value) and env.get(value):
        return f"from env {value}"
    return f"key {mask_key(value)}"


def _ways(
    p: Provider, env: Mapping[str, str], entry: dict[str, Any] | None, merged: Mapping[str, str], url_part: str
) -> str:
    ways: list[str] = []
    sub = p.id in login_ids()
    has_key = bool(entry and entry.get("key")) or any(env.get(n) for n in p.env_vars)
    hint = p.login_hint if p.adapter and p.login_hint and not p.login_hint.startswith("switchboard login") else ""
    if hint:
        ways.append(hint)
    if not has_key and p.env_vars and not all(n in hint for n in p.env_vars):
        ways.append("set " + " or ".join(p.env_vars))
    if sub and _has_flow(p.id):
        ways.append(f"run 'switchboard login {p.id}'")
    if not has_key and takes_api_key(p):
        ways.append(f"run 'switchboard login {p.id}{' --key' if sub else ''}'")
    if p.adapter == "azure" and not (merged.get("AZURE_OPENAI_BASE_URL") or merged.get("AZURE_OPENAI_RESOURCE_NAME")):
        url_part = "set AZURE_OPENAI_BASE_URL or AZURE_OPENAI_RESOURCE_NAME"
    if not ways and sub:
        ways.append(f"the {p.name} subscription login is not available in this build")
    key_part = ("; or " if hint else " or ").join(dict.fromkeys(ways))
    if url_part and key_part:
        return f"{url_part}, and {key_part}"
    return url_part or key_part or p.login_hint or f"run 'switchboard login {p.id}'"


def _has_flow(provider_id: str) -> bool:
    try:
        return flow_for(provider_id) is not None
    except Exception:  # a login module absent or broken in this build: offer no login
        return False
