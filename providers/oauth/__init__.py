"""Subscription logins (OAuth) and keeping their tokens fresh across processes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..authstore import AuthStore
from ..errors import MissingCredentials
from .base import OAuthFlow, RefreshFailed

__all__ = ["FLOWS", "REFRESH_MARGIN_MS", "ensure_fresh", "flow_for", "login_ids", "needs_refresh"]

#: provider id → module exposing ``FLOW``, in the order `switchboard login` lists them: the built-in
#: logins (:mod:`providers.builtins`); an extension's follow (:mod:`providers.extensions`).
FLOWS = {
    "openai-codex": "providers.oauth.codex",
    "anthropic": "providers.oauth.anthropic",
    "github-copilot": "providers.oauth.copilot",
}
#: Refresh this long before ``expires`` (ms): a request must not start with a token about to lapse. The
#: credential cache drops a cached login by the same margin.
REFRESH_MARGIN_MS = 60_000


def flow_for(provider_id: str) -> OAuthFlow | None:
    """The provider's login (built in or an extension's); None when it has none or its module is absent."""
    from ..extensions import active  # that module imports this package's contract

    return active().flow(provider_id)


def login_ids() -> list[str]:
    """Every provider id with a login, in the order ``switchboard login`` lists them."""
    from ..extensions import active

    return active().login_ids()


def needs_refresh(entry: dict[str, Any], now_ms: float | None = None) -> bool:
    expires = entry.get("expires")
    now = time.time() * 1000 if now_ms is None else now_ms
    return not isinstance(expires, int | float) or expires - REFRESH_MARGIN_MS <= now


async def ensure_fresh(store: AuthStore, provider_id: str, *, force: bool = False) -> dict[str, Any]:
    """The provider's OAuth entry, refreshed if it is about to expire (or ``force``: after a 401).

    One refresh at a time across every process sharing ``auth.json``: lock, re-read, use a token another
    process already refreshed, else refresh and persist before unlocking. A failed refresh raises
    :class:`MissingCredentials` telling the user to log in again.
    """
    entry = store.get(provider_id)
    if entry is None or entry.get("type") != "oauth":
        raise MissingCredentials(f"no {provider_id} login stored; run 'switchboard login {provider_id}'")
    if not force and not needs_refresh(entry):
        return entry
    seen_access = entry.get("access")
    return await asyncio.to_thread(_refresh_locked, store, provider_id, force, seen_access)


def _refresh_locked(store: AuthStore, provider_id: str, force: bool, seen_access: Any) -> dict[str, Any]:
    flow = flow_for(provider_id)
    if flow is None:
        raise MissingCredentials(f"{provider_id} logins cannot be refreshed by this build")
    with store.locked():
        entry = store.get(provider_id)
        if entry is None or entry.get("type") != "oauth":
            raise MissingCredentials(f"no {provider_id} login stored; run 'switchboard login {provider_id}'")
        refreshed_elsewhere = entry.get("access") != seen_access
        if refreshed_elsewhere and not needs_refresh(entry):
            return entry  # another process refreshed while this one waited for the lock
        if not force and not needs_refresh(entry):
            return entry
        try:
            new = flow.refresh(entry)
        except RefreshFailed as exc:
            raise MissingCredentials(
                f"the stored {provider_id} login could not be refreshed ({exc}); "
                f"run 'switchboard login {provider_id}' again"
            ) from exc
        store.set(provider_id, {**entry, **new, "type": "oauth"})
        return store.get(provider_id) or new
