"""GitHub Copilot login: the GitHub device flow, then the Copilot token exchange (facts §8).

1. ``POST https://{domain}/login/device/code`` (form ``client_id, scope``) → a user code to enter at
   ``verification_uri``.
2. Poll ``POST https://{domain}/login/oauth/access_token`` (one interval before the first poll;
   ``authorization_pending`` → poll again; ``slow_down`` → the server's ``interval``, else +5 s).
3. ``GET https://api.{domain}/copilot_internal/v2/token`` with the GitHub token → ``{token, expires_at}``.
4. Best effort: enable every catalog model (``POST {base}/models/{id}/policy``), then list what the account
   may use (``GET {base}/models``) → ``availableModelIds``.

Stored entry: ``refresh`` = the GitHub access token, ``access`` = the Copilot token,
``expires = expires_at*1000 - 5 min``, ``enterpriseUrl`` (GitHub Enterprise Server only) and
``availableModelIds``. An enterprise login also stores ``"env": {"COPILOT_ENTERPRISE_DOMAIN": domain}`` so the
cloud adapter (which sees the entry's ``env`` map, not its extras) can fall back to
``https://copilot-api.{domain}``. Refresh repeats step 3 with the stored GitHub token, then step 4's list.

Endpoint overrides (tests, unusual setups): ``SWITCHBOARD_GITHUB_URL`` replaces ``https://{domain}``,
``SWITCHBOARD_COPILOT_API_URL`` replaces ``https://api.{domain}``, ``SWITCHBOARD_COPILOT_BASE_URL``
replaces the Copilot API base URL derived from the token.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import InvalidRequest
from ..urlpath import path_segment
from .base import LoginUI, RefreshFailed

__all__ = [
    "CLIENT_ID",
    "COPILOT_HEADERS",
    "DEFAULT_BASE_URL",
    "FLOW",
    "CopilotFlow",
    "base_url_from_token",
    "exchange_token",
    "normalize_domain",
]

CLIENT_ID = "Iv1.b507a08c87ecfe98"
SCOPE = "read:user"
PROVIDER_ID = "github-copilot"
DEFAULT_DOMAIN = "github.com"
DEFAULT_BASE_URL = "https://api.individual.githubcopilot.com"
ENTERPRISE_ENV = "COPILOT_ENTERPRISE_DOMAIN"
DOMAIN_PROMPT = "Press Enter for github.com, or enter your GitHub Enterprise Server domain"
#: Sent on every Copilot request (token exchange, model list, chat).
COPILOT_HEADERS: Mapping[str, str] = {
    "User-Agent": "GitHubCopilotChat/0.35.0",
    "Editor-Version": "vscode/1.107.0",
    "Editor-Plugin-Version": "copilot-chat/0.35.0",
    "Copilot-Integration-Id": "vscode-chat",
}
_MODELS_API_VERSION = "2026-06-01"
_EXPIRY_MARGIN_MS = 5 * 60 * 1000
_DEFAULT_INTERVAL = 5.0
_MIN_INTERVAL = 1.0
_SLOW_DOWN_STEP = 5.0
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_PROXY_EP = re.compile(r"(?:^|;)\s*proxy-ep=([^;\s]+)")


def normalize_domain(text: str) -> str | None:
    """The hostname in ``text`` (``https://ghe.example.com/`` → ``ghe.example.com``); None when blank or
    not a host."""
    text = text.strip()
    if not text:
        return None
    try:
        parts = urlsplit(text if "://" in text else f"https://{text}")
        host = parts.hostname
    except ValueError:
        return None
    if not host or parts.scheme not in ("http", "https") or not re.fullmatch(r"[a-z0-9.-]+", host):
        return None
    return host


def github_url(domain: str, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get("SWITCHBOARD_GITHUB_URL") or f"https://{domain}").rstrip("/")


def api_url(domain: str, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get("SWITCHBOARD_COPILOT_API_URL") or f"https://api.{domain}").rstrip("/")


def base_url_from_token(token: str, enterprise: str | None = None) -> str:
    """The Copilot API base: the token's ``proxy-ep`` host with ``proxy.`` → ``api.``; else
    ``https://copilot-api.{enterprise}``; else the individual endpoint."""
    match = _PROXY_EP.search(token)
    if match:
        host = match.group(1)
        if host.startswith("proxy."):
            host = "api." + host[len("proxy.") :]
        return f"https://{host}"
    if enterprise:
        return f"https://copilot-api.{enterprise}"
    return DEFAULT_BASE_URL


def exchange_token(
    github_token: str, domain: str, client: httpx.Client, env: Mapping[str, str] | None = None
) -> tuple[str, int]:
    """The Copilot token for a GitHub token and its ``expires`` (ms epoch, 5 minutes early).

    Raises :class:`RefreshFailed` when GitHub refuses the token (4xx) or answers nonsense,
    :class:`httpx.HTTPError` when it cannot be reached.
    """
    headers = {
        **COPILOT_HEADERS,
        "Accept": "application/json",
        "Authorization": f"Bearer {github_token}",
    }
    resp = client.get(api_url(domain, env) + "/copilot_internal/v2/token", headers=headers)
    if resp.status_code >= 400:
        detail = _error_text(resp)
        if resp.status_code in (401, 403, 404):
            raise RefreshFailed(
                f"GitHub refused the Copilot token exchange ({resp.status_code}{': ' + detail if detail else ''}); "
                "check that this GitHub account has an active Copilot subscription"
            )
        raise RefreshFailed(f"the Copilot token exchange failed ({resp.status_code}{': ' + detail if detail else ''})")
    try:
        data = resp.json()
    except ValueError as exc:
        raise RefreshFailed("the Copilot token exchange answered something other than JSON") from exc
    token = data.get("token") if isinstance(data, dict) else None
    expires_at = data.get("expires_at") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token or not isinstance(expires_at, int | float):
        raise RefreshFailed("the Copilot token exchange answered without 'token' and 'expires_at'")
    return token, int(expires_at * 1000 - _EXPIRY_MARGIN_MS)


def copilot_base(token: str, enterprise: str | None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get("SWITCHBOARD_COPILOT_BASE_URL") or base_url_from_token(token, enterprise)).rstrip("/")


def available_model_ids(token: str, base: str, client: httpx.Client) -> list[str] | None:
    """The ids the account may use (``model_picker_enabled``, policy not disabled, tool calls supported);
    None when the list cannot be fetched."""
    headers = {
        **COPILOT_HEADERS,
        "Accept": "application/json",
        "Authorization": f"Bearer {token}",
        "X-GitHub-Api-Version": _MODELS_API_VERSION,
    }
    try:
        resp = client.get(base + "/models", headers=headers)
        if resp.status_code >= 400:
            return None
        data = resp.json()
    except (httpx.HTTPError, ValueError):
        return None
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return None
    ids: list[str] = []
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            continue
        policy = _dict(row.get("policy"))
        supports = _dict(_dict(row.get("capabilities")).get("supports"))
        if (
            row.get("model_picker_enabled") is True
            and policy.get("state") != "disabled"
            and (supports.get("tool_calls") is not False)
        ):
            ids.append(row["id"])
    return ids


def enable_models(token: str, base: str, model_ids: list[str], client: httpx.Client) -> None:
    """Accept each model's policy (``{"state": "enabled"}``), as VS Code does; failures are ignored."""
    headers = {
        **COPILOT_HEADERS,
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "openai-intent": "chat-policy",
        "x-interaction-type": "chat-policy",
    }

    def enable(model_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError, InvalidRequest):
            segment = path_segment(model_id, provider="GitHub Copilot")
            client.post(f"{base}/models/{segment}/policy", headers=headers, json={"state": "enabled"})

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(enable, model_ids))


def _catalog_ids() -> list[str]:
    from ..registry import load_builtin_models

    return [m.id for m in load_builtin_models(PROVIDER_ID)]


def _error_text(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:200]
    if isinstance(data, dict):
        for key in ("error_description", "message", "error"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value[:200]
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])[:200]
    return ""


class CopilotFlow:
    """The :class:`~providers.oauth.base.OAuthFlow` for GitHub Copilot."""

    provider_id = PROVIDER_ID
    label = "GitHub Copilot"

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        min_interval: float = _MIN_INTERVAL,
        catalog_ids: Callable[[], list[str]] = _catalog_ids,
    ) -> None:
        self._sleep = sleep
        self._min_interval = min_interval
        self._catalog_ids = catalog_ids

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=_TIMEOUT, follow_redirects=False)

    def login(self, ui: LoginUI) -> dict[str, Any]:
        answer = ui.ask(DOMAIN_PROMPT)
        enterprise: str | None = None
        if answer.strip():
            enterprise = normalize_domain(answer)
            if enterprise is None:
                raise RuntimeError(
                    f"{answer.strip()!r} is not a GitHub Enterprise Server domain (e.g. ghe.example.com)"
                )
            if enterprise == DEFAULT_DOMAIN:
                enterprise = None
        domain = enterprise or DEFAULT_DOMAIN
        try:
            with self._client() as client:
                github_token = self._device_flow(ui, domain, client)
                ui.say("Signed in to GitHub; fetching a Copilot token...")
                try:
                    access, expires = exchange_token(github_token, domain, client)
                except RefreshFailed as exc:
                    raise RuntimeError(str(exc)) from exc
                entry: dict[str, Any] = {
                    "type": "oauth",
                    "access": access,
                    "refresh": github_token,
                    "expires": expires,
                }
                if enterprise:
                    entry["enterpriseUrl"] = enterprise
                    entry["env"] = {ENTERPRISE_ENV: enterprise}
                base = copilot_base(access, enterprise)
                enable_models(access, base, self._catalog_ids(), client)
                ids = available_model_ids(access, base, client)
                if ids is not None:
                    entry["availableModelIds"] = ids
        except httpx.HTTPError as exc:
            raise RuntimeError(f"could not reach GitHub at {domain} ({type(exc).__name__}: {exc})") from exc
        return entry

    def _device_flow(self, ui: LoginUI, domain: str, client: httpx.Client) -> str:
        base = github_url(domain)
        resp = client.post(
            base + "/login/device/code",
            data={"client_id": CLIENT_ID, "scope": SCOPE},
            headers={"Accept": "application/json", "User-Agent": COPILOT_HEADERS["User-Agent"]},
        )
        if resp.status_code >= 400:
            raise RuntimeError(f"GitHub refused to start the device login ({resp.status_code}: {_error_text(resp)})")
        start = resp.json()
        device_code = start.get("device_code")
        user_code = start.get("user_code")
        uri = start.get("verification_uri")
        if not isinstance(device_code, str) or not isinstance(user_code, str) or not isinstance(uri, str):
            raise RuntimeError("GitHub's device login answer lacks device_code, user_code or verification_uri")
        if urlsplit(uri).scheme not in ("http", "https"):
            raise RuntimeError(f"GitHub's verification URL {uri!r} is not an http(s) URL")
        interval = _number(start.get("interval"), _DEFAULT_INTERVAL)
        expires_in = _number(start.get("expires_in"), 900.0)
        ui.say(f"Enter the code {user_code} at {uri}")
        ui.open_url(uri)
        deadline = time.monotonic() + expires_in
        while True:
            interval = max(interval, self._min_interval)
            self._sleep(interval)
            if time.monotonic() > deadline:
                raise RuntimeError("the GitHub device code expired before the login was approved; try again")
            poll = client.post(
                base + "/login/oauth/access_token",
                data={
                    "client_id": CLIENT_ID,
                    "device_code": device_code,
                    "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                },
                headers={"Accept": "application/json", "User-Agent": COPILOT_HEADERS["User-Agent"]},
            )
            try:
                data = poll.json()
            except ValueError:
                data = {}
            if not isinstance(data, dict):
                data = {}
            token = data.get("access_token")
            if isinstance(token, str) and token:
                return token
            error = data.get("error")
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval = _number(data.get("interval"), interval + _SLOW_DOWN_STEP)
                continue
            if error == "access_denied":
                raise RuntimeError("the GitHub login was denied")
            if error == "expired_token":
                raise RuntimeError("the GitHub device code expired before the login was approved; try again")
            raise RuntimeError(f"GitHub login failed ({poll.status_code}: {_error_text(poll) or error or 'no token'})")

    def refresh(self, entry: dict[str, Any]) -> dict[str, Any]:
        github_token = entry.get("refresh")
        if not isinstance(github_token, str) or not github_token:
            raise RefreshFailed("the stored login has no GitHub token")
        enterprise = entry.get("enterpriseUrl") if isinstance(entry.get("enterpriseUrl"), str) else None
        domain = enterprise or DEFAULT_DOMAIN
        with self._client() as client:
            try:
                access, expires = exchange_token(github_token, domain, client)
            except httpx.HTTPError as exc:
                from ..errors import UpstreamUnreachable

                raise UpstreamUnreachable(
                    f"could not reach GitHub at {domain} to refresh the Copilot token ({type(exc).__name__}); retry"
                ) from exc
            new: dict[str, Any] = {"type": "oauth", "access": access, "refresh": github_token, "expires": expires}
            ids = available_model_ids(access, copilot_base(access, enterprise), client)
        if ids is not None:
            new["availableModelIds"] = ids
        return new


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else default


FLOW = CopilotFlow()
