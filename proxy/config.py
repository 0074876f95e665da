"""Where Switchboard keeps its files, and the server config file.

``SWITCHBOARD_HOME`` (default ``~/.switchboard``) holds ``auth.json``, ``models.json``, ``config.json``
(this module) and ``cache/``. ``config.json`` is optional; parsing is strict (unknown keys are rejected
with their path). Example::

    {
      "host": "127.0.0.1",
      "port": 8642,
      "aliases": {"fast": "groq/llama-3.3-70b-versatile", "smart": "openrouter/anthropic/claude-sonnet-4.5"},
      "timeouts": {"connect": 10, "read": 600, "total": 600, "request_head": 10, "shutdown": 30},
      "discovery": {"enabled": true, "interval": 3600},
      "allowed_hosts": ["switchboard.internal"],
      "max_connections": 1000,
      "max_body_mb": 64,
      "master_key": "$SWITCHBOARD_MASTER_KEY",
      "database_url": "postgresql://switchboard@db/switchboard",
      "redis_url": "redis://redis:6379/0",
      "routes": {"smart": {"targets": ["anthropic/claude-sonnet-4-5", "openai/gpt-4o"], "strategy": "fallback"}},
      "retries": {"attempts": 2, "backoff": 0.5, "max_backoff": 8, "retry_after_cap": 30},
      "cooldown": {"failures": 3, "window": 60, "seconds": 30},
      "context_window_fallback": true
    }

``allowed_hosts`` lists the ``Host`` names served besides loopback ones (``"*"`` serves any): needed
behind a reverse proxy that forwards its own host name. Bound to a loopback address, any other ``Host``
is refused, so a web page whose DNS name was rebound to 127.0.0.1 cannot read the answers.

``master_key`` turns the team gateway on (:mod:`proxy.gateway`): clients then need a virtual key, and
the admin API and usage ledger are served. Its value takes the forms of ``auth.json`` (literal,
``$VAR``, ``!command`` when config.json is owned by you). ``database_url`` (default SQLite in
``SWITCHBOARD_HOME``) and ``redis_url`` (limits and key changes shared by replicas) go with it. The
environment variables ``SWITCHBOARD_MASTER_KEY``, ``SWITCHBOARD_DATABASE_URL`` and
``SWITCHBOARD_REDIS_URL`` take precedence over the file.

``routes``, ``retries``, ``cooldown`` and ``context_window_fallback`` are routing's
(:mod:`proxy.routing`); with ``redis_url`` the cooldowns are shared by the replicas.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec

from providers.errors import ConfigError
from providers.extensions import ExtensionsConfig

from .gateway.oidc_config import OidcConfig
from .routing.config import CooldownConfig, RetryConfig, RouteConfig
from .telemetry.config import AccessLogConfig, MetricsConfig, TracingConfig

__all__ = ["GatewayConfig", "Paths", "ServerConfig", "load_server_config"]

_Positive = Annotated[float, msgspec.Meta(gt=0)]


@dataclass(frozen=True, slots=True)
class Paths:
    home: Path

    @classmethod
    def from_env(cls) -> Paths:
        raw = os.environ.get("SWITCHBOARD_HOME") or "~/.switchboard"
        return cls(Path(raw).expanduser())

    @property
    def auth_json(self) -> Path:
        return self.home / "auth.json"

    @property
    def models_json(self) -> Path:
        return self.home / "models.json"

    @property
    def config_json(self) -> Path:
        return self.home / "config.json"

    @property
    def model_cache(self) -> Path:
        return self.home / "cache" / "models"


class TimeoutConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    connect: _Positive = 10.0
    #: Longest wait for a provider's response headers, and between two complete events of a stream.
    read: _Positive = 600.0
    #: Deadline for a whole non-streaming request (headers and body); unset: the same as ``read``.
    total: _Positive | None = None
    #: Seconds a client has to send a complete request head; idle and half-sent connections are closed.
    request_head: _Positive = 10.0
    #: Seconds a stopping server lets in-flight requests finish before ending them with an error.
    shutdown: Annotated[float, msgspec.Meta(ge=0)] = 30.0


class DiscoveryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    #: Seconds between two refreshes of a provider's live model list.
    interval: float = 3600.0


class GatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    #: Seconds between two full reloads of the keys from the store (a change made elsewhere without
    #: Redis, such as ``switchboard keys`` on the same SQLite file, is seen within this time).
    key_refresh: _Positive = 10.0
    #: Seconds between two batched writes of the usage ledger (a crash loses at most this much).
    ledger_flush: _Positive = 1.0


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8642
    #: name → "provider/model"
    aliases: dict[str, str] = {}
    timeouts: TimeoutConfig = TimeoutConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    #: Serve on a non-loopback address with no client authentication (see `switchboard serve --help`).
    insecure_no_auth: bool = False
    #: Host names served besides loopback ones; ``["*"]`` serves any (see the module docstring).
    allowed_hosts: list[str] | None = None
    #: Concurrent client connections; default: derived from the open-file limit.
    max_connections: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: Largest request body accepted, in MiB (base64 images make bodies large).
    max_body_mb: _Positive = 64.0
    #: The gateway's master key (see the module docstring); None: no client authentication.
    master_key: str | None = None
    #: SQLAlchemy-style URL of the keys and usage store; None: SQLite at $SWITCHBOARD_HOME/switchboard.db.
    database_url: str | None = None
    #: Redis for limits and key invalidation shared by replicas; None: kept in process.
    redis_url: str | None = None
    gateway: GatewayConfig = GatewayConfig()
    #: GET /metrics, OpenTelemetry traces, the JSON access log (see :mod:`proxy.telemetry.config`).
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()
    access_log: AccessLogConfig = AccessLogConfig()
    #: Installed provider packages: which may replace a built-in, which not to load (:mod:`providers.extensions`).
    extensions: ExtensionsConfig = ExtensionsConfig()
    #: OIDC issuers whose ID tokens are API keys (CI jobs; see :mod:`proxy.gateway.oidc_config`).
    oidc: OidcConfig | None = None
    #: Route names clients use as models → targets and a strategy (see :mod:`proxy.routing`).
    routes: dict[str, RouteConfig] = {}
    retries: RetryConfig = RetryConfig()
    cooldown: CooldownConfig = CooldownConfig()
    #: A prompt too long for a target (estimated, or the upstream said so) goes to the next that fits.
    context_window_fallback: bool = True


def load_server_config(path: Path) -> ServerConfig:
    """``config.json`` (defaults when it does not exist), with the environment's store URLs applied."""
    return _with_env(_read_server_config(path))


def _read_server_config(path: Path) -> ServerConfig:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ServerConfig()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        config = msgspec.json.decode(raw, type=ServerConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_where(exc, raw)}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    return config


def _where(exc: msgspec.ValidationError, raw: bytes) -> str:
    """msgspec's message with the key path spelled out; a route is named (msgspec says ``routes[...]``)."""
    message = str(exc)
    if "`$.routes[...]" in message:
        # Decode the routes one by one to name the culprit.
        try:
            routes = msgspec.json.decode(raw, type=dict[str, msgspec.Raw]).get("routes")
            by_name = msgspec.json.decode(routes, type=dict[str, msgspec.Raw]) if routes else {}
        except (msgspec.ValidationError, msgspec.DecodeError):
            by_name = {}
        for name, body in by_name.items():
            try:
                msgspec.json.decode(body, type=RouteConfig)
            except msgspec.ValidationError as inner:
                found = str(inner).replace("`$", f"`config.routes.{name}")
                return found if " - at `" in found else f"{found} - at `config.routes.{name}`"
    return message.replace("`$", "`config")


def _with_env(config: ServerConfig) -> ServerConfig:
    """The store URLs from the environment over the file's (a container sets them per replica). The
    master key is not read here: an environment value is a literal, a file value may be a ``!command``
    (see :func:`proxy.gateway.gateway.master_key_value`)."""
    env = os.environ
    db = env.get("SWITCHBOARD_DATABASE_URL") or config.database_url
    redis = env.get("SWITCHBOARD_REDIS_URL") or config.redis_url
    if db == config.database_url and redis == config.redis_url:
        return config
    return msgspec.structs.replace(config, database_url=db, redis_url=redis)
