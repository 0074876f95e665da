"""Azure OpenAI (``azure-openai-responses``): endpoint rules, deployments, ``api-version`` and Entra ID.

Facts: ``reference/provider-facts.md`` §3. Requests go to ``{base}/responses`` (OpenAI Responses wire module)
or ``{base}/chat/completions`` (a model whose ``api`` is ``openai-completions``), always with
``?api-version=`` and the deployment name as the body's ``model``.

Credential, first match wins:

1. a key from the ordinary order (``--api-key``, ``auth.json``, ``AZURE_OPENAI_API_KEY``, ``models.json``),
   sent as ``api-key``;
2. Microsoft Entra ID through azure-identity, scope ``https://cognitiveservices.azure.com/.default``, sent as
   ``Authorization: Bearer``: a service principal with a secret in the (auth.json-scoped) environment uses
   ``ClientSecretCredential`` directly (so ``env`` values from auth.json count; ``AZURE_AUTHORITY_HOST``
   honoured); anything else goes to ``DefaultAzureCredential`` (certificate, workload identity, managed
   identity, ``az login``...), which reads the process environment.

Base URL, first match wins: ``AZURE_OPENAI_BASE_URL``, ``https://{AZURE_OPENAI_RESOURCE_NAME}.openai.azure.com
/openai/v1``, the provider's ``baseUrl`` (models.json); each from auth.json's ``env`` map before the process
environment. Root paths of Azure hosts are normalized to ``/openai/v1`` (:func:`normalize_base_url`).

What :meth:`AzureAdapter.resolve` found (``api-version``, the deployment map, the Entra token cache) is a
:class:`_State` on the resolved value. Tokens are refreshed :data:`_REFRESH_MARGIN` seconds before expiry, one
refresh at a time, in a worker thread (azure-identity's sync credentials block).

The deployment map names the upstream model: :meth:`AzureAdapter.wire_target` puts a mapped model's
deployment in :attr:`WireTarget.model_id`, which the wire module (or the chat passthrough) writes into the
body it encodes; :meth:`AzureAdapter.finalize` adds ``api-version`` and the Entra token, never reading the
body.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import ConfigError, MissingCredentials
from ..registry import Model, Provider
from ..resolved import AdapterState, ResolvedAuth
from ..wire.base import UpstreamCall, WireTarget
from .base import AdapterBase, CloudAdapter, RequestContext

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential

__all__ = ["ADAPTER", "SCOPE", "AzureAdapter", "normalize_base_url", "parse_deployment_map"]

log = logging.getLogger("switchboard")

SCOPE = "https://cognitiveservices.azure.com/.default"
DEFAULT_API_VERSION = "v1"
#: Refresh a token this many seconds before it expires (azure-core's bearer policy uses the same margin).
_REFRESH_MARGIN = 300
_AZURE_HOST_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com", ".ai.azure.com")
_ROOT_PATHS = frozenset({"", "/", "/openai", "/openai/v1/responses"})
_RESOURCE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})$")
#: Authority hosts MSAL knows; any other (Azure Stack, a private cloud) is trusted as configured.
_KNOWN_AUTHORITIES = frozenset(
    {"login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "login.chinacloudapi.cn",
     "login.microsoftonline.us", "login.sts.microsoft.com"}
)  # fmt: skip
_SP_VARS = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID")
_SP_PROOFS = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE")
_HOW_TO_AUTH = (
    "set AZURE_OPENAI_API_KEY (or run 'switchboard login azure-openai-responses'), or configure Microsoft "
    "Entra ID: AZURE_CLIENT_ID + AZURE_TENANT_ID + AZURE_CLIENT_SECRET, a managed identity, or 'az login'"
)


class AzureAdapter(AdapterBase):
    def available(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> bool:
        # A key alone is not enough: without an endpoint every request would fail.
        has_endpoint = bool(_get(env, "AZURE_OPENAI_BASE_URL") or _get(env, "AZURE_OPENAI_RESOURCE_NAME"))
        if not (has_endpoint or provider.base_url):
            return False
        return has_key or _entra_source(env) is not None

    def describe(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> str | None:
        # With a key the resolver's own answer ("env AZURE_OPENAI_API_KEY", "auth.json") is the precise one.
        return None if has_key else _entra_source(env)

    def forget(self, auth: ResolvedAuth) -> bool:
        state = auth.state
        return state.token.expire() if isinstance(state, _State) and state.token is not None else False

    def api_for(self, provider: Provider, model_id: str, model: Model | None) -> str:
        api = model.api if model is not None else None
        return api if api and api != "azure-openai-responses" else "openai-responses"

    async def resolve(
        self,
        provider: Provider,
        key: str | None,
        source: str,
        env: Mapping[str, str],
        previous: AdapterState | None = None,
    ) -> ResolvedAuth:
        base_url = _base_url(provider, env)
        api_version = _get(env, "AZURE_OPENAI_API_VERSION") or DEFAULT_API_VERSION
        deployments = parse_deployment_map(_get(env, "AZURE_OPENAI_DEPLOYMENT_NAME_MAP"))
        headers = {"content-type": "application/json"}
        if key:
            headers["api-key"] = key
            state = _State(api_version, deployments, None)
            return ResolvedAuth(base_url, headers, source, secrets=(key,), state=state)
        entra = _entra_source(env)
        if entra is None:
            raise MissingCredentials(f"no credentials for {provider.name} ({provider.id}): {_HOW_TO_AUTH}")
        state = _State(api_version, deployments, _EntraToken(dict(env)))
        return ResolvedAuth(base_url, headers, entra, state=state)

    def wire_target(self, target: WireTarget, api: str, auth: ResolvedAuth) -> WireTarget:
        state = auth.state
        deployment = state.deployments.get(target.model_id) if isinstance(state, _State) else None
        if deployment is None or deployment == target.model_id:
            return target
        return replace(target, model_id=deployment)

    async def finalize(
        self, call: UpstreamCall, auth: ResolvedAuth, target: WireTarget, ctx: RequestContext
    ) -> UpstreamCall:
        state = auth.state
        if not isinstance(state, _State):  # resolve() always sets it; a bug if not
            raise ConfigError(f"{target.provider_name}: credentials were not resolved before the request")
        url = _with_api_version(call.url, state.api_version)
        headers = call.headers
        if state.token is not None:
            headers = {k: v for k, v in headers.items() if k != "api-key"}
            headers["authorization"] = "Bearer " + await state.token.get()
        return UpstreamCall(url, call.body, headers)


ADAPTER: CloudAdapter = AzureAdapter()


def normalize_base_url(raw: str, variable: str = "AZURE_OPENAI_BASE_URL") -> str:
    """Trim, strip trailing slashes; on an Azure host a root path (``""``, ``/``, ``/openai``,
    ``/openai/v1/responses``) becomes ``/openai/v1`` (facts §3). Any other URL is kept as given."""
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{variable} must be an http(s) URL such as https://my-resource.openai.azure.com, not {url!r}"
        )
    host = parts.hostname.lower()
    if host.endswith(_AZURE_HOST_SUFFIXES) and parts.path in _ROOT_PATHS:
        return urlunsplit((parts.scheme, parts.netloc, "/openai/v1", "", ""))
    if parts.query or parts.fragment:
        raise ConfigError(
            f"{variable} must not carry a query or fragment ({url!r}); set AZURE_OPENAI_API_VERSION for api-version"
        )
    return url


def parse_deployment_map(raw: str) -> dict[str, str]:
    """``gpt-4=my-gpt4,gpt-4o=my-gpt4o`` → ``{"gpt-4": "my-gpt4", ...}``. Whitespace around entries and names
    is ignored and empty entries (a trailing comma) are skipped; anything else malformed is a ConfigError."""
    out: dict[str, str] = {}
    for entry in raw.split(","):
        item = entry.strip()
        if not item:
            continue
        model, sep, deployment = (s.strip() for s in item.partition("="))
        if not sep or not model or not deployment:
            raise ConfigError(
                f"AZURE_OPENAI_DEPLOYMENT_NAME_MAP: entry {item!r} is not 'model=deployment'; "
                "write comma-separated pairs such as 'gpt-4=my-gpt4,gpt-4o=my-gpt4o'"
            )
        if out.get(model, deployment) != deployment:
            raise ConfigError(
                f"AZURE_OPENAI_DEPLOYMENT_NAME_MAP maps {model!r} twice ({out[model]!r} and {deployment!r}); keep one"
            )
        out[model] = deployment
    return out


# --- private ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _State(AdapterState):
    """What :meth:`AzureAdapter.finalize` needs, found by :meth:`AzureAdapter.resolve`."""

    api_version: str
    deployments: dict[str, str]
    token: _EntraToken | None

    def rotating_secrets(self) -> tuple[str, ...]:
        return (self.token.current,) if self.token is not None and self.token.current else ()


@dataclass(slots=True)
class _EntraToken:
    """A cached Entra ID access token; :meth:`get` refreshes it off the event loop, one refresh at a time."""

    env: dict[str, str]
    _credential: TokenCredential | None = None
    _token: AccessToken | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def current(self) -> str | None:
        return self._token.token if self._token is not None else None

    def expire(self) -> bool:
        had = self._token is not None
        self._token = None
        return had

    async def get(self) -> str:
        token = self._token
        if token is not None and token.expires_on - time.time() > _REFRESH_MARGIN:
            return token.token
        async with self._lock:
            token = self._token
            if token is not None and token.expires_on - time.time() > _REFRESH_MARGIN:
                return token.token  # another request refreshed it while this one waited
            try:
                token = await asyncio.to_thread(self._fetch)
            except Exception as exc:
                old = self._token
                if old is not None and old.expires_on > time.time() + 5:
                    log.warning("Azure OpenAI: Entra ID token refresh failed, using the current token: %s", exc)
                    return old.token
                raise MissingCredentials(
                    f"Azure OpenAI: could not get a Microsoft Entra ID token ({_first_line(exc)}); {_HOW_TO_AUTH}"
                ) from exc
            self._token = token
            return token.token

    def _fetch(self) -> AccessToken:
        if self._credential is None:
            self._credential = _make_credential(self.env)
        return self._credential.get_token(SCOPE)


def _make_credential(env: Mapping[str, str]) -> TokenCredential:
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    if all(_get(env, n) for n in (*_SP_VARS, "AZURE_CLIENT_SECRET")):
        kwargs: dict[str, Any] = {}
        authority = _get(env, "AZURE_AUTHORITY_HOST")
        if authority:
            kwargs["authority"] = authority
            host = urlsplit(authority if "://" in authority else "https://" + authority).hostname or ""
            # MSAL validates an unknown authority at login.microsoftonline.com, which a private cloud fails.
            kwargs["disable_instance_discovery"] = host.lower() not in _KNOWN_AUTHORITIES
        return ClientSecretCredential(
            _get(env, "AZURE_TENANT_ID"), _get(env, "AZURE_CLIENT_ID"), _get(env, "AZURE_CLIENT_SECRET"), **kwargs
        )
    credential: TokenCredential = DefaultAzureCredential()
    return credential


def _entra_source(env: Mapping[str, str]) -> str | None:
    """How Entra ID would authenticate, judged from the environment alone (no network, no subprocess)."""
    if all(_get(env, n) for n in _SP_VARS) and any(_get(env, n) for n in _SP_PROOFS):
        return f"Entra ID service principal {_get(env, 'AZURE_CLIENT_ID')}"
    if _get(env, "IDENTITY_ENDPOINT") or _get(env, "MSI_ENDPOINT"):
        return "Entra ID (DefaultAzureCredential)"
    config_dir = _get(env, "AZURE_CONFIG_DIR")
    home = _get(env, "HOME")
    az_dir = Path(config_dir) if config_dir else (Path(home) / ".azure" if home else Path.home() / ".azure")
    return "Entra ID (DefaultAzureCredential)" if az_dir.is_dir() else None


def _base_url(provider: Provider, env: Mapping[str, str]) -> str:
    explicit = _get(env, "AZURE_OPENAI_BASE_URL")
    if explicit:
        return normalize_base_url(explicit)
    resource = _get(env, "AZURE_OPENAI_RESOURCE_NAME")
    if resource:
        if not _RESOURCE_NAME.match(resource):
            raise ConfigError(
                f"AZURE_OPENAI_RESOURCE_NAME must be the bare resource name (e.g. 'my-resource'), not {resource!r}; "
                "set AZURE_OPENAI_BASE_URL for a full URL"
            )
        return f"https://{resource}.openai.azure.com/openai/v1"
    if provider.base_url:
        return normalize_base_url(provider.base_url, f"providers.{provider.id}.baseUrl")
    raise MissingCredentials(
        f"{provider.name} needs its endpoint: set AZURE_OPENAI_BASE_URL (https://<resource>.openai.azure.com) or "
        f'AZURE_OPENAI_RESOURCE_NAME, in the environment or under "env" in the {provider.id!r} entry of auth.json'
    )


def _with_api_version(url: str, version: str) -> str:
    query = urlsplit(url).query
    if any(p.startswith("api-version=") for p in query.split("&")):
        return url
    return f"{url}{'&' if query else '?'}api-version={quote(version, safe='')}"


def _get(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
