"""The httpx-based upstream clients (``httpx`` and ``httpx-aiohttp``), measured against aiohttp by
``bench/run.sh``; see :mod:`providers.transport` for the contract."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import httpx

from .transport import Timeouts, UpstreamResponse, broken_off, refuse_redirect, timeout_error, unreachable

__all__ = ["HttpxClient"]


class _HttpxResponse:
    __slots__ = ("_chunks", "_provider", "_resp", "_t", "_url", "headers", "status")

    def __init__(self, resp: httpx.Response, url: str, t: Timeouts, provider: str) -> None:
        self._resp = resp
        self._chunks: AsyncIterator[bytes] | None = None
        self._url = url
        self._t = t
        self._provider = provider
        self.status = resp.status_code
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.aread()
        except httpx.TimeoutException as exc:
            raise timeout_error(self._url, self._t, self._provider) from exc
        except httpx.HTTPError as exc:
            raise broken_off(self._url, exc, self._provider) from exc

    async def read_chunk(self) -> bytes:
        if self._chunks is None:
            self._chunks = self._resp.aiter_bytes()
        try:
            async for chunk in self._chunks:
                if chunk:
                    return chunk
        except httpx.TimeoutException as exc:
            raise timeout_error(self._url, self._t, self._provider) from exc
        except httpx.HTTPError as exc:
            raise broken_off(self._url, exc, self._provider) from exc
        return b""

    def ended(self) -> bool:
        return False  # httpx does not tell, without another read, whether the body is complete

    async def close(self) -> None:
        await self._resp.aclose()


class HttpxClient:
    def __init__(self, timeouts: Timeouts, *, aiohttp_transport: bool) -> None:
        self.timeouts = timeouts
        self.name = "httpx-aiohttp" if aiohttp_transport else "httpx"
        timeout = httpx.Timeout(timeouts.read, connect=timeouts.connect, pool=None)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        transport: httpx.AsyncBaseTransport | None = None
        if aiohttp_transport:
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport()
        # Redirects are refused, not followed (see providers.transport).
        self._client = httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport, follow_redirects=False)

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        provider: str = "the provider",
    ) -> UpstreamResponse:
        req = self._client.build_request(method, url, headers=headers, content=body)
        for retry in (True, False):
            try:
                resp = await self._client.send(req, stream=True)
                break
            except httpx.TimeoutException as exc:
                raise timeout_error(url, self.timeouts, provider) from exc
            except httpx.RemoteProtocolError as exc:
                # httpcore's word for a pooled connection the provider closed while idle; it does not
                # say whether the connection was new, so this retries at most once either way.
                if not retry:
                    raise unreachable(url, exc, provider) from exc
            except httpx.HTTPError as exc:
                raise unreachable(url, exc, provider) from exc
        if 300 <= resp.status_code < 400:
            location = resp.headers.get("location")
            await resp.aclose()
            raise refuse_redirect(url, resp.status_code, location, provider)
        return _HttpxResponse(resp, url, self.timeouts, provider)

    async def close(self) -> None:
        await self._client.aclose()
