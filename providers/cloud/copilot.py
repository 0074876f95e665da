"""GitHub Copilot (facts §2, §8): one provider, three wire APIs, a short-lived Copilot token.

**Credential.** The ordinary order finds the key:

* ``auth.json`` (``switchboard login github-copilot``): the Copilot token itself (``access``); the credential
  resolver refreshes it through :data:`providers.oauth.copilot.FLOW` before ``expires``.
* ``COPILOT_GITHUB_TOKEN`` (or ``--api-key``/``models.json`` with a GitHub token — anything not shaped like a
  Copilot token, ``tid=...;proxy-ep=...``): a *GitHub* token. As the reference does, :meth:`Copilot.resolve`
  exchanges it at ``https://api.{domain}/copilot_internal/v2/token`` (``domain`` = ``COPILOT_ENTERPRISE_DOMAIN``
  or github.com), and :meth:`Copilot.finalize` exchanges it again shortly before the Copilot token expires or
  after the upstream answered 401 (:meth:`Copilot.forget`). The exchanged token lives in the
  :class:`ResolvedAuth`'s state (:class:`_Exchanged`), so it is dropped with the credential cache entry.

**Wire API per model** (:meth:`Copilot.api_for`): the catalog's ``api``, else by id:
``claude-(haiku|sonnet|opus)-[45]`` → anthropic-messages, ``gpt-5*``/``oswe*`` → openai-responses, anything
else → openai-completions.

**Base URL:** ``SWITCHBOARD_COPILOT_BASE_URL``, else a ``models.json`` ``baseUrl`` override, else the token's
``proxy-ep`` host (``proxy.`` → ``api.``), else ``https://copilot-api.{COPILOT_ENTERPRISE_DOMAIN}``, else
``https://api.individual.githubcopilot.com``.

**Headers:** the static Copilot headers and ``Authorization: Bearer <Copilot token>`` on every route (Anthropic
Messages too: Copilot takes a bearer token there); per request ``X-Initiator`` (``agent`` when the last message
is not the user's own turn — a tool result counts as the agent's), ``Openai-Intent: conversation-edits``, and
``Copilot-Vision-Request: true`` when the conversation carries an image, both read from the
:class:`~providers.request_facts.RequestFacts` the pipeline passes (the body is never decoded here).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import httpx

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
from ..resolved import AdapterState, ResolvedAuth
from ..wire.base import UpstreamCall, WireTarget
from .base import AdapterBase, CloudAdapter, RequestContext

__all__ = ["ADAPTER", "Copilot", "api_for_model_id", "model_not_supported_hint"]

_ANTHROPIC_IDS = re.compile(r"^claude-(haiku|sonnet|opus)-[45]([.-]|$)")
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


@dataclass(eq=False)
class _Exchanged(AdapterState):
    """The Copilot token obtained from a GitHub token, renewed in place before it expires or after a 401."""

    github_token: str
    domain: str
    token: str
    expires: int
    #: The endpoint override in force when it was exchanged (``SWITCHBOARD_COPILOT_API_URL``).
    env: Mapping[str, str]
    #: Where the GitHub token came from, for the message when GitHub refuses it.
    source: str
    stale: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def rotating_secrets(self) -> tuple[str, ...]:
        return (self.token,)


class Copilot(AdapterBase):
    """The :class:`~providers.cloud.base.CloudAdapter` for ``github-copilot``."""

    def available(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> bool:
        return has_key

    def api_for(self, provider: Provider, model_id: str, model: Model | None) -> str:
        if model is not None and model.api:
            return model.api
        return api_for_model_id(model_id)

    async def resolve(
        self,
        provider: Provider,
        key: str | None,
        source: str,
        env: Mapping[str, str],
        previous: AdapterState | None = None,
    ) -> ResolvedAuth:
        if not key:
            raise MissingCredentials(
                f"no credentials for {provider.name} ({provider.id}): run 'switchboard login {provider.id}' "
                "or set COPILOT_GITHUB_TOKEN (a GitHub token of an account with Copilot)"
            )
        enterprise = env.get(ENTERPRISE_ENV) or None
        secrets = [key]
        token = key
        state: _Exchanged | None = None
        if not is_copilot_token(key):
            domain = enterprise or DEFAULT_DOMAIN
            kept = {k: env[k] for k in ("SWITCHBOARD_COPILOT_API_URL",) if env.get(k)}
            if isinstance(previous, _Exchanged) and (previous.github_token, previous.domain, previous.env) == (
                key,
                domain,
                kept,
            ):
                state = previous  # a reload: the token exchanged for this GitHub token still serves
            else:
                token, expires = await _exchange(key, domain, kept, source)
                state = _Exchanged(key, domain, token, expires, kept, source)
            token = await _current(state)
            secrets.append(token)
        base_url = _base_url(provider, token, enterprise, env)
        headers = {"content-type": "application/json", **COPILOT_HEADERS, "Authorization": f"Bearer {token}"}
        # key=None: the resolver must not move the token into x-api-key for the Anthropic-route models.
        return ResolvedAuth(base_url, headers, source, None, {}, tuple(secrets), None, state)

    async def finalize(
        self, call: UpstreamCall, auth: ResolvedAuth, target: WireTarget, ctx: RequestContext
    ) -> UpstreamCall:
        headers = dict(call.headers)
        state = auth.state
        if isinstance(state, _Exchanged):
            _set(headers, "Authorization", f"Bearer {await _current(state)}")
        for name in [n for n in headers if n.lower() == "x-api-key"]:
            del headers[name]
        facts = ctx.facts
        _set(headers, "X-Initiator", facts.initiator)
        _set(headers, "Openai-Intent", "conversation-edits")
        if facts.has_image:
            _set(headers, "Copilot-Vision-Request", "true")
        return replace(call, headers=headers)

    def forget(self, auth: ResolvedAuth) -> bool:
        """After a 401: an exchanged token is exchanged again by the next :meth:`finalize` (True); a stored
        login is refreshed by the credential resolver (False)."""
        state = auth.state
        if not isinstance(state, _Exchanged):
            return False
        state.stale = True
        return True

    def error_hint(self, status: int, message: str) -> str | None:
        return model_not_supported_hint(status, message)


ADAPTER: CloudAdapter = Copilot()


async def _current(state: _Exchanged) -> str:
    """The state's Copilot token, exchanged again first when it is about to expire or was refused."""
    if not state.stale and state.expires - _REFRESH_MARGIN_MS > time.time() * 1000:
        return state.token
    async with state.lock:  # concurrent requests wait for one exchange
        if state.stale or state.expires - _REFRESH_MARGIN_MS <= time.time() * 1000:
            state.token, state.expires = await _exchange(state.github_token, state.domain, state.env, state.source)
            state.stale = False
    return state.token


async def _exchange(github_token: str, domain: str, env: Mapping[str, str], source: str) -> tuple[str, int]:
    def run() -> tuple[str, int]:
        with httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0)) as client:
            return exchange_token(github_token, domain, client, env)

    try:
        return await asyncio.to_thread(run)
    except RefreshFailed as exc:
        raise MissingCredentials(f"the GitHub token from {source} was not accepted: {exc}") from exc
    except httpx.HTTPError as exc:
        raise UpstreamUnreachable(
            f"could not reach GitHub at {domain} for the Copilot token exchange ({type(exc).__name__}); retry"
        ) from exc


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
