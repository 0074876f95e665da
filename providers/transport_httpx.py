"""The httpx-based upstream clients (``httpx`` and ``httpx-aiohttp``), measured against aiohttp by
``bench/run.sh``; see :mod:`providers.transport` for the contract."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import httpx

from .transport import Timeouts, UpstreamResponse, broken_off, timeout_error, unreachable

__all__ = ["HttpxClient"]


class _HttpxResponse:
    __slots__ = ("_resp", "_t", "_url", "headers", "status")

    def __init__(self, resp: httpx.Response, url: str, t: Timeouts) -> None:
        self._resp = resp
        self._url = url
        self._t = t
        self.status = resp.status_code
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.aread()
        except httpx.TimeoutException as exc:
            raise timeout_error(self._url, self._t) from exc
        except httpx.HTTPError as exc:
            raise broken_off(self._url, exc) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.aiter_bytes():
                yield chunk
        except httpx.TimeoutException as exc:
            raise timeout_error(self._url, self._t) from exc
        except httpx.HTTPError as exc:
            raise broken_off(self._url, exc) from exc

    async def close(self) -> None:
        await self._resp.aclose()


class HttpxClient:
    def __init__(self, timeouts: Timeouts, *, aiohttp_transport: bool) -> None:
        self._t = timeouts
        self.name = "httpx-aiohttp" if aiohttp_transport else "httpx"
        timeout = httpx.Timeout(timeouts.read, connect=timeouts.connect, pool=None)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        transport: httpx.AsyncBaseTransport | None = None
        if aiohttp_transport:
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport()
        self._client = httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport)

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> UpstreamResponse:
        req = self._client.build_request(method, url, headers=headers, content=body)
        try:
            resp = await self._client.send(req, stream=True)
        except httpx.TimeoutException as exc:
            raise timeout_error(url, self._t) from exc
        except httpx.HTTPError as exc:
            raise unreachable(url, exc) from exc
        return _HttpxResponse(resp, url, self._t)

    async def close(self) -> None:
        await self._client.aclose()
