"""The contract of a cloud adapter: a provider whose requests need more than a static key.

Amazon Bedrock (SigV4 through botocore), Google Vertex AI (ADC tokens through google-auth), Azure OpenAI
(URL rules, deployments, Entra ID through azure-identity) and Cloudflare (gateway routes, session affinity)
each ship one module in ``providers/cloud/`` exposing ``ADAPTER`` (or ``adapter(provider_id)``).

Who calls what, in order:

* :meth:`CloudAdapter.available` / :meth:`CloudAdapter.describe` — from the credential resolver, to list
  the provider and explain where its credential comes from. Cheap, no network, no subprocess.
* :meth:`CloudAdapter.api_for` — from the router, once per model string: the wire API that model speaks
  (Vertex: Claude models over Anthropic Messages, the rest over Gemini).
* :meth:`CloudAdapter.resolve` — from the credential resolver, once per provider (cached until the config
  changes): the base URL and the static headers. ``key`` is what the ordinary resolution order found
  (``--api-key``, ``auth.json``, the provider's env vars, ``models.json``), or None; an adapter with an
  ambient chain (AWS, ADC, Entra) uses it when ``key`` is None, and raises :class:`MissingCredentials`
  saying exactly what to set or run when there is nothing.
* :meth:`CloudAdapter.finalize` — on every request, after the wire module built the upstream call and
  before it is sent: rewrite the URL or body (Vertex ``rawPredict``, Azure deployments and
  ``api-version``), add short-lived tokens, sign (SigV4 over the exact body bytes). May raise
  :class:`MissingCredentials` (401) or :class:`ConfigError`. Blocking work (token refresh) runs off the
  event loop; one refresh at a time.
* ``error_hint(status, message) -> str | None`` (optional) — a fix to append to an upstream error
  (Copilot: "enable the model in VS Code").
* ``forget(provider_id) -> bool`` (optional) — after the upstream answered 401: drop a cached short-lived
  token; True when a retry may succeed with a fresh one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ..credentials import ResolvedAuth
from ..registry import Model, Provider
from ..wire.base import UpstreamCall, WireTarget

__all__ = ["CloudAdapter", "RequestContext"]


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What an adapter may need to know about the client's request."""

    #: The client's inbound headers, lower-cased names (e.g. a ``x-session-affinity`` it sent).
    headers: Mapping[str, str]
    #: The wire API the call was built for.
    api: str


class CloudAdapter(Protocol):
    def available(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> bool: ...

    def describe(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> str | None:
        """Where the credential comes from ("AWS profile 'dev'", "ADC service account x@y"), never a secret."""
        ...

    def api_for(self, provider: Provider, model_id: str, model: Model | None) -> str: ...

    async def resolve(
        self, provider: Provider, key: str | None, source: str, env: Mapping[str, str]
    ) -> ResolvedAuth: ...

    async def finalize(self, call: UpstreamCall, target: WireTarget, ctx: RequestContext) -> UpstreamCall: ...
