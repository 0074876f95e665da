"""The Acme provider as a Switchboard extension.

``EXTENSION`` is what the ``switchboard.providers`` entry point names (see ``pyproject.toml``): an
:class:`~providers.extensions.ExtensionBase` subclass that contributes one provider row, one wire API and
one login. Switchboard calls each hook once at start and checks what it returns against the contracts
the built-ins implement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from providers.extensions import ExtensionBase
from providers.oauth.base import OAuthFlow
from providers.wire.base import WireAPI

from .login import FLOW
from .wire import API, API_NAME

__all__ = ["EXTENSION", "AcmeExtension"]

PROVIDER_ID = "acme"


class AcmeExtension(ExtensionBase):
    def providers(self) -> Sequence[Mapping[str, Any]]:
        # The fields of a data/providers.json row, and the catalog inline.
        return [
            {
                "id": PROVIDER_ID,
                "name": "Acme",
                "api": API_NAME,
                "baseUrl": "https://api.acme.example/v1",
                "auth": "bearer",
                "loginHint": "switchboard login acme",
                "models": [
                    {
                        "id": "acme-1",
                        "name": "Acme One",
                        "contextWindow": 32000,
                        "maxTokens": 4096,
                        "cost": {"input": 0.5, "output": 1.5},
                    },
                    {"id": "acme-1-mini", "name": "Acme One Mini", "contextWindow": 16000, "maxTokens": 2048},
                ],
            }
        ]

    def wire_apis(self) -> Mapping[str, Callable[[], WireAPI]]:
        return {API_NAME: lambda: API}

    def logins(self) -> Mapping[str, Callable[[], OAuthFlow]]:
        return {PROVIDER_ID: lambda: FLOW}


EXTENSION = AcmeExtension()
