"""The built-in providers, wire APIs, cloud adapters and logins, as the first extension registered.

:mod:`providers.extensions` registers this object before any installed package, through the same code an
installed extension goes through, so a built-in and an extension provider differ only in their origin.
Its modules are named in the tables of :mod:`providers.wire`, :mod:`providers.cloud` and
:mod:`providers.oauth` and imported on first use: boto3, google-auth and azure-identity stay out of
start-up time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from .cloud.base import CloudAdapter
    from .oauth.base import OAuthFlow
    from .wire.base import WireAPI

__all__ = ["BUILTIN", "BuiltinExtension"]


class BuiltinExtension:
    """A :class:`~providers.extensions.ProviderExtension` whose parts are this package's own modules."""

    def providers(self) -> Sequence[Mapping[str, Any]]:
        data = resources.files("providers") / "data"
        rows: list[dict[str, Any]] = msgspec.json.decode((data / "providers.json").read_bytes())
        for row in rows:
            models = data / "models" / f"{row.get('id')}.json"
            if models.is_file():
                row["models"] = msgspec.json.decode(models.read_bytes())
        return rows

    def wire_apis(self) -> Mapping[str, Callable[[], WireAPI]]:
        from .wire import _TRANSLATING

        # The table is read when the wire API is first needed, so a test may point a name elsewhere.
        return {name: _attribute(_TRANSLATING, name, "API") for name in _TRANSLATING}

    def adapters(self) -> Mapping[str, Callable[[], CloudAdapter]]:
        from .cloud import _MODULES

        return {name: _attribute(_MODULES, name, "ADAPTER") for name in _MODULES}

    def logins(self) -> Mapping[str, Callable[[], OAuthFlow]]:
        from .oauth import FLOWS

        return {pid: _attribute(FLOWS, pid, "FLOW") for pid in FLOWS}


def _attribute(table: Mapping[str, str], name: str, attribute: str) -> Callable[[], Any]:
    def load() -> Any:
        return getattr(importlib.import_module(table[name]), attribute)

    return load


BUILTIN = BuiltinExtension()
