"""Cloud adapter ``bedrock``: Amazon Bedrock credentials, region, endpoint and SigV4 signing.

Auth, first match wins:

1. ``AWS_BEDROCK_SKIP_AUTH=1``: no auth at all (a proxy in front of Bedrock signs for us); a bearer
   token is ignored.
2. a key found by the ordinary resolution order (``--api-key``, ``auth.json``, ``AWS_BEARER_TOKEN_BEDROCK``):
   sent as ``Authorization: Bearer`` (Bedrock API keys), no SigV4.
3. SigV4 with credentials from botocore's own chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
   (+ ``AWS_SESSION_TOKEN``) given explicitly when both are set, else a botocore session with
   ``AWS_PROFILE``: env keys, shared files (``~/.aws/credentials``, ``~/.aws/config``: static keys,
   SSO, ``role_arn``, ``credential_process``), web identity (IRSA), ECS container credentials and EC2
   instance roles. Loading and refreshing run in a worker thread (they may do network I/O); the frozen
   credentials are cached until botocore says they need refreshing, one refresh at a time.

Region: the region inside an ARN model id, then ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's
``region``, else ``us-east-1``. Endpoint: ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` (a Bedrock proxy), else
``https://bedrock-runtime.{region}.amazonaws.com`` (``.com.cn`` in China). ``AWS_BEDROCK_FORCE_HTTP1=1``
is honoured by construction: our upstream client only speaks HTTP/1.1.

:meth:`_Bedrock.available` counts a source as present without network: a key, skip-auth, ``AWS_PROFILE``,
both access-key variables, the ECS URIs, a web identity token file, or a shared credentials/config file
whose default profile defines credentials (keys, SSO, a role or a credential process), as botocore's own
config loader parses it. That answer is cached per file identity (path, mtime, size): listing models
costs two ``stat`` calls, never a file read, and an edited file is parsed again.

What :meth:`_Bedrock.resolve` found (region, endpoint, signer) is a :class:`_State` on the resolved value.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MissingCredentials
from ..registry import Model, Provider
from ..resolved import AdapterState, ResolvedAuth
from ..wire.base import UpstreamCall, WireTarget
from .base import AdapterBase, CloudAdapter, RequestContext

__all__ = ["ADAPTER", "arn_region", "endpoint_for"]

_API = "bedrock-converse-stream"
_SERVICE = "bedrock"
_DEFAULT_REGION = "us-east-1"
_ARN_REGION = re.compile(r"^arn:aws[\w-]*:bedrock:([a-z0-9-]+):")
_STANDARD_HOST = re.compile(r"^https://bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")
#: Only these headers are signed, so nothing the client stack adds later can break the signature.
_SIGNED = ("content-type", "host")
#: Keys of a profile that make botocore's chain produce credentials (static keys, SSO, a role, a process).
_CREDENTIAL_KEYS = ("aws_access_key_id", "sso_session", "sso_start_url", "sso_account_id", "role_arn",
                    "credential_process", "web_identity_token_file")  # fmt: skip
#: (path, mtime_ns, size) of a shared file → whether its default profile defines credentials.
_file_verdicts: dict[tuple[str, int, int], bool] = {}
_HOW = (
    "set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_BEARER_TOKEN_BEDROCK, "
    "or run 'aws configure' / 'aws sso login'"
)


def arn_region(model_id: str) -> str | None:
    match = _ARN_REGION.match(model_id)
    return match.group(1) if match else None


def endpoint_for(region: str) -> str:
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"https://bedrock-runtime.{region}{suffix}"


@dataclass(slots=True)
class _Signer:
    """botocore credentials (maybe refreshable) and the frozen copy used to sign."""

    credentials: Any
    frozen: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def current(self) -> Any:
        if self.frozen is not None and not self._refresh_needed():
            return self.frozen
        async with self.lock:
            if self.frozen is None or self._refresh_needed():
                # A refreshable credential fetches over the network (STS, SSO, ECS, IMDS): off the loop.
                try:
                    self.frozen = await asyncio.to_thread(self.credentials.get_frozen_credentials)
                except _botocore_errors() as exc:
                    raise MissingCredentials(
                        f"Amazon Bedrock: refreshing AWS credentials failed ({exc}); {_HOW}"
                    ) from exc
        return self.frozen

    def _refresh_needed(self) -> bool:
        from botocore.credentials import RefreshableCredentials  # loaded already: resolve() imported botocore

        # Static keys never need refreshing; STS, SSO, ECS and IMDS credentials do before they expire.
        return isinstance(self.credentials, RefreshableCredentials) and bool(self.credentials.refresh_needed())


@dataclass(eq=False)
class _State(AdapterState):
    #: AWS_REGION, AWS_DEFAULT_REGION or the profile's region; None when nothing was configured.
    configured_region: str | None
    base_url: str
    endpoint_override: bool
    signer: _Signer | None  # None: bearer token or skip-auth


class _Bedrock(AdapterBase):
    def available(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> bool:
        return has_key or _skip_auth(env) or _ambient_source(env) is not None

    def describe(self, provider: Provider, has_key: bool, env: Mapping[str, str]) -> str | None:
        if _skip_auth(env):
            return "no auth (AWS_BEDROCK_SKIP_AUTH=1)"
        if has_key:
            return "AWS_BEARER_TOKEN_BEDROCK" if env.get("AWS_BEARER_TOKEN_BEDROCK") else None
        return _ambient_source(env)

    def api_for(self, provider: Provider, model_id: str, model: Model | None) -> str:
        return _API

    async def resolve(
        self,
        provider: Provider,
        key: str | None,
        source: str,
        env: Mapping[str, str],
        previous: AdapterState | None = None,
    ) -> ResolvedAuth:
        override = (env.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME") or "").rstrip("/")
        headers = {"content-type": "application/json"}
        signer: _Signer | None = None
        secrets: tuple[str, ...] = ()
        profile_region: str | None = None
        if _skip_auth(env):
            source, key = "no auth (AWS_BEDROCK_SKIP_AUTH=1)", None
        elif key:
            headers["authorization"] = f"Bearer {key}"
            secrets = (key,)
        else:
            credentials, profile_region = await asyncio.to_thread(_load_credentials, env)
            signer = _Signer(credentials)
            source = _ambient_source(env) or f"AWS credentials ({credentials.method or 'botocore'})"
        configured = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or profile_region or None
        base_url = override or endpoint_for(configured or _DEFAULT_REGION)
        state = _State(configured, base_url, bool(override), signer)
        return ResolvedAuth(base_url, headers, source, secrets=secrets, key=key, state=state)

    async def finalize(
        self, call: UpstreamCall, auth: ResolvedAuth, target: WireTarget, ctx: RequestContext
    ) -> UpstreamCall:
        state = auth.state
        if not isinstance(state, _State):  # resolve() always sets it; a bug if not
            raise MissingCredentials(f"{target.provider_name}: credentials were not resolved; {_HOW}")
        url, region = _route(call.url, target.model_id, state)
        headers = dict(call.headers)
        if state.signer is None:  # bearer (already in the headers) or skip-auth
            return UpstreamCall(url, call.body, headers)
        frozen = await state.signer.current()
        to_sign = {k: v for k, v in headers.items() if k.lower() in _SIGNED or k.lower().startswith("x-amz-")}
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="POST", url=url, data=call.body, headers=to_sign)
        SigV4Auth(frozen, _SERVICE, region).add_auth(request)
        for name in [n for n in headers if n.lower() == "authorization" or n.lower().startswith("x-amz-")]:
            del headers[name]
        for name, value in request.headers.items():
            if name.lower() == "authorization" or name.lower().startswith("x-amz-"):
                headers[name.lower()] = value
        return UpstreamCall(url, call.body, headers)


ADAPTER: CloudAdapter = _Bedrock()


def _route(url: str, model_id: str, state: _State) -> tuple[str, str]:
    """The URL to send to and the region to sign for.

    Region: an ARN's own region, then the configured one, then the region of a catalog model's standard
    host (``eu.*`` profiles live in eu-central-1), else us-east-1. A standard host is rewritten to that
    region, or to the endpoint override when one is set.
    """
    match = _STANDARD_HOST.match(url)
    host_region = match.group(1) if match else None
    region = arn_region(model_id) or state.configured_region or host_region or _DEFAULT_REGION
    if match is not None:
        base = state.base_url if state.endpoint_override else endpoint_for(region)
        url = base + url[match.end() :]
    return url, region


def _skip_auth(env: Mapping[str, str]) -> bool:
    return env.get("AWS_BEDROCK_SKIP_AUTH") == "1"


def _ambient_source(env: Mapping[str, str]) -> str | None:
    """Where SigV4 credentials would come from, in the reference's order (facts §1), never a secret."""
    if env.get("AWS_PROFILE"):
        return f"AWS profile {env['AWS_PROFILE']!r}"
    access_key = env.get("AWS_ACCESS_KEY_ID", "")
    if access_key and env.get("AWS_SECRET_ACCESS_KEY"):
        return f"AWS access key {access_key[:4]}…{access_key[-3:]} (env)"
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return "ECS task role"
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return "web identity (IRSA)"
    for var, default in (("AWS_SHARED_CREDENTIALS_FILE", "credentials"), ("AWS_CONFIG_FILE", "config")):
        path = Path(env.get(var) or Path(env.get("HOME") or Path.home()) / ".aws" / default)
        if _defines_credentials(path, is_config=default == "config"):
            return f"AWS shared {default} file ({path})"
    return None


def _defines_credentials(path: Path, *, is_config: bool) -> bool:
    """Whether the file's default profile gives botocore credentials; parsed once per file version."""
    try:
        stat = path.stat()
    except OSError:
        return False
    identity = (str(path), stat.st_mtime_ns, stat.st_size)
    verdict = _file_verdicts.get(identity)
    if verdict is None:
        verdict = _parse_defines_credentials(path, is_config=is_config)
        if len(_file_verdicts) > 16:  # old versions of edited files
            _file_verdicts.clear()
        _file_verdicts[identity] = verdict
    return verdict


def _parse_defines_credentials(path: Path, *, is_config: bool) -> bool:
    # botocore's own parser: the same sections, continuation lines and comments its chain will see.
    from botocore.configloader import load_config, raw_config_parse
    from botocore.exceptions import ConfigParseError

    try:
        if is_config:
            profile = load_config(str(path)).get("profiles", {}).get("default", {})
        else:
            profile = raw_config_parse(str(path)).get("default", {})
    except (ConfigParseError, OSError, UnicodeDecodeError):
        return False
    return isinstance(profile, dict) and any(profile.get(k) for k in _CREDENTIAL_KEYS)


def _load_credentials(env: Mapping[str, str]) -> tuple[Any, str | None]:
    """botocore credentials and the profile's region; blocking (may call STS, SSO, ECS or IMDS)."""
    import botocore.session
    from botocore.credentials import Credentials as StaticCredentials

    access_key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    try:
        session = botocore.session.Session(profile=env.get("AWS_PROFILE") or None)
        region = session.get_config_variable("region")
        if access_key and secret:
            return StaticCredentials(access_key, secret, env.get("AWS_SESSION_TOKEN") or None, "env"), region
        credentials = session.get_credentials()
    except _botocore_errors() as exc:
        raise MissingCredentials(f"Amazon Bedrock: AWS credentials could not be loaded ({exc}); {_HOW}") from exc
    if credentials is None:
        raise MissingCredentials(f"Amazon Bedrock: no AWS credentials found; {_HOW}")
    return credentials, region


def _botocore_errors() -> tuple[type[Exception], ...]:
    # botocore is imported on first use: this module is loaded at start-up to answer available().
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)
