"""The process's shared state, created in the app's lifespan.

Holds the registry (built-ins + ``models.json`` + discovered models), the credential resolver, the
router and the one upstream client. Two background tasks keep it fresh without touching the request
path: a watcher that reloads when ``auth.json``/``models.json`` change (mtime polled every 2 s), and
model discovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from providers import extensions
from providers.authstore import AuthStore
from providers.credentials import Credentials
from providers.discovery import describe_failure, fetch_models, load_cached, merge_discovered, save_cached
from providers.errors import ConfigError, SwitchboardError
from providers.models_json import apply_models_json
from providers.registry import Provider, Registry
from providers.transport import Timeouts, UpstreamClient, make_client

from .config import Paths, ServerConfig
from .router import Router
from .routing.engine import Routing

if TYPE_CHECKING:
    import httpx

    from .gateway.gateway import Gateway
    from .outcome import Observer
    from .pipeline import Steps
    from .telemetry.observer import Telemetry

__all__ = ["Runtime", "build_registry"]

log = logging.getLogger("switchboard")

_WATCH_INTERVAL = 2.0
_RETRY_AFTER_FAILURE = 300.0


def build_registry(paths: Paths, cache_dir: Path | None = None) -> Registry:
    """Built-in and extension providers (:func:`providers.extensions.active`), with ``models.json``
    applied and cached discovered models merged."""
    registry = apply_models_json(Registry(extensions.active().providers), paths.models_json)
    if cache_dir is not None:
        for p in list(registry):
            cached = load_cached(cache_dir, p.id) if p.discovery else None
            if cached:
                registry = registry.replace(merge_discovered(p, cached[1]))
    return registry


def _master_key(config: ServerConfig, paths: Paths) -> str | None:
    if not (config.master_key or os.environ.get("SWITCHBOARD_MASTER_KEY")):
        return None
    from .gateway.gateway import master_key_value

    return master_key_value(config, paths)


def _plain_steps() -> Steps:
    from .pipeline import Steps  # the pipeline module imports this one

    return Steps()


class Runtime:
    def __init__(self, paths: Paths, config: ServerConfig, cli_keys: Mapping[str, str] | None = None) -> None:
        self.paths = paths
        self.config = config
        self.started = time.time()
        extensions.activate(config.extensions)  # before the registry: it decides which extensions load
        self.credentials = Credentials(
            AuthStore(paths.auth_json), cli_keys=cli_keys, models_json_path=paths.models_json
        )
        self.router = Router(build_registry(paths, paths.model_cache), config.aliases, self.credentials.available)
        #: Routes, retries, fallbacks and cooldowns; checks the routes against the registry (ConfigError).
        self.routing = Routing(config, self.router, paths.config_json)
        self.client: UpstreamClient = make_client(
            Timeouts(config.timeouts.connect, config.timeouts.read, config.timeouts.total)
        )
        self._tasks: list[asyncio.Task[None]] = []
        #: The team gateway (keys, limits, ledger); None without a master key.
        self.gateway: Gateway | None = None
        #: The pipeline's steps: the gateway's when it is on, else the no-op ones.
        self.steps: Steps = _plain_steps()
        from .telemetry.observer import build_telemetry  # it loads the pipeline, which imports this module

        #: Metrics, traces and the access log (:mod:`proxy.telemetry`); None when all are off.
        self.telemetry: Telemetry | None = build_telemetry(config, paths)
        #: Watches every request (metrics, traces, access log); None: nothing is watched, nothing paid.
        self.observer: Observer | None = self.telemetry
        master_key = _master_key(config, paths)
        if master_key is not None:
            from .gateway.gateway import Gateway  # SQLAlchemy and Redis load only when the gateway is on

            self.gateway = Gateway(master_key, config, paths)
            self.steps = self.gateway.steps
        elif config.oidc is not None:
            from .gateway.oidc_config import NEEDS_GATEWAY

            raise ConfigError(NEEDS_GATEWAY)
        self._mtimes = self._config_mtimes()
        self._discovered_at: dict[str, float] = {}
        #: Background discovery rounds completed (whatever they found), so that a test can wait for one.
        self.discovery_rounds = 0
        #: Why the last models.json change was not applied (the previous registry stays in use).
        self._models_problem: str | None = None

    @property
    def meter(self) -> bool:
        """Legs read each exchange's usage (the gateway's ledger, token metrics); off: not a byte parsed."""
        return self.steps.meter or self.telemetry is not None

    @property
    def registry(self) -> Registry:
        return self.router.registry

    async def start(self) -> None:
        if self.gateway is not None:
            await self.gateway.start()
        await self.routing.start()
        self._tasks.append(asyncio.create_task(self._watch(), name="switchboard-config-watch"))
        if self.config.discovery.enabled:
            self._tasks.append(asyncio.create_task(self._discover_loop(), name="switchboard-discovery"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.gateway is not None:
            # After the server let in-flight requests end: their records are in the ledger's queue.
            await self.gateway.stop()
        await self.routing.stop()
        await self.client.close()

    def reload(self) -> None:
        """Re-read models.json and auth.json; a broken file keeps the previous state and logs why."""
        self.credentials.invalidate()
        try:
            registry = build_registry(self.paths, self.paths.model_cache)
        except SwitchboardError as exc:
            log.error("not reloading models.json: %s", exc.message)
            self._models_problem = f"{exc.message}; fix it: the last good version is in use"
            self.router.rebuild()
            return
        self._models_problem = None
        self.router.rebuild(registry)
        log.info("reloaded configuration from %s", self.paths.home)

    def problems(self) -> list[str]:
        """Config files that are broken right now, each with what is wrong (for ``/healthz``)."""
        found = [self.credentials.auth_problem, self._models_problem, self.routing.problem]
        if self.gateway is not None:
            found.extend(self.gateway.problems())
        return [p for p in found if p is not None]

    def _config_mtimes(self) -> tuple[float | None, ...]:
        out: list[float | None] = []
        for path in (self.paths.auth_json, self.paths.models_json):
            try:
                out.append(path.stat().st_mtime)
            except OSError:
                out.append(None)
        return tuple(out)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(_WATCH_INTERVAL)
            mtimes = self._config_mtimes()
            if mtimes != self._mtimes:
                self._mtimes = mtimes
                self.reload()

    async def _discover_loop(self) -> None:
        interval = self.config.discovery.interval
        import httpx  # here, not at import: it is off the start-up path

        async with httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=5.0)) as http:
            while True:
                try:
                    await self.discover_once(http)
                except Exception as exc:
                    # One bad round (a broken auth.json, say) must not end discovery for good.
                    why = exc.message if isinstance(exc, SwitchboardError) else type(exc).__name__
                    log.warning("model discovery round failed: %s", why)
                    log.debug("model discovery round failed", exc_info=True)
                self.discovery_rounds += 1
                await asyncio.sleep(min(interval, 60.0))

    async def discover_once(self, http: httpx.AsyncClient) -> None:
        """Refresh every due provider's live list (credentials present, list endpoint known)."""
        interval = self.config.discovery.interval
        for provider in list(self.registry):
            if not provider.discovery or not self.credentials.available(provider):
                continue
            if time.time() < self.next_discovery(provider.id):
                continue
            ok = await self._discover(http, provider)
            # A failed fetch (a flaky network at start-up, say) is retried in minutes, not in an interval.
            retry = interval if ok else min(interval, _RETRY_AFTER_FAILURE)
            self._discovered_at[provider.id] = time.time() - interval + retry

    def next_discovery(self, provider_id: str) -> float:
        """When the provider's live list is next due (epoch seconds)."""
        cached = load_cached(self.paths.model_cache, provider_id)
        last = max(self._discovered_at.get(provider_id, 0.0), cached[0] if cached else 0.0)
        return last + self.config.discovery.interval

    async def _discover(self, http: httpx.AsyncClient, provider: Provider) -> bool:
        try:
            auth = await self.credentials.resolve(provider)
            found = await fetch_models(http, auth)
        except SwitchboardError as exc:
            log.warning("model discovery for %s skipped: %s", provider.id, exc.message)
            return False
        except Exception as exc:
            # Discovery is best effort: the shipped catalog still serves.
            log.warning("model discovery for %s failed: %s", provider.id, describe_failure(exc))
            return False
        try:
            save_cached(self.paths.model_cache, provider.id, found)
        except OSError as exc:
            # The list is still used until the next restart; only the next start is slower to show it.
            log.warning("could not write the model cache in %s: %s", self.paths.model_cache, exc.strerror or exc)
        current = self.registry.get(provider.id)
        if current is not None:
            self.router.rebuild(self.registry.replace(merge_discovered(current, found)))
        log.info("discovered %d models for %s", len(found), provider.id)
        return True
