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

The prompt cache key and the hash come from the :class:`~providers.request_facts.RequestFacts` the
pipeline passes; the body is never decoded here.

Placeholders ``{CLOUDFLARE_ACCOUNT_ID}``/``{CLOUDFLARE_GATEWAY_ID}`` come from the ``env`` map of the
provider's ``auth.json`` entry, else the process environment, filled by the one
:func:`~providers.provider_env.fill_placeholders` with this module's hints; a missing one is a
:class:`MissingCredentials` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..errors import MissingCredentials
from ..provider_env import PLACEHOLDER, fill_placeholders, missing_env_message
from ..registry import Model, Provider
from ..resolved import AdapterState, ResolvedAuth
from ..wire.base import UpstreamCall, WireTarget
from .base import AdapterBase, CloudAdapter, RequestContext

__all__ = ["ADAPTER", "Cloudflare"]

_GATEWAY = "cloudflare-ai-gateway"
_ROUTES = {"openai-completions": "compat", "openai-responses": "openai", "anthropic-messages": "anthropic"}
_ROUTE_NAMES = frozenset(_ROUTES.values())
_AFFINITY_ROUTES = frozenset({"compat", "anthropic"})
_CLIENT_SESSION_HEADERS = ("x-session-affinity", "x-session-id", "session_id")
_MAX_SESSION_LEN = 256
_UPSTREAM_AUTH = ("authorization", "x-api-key")
_HINTS = {
    "CLOUDFLARE_ACCOUNT_ID": "your Cloudflare account id (dash.cloudflare.com, right sidebar)",
    "CLOUDFLARE_GATEWAY_ID": "the AI Gateway slug (create one at dash.cloudflare.com → AI → AI Gateway)",
}


class Cloudflare(AdapterBase):
    """The :class:`~providers.cloud.base.CloudAdapter` for both Cloudflare providers. ``describe`` keeps the
    default (None): the key comes through the ordinary order, whose source (``env CLOUDFLARE_API_KEY``,
    ``auth.json``) the resolver reports itself; the account and gateway ids are not credentials."""

    def available(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> bool:
        return has_key and all(env.get(name) for name in _required(provider))

    def api_for(self, provider: Provider, model_id: str, model: Model | None) -> str:
        if model is not None or provider.id != _GATEWAY:
            return (model.api if model is not None else None) or provider.api
        if model_id.startswith("workers-ai/"):
            return "openai-completions"
        if "claude" in model_id.lower():
            return "anthropic-messages"
        return "openai-responses"

    async def resolve(
        self,
        provider: Provider,
        key: str | None,
        source: str,
        env: Mapping[str, str],
        previous: AdapterState | None = None,
    ) -> ResolvedAuth:
        if key is None:
            raise MissingCredentials(_missing_key_message(provider))
        for name in _required(provider):
            if not env.get(name):
                raise MissingCredentials(missing_env_message(provider, name, _HINTS.get(name)))
        base_url = fill_placeholders(provider, provider.base_url, env, _HINTS).rstrip("/")
        headers: dict[str, str] = {"content-type": "application/json"}
        secrets = [key]
        if provider.id == _GATEWAY:
            headers["cf-aig-authorization"] = f"Bearer {key}"
            return ResolvedAuth(base_url, headers, source, None, {}, tuple(secrets), None)
        for name in [n for n in headers if n.lower() == "authorization"]:
            del headers[name]
        headers["authorization"] = f"Bearer {key}"
        return ResolvedAuth(base_url, headers, source, None, {}, tuple(secrets), key)

    async def finalize(
        self, call: UpstreamCall, auth: ResolvedAuth, target: WireTarget, ctx: RequestContext
    ) -> UpstreamCall:
        headers = dict(call.headers)
        url = call.url
        affinity = True
        if target.provider_id == _GATEWAY:
            route = _ROUTES.get(ctx.api)
            url = _with_route(url, target.base_url, route)
            _drop_cloudflare_token(headers)
            affinity = route in _AFFINITY_ROUTES
        if affinity:
            headers["x-session-affinity"] = _session_affinity(ctx)
        return replace(call, url=url, headers=headers)


ADAPTER: CloudAdapter = Cloudflare()


def _required(provider: Provider) -> list[str]:
    """The ids the provider's URL needs: its declared ``urlEnv`` plus any placeholder in its base URL."""
    names = list(provider.url_env)
    names += [n for n in PLACEHOLDER.findall(provider.base_url) if n not in names]
    return names


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


def _session_affinity(ctx: RequestContext) -> str:
    for name in _CLIENT_SESSION_HEADERS:
        value = ctx.headers.get(name, "").strip()
        if _usable(value):
            return value
    key = ctx.facts.session_key
    if key is not None and _usable(key):
        return key
    return "sb-" + ctx.facts.conversation


def _usable(value: str) -> bool:
    return 0 < len(value) <= _MAX_SESSION_LEN and value.isascii() and value.isprintable()


def _missing_key_message(provider: Provider) -> str:
    return (
        f"no credentials for {provider.name} ({provider.id}): set CLOUDFLARE_API_KEY (a Cloudflare API token), "
        f"run 'switchboard login {provider.id}', or add it to auth.json"
    )
