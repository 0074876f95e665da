"""Where ``switchboard keys`` / ``usage`` do their work: a running gateway's admin API, or the store.

Both backends take and return the admin API's JSON (views, ``{"data": [...]}`` reports), so the
commands print the same whichever answers. The local one runs :class:`KeyService` on the configured
store, validating exactly as the API does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx
import msgspec

from providers.errors import ConfigError, SwitchboardError

from .config import Paths, load_server_config

if TYPE_CHECKING:
    from .gateway.service import KeyService

__all__ = ["Backend", "LocalBackend", "RemoteBackend", "backend_for"]

log = logging.getLogger("switchboard")

_T = TypeVar("_T")


class Backend(Protocol):
    def create(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def list(self) -> list[dict[str, Any]]: ...
    def get(self, key_id: str) -> dict[str, Any]: ...
    def update(self, key_id: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def rotate(self, key_id: str) -> dict[str, Any]: ...
    def delete(self, key_id: str) -> None: ...
    def usage(self, group_by: str, since: str, key_id: str | None) -> dict[str, Any]: ...


def backend_for(url: str | None) -> Backend:
    if url is None:
        return LocalBackend()
    master = os.environ.get("SWITCHBOARD_MASTER_KEY")
    if not master:
        raise ConfigError(
            f"--url/SWITCHBOARD_URL points at the gateway {url}, whose admin API needs the master key: "
            "set SWITCHBOARD_MASTER_KEY (or unset SWITCHBOARD_URL to work on the local store)"
        )
    return RemoteBackend(url, master)


class RemoteBackend:
    """The admin API of a running gateway, with the master key."""

    def __init__(self, url: str, master_key: str) -> None:
        self.url = url.rstrip("/")
        self._headers = {"authorization": f"Bearer {master_key}", "content-type": "application/json"}

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/keys", body))

    def list(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/keys")["data"])

    def get(self, key_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/keys/{_segment(key_id)}"))

    def update(self, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("PATCH", f"/keys/{_segment(key_id)}", body))

    def rotate(self, key_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/keys/{_segment(key_id)}/rotate", {}))

    def delete(self, key_id: str) -> None:
        self._call("DELETE", f"/keys/{_segment(key_id)}")

    def usage(self, group_by: str, since: str, key_id: str | None) -> dict[str, Any]:
        params = {"group_by": group_by, "since": since, **({"key": key_id} if key_id else {})}
        return dict(self._call("GET", "/usage", params=params))

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> Any:
        try:
            with httpx.Client(timeout=30.0) as client:
                response = client.request(
                    method,
                    f"{self.url}/admin/v1{path}",
                    headers=self._headers,
                    content=None if body is None else msgspec.json.encode(body),
                    params=params,
                )
        except httpx.HTTPError as exc:
            raise SwitchboardError(
                f"cannot reach the gateway at {self.url} ({type(exc).__name__}); check that it is running and "
                "that --url / SWITCHBOARD_URL points at it",
                code="gateway_unreachable",
            ) from exc
        try:
            data = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            data = None
        if response.status_code == 401:
            raise SwitchboardError(
                f"the gateway at {self.url} refused the master key (401): set SWITCHBOARD_MASTER_KEY to the value "
                "the gateway was started with",
                status=401,
                code="invalid_api_key",
            )
        if response.is_success and isinstance(data, dict):
            return data
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            raise SwitchboardError(
                f"{self.url} answered HTTP {response.status_code} without a Switchboard error; is --url / "
                "SWITCHBOARD_URL the gateway's base URL (e.g. http://host:8642)?",
                status=502,
            )
        raise SwitchboardError(error["message"], status=response.status_code, code=error.get("code"))


class LocalBackend:
    """The store itself (no server needed), as the configured gateway would use it."""

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        from .gateway.service import decode_spec

        async def run(svc: KeyService) -> dict[str, Any]:
            record, plaintext = await svc.create(decode_spec(body))
            return {**svc.view(record, 0.0, time.time()), "key": plaintext}

        return _run(run)

    def list(self) -> list[dict[str, Any]]:
        async def run(svc: KeyService) -> list[dict[str, Any]]:
            views: list[dict[str, Any]] = await svc.views(await svc.list())
            return views

        return _run(run)

    def get(self, key_id: str) -> dict[str, Any]:
        async def run(svc: KeyService) -> dict[str, Any]:
            views: list[dict[str, Any]] = await svc.views([await svc.get(key_id)])
            return views[0]

        return _run(run)

    def update(self, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
        async def run(svc: KeyService) -> dict[str, Any]:
            views: list[dict[str, Any]] = await svc.views([await svc.update(key_id, body)])
            return views[0]

        return _run(run)

    def rotate(self, key_id: str) -> dict[str, Any]:
        async def run(svc: KeyService) -> dict[str, Any]:
            plaintext = await svc.rotate(key_id)
            views: list[dict[str, Any]] = await svc.views([await svc.get(key_id)])
            return {**views[0], "key": plaintext}

        return _run(run)

    def delete(self, key_id: str) -> None:
        async def run(svc: KeyService) -> None:
            await svc.delete(key_id)

        _run(run)

    def usage(self, group_by: str, since: str, key_id: str | None) -> dict[str, Any]:
        from .gateway.periods import iso
        from .gateway.timeparse import parse_since

        start = parse_since(since, time.time())

        async def run(svc: KeyService) -> dict[str, Any]:
            rows = await svc.usage(group_by, start, key_id)
            return {
                "object": "list",
                "group_by": group_by,
                "since": iso(start),
                "data": [msgspec.structs.asdict(r) for r in rows],
            }

        return _run(run)


def _run(op: Callable[[KeyService], Awaitable[_T]]) -> _T:
    return asyncio.run(_with_service(op))


async def _with_service(op: Callable[[KeyService], Awaitable[_T]]) -> _T:
    """Open the configured store (and Redis, to announce changes), run ``op`` on a KeyService, close."""
    if not log.isEnabledFor(logging.DEBUG):
        # Alembic reports its plugins (at import) and each migration at INFO: noise around a command's output.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    # Imported here: `switchboard serve` and `models` need none of the database stack.
    from .gateway import service
    from .gateway.bus import LocalBus, RedisBus
    from .gateway.contract import Bus
    from .gateway.store import SqlStore, database_url

    paths = Paths.from_env()
    config = load_server_config(paths.config_json)
    store = SqlStore(database_url(config.database_url, paths.home))
    redis: Any = None
    bus: Bus
    if config.redis_url:
        from redis.asyncio import Redis

        redis = Redis.from_url(config.redis_url, socket_connect_timeout=2.0, socket_timeout=2.0)
        bus = RedisBus(redis)
    else:
        # Nobody else listens in this process; a server on the same SQLite file sees the change at its
        # next reload of the keys (config.json's gateway.key_refresh).
        bus = LocalBus()
    # The bus is not started: this process only publishes, and listening would cost a subscription
    # (and a wait of seconds when Redis is down, where publish just warns).
    await store.start()
    try:
        return await op(service.KeyService(store, bus, None))
    finally:
        await store.close()
        if redis is not None:
            await redis.aclose()


def _segment(key_id: str) -> str:
    """A key id as one path segment (an id typed with a '/' must not reach another endpoint)."""
    from urllib.parse import quote

    return quote(key_id, safe="")
