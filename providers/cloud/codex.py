"""ChatGPT Plus/Pro (Codex): the ``openai-codex`` provider, logged in with ``switchboard login openai-codex``.

Facts: ``reference/provider-facts.md`` §8 "OpenAI Codex". The credential is the OAuth access token the
ordinary resolution finds in ``auth.json`` (refreshed there before it expires, through
:data:`providers.oauth.codex.FLOW`); it arrives here as ``key``. Every request carries:

* ``Authorization: Bearer <access token>``;
* ``chatgpt-account-id``: decoded from the token's ``https://api.openai.com/auth`` claim
  (``chatgpt_account_id``) each time the token changes;
* ``originator: switchboard`` and ``User-Agent: switchboard (<os> <release>; <arch>)``;
* on the request itself: ``OpenAI-Beta: responses=experimental``, ``accept: text/event-stream``, and
  ``session-id`` / ``x-client-request-id`` when the client gave a session id (``prompt_cache_key``, or a
  ``session-id``/``session_id``/``x-session-id`` header).

Base URL: ``SWITCHBOARD_CODEX_BASE_URL`` (tests), else the provider's (``https://chatgpt.com/backend-api``).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping

from ..errors import MissingCredentials
from ..oauth.codex import account_id_from_token
from ..registry import Model, Provider
from ..resolved import AdapterState, ResolvedAuth
from ..wire.base import UpstreamCall, WireTarget
from .base import AdapterBase, CloudAdapter, RequestContext

__all__ = ["ADAPTER", "DEFAULT_BASE_URL", "CodexAdapter", "user_agent"]

DEFAULT_BASE_URL = "https://chatgpt.com/backend-api"
API = "openai-codex-responses"
_CLIENT_SESSION_HEADERS = ("session-id", "session_id", "x-session-id")


def user_agent() -> str:
    return f"switchboard ({platform.system().lower()} {platform.release()}; {platform.machine()})"


class CodexAdapter(AdapterBase):
    """The :class:`~providers.cloud.base.CloudAdapter` for ``openai-codex``; ``describe`` keeps the default
    (None): the resolver's own answer ("auth.json (oauth)") is the precise one."""

    def available(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> bool:
        return has_key

    def api_for(self, provider: Provider, model_id: str, model: Model | None) -> str:
        return API

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
                f"no credentials for {provider.name} ({provider.id}): run 'switchboard login {provider.id}'"
            )
        account = account_id_from_token(key)
        if account is None:
            raise MissingCredentials(
                f"the {provider.name} token (from {source}) carries no ChatGPT account id; "
                f"run 'switchboard login {provider.id}' again"
            )
        base_url = (env.get("SWITCHBOARD_CODEX_BASE_URL") or provider.base_url or DEFAULT_BASE_URL).rstrip("/")
        headers = {
            "content-type": "application/json",
            "authorization": f"Bearer {key}",
            "chatgpt-account-id": account,
            "originator": "switchboard",
            "user-agent": user_agent(),
        }
        return ResolvedAuth(base_url, headers, source, secrets=(key,), key=key)

    async def finalize(
        self, call: UpstreamCall, auth: ResolvedAuth, target: WireTarget, ctx: RequestContext
    ) -> UpstreamCall:
        headers = dict(call.headers)
        headers["OpenAI-Beta"] = "responses=experimental"
        headers["accept"] = "text/event-stream"
        if not any(h.lower() == "session-id" for h in headers):
            sid = next((v for h in _CLIENT_SESSION_HEADERS if (v := ctx.headers.get(h))), None)
            if sid and sid.isascii() and sid.isprintable():
                headers["session-id"] = sid
                headers["x-client-request-id"] = sid
        return UpstreamCall(call.url, call.body, headers)


ADAPTER: CloudAdapter = CodexAdapter()
