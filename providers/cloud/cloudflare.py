"""Cloudflare: Workers AI and AI Gateway (facts §5), one adapter for both provider rows.

**Workers AI** (``cloudflare-workers-ai``): OpenAI chat completions at
``https://api.cloudflare.com/client/v4/accounts/{CLOUDFLARE_ACCOUNT_ID}/ai/v1`` with
``Authorization: Bearer <CLOUDFLARE_API_KEY>``.

**AI Gateway** (``cloudflare-ai-gateway``): ``https://gateway.ai.cloudflare.com/v1/{account}/{gateway}``
plus one route per upstream:

====================  =====================  ===========================================
route                 wire API               model ids
====================  =====================  ===========================================
``/compat``           openai-completions     ``workers-ai/@cf/...`` (the Unified API)
``/openai``           openai-responses       native OpenAI ids (``gpt-5.1``)
``/anthropic``        anthropic-messages     native Anthropic ids (``claude-sonnet-4-5``)
====================  =====================  ===========================================

A catalog model names its wire API and route (``api``/``baseUrl``); for an id the catalog does not know,
:meth:`Cloudflare.api_for` derives the API from the id (``workers-ai/`` → compat, ``claude`` → anthropic,
anything else → openai) and :meth:`Cloudflare.finalize` inserts the matching route into the URL whenever
the base URL does not already end in one. The same insertion keeps catalog models working when
``models.json`` routes the provider through another ``baseUrl`` (that override drops the models' own URLs).

Gateway auth: ``cf-aig-authorization: Bearer <key>`` instead of the provider's auth header. The key is
never put in ``Authorization``/``x-api-key`` (and :meth:`Cloudflare.finalize` strips either header if it
carries the Cloudflare token), so an ``Authorization`` or ``x-api-key`` that *is* sent came from
``models.json`` provider or model ``headers``: inline BYOK, forwarded by the gateway to the upstream.
The gateway's :class:`ResolvedAuth` leaves ``key`` unset on purpose, so that the credential resolver
does not re-send the key in the model API's own header for models whose API differs from the provider's.

``x-session-affinity`` (Workers AI, and the gateway's compat and anthropic routes) keeps the turns of one
conversation on one replica for prefix-caching discounts. Its value, first match wins:

1. the client's ``x-session-affinity``, ``x-session-id`` or ``session_id`` request header;
2. ``prompt_cache_key`` in an OpenAI chat body (the client's own per-conversation cache key);
3. ``sb-`` + a hash of the model id, the system/developer text before the first user message and that
   first user message's text: equal for every turn of one conversation, different across conversations.

Placeholders ``{CLOUDFLARE_ACCOUNT_ID}``/``{CLOUDFLARE_GATEWAY_ID}`` come from the ``env`` map of the
provider's ``auth.json`` entry, else the process environment; a missing one is a
:class:`MissingCredentials` naming it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from ..credentials import ResolvedAuth
from ..errors import MissingCredentials
from ..registry import Model, Provider
from ..wire.base import UpstreamCall, WireTarget
from .base import RequestContext

__all__ = ["ADAPTER", "Cloudflare"]

_GATEWAY = "cloudflare-ai-gateway"
_ROUTES = {"openai-completions": "compat", "openai-responses": "openai", "anthropic-messages": "anthropic"}
_ROUTE_NAMES = frozenset(_ROUTES.values())
_AFFINITY_ROUTES = frozenset({"compat", "anthropic"})
_CLIENT_SESSION_HEADERS = ("x-session-affinity", "x-session-id", "session_id")
_MAX_SESSION_LEN = 256
_PLACEHOLDER = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")
_UPSTREAM_AUTH = ("authorization", "x-api-key")
_HINTS = {
    "CLOUDFLARE_ACCOUNT_ID": "your Cloudflare account id (dash.cloudflare.com, right sidebar)",
    "CLOUDFLARE_GATEWAY_ID": "the AI Gateway slug (create one at dash.cloudflare.com → AI → AI Gateway)",
}


class Cloudflare:
    """The :class:`~providers.cloud.base.CloudAdapter` for both Cloudflare providers."""

    def available(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> bool:
        return has_key and all(env.get(name) for name in _required(provider))

    def describe(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> str | None:
        """None: the key comes through the ordinary order, whose source (``env CLOUDFLARE_API_KEY``,
        ``auth.json``) the resolver reports itself; the account and gateway ids are not credentials."""
        return None

    def api_for(self, provider: Provider, model_id: str, model: Model | None) -> str:
        if model is not None or provider.id != _GATEWAY:
            return (model.api if model is not None else None) or provider.api
        if model_id.startswith("workers-ai/"):
            return "openai-completions"
        if "claude" in model_id.lower():
            return "anthropic-messages"
        return "openai-responses"

    async def resolve(self, provider: Provider, key: str | None, source: str, env: Mapping[str, str]) -> ResolvedAuth:
        if key is None:
            raise MissingCredentials(_missing_key_message(provider))
        for name in _required(provider):
            if not env.get(name):
                raise MissingCredentials(_missing_env_message(provider, name))
        base_url = _fill_placeholders(provider, provider.base_url, env).rstrip("/")
        headers: dict[str, str] = {"content-type": "application/json"}
        secrets = [key]
        if provider.id == _GATEWAY:
            headers["cf-aig-authorization"] = f"Bearer {key}"
            return ResolvedAuth(base_url, headers, source, None, {}, tuple(secrets), None)
        for name in [n for n in headers if n.lower() == "authorization"]:
            del headers[name]
        headers["authorization"] = f"Bearer {key}"
        return ResolvedAuth(base_url, headers, source, None, {}, tuple(secrets), key)

    async def finalize(self, call: UpstreamCall, target: WireTarget, ctx: RequestContext) -> UpstreamCall:
        headers = dict(call.headers)
        url = call.url
        affinity = True
        if target.provider_id == _GATEWAY:
            route = _ROUTES.get(ctx.api)
            url = _with_route(url, target.base_url, route)
            _drop_cloudflare_token(headers)
            affinity = route in _AFFINITY_ROUTES
        if affinity:
            session = _session_affinity(ctx.headers, call.body)
            if session is not None:
                headers["x-session-affinity"] = session
        return UpstreamCall(url, call.body, headers)


ADAPTER = Cloudflare()


def _required(provider: Provider) -> list[str]:
    """The ids the provider's URL needs: its declared ``urlEnv`` plus any placeholder in its base URL."""
    names = list(provider.url_env)
    names += [n for n in _PLACEHOLDER.findall(provider.base_url) if n not in names]
    return names


def _fill_placeholders(provider: Provider, url: str, env: Mapping[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        if not value:
            raise MissingCredentials(_missing_env_message(provider, match.group(1)))
        return value

    return _PLACEHOLDER.sub(sub, url)


def _with_route(url: str, base_url: str, route: str | None) -> str:
    """``url`` with the gateway route inserted after the gateway base, unless the base names one already
    (a catalog model's own ``.../anthropic`` URL) or the wire API has no gateway route."""
    base = base_url.rstrip("/")
    if route is None or base.rsplit("/", 1)[-1] in _ROUTE_NAMES or not url.startswith(base + "/"):
        return url
    return f"{base}/{route}{url[len(base) :]}"


def _drop_cloudflare_token(headers: dict[str, str]) -> None:
    """Remove ``Authorization``/``x-api-key`` when they carry the Cloudflare token; keep inline BYOK."""
    cf = next((v for k, v in headers.items() if k.lower() == "cf-aig-authorization"), "")
    token = cf.removeprefix("Bearer ").strip()
    for name in [n for n in headers if n.lower() in _UPSTREAM_AUTH]:
        value = headers[name].strip()
        if not value or (token and value.removeprefix("Bearer ").strip() == token):
            del headers[name]


def _session_affinity(inbound: Mapping[str, str], body: bytes) -> str | None:
    for name in _CLIENT_SESSION_HEADERS:
        value = inbound.get(name, "").strip()
        if _usable(value):
            return value
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(data, dict):
        return None
    cache_key = data.get("prompt_cache_key")
    if isinstance(cache_key, str) and _usable(cache_key):
        return cache_key
    return "sb-" + _prefix_digest(data)


def _usable(value: str) -> bool:
    return 0 < len(value) <= _MAX_SESSION_LEN and value.isascii() and value.isprintable()


def _prefix_digest(data: dict[str, Any]) -> str:
    """A hash of what stays the same across a conversation's turns: model, instructions, first user turn."""
    parts = [str(data.get("model", ""))]
    if "system" in data:  # Anthropic Messages keeps instructions out of the message list
        parts.append(_text_of(data["system"]))
    for message in data.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            parts.append(_text_of(message.get("content")))
        elif role == "user":
            parts.append(_text_of(message.get("content")))
            break
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _text_of(content: Any) -> str:
    """The text of a message's content, ignoring per-turn annotations such as ``cache_control``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_of(part) for part in content)
    if isinstance(content, dict):
        if isinstance(content.get("text"), str):
            return str(content["text"])
        rest = {k: v for k, v in content.items() if k != "cache_control"}
        return msgspec.json.encode(rest, order="sorted").decode()
    return "" if content is None else str(content)


def _missing_key_message(provider: Provider) -> str:
    return (
        f"no credentials for {provider.name} ({provider.id}): set CLOUDFLARE_API_KEY (a Cloudflare API token), "
        f"run 'switchboard login {provider.id}', or add it to auth.json"
    )


def _missing_env_message(provider: Provider, name: str) -> str:
    hint = _HINTS.get(name)
    what = f" ({hint})" if hint else ""
    return (
        f'{provider.name} needs {name}{what}: set it in the environment, or under "env" in the '
        f"{provider.id!r} entry of auth.json"
    )
