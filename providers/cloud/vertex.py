"""Google Vertex AI: ADC bearer tokens through google-auth, express-mode API keys, URL rules, Claude on Vertex.

Credentials, first match wins:

1. a key found by the ordinary order (``--api-key``, ``auth.json``, ``GOOGLE_CLOUD_API_KEY``, models.json
   ``apiKey``): express mode, ``x-goog-api-key`` and no project/location in the path
   (``https://aiplatform.googleapis.com/v1/publishers/google/models/...``). A ``<...>`` placeholder or the
   legacy ``gcp-vertex-credentials`` marker means "use ADC", as in the reference.
2. Application Default Credentials through google-auth: the ``GOOGLE_APPLICATION_CREDENTIALS`` file
   (service account, authorized user, external account...), else ``google.auth.default()`` (the gcloud
   file ``~/.config/gcloud/application_default_credentials.json``, the metadata server). The access token
   is never in the resolved headers (it expires): :meth:`finalize` adds it to every request from the
   credentials' token cache (:class:`_Tokens`, the resolved value's state), refreshed before expiry, one
   refresh at a time, off the event loop. A resolution after a config reload keeps the previous token
   cache while the ADC file is unchanged.

ADC needs a project (``GOOGLE_CLOUD_PROJECT``, ``GCLOUD_PROJECT``, else the ADC's own project or its
``quota_project_id``) and a location (``GOOGLE_CLOUD_LOCATION``). Hosts: ``global`` →
``https://aiplatform.googleapis.com``; ``us``/``eu`` → ``https://aiplatform.{loc}.rep.googleapis.com``;
otherwise ``https://{loc}-aiplatform.googleapis.com``. A custom base URL replaces the host: the
``GOOGLE_VERTEX_BASE_URL`` env var, or the provider's ``baseUrl`` when it has no ``{placeholder}`` (a
models.json override); ``/v1`` is added unless the URL already has a ``/vN`` segment.

Gemini models speak ``google-vertex`` (the Gemini wire format on Vertex's URLs) with base
``.../v1/projects/{p}/locations/{l}/publishers/google``.
Claude models (ids containing ``claude``) speak ``anthropic-messages`` with base
``.../publishers/anthropic``: :meth:`wire_target` marks the target ``vertex_raw_predict``, and the wire
module builds ``.../publishers/anthropic/models/{model}:rawPredict`` (``:streamRawPredict`` when
streaming), the body without ``model`` and with ``anthropic_version`` (:mod:`providers.wire.google_vertex`).
:meth:`finalize` only authorizes; it never reads the body.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingCredentials, UpstreamUnreachable
from ..registry import Model, Provider
from ..resolved import AdapterState, ResolvedAuth
from ..wire.base import UpstreamCall, WireTarget
from .base import AdapterBase, CloudAdapter, RequestContext

__all__ = ["ADAPTER", "SCOPE", "VertexAdapter", "vertex_base_url", "vertex_host"]

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_GEMINI = "google-vertex"
_ANTHROPIC = "anthropic-messages"
_GOOGLE_PUBLISHER = "/publishers/google"
_ANTHROPIC_PUBLISHER = "/publishers/anthropic"
_BASE_URL_ENV = "GOOGLE_VERTEX_BASE_URL"
_PROJECT_ENV = ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")
_LOCATION_ENV = "GOOGLE_CLOUD_LOCATION"
_ADC_MARKER = re.compile(r"^<[^>]*>$|^gcp-vertex-credentials$")
_VERSION_SEGMENT = re.compile(r"/v\d+[a-z0-9]*(/|$)")
_LOCATION = re.compile(r"^[a-z0-9-]+$")
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]*$")
_ADC_FIELDS = ("type", "client_email", "project_id", "quota_project_id")
#: (path, mtime_ns, size) of an ADC file → its public fields ({} when unreadable).
_adc_contents: dict[tuple[str, int, int], dict[str, Any]] = {}
_LOGIN = (
    "run 'gcloud auth application-default login' or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"
)


def vertex_host(location: str) -> str:
    """The regional, global or multi-region endpoint for ``location``."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    if location in ("us", "eu"):
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def vertex_base_url(project: str | None, location: str | None, custom: str | None = None) -> str:
    """The Gemini publisher base: ``{host}/v1/projects/{p}/locations/{l}/publishers/google``; without a
    project (express mode, an API key) ``{host}/v1/publishers/google`` on the global host."""
    root = (custom or vertex_host(location if project and location else "global")).rstrip("/")
    version = "" if _VERSION_SEGMENT.search(root) else "/v1"
    scope = f"/projects/{project}/locations/{location}" if project and location else ""
    return f"{root}{version}{scope}{_GOOGLE_PUBLISHER}"


class VertexAdapter(AdapterBase):
    """The :class:`~providers.cloud.base.CloudAdapter` for ``google-vertex`` (see the module docstring)."""

    def available(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> bool:
        if has_key:
            return True
        path = _adc_file(env)
        if path is None:
            return False
        return bool(_env_project(env) or _file_project(_read_adc(path))) and bool(env.get(_LOCATION_ENV))

    def describe(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> str | None:
        if has_key:
            return None  # the resolver's own "env GOOGLE_CLOUD_API_KEY" / "auth.json" says it best
        path = _adc_file(env)
        if path is None:
            return None
        info = _read_adc(path)
        kind = info.get("type")
        if kind == "service_account":
            who = f"ADC service account {info.get('client_email', '?')}"
        elif kind == "authorized_user":
            who = "ADC user credentials (gcloud)" if path == _gcloud_file(env) else f"ADC user credentials ({path})"
        else:
            who = f"ADC {kind or 'credentials'} ({path})"
        project = _env_project(env) or _file_project(info)
        return f"{who}, project {project}, location {env.get(_LOCATION_ENV)}"

    def forget(self, auth: ResolvedAuth) -> bool:
        tokens = auth.state
        return tokens.expire() if isinstance(tokens, _Tokens) else False

    def api_for(self, provider: Provider, model_id: str, model: Model | None) -> str:
        return _ANTHROPIC if "claude" in model_id.lower() else _GEMINI

    async def resolve(
        self,
        provider: Provider,
        key: str | None,
        source: str,
        env: Mapping[str, str],
        previous: AdapterState | None = None,
    ) -> ResolvedAuth:
        custom = env.get(_BASE_URL_ENV) or (provider.base_url if "{" not in provider.base_url else None)
        if key is not None and not _ADC_MARKER.match(key):
            headers = {"content-type": "application/json", "x-goog-api-key": key}
            return ResolvedAuth(vertex_base_url(None, None, custom), headers, source, secrets=(key,), key=key)
        creds, adc_project, origin = await asyncio.to_thread(_load_adc, provider, env)
        project = _env_project(env) or adc_project or getattr(creds, "quota_project_id", None)
        location = env.get(_LOCATION_ENV)
        if not project:
            raise MissingCredentials(
                f"{provider.name} needs a Google Cloud project: export GOOGLE_CLOUD_PROJECT=your-project "
                f'(or set it under "env" in the {provider.id!r} entry of auth.json)'
            )
        if not location:
            raise MissingCredentials(
                f"{provider.name} needs a location: export GOOGLE_CLOUD_LOCATION=us-central1 (or global, us, eu, "
                f'another region; or set it under "env" in the {provider.id!r} entry of auth.json)'
            )
        _check("GOOGLE_CLOUD_PROJECT", project, _PROJECT)
        _check(_LOCATION_ENV, location, _LOCATION)
        tokens = previous if isinstance(previous, _Tokens) and previous.origin == origin else None
        if tokens is None:  # a reload with the same ADC file keeps the token it already has
            tokens = _Tokens(creds, provider.name, origin)
        label = f"{_label(creds)}, project {project}, location {location}"
        base = vertex_base_url(project, location, custom)
        return ResolvedAuth(base, {"content-type": "application/json"}, label, state=tokens)

    def wire_target(self, target: WireTarget, api: str, auth: ResolvedAuth) -> WireTarget:
        if api != _ANTHROPIC:
            return target
        root = target.base_url.rstrip("/").removesuffix(_GOOGLE_PUBLISHER)
        return replace(target, base_url=root + _ANTHROPIC_PUBLISHER, vertex_raw_predict=True)

    async def finalize(
        self, call: UpstreamCall, auth: ResolvedAuth, target: WireTarget, ctx: RequestContext
    ) -> UpstreamCall:
        if "x-goog-api-key" in call.headers:
            return call
        tokens = auth.state
        if not isinstance(tokens, _Tokens):
            raise MissingCredentials(f"{target.provider_name}: no Google credentials resolved; {_LOGIN}")
        await tokens.apply(call.headers)
        return call


class _Tokens(AdapterState):
    """One ADC credential's access token: refreshed before expiry, one refresh at a time, off the loop."""

    def __init__(self, creds: Any, name: str, origin: tuple[object, ...]) -> None:
        #: Which ADC source (file path, mtime, size) these credentials were loaded from.
        self.origin = origin
        self._creds = creds
        self._name = name
        self._lock = asyncio.Lock()
        self._refreshes = 0

    def rotating_secrets(self) -> tuple[str, ...]:
        token = self._creds.token
        return (token,) if isinstance(token, str) and token else ()

    def expire(self) -> bool:
        """Treat the current token as revoked; the next request refreshes."""
        had = bool(self._creds.token)
        self._creds.token = None
        return had

    async def apply(self, headers: dict[str, str]) -> None:
        """Set ``authorization`` (and ``x-goog-user-project`` for a quota project) on ``headers``."""
        if not self._creds.valid:  # google-auth counts a token as invalid 3m45s before it expires
            await self._refresh()
        self._creds.apply(headers)

    async def _refresh(self) -> None:
        seen = self._refreshes
        async with self._lock:
            if self._refreshes != seen and self._usable():
                return  # another request refreshed while this one waited
            await asyncio.to_thread(_refresh_blocking, self._creds, self._name)
            self._refreshes += 1

    def _usable(self) -> bool:
        expiry = self._creds.expiry
        return bool(self._creds.token) and (expiry is None or expiry > datetime.now(UTC).replace(tzinfo=None))


def _refresh_blocking(creds: Any, name: str) -> None:
    import google.auth.exceptions
    import google.auth.transport.requests
    import requests

    try:
        with requests.Session() as session:  # closed at once: no pooled socket outlives the refresh
            creds.refresh(google.auth.transport.requests.Request(session))
    except google.auth.exceptions.RefreshError as exc:
        raise MissingCredentials(f"{name}: Google refused to issue an access token ({exc}); {_LOGIN}") from exc
    except google.auth.exceptions.TransportError as exc:
        raise UpstreamUnreachable(f"{name}: could not reach the Google token endpoint ({exc})") from exc


def _load_adc(provider: Provider, env: Mapping[str, str]) -> tuple[Any, str | None, tuple[object, ...]]:
    """The ADC credentials, the project they name, and where they came from (blocking: file reads, maybe
    the metadata server)."""
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests
    import requests

    path = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path and not Path(path).is_file():
        raise MissingCredentials(
            f"GOOGLE_APPLICATION_CREDENTIALS points at {path}, which does not exist; fix the path, "
            "or unset it and run 'gcloud auth application-default login'"
        )
    try:
        # google-auth's own chain; it reads GOOGLE_APPLICATION_CREDENTIALS from the process environment.
        with requests.Session() as session:
            creds, project = google.auth.default(
                scopes=[SCOPE], request=google.auth.transport.requests.Request(session)
            )
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise MissingCredentials(
            f"no credentials for {provider.name} ({provider.id}): {_LOGIN}, or set GOOGLE_CLOUD_API_KEY; "
            f"then export GOOGLE_CLOUD_PROJECT=your-project and GOOGLE_CLOUD_LOCATION=us-central1 ({exc})"
        ) from exc
    found = _adc_file(env)
    stat = found.stat() if found is not None else None
    origin = (str(found), stat.st_mtime_ns, stat.st_size) if stat is not None else ("google.auth.default",)
    return creds, project if isinstance(project, str) and project else None, origin


def _label(creds: Any) -> str:
    """Where the ADC came from, for logs and `switchboard doctor`; never a secret."""
    email = getattr(creds, "service_account_email", None)
    if isinstance(email, str) and "@" in email:
        return f"ADC service account {email}"
    kind = type(creds)
    if kind.__module__ == "google.oauth2.credentials":
        return "ADC user credentials"
    if kind.__module__.startswith("google.auth.compute_engine"):
        return "ADC metadata server"
    return f"ADC {kind.__name__}"


def _check(name: str, value: str, pattern: re.Pattern[str]) -> None:
    if not pattern.match(value):
        raise ConfigError(f"{name}={value!r} is not a valid value; fix it (e.g. my-project, us-central1)", status=400)


def _env_project(env: Mapping[str, str]) -> str | None:
    return next((env[n] for n in _PROJECT_ENV if env.get(n)), None)


def _gcloud_file(env: Mapping[str, str]) -> Path:
    config = env.get("CLOUDSDK_CONFIG")
    root = Path(config) if config else Path(env.get("HOME") or Path.home()) / ".config" / "gcloud"
    return root / "application_default_credentials.json"


def _adc_file(env: Mapping[str, str]) -> Path | None:
    """The ADC file google-auth would read, if it exists (no network: the metadata server is not probed)."""
    explicit = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    path = Path(explicit) if explicit else _gcloud_file(env)
    return path if path.is_file() else None


def _read_adc(path: Path) -> dict[str, Any]:
    """The ADC file's JSON, parsed once per file version: listing models must not read it every time."""
    try:
        stat = path.stat()
    except OSError:
        return {}
    identity = (str(path), stat.st_mtime_ns, stat.st_size)
    info = _adc_contents.get(identity)
    if info is None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        # Only what describe() and available() read: never keep a private key around.
        info = {k: data[k] for k in _ADC_FIELDS if k in data} if isinstance(data, dict) else {}
        if len(_adc_contents) > 16:  # old versions of edited files
            _adc_contents.clear()
        _adc_contents[identity] = info
    return info


def _file_project(info: Mapping[str, Any]) -> str | None:
    project = info.get("project_id") or info.get("quota_project_id")
    return project if isinstance(project, str) and project else None


ADAPTER: CloudAdapter = VertexAdapter()
