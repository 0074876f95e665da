"""The contract of a cloud adapter: a provider whose requests need more than a static key.

Amazon Bedrock (SigV4 through botocore), Google Vertex AI (ADC tokens through google-auth), Azure OpenAI
(URL rules, deployments, Entra ID through azure-identity), Cloudflare (gateway routes, session affinity),
ChatGPT (Codex) and GitHub Copilot each ship one module in ``providers/cloud/`` exposing ``ADAPTER``, an
instance of a :class:`AdapterBase` subclass. Every hook is on :class:`CloudAdapter`; :class:`AdapterBase`
gives the optional ones their defaults, so callers never probe for a hook.

Adapters are stateless singletons. What one provider's resolution found (a signer, a token cache, a
deployment map, an exchanged token) is an :class:`~providers.resolved.AdapterState` that :meth:`resolve`
puts on the :class:`ResolvedAuth` it returns; every later hook receives that value. The credential cache
owns it, so it lives as long as that cache entry: a reload or another runtime in the same process starts
afresh.

Who calls what, in order:

* :meth:`CloudAdapter.available` / :meth:`CloudAdapter.describe` — from the credential resolver, to list
  the provider (``GET /v1/models``, bare-model routing) and explain where its credential comes from.
  Cheap: no network, no subprocess, and no file read per call (cache what a file says). Raise nothing.
* :meth:`CloudAdapter.api_for` — from the router, once per model string: the wire API that model speaks
  (Vertex: Claude models over Anthropic Messages, the rest over Gemini). Raises nothing.
* :meth:`CloudAdapter.resolve` — from the credential resolver, once per provider (cached until the config
  changes or a 401): the base URL, the static headers and the adapter's state. ``key`` is what the
  ordinary resolution order found (``--api-key``, ``auth.json``, the provider's env vars, ``models.json``),
  or None; an adapter with an ambient chain (AWS, ADC, Entra) uses it when ``key`` is None. ``previous``
  is the state of the resolution this one replaces (after a reload or a 401), which the adapter may keep
  when it still applies (Vertex keeps its token while the ADC file is unchanged). Raises
  :class:`MissingCredentials` saying exactly what to set or run when there is nothing, or
  :class:`ConfigError` for a malformed setting.
* :meth:`CloudAdapter.wire_target` — from the pipeline, on every attempt, before the body is built: the
  :class:`WireTarget` the wire module (or the passthrough) builds for, adjusted for this provider from
  ``auth.state`` (Azure: the deployment as the upstream model id; Vertex: Claude's ``rawPredict`` variant
  and its publisher URL). The body is then encoded once, as the upstream wants it: no hook rewrites a
  body. Cheap; raises nothing.
* :meth:`CloudAdapter.finalize` — from the pipeline, on every request, after the wire module built the
  upstream call and before it is sent: rewrite the URL (Azure ``api-version``, the
  Cloudflare gateway route), add per-request headers from :class:`RequestContext` (never by decoding the
  body), add short-lived tokens, sign (SigV4 over the exact body bytes). May raise
  :class:`MissingCredentials` (401), :class:`UpstreamUnreachable` (a token endpoint is down) or
  :class:`ConfigError`. Blocking work (token refresh) runs off the event loop; one refresh at a time.
* :meth:`CloudAdapter.forget` — from the credential resolver after the upstream answered 401: drop a
  cached short-lived token held in ``auth.state``; True when a retry with the same ``auth`` may succeed.
  Raises nothing.
* :meth:`CloudAdapter.error_hint` — from the pipeline when the upstream answered an error: a fix to
  append to its message (Copilot: "enable the model in VS Code"), or None. Raises nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..registry import Model, Provider
from ..request_facts import RequestFacts
from ..resolved import AdapterState, ResolvedAuth
from ..wire.base import UpstreamCall, WireTarget

__all__ = ["AdapterBase", "CloudAdapter", "RequestContext", "RequestFacts"]


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What an adapter may need to know about the client's request."""

    #: The client's inbound headers, lower-cased names (e.g. a ``x-session-affinity`` it sent).
    headers: Mapping[str, str]
    #: The wire API the call was built for.
    api: str
    #: Facts about the request's content, read once by the pipeline (see :mod:`providers.request_facts`).
    facts: RequestFacts = field(default_factory=RequestFacts)


class CloudAdapter(Protocol):
    """Every hook an adapter has; see the module docstring for who calls each, when, and what it raises."""

    def available(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> bool: ...

    def describe(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> str | None:
        """Where the credential comes from ("AWS profile 'dev'", "ADC service account x@y"), never a secret;
        None when the resolver's own source ("env X", "auth.json") says it best."""
        ...

    def api_for(self, provider: Provider, model_id: str, model: Model | None) -> str: ...

    def wire_target(self, target: WireTarget, api: str, auth: ResolvedAuth) -> WireTarget:
        """``target`` as the upstream needs it for ``api`` (another model id, base URL or wire variant)."""
        ...

    async def resolve(
        self,
        provider: Provider,
        key: str | None,
        source: str,
        env: Mapping[str, str],
        previous: AdapterState | None = None,
    ) -> ResolvedAuth: ...

    async def finalize(
        self, call: UpstreamCall, auth: ResolvedAuth, target: WireTarget, ctx: RequestContext
    ) -> UpstreamCall: ...

    def forget(self, auth: ResolvedAuth) -> bool: ...

    def error_hint(self, status: int, message: str) -> str | None: ...


class AdapterBase:
    """Defaults for the optional hooks; an adapter subclasses this and overrides what it needs."""

    def describe(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> str | None:
        return None

    def api_for(self, provider: Provider, model_id: str, model: Model | None) -> str:
        return (model.api if model is not None else None) or provider.api

    def wire_target(self, target: WireTarget, api: str, auth: ResolvedAuth) -> WireTarget:
        return target

    async def finalize(
        self, call: UpstreamCall, auth: ResolvedAuth, target: WireTarget, ctx: RequestContext
    ) -> UpstreamCall:
        return call

    def forget(self, auth: ResolvedAuth) -> bool:
        return False

    def error_hint(self, status: int, message: str) -> str | None:
        return None
