"""The upstream HTTP client behind one small interface: send, stream the body, close.

The proxy's speed is decided here (see bench/README.md), so the implementation is chosen by the
benchmark and selectable with ``SWITCHBOARD_UPSTREAM_CLIENT``:

* ``aiohttp`` (default): aiohttp's client used directly, one pooled session per process.
* ``httpx-aiohttp``: httpx's API over the aiohttp transport.
* ``httpx``: httpx with its default httpcore pool.

Contract: :meth:`UpstreamClient.send` returns once the status line and headers arrived (the body is not
read). It raises :class:`UpstreamTimeout` or :class:`UpstreamUnreachable`; it never raises a foreign
exception. Reading the body (``read``/``chunks``) may raise the same two. The caller must ``close()``
every response it got, which releases the connection, or aborts it if the body was not fully read
(so a cancelled client request cancels the upstream one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import yarl

from .errors import ConfigError, UpstreamTimeout, UpstreamUnreachable

__all__ = [
    "Timeouts",
    "UpstreamClient",
    "UpstreamResponse",
    "aclose_quietly",
    "broken_off",
    "make_client",
    "timeout_error",
    "unreachable",
]


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    #: Longest wait for the response headers and between two body chunks.
    read: float = 600.0


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...
    def chunks(self) -> AsyncIterator[bytes]: ...
    async def close(self) -> None: ...


class UpstreamClient(Protocol):
    name: str

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> UpstreamResponse: ...
    async def close(self) -> None: ...


def unreachable(url: str, exc: BaseException) -> UpstreamUnreachable:
    # The URL names the host the user configured; no credential is ever in it.
    return UpstreamUnreachable(
        f"could not connect to the provider at {url.split('?', 1)[0]} ({type(exc).__name__}: {exc}); "
        "check the provider's base URL and your network"
    )


def broken_off(url: str, exc: BaseException) -> UpstreamUnreachable:
    """The connection failed after the provider had started answering."""
    return UpstreamUnreachable(
        f"the connection to the provider at {url.split('?', 1)[0]} broke off mid-answer ({type(exc).__name__}); "
        "retry the request"
    )


def timeout_error(url: str, t: Timeouts) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"the provider at {url.split('?', 1)[0]} did not answer within {t.read:g}s; "
        "retry, or raise timeouts.read in the server config"
    )


class _AiohttpResponse:
    __slots__ = ("_resp", "_t", "_url", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, url: str, t: Timeouts) -> None:
        self._resp = resp
        self._url = url
        self._t = t
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise timeout_error(self._url, self._t) from exc
        except aiohttp.ClientError as exc:
            raise broken_off(self._url, exc) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise timeout_error(self._url, self._t) from exc
        except aiohttp.ClientError as exc:
            raise broken_off(self._url, exc) from exc

    async def close(self) -> None:
        # release() returns a fully read connection to the pool; close() aborts an unfinished one.
        if self._resp.content.at_eof():
            self._resp.release()
        else:
            self._resp.close()


class _ProxyTable:
    """HTTP(S)_PROXY / NO_PROXY read once at start, answered per host from a dict.

    aiohttp's ``trust_env`` would re-read the environment and ``~/.netrc`` on every request.
    """

    def __init__(self) -> None:
        self._proxies = urllib.request.getproxies_environment()
        self._by_origin: dict[str, str | None] = {}

    def for_url(self, url: str) -> str | None:
        if not self._proxies:
            return None
        scheme, _, rest = url.partition("://")
        host = rest.split("/", 1)[0]
        origin = f"{scheme}://{host}"
        if origin not in self._by_origin:
            bypass_check = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
            bypass = bypass_check(host.rsplit(":", 1)[0], self._proxies)
            self._by_origin[origin] = None if bypass else self._proxies.get(scheme)
        return self._by_origin[origin]


class AiohttpClient:
    name = "aiohttp"

    def __init__(self, timeouts: Timeouts) -> None:
        self._t = timeouts
        self._proxy = _ProxyTable()
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect, sock_read=timeouts.read)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily inside the running loop (aiohttp binds the session to it).
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                trust_env=False,
            )
        return self._session

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> UpstreamResponse:
        try:
            # A URL we percent-encoded ourselves (a Bedrock model id's ":" as %3A) must go out byte for
            # byte: SigV4 signs the path exactly as sent.
            target = yarl.URL(url, encoded=True) if "%" in url else url
            resp = await self._get_session().request(
                method, target, headers=headers, data=body, proxy=self._proxy.for_url(url)
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise timeout_error(url, self._t) from exc
        except aiohttp.ClientError as exc:
            raise unreachable(url, exc) from exc
        return _AiohttpResponse(resp, url, self._t)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def make_client(timeouts: Timeouts, kind: str | None = None) -> UpstreamClient:
    """The process's one upstream client; ``kind`` defaults to ``$SWITCHBOARD_UPSTREAM_CLIENT``."""
    kind = kind or os.environ.get("SWITCHBOARD_UPSTREAM_CLIENT") or "aiohttp"
    if kind == "aiohttp":
        return AiohttpClient(timeouts)
    if kind in ("httpx", "httpx-aiohttp"):
        from .transport_httpx import HttpxClient  # only when chosen: httpx costs ~0.1 s of start-up

        return HttpxClient(timeouts, aiohttp_transport=kind == "httpx-aiohttp")
    raise ConfigError(f"SWITCHBOARD_UPSTREAM_CLIENT must be aiohttp, httpx-aiohttp or httpx, not {kind!r}")


async def aclose_quietly(resp: UpstreamResponse) -> None:
    """Close a response on an error path; a second failure there must not hide the first."""
    with contextlib.suppress(Exception):
        await asyncio.shield(resp.close())
