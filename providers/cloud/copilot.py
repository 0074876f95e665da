"""GitHub Copilot (facts §2, §8): one provider, three wire APIs, a short-lived Copilot token.

**Credential.** The ordinary order finds the key:

* ``auth.json`` (``switchboard login github-copilot``): the Copilot token itself (``access``); the credential
  resolver refreshes it through :data:`providers.oauth.copilot.FLOW` before ``expires``.
* ``COPILOT_GITHUB_TOKEN`` (or ``--api-key``/``models.json`` with a GitHub token — anything not shaped like a
  Copilot token, ``tid=...;proxy-ep=...``): a *GitHub* token. As the reference does, :meth:`Copilot.resolve`
  exchanges it at ``https://api.{domain}/copilot_internal/v2/token`` (``domain`` = ``COPILOT_ENTERPRISE_DOMAIN``
  or github.com), and :meth:`Copilot.finalize` exchanges it again shortly before the Copilot token expires or
  after the upstream answered 401 (:meth:`Copilot.forget`).

**Wire API per model** (:meth:`Copilot.api_for`): the catalog's ``api``, else by id:
``claude-(haiku|sonnet|opus)-[45]`` → anthropic-messages, ``gpt-5*``/``oswe*`` → openai-responses, anything
else → openai-completions.

**Base URL:** ``SWITCHBOARD_COPILOT_BASE_URL``, else a ``models.json`` ``baseUrl`` override, else the token's
``proxy-ep`` host (``proxy.`` → ``api.``), else ``https://copilot-api.{COPILOT_ENTERPRISE_DOMAIN}``, else
``https://api.individual.githubcopilot.com``.

**Headers:** the static Copilot headers and ``Authorization: Bearer <Copilot token>`` on every route (Anthropic
Messages too: Copilot takes a bearer token there); per request ``X-Initiator`` (``agent`` when the last message
is not the user's own turn — a tool result counts as the agent's), ``Openai-Intent: conversation-edits``, and
``Copilot-Vision-Request: true`` when the conversation carries an image.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from ..credentials import ResolvedAuth
from ..errors import MissingCredentials, UpstreamUnreachable
from ..oauth.base import RefreshFailed
from ..oauth.copilot import (
    COPILOT_HEADERS,
    DEFAULT_BASE_URL,
    DEFAULT_DOMAIN,
    ENTERPRISE_ENV,
    base_url_from_token,
    exchange_token,
)
from ..registry import Model, Provider
from ..wire.base import UpstreamCall, WireTarget
from .base import RequestContext

__all__ = ["ADAPTER", "Copilot", "api_for_model_id", "model_not_supported_hint"]

_ANTHROPIC_IDS = re.compile(r"^claude-(haiku|sonnet|opus)-[45]([.-]|$)")
_IMAGE_TYPES = frozenset({"image_url", "image", "input_image"})
_TOOL_RESULT_TYPES = frozenset({"tool_result", "function_call_output", "custom_tool_call_output"})
_REFRESH_MARGIN_MS = 60_000
_NOT_SUPPORTED = re.compile(r"model[_ ]not[_ ]supported|model\b.{0,40}\bnot (?:be )?supported", re.IGNORECASE)
MODEL_NOT_SUPPORTED_HINT = (
    "this model is not enabled for your GitHub Copilot account; enable it in VS Code: "
    'Copilot Chat → model selector → select model → "Enable"'
)


def api_for_model_id(model_id: str) -> str:
    if _ANTHROPIC_IDS.match(model_id):
        return "anthropic-messages"
    if model_id.startswith(("gpt-5", "oswe")):
        return "openai-responses"
    return "openai-completions"


def model_not_supported_hint(status: int, message: str) -> str | None:
    """The providers.md hint when Copilot says the model is not supported (not enabled for the account)."""
    if status >= 400 and _NOT_SUPPORTED.search(message):
        return MODEL_NOT_SUPPORTED_HINT
    return None


def is_copilot_token(key: str) -> bool:
    """A Copilot token (``tid=...;exp=...;proxy-ep=...``) rather than a GitHub token (``gho_``, ``ghu_``...)."""
    return key.startswith("tid=") or "proxy-ep=" in key


@dataclass
class _Exchanged:
    """A Copilot token this adapter obtained from a GitHub token."""

    provider_id: str
    github_token: str
    domain: str
    token: str
    expires: int
    #: The endpoint override in force when it was exchanged (``SWITCHBOARD_COPILOT_API_URL``).
    env: Mapping[str, str]
    stale: bool = False


class Copilot:
    """The :class:`~providers.cloud.base.CloudAdapter` for ``github-copilot``."""

    def __init__(self) -> None:
        #: Copilot token → how it was obtained (only tokens exchanged from a GitHub token).
        self._exchanged: dict[str, _Exchanged] = {}
        self._lock: asyncio.Lock | None = None

    def available(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> bool:
        return has_key

    def describe(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> str | None:
        """None: the resolver names the key's source (``auth.json (oauth)``, ``env COPILOT_GITHUB_TOKEN``)."""
        return None

    def api_for(self, provider: Provider, model_id: str, model: Model | None) -> str:
        if model is not None and model.api:
            return model.api
        return api_for_model_id(model_id)

    async def resolve(self, provider: Provider, key: str | None, source: str, env: Mapping[str, str]) -> ResolvedAuth:
        if not key:
            raise MissingCredentials(
                f"no credentials for {provider.name} ({provider.id}): run 'switchboard login {provider.id}' "
                "or set COPILOT_GITHUB_TOKEN (a GitHub token of an account with Copilot)"
            )
        enterprise = env.get(ENTERPRISE_ENV) or None
        secrets = [key]
        token = key
        if not is_copilot_token(key):
            token = (await self._exchange(provider.id, key, enterprise or DEFAULT_DOMAIN, env, source)).token
            secrets.append(token)
        base_url = _base_url(provider, token, enterprise, env)
        headers = {"content-type": "application/json", **COPILOT_HEADERS, "Authorization": f"Bearer {token}"}
        # key=None: the resolver must not move the token into x-api-key for the Anthropic-route models.
        return ResolvedAuth(base_url, headers, source, None, {}, tuple(secrets), None)

    async def finalize(self, call: UpstreamCall, target: WireTarget, ctx: RequestContext) -> UpstreamCall:
        headers = dict(call.headers)
        await self._renew(headers)
        for name in [n for n in headers if n.lower() == "x-api-key"]:
            del headers[name]
        try:
            body = msgspec.json.decode(call.body) if call.body else None
        except msgspec.DecodeError:
            body = None
        data = body if isinstance(body, dict) else {}
        _set(headers, "X-Initiator", initiator(data, ctx.api))
        _set(headers, "Openai-Intent", "conversation-edits")
        if has_image(data):
            _set(headers, "Copilot-Vision-Request", "true")
        return UpstreamCall(call.url, call.body, headers)

    def forget(self, provider_id: str) -> bool:
        """After a 401: an exchanged token is exchanged again by the next :meth:`finalize`; a stored login is
        refreshed by the credential resolver (False)."""
        found = False
        for ex in self._exchanged.values():
            if ex.provider_id == provider_id:
                ex.stale = True
                found = True
        return found

    async def _exchange(
        self, provider_id: str, github_token: str, domain: str, env: Mapping[str, str], source: str
    ) -> _Exchanged:
        def run() -> tuple[str, int]:
            with httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0)) as client:
                return exchange_token(github_token, domain, client, env)

        try:
            token, expires = await asyncio.to_thread(run)
        except RefreshFailed as exc:
            raise MissingCredentials(f"the GitHub token from {source} was not accepted: {exc}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(
                f"could not reach GitHub at {domain} for the Copilot token exchange ({type(exc).__name__}); retry"
            ) from exc
        kept = {k: env[k] for k in ("SWITCHBOARD_COPILOT_API_URL",) if env.get(k)}
        exchanged = _Exchanged(provider_id, github_token, domain, token, expires, kept)
        self._exchanged[token] = exchanged
        return exchanged

    async def _renew(self, headers: dict[str, str]) -> None:
        """Swap an exchanged Copilot token that is about to expire (or was refused) for a fresh one."""
        if not self._exchanged:
            return
        name = next((n for n in headers if n.lower() == "authorization"), None)
        if name is None:
            return
        current = self._exchanged.get(headers[name].removeprefix("Bearer ").strip())
        if current is None:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            latest = _latest(self._exchanged.values(), current)
            if latest.stale or latest.expires - _REFRESH_MARGIN_MS <= time.time() * 1000:
                latest = await self._exchange(
                    latest.provider_id, latest.github_token, latest.domain, latest.env, "COPILOT_GITHUB_TOKEN"
                )
                for old in [t for t, ex in self._exchanged.items() if ex.github_token == latest.github_token]:
                    if old != latest.token:
                        self._exchanged[old].stale = True
        headers[name] = f"Bearer {latest.token}"


ADAPTER = Copilot()
ADAPTER.error_hint = model_not_supported_hint  # type: ignore[attr-defined]


def _latest(all_exchanged: Any, current: _Exchanged) -> _Exchanged:
    """The newest token exchanged from the same GitHub token (another request may have renewed it)."""
    same = [ex for ex in all_exchanged if ex.github_token == current.github_token and not ex.stale]
    return max(same, key=lambda ex: ex.expires) if same else current


def _base_url(provider: Provider, token: str, enterprise: str | None, env: Mapping[str, str]) -> str:
    override = env.get("SWITCHBOARD_COPILOT_BASE_URL")
    if override:
        return override.rstrip("/")
    if provider.base_url and provider.base_url.rstrip("/") != DEFAULT_BASE_URL:
        return provider.base_url.rstrip("/")  # models.json baseUrl (a corporate proxy, a test fake)
    return base_url_from_token(token, enterprise)


def _set(headers: dict[str, str], name: str, value: str) -> None:
    for same in [n for n in headers if n.lower() == name.lower()]:
        del headers[same]
    headers[name] = value


def _messages(data: Mapping[str, Any], api: str) -> list[Any]:
    if api == "openai-responses":
        items = data.get("input")
        if isinstance(items, str):
            return [{"role": "user", "content": items}]
        return items if isinstance(items, list) else []
    messages = data.get("messages")
    return messages if isinstance(messages, list) else []


def initiator(data: Mapping[str, Any], api: str) -> str:
    """``user`` when the last message is the user's own turn, else ``agent`` (a tool result, an assistant
    turn, a Responses ``function_call_output`` item)."""
    messages = _messages(data, api)
    if not messages:
        return "user"
    last = messages[-1]
    if not isinstance(last, dict):
        return "agent"
    if last.get("type") in _TOOL_RESULT_TYPES or last.get("role") != "user":
        return "agent"
    content = last.get("content")
    if (
        isinstance(content, list)
        and content
        and all(isinstance(part, dict) and part.get("type") in _TOOL_RESULT_TYPES for part in content)
    ):
        return "agent"  # Anthropic Messages: tool results travel in a "user" message
    return "user"


def has_image(value: Any) -> bool:
    """Whether any image part appears anywhere in the body (user content, tool results)."""
    if isinstance(value, dict):
        if value.get("type") in _IMAGE_TYPES:
            return True
        return any(has_image(v) for k, v in value.items() if k in ("messages", "input", "content", "output"))
    if isinstance(value, list):
        return any(has_image(v) for v in value)
    return False
