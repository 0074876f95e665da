"""The contract of an extension (:mod:`providers.extensions`): what its entry point names, the report
of what became of it, and the operator's settings. Every part an extension contributes implements the
contract its built-in counterparts implement: :class:`providers.wire.base.WireAPI`,
:class:`providers.cloud.base.CloudAdapter`, :class:`providers.oauth.base.OAuthFlow`, and provider rows
of ``data/providers.json``'s shape (:class:`providers.registry.ProviderRow`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import msgspec

from .cloud.base import CloudAdapter
from .oauth.base import OAuthFlow
from .wire.base import WireAPI

__all__ = ["ExtensionBase", "ExtensionReport", "ExtensionsConfig", "ProviderExtension"]


class ExtensionsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``config.json`` ``"extensions"``: ``{"allow_override": ["openai"], "disabled": ["switchboard-acme"]}``."""

    #: Built-in names (provider ids, wire APIs, adapters, logins by provider id) an extension may replace.
    allow_override: list[str] = []
    #: Packages (distribution names) or entry-point names not to load at all.
    disabled: list[str] = []


class ProviderExtension(Protocol):
    """What an entry point of the ``switchboard.providers`` group names. Every hook is called once, at
    start, and may raise (the extension is then disabled and the error reported)."""

    def providers(self) -> Sequence[Mapping[str, Any]]:
        """Provider rows: the fields of a ``providers.json`` row (``id``, ``name``, ``api``, ``baseUrl``,
        ``envVars``, ``auth``, ``headers``, ``compat``, ``loginHint``, ``adapter``...) and ``models``, a
        list of catalog rows (``id``, ``name``, ``contextWindow``, ``maxTokens``, ``cost``...)."""
        ...

    def wire_apis(self) -> Mapping[str, Callable[[], WireAPI]]:
        """Wire API name → a callable returning the :class:`WireAPI` (its ``name`` equal to the key)."""
        ...

    def adapters(self) -> Mapping[str, Callable[[], CloudAdapter]]:
        """Adapter name (a row's ``adapter``) → a callable returning the :class:`CloudAdapter`."""
        ...

    def logins(self) -> Mapping[str, Callable[[], OAuthFlow]]:
        """Provider id → a callable returning its :class:`OAuthFlow` (``provider_id`` equal to the key),
        listed by ``switchboard login`` and refreshed like the built-in logins."""
        ...


class ExtensionBase:
    """Defaults for the hooks an extension does not need: it subclasses this and overrides the others."""

    def providers(self) -> Sequence[Mapping[str, Any]]:
        return ()

    def wire_apis(self) -> Mapping[str, Callable[[], WireAPI]]:
        return {}

    def adapters(self) -> Mapping[str, Callable[[], CloudAdapter]]:
        return {}

    def logins(self) -> Mapping[str, Callable[[], OAuthFlow]]:
        return {}


@dataclass(frozen=True, slots=True)
class ExtensionReport:
    """What became of one entry point: what it contributes, or why it is not used."""

    entry_point: str
    #: ``module:attribute`` the entry point names.
    target: str
    package: str
    version: str
    status: Literal["active", "failed", "disabled"]
    problem: str | None = None
    providers: tuple[str, ...] = ()
    wire_apis: tuple[str, ...] = ()
    adapters: tuple[str, ...] = ()
    logins: tuple[str, ...] = ()
    #: Built-in names this extension replaces (allowed by ``extensions.allow_override``).
    overrides: tuple[str, ...] = ()

    def line(self) -> str:
        """One line for the log and the CLI listings."""
        who = f"extension {self.package} {self.version} (entry point {self.entry_point} = {self.target})"
        if self.status == "failed":
            return f"{who} is disabled: {self.problem}"
        if self.status == "disabled":
            return f"{who} is disabled by config.json extensions.disabled"
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("providers", self.providers),
                ("wire APIs", self.wire_apis),
                ("adapters", self.adapters),
                ("logins", self.logins),
                ("replacing built-in", self.overrides),
            )
            if names
        ]
        return f"{who} loaded: {'; '.join(parts) or 'contributes nothing'}"

    def as_json(self) -> dict[str, Any]:
        return {
            "entry_point": self.entry_point,
            "target": self.target,
            "package": self.package,
            "version": self.version,
            "status": self.status,
            "problem": self.problem,
            "providers": list(self.providers),
            "wire_apis": list(self.wire_apis),
            "adapters": list(self.adapters),
            "logins": list(self.logins),
            "overrides": list(self.overrides),
        }
