"""Acme's login: the OAuth 2.0 device authorization grant (RFC 8628), with refresh tokens.

1. ``POST {auth}/oauth/device/code`` (form ``client_id``, ``scope``) → ``device_code``, ``user_code``,
   ``verification_uri`` (and ``verification_uri_complete``), ``expires_in``, ``interval``.
2. The user opens the verification URI and enters the code; meanwhile ``POST {auth}/oauth/token`` (form
   ``grant_type=urn:ietf:params:oauth:grant-type:device_code``, ``device_code``, ``client_id``) is polled
   every ``interval`` seconds: ``authorization_pending`` → poll again; ``slow_down`` → poll less often
   (the server's new ``interval``, else 5 s more, RFC 8628 §3.5); ``access_denied`` / ``expired_token``
   end the login.
3. Refresh: ``POST {auth}/oauth/token`` (``grant_type=refresh_token``); ``invalid_grant`` means the user
   must log in again.

Stored in ``auth.json`` under ``acme``: ``{"type": "oauth", "access", "refresh", "expires": <ms epoch>}``.
``ACME_AUTH_URL`` replaces ``https://auth.acme.example`` (tests point it at a local server).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from providers.oauth.base import LoginUI, RefreshFailed

__all__ = ["CLIENT_ID", "FLOW", "AcmeDeviceLogin"]

CLIENT_ID = "switchboard-acme"
SCOPE = "generate offline_access"
DEFAULT_AUTH_URL = "https://auth.acme.example"
_DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_SLOW_DOWN_STEP = 5.0
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def auth_url() -> str:
    return (os.environ.get("ACME_AUTH_URL") or DEFAULT_AUTH_URL).rstrip("/")


class AcmeDeviceLogin:
    """The :class:`~providers.oauth.base.OAuthFlow` of Acme."""

    provider_id = "acme"
    label = "Acme (device code)"

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep

    def login(self, ui: LoginUI) -> dict[str, Any]:
        base = auth_url()
        try:
            with httpx.Client(timeout=_TIMEOUT) as client:
                start = _json(client.post(base + "/oauth/device/code", data={"client_id": CLIENT_ID, "scope": SCOPE}))
                device_code, user_code = start.get("device_code"), start.get("user_code")
                uri = start.get("verification_uri_complete") or start.get("verification_uri")
                if not isinstance(device_code, str) or not isinstance(user_code, str) or not isinstance(uri, str):
                    raise RuntimeError(
                        f"Acme's device authorization answer lacks device_code, user_code or uri: {start}"
                    )
                ui.say(f"Enter the code {user_code} at {start.get('verification_uri') or uri}")
                ui.open_url(uri)
                tokens = self._poll(
                    client,
                    base,
                    device_code,
                    _seconds(start.get("interval"), 5.0),
                    _seconds(start.get("expires_in"), 900.0),
                )
        except httpx.HTTPError as exc:
            raise RuntimeError(f"could not reach Acme at {base} ({type(exc).__name__}); check ACME_AUTH_URL") from exc
        return _entry(tokens, None)

    def _poll(
        self, client: httpx.Client, base: str, device_code: str, interval: float, lifetime: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + lifetime
        form = {"grant_type": _DEVICE_GRANT, "device_code": device_code, "client_id": CLIENT_ID}
        while True:
            self._sleep(interval)
            if time.monotonic() > deadline:
                raise RuntimeError("the code expired before the login was approved; run 'switchboard login acme' again")
            resp = client.post(base + "/oauth/token", data=form)
            data = _json(resp)
            if resp.status_code < 400 and isinstance(data.get("access_token"), str):
                return data
            error = data.get("error")
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval = _seconds(data.get("interval"), interval + _SLOW_DOWN_STEP)
                continue
            if error == "access_denied":
                raise RuntimeError("the login was denied at Acme")
            if error == "expired_token":
                raise RuntimeError("the code expired before the login was approved; run 'switchboard login acme' again")
            raise RuntimeError(f"Acme refused the login ({resp.status_code}: {error or 'no token'})")

    def refresh(self, entry: dict[str, Any]) -> dict[str, Any]:
        refresh = entry.get("refresh")
        if not isinstance(refresh, str) or not refresh:
            raise RefreshFailed("the stored Acme login has no refresh token")
        form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": CLIENT_ID}
        try:
            with httpx.Client(timeout=_TIMEOUT) as client:
                resp = client.post(auth_url() + "/oauth/token", data=form)
        except httpx.HTTPError as exc:
            from providers.errors import UpstreamUnreachable

            raise UpstreamUnreachable(
                f"could not reach Acme to refresh the login ({type(exc).__name__}); retry"
            ) from exc
        data = _json(resp)
        if resp.status_code >= 400 or not isinstance(data.get("access_token"), str):
            raise RefreshFailed(f"Acme refused the refresh token ({data.get('error') or resp.status_code})")
        return _entry(data, refresh)


def _entry(tokens: dict[str, Any], previous_refresh: str | None) -> dict[str, Any]:
    """The auth.json entry; a server that does not rotate refresh tokens keeps the previous one valid."""
    refresh = tokens.get("refresh_token") or previous_refresh
    if not isinstance(refresh, str):
        raise RuntimeError("Acme issued no refresh token; the login could not be renewed")
    expires_in = _seconds(tokens.get("expires_in"), 3600.0)
    return {
        "type": "oauth",
        "access": tokens["access_token"],
        "refresh": refresh,
        "expires": int((time.time() + expires_in) * 1000),
    }


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _seconds(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else default


FLOW = AcmeDeviceLogin()
