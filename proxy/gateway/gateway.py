"""The team gateway, assembled from the configuration: on when a master key is configured.

Built by the :class:`proxy.runtime.Runtime`, started and stopped in the app's lifespan (the ledger is
flushed on stop, so a SIGTERM loses no record). Without ``redis_url`` the limits and key invalidation
are kept in process (right for one process); with it they are shared by every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from providers.errors import ConfigError
from providers.keyvalue import resolve_key_value

from ..config import Paths, ServerConfig
from .bus import LocalBus, RedisBus
from .contract import Bus, Limiter, hash_key
from .keycache import KeyCache
from .ledger import Ledger
from .limits import LocalLimiter
from .service import KeyService
from .steps import GatewaySteps
from .store import SqlStore, database_url, redact_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .oidc import OidcAuth

__all__ = ["Gateway", "master_key_value"]

log = logging.getLogger("switchboard")

#: Shorter master keys are refused: the master key opens the admin API.
_MIN_MASTER_KEY = 16


def master_key_value(config: ServerConfig, paths: Paths, env: Mapping[str, str] | None = None) -> str | None:
    """The master key: ``SWITCHBOARD_MASTER_KEY`` (a literal), else config.json's ``master_key`` (literal,
    ``$VAR``, or ``!command`` when config.json is owned by you). None: the gateway is off."""
    env = os.environ if env is None else env
    raw = env.get("SWITCHBOARD_MASTER_KEY")
    where = "SWITCHBOARD_MASTER_KEY"
    if raw is None or raw == "":
        if not config.master_key:
            return None
        where = f"master_key in {paths.config_json}"
        raw = resolve_key_value(config.master_key, env=env, source=paths.config_json)
        if raw is None:
            raise ConfigError(
                f"{where} does not resolve to a key (an unset variable, or a command that printed nothing)"
            )
    if len(raw) < _MIN_MASTER_KEY:
        raise ConfigError(
            f"{where} is shorter than {_MIN_MASTER_KEY} characters; it opens the admin API, so use a long random "
            "value, e.g. from: python3 -c 'import secrets; print(\"sk-sb-master-\" + secrets.token_urlsafe(32))'"
        )
    return raw


class Gateway:
    def __init__(self, master_key: str, config: ServerConfig, paths: Paths) -> None:
        self._master_hash = hash_key(master_key)
        url = database_url(config.database_url, paths.home)
        self.database = redact_url(url)
        self.store = SqlStore(url)
        self._redis: Redis | None = None
        self.limiter: Limiter
        self.bus: Bus
        if config.redis_url:
            from redis.asyncio import Redis as _Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import ExponentialWithJitterBackoff

            from .limits_redis import RedisLimiter

            # Two quick retries, not redis-py's ten: an outage must reach the in-process fallback fast.
            self._redis = _Redis.from_url(
                config.redis_url,
                socket_connect_timeout=2.0,
                socket_timeout=2.0,
                retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.05), 2),
            )
            self.limiter = RedisLimiter(self._redis)
            self.bus = RedisBus(self._redis)
        else:
            self.limiter = LocalLimiter()
            self.bus = LocalBus()
        self.keys = KeyCache(self.store, self.limiter, config.gateway.key_refresh)
        self.ledger = Ledger(self.store, interval=config.gateway.ledger_flush)
        self.service = KeyService(self.store, self.bus, self.limiter)
        #: CI jobs' OIDC ID tokens as keys (config.json's ``oidc``); None: not configured.
        self.oidc: OidcAuth | None = None
        if config.oidc is not None:
            from .oidc import OidcAuth  # PyJWT and cryptography (~9 MB) load only when an issuer is trusted

            self.oidc = OidcAuth(config.oidc, self.store, self.limiter)
        self.steps = GatewaySteps(self)
        #: Settlements still running (a Redis round trip each); awaited on stop.
        self.tasks: set[asyncio.Task[None]] = set()

    def is_master(self, token: str) -> bool:
        return hmac.compare_digest(hash_key(token), self._master_hash)

    def derive_key(self, label: bytes) -> bytes:
        """A secret for ``label`` derived from the master key: the same on every replica, another master key
        gives another one (the dashboard signs its session cookies with it)."""
        return hmac.new(bytes.fromhex(self._master_hash), label, hashlib.sha256).digest()

    async def start(self) -> None:
        await self.store.start()
        await self.limiter.start()
        await self.bus.start()
        self.bus.subscribe(self.keys.invalidate)
        await self.keys.start()
        self.ledger.start()
        if self.oidc is not None:
            await self.oidc.start()
        log.info(
            "gateway on: %s keys, store %s, limits %s",
            len(await self.store.list_keys()),
            self.database,
            "in Redis" if self._redis is not None else "in process",
        )

    async def stop(self) -> None:
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5.0)
        await self.keys.close()
        if self.oidc is not None:
            await self.oidc.close()
        await self.ledger.close()
        await self.bus.close()
        await self.limiter.close()
        await self.store.close()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    def problems(self) -> list[str]:
        found = [self.keys.problem, self.ledger.problem, self.limiter.problem, self.bus.problem]
        if self.oidc is not None:
            found.append(self.oidc.problem)
        return [p for p in found if p]
