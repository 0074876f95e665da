"""A provider's environment: the values its ``auth.json`` entry scopes to it, and its URL placeholders.

One place for both rules, used by the credential resolver, the Cloudflare adapter and ``switchboard
doctor``:

* :func:`scoped_env` — the ``"env"`` map of a provider's ``auth.json`` entry. Its values win over the
  process environment for that provider only (``{**os.environ, **scoped_env(entry)}``). Non-string values
  are ignored: an environment holds strings, and ``"1"`` is what a user means by ``1`` only sometimes.
* :func:`fill_placeholders` — ``{NAME}`` in a base URL replaced by ``NAME`` from that merged environment;
  an unset or empty one is a :class:`MissingCredentials` naming it and where to set it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import MissingCredentials
from .registry import Provider

__all__ = ["PLACEHOLDER", "fill_placeholders", "missing_env_message", "scoped_env"]

PLACEHOLDER = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


def scoped_env(entry: Mapping[str, Any] | None) -> dict[str, str]:
    raw = entry.get("env") if entry is not None else None
    return {str(k): v for k, v in raw.items() if isinstance(v, str)} if isinstance(raw, dict) else {}


def fill_placeholders(
    provider: Provider, url: str, env: Mapping[str, str], hints: Mapping[str, str] | None = None
) -> str:
    """``url`` with every ``{NAME}`` filled from ``env``; ``hints`` say what a name is, for the message."""

    def sub(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        if not value:
            name = match.group(1)
            raise MissingCredentials(missing_env_message(provider, name, (hints or {}).get(name)))
        return value

    return PLACEHOLDER.sub(sub, url)


def missing_env_message(provider: Provider, name: str, hint: str | None = None) -> str:
    what = f" ({hint})" if hint else ""
    return (
        f'{provider.name} needs {name}{what}: set it in the environment, or under "env" in the '
        f"{provider.id!r} entry of auth.json"
    )
