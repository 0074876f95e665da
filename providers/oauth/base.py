"""The contract of a subscription login (OAuth) and the terminal it talks through.

A module in ``providers/oauth/`` (``codex``, ``anthropic``, ``copilot``) exposes ``FLOW``, an
:class:`OAuthFlow`. ``switchboard login PROVIDER`` calls :meth:`OAuthFlow.login` with a :class:`LoginUI`
and stores the returned entry in ``auth.json``. The credential resolver calls :meth:`OAuthFlow.refresh`
shortly before ``expires`` (and after an upstream 401), under the ``auth.json`` lock, and persists the
result before unlocking (see :func:`providers.oauth.ensure_fresh`).

Stored entry (``auth.json``): ``{"type": "oauth", "access": str, "refresh": str, "expires": <ms epoch>,
...extra}``; extras are flow-specific (``accountId``, ``enterpriseUrl``, ``availableModelIds``).

Every endpoint a flow talks to is configurable through environment variables (the flow documents
them), so tests point them at fakes on 127.0.0.1 and GitHub Enterprise works.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["LoginUI", "OAuthFlow", "RefreshFailed"]


class RefreshFailed(Exception):
    """The provider refused the refresh token (revoked, expired); the user must log in again."""


class LoginUI(Protocol):
    """The terminal a login talks through (a real TTY in the CLI, a pseudo-terminal in tests)."""

    def say(self, text: str) -> None: ...

    def ask(self, prompt: str, *, secret: bool = False) -> str:
        """A line from the user (no echo when ``secret``); EOF raises EOFError."""
        ...

    def open_url(self, url: str) -> None:
        """Show ``url`` and try a browser; never fails."""
        ...


class OAuthFlow(Protocol):
    provider_id: str
    #: Shown in `switchboard login`'s list.
    label: str

    def login(self, ui: LoginUI) -> dict[str, Any]:
        """Run the interactive flow; return the auth.json entry. Raises RuntimeError with a clear message."""
        ...

    def refresh(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A new entry from ``entry``'s refresh token (blocking: called in a worker thread under the
        auth.json lock). Raises :class:`RefreshFailed` when the provider refuses."""
        ...
