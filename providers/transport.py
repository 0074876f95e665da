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

Provider redirects are never followed: a 3xx would re-send the key, the configured secret headers and
(307/308) the prompt to whatever address it names, so :meth:`UpstreamClient.send` turns it into a 502
that says to fix the base URL. A request whose pooled connection turns out to have been closed by the
provider while idle (the keep-alive race) is sent once more on a new connection, which is safe since
nothing has reached the client yet. Messages name the provider (``provider=``), never the URL: the URL,
without userinfo and query, goes to the server log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import urllib.request
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import yarl
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from .errors import ConfigError, UpstreamTimeout, UpstreamUnreachable
from .masking import safe_url, strip_userinfo

__all__ = [
    "Timeouts",
    "UpstreamClient",
    "UpstreamResponse",
    "aclose_quietly",
    "broken_off",
    "make_client",
    "refuse_redirect",
    "timeout_error",
    "unreachable",
]

log = logging.getLogger("switchboard")


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    #: Longest wait for the response headers, and between two complete events of a stream.
    read: float = 600.0
    #: Deadline for a whole non-streaming request, headers and body; None: the same as ``read``.
    total: float | None = None

    def budget(self, stream: bool) -> tuple[float, str]:
        """How long the upstream may take before the client gets a first byte, and the setting to raise.

        A stream has ``read`` for its headers, then ``read`` between complete events; a plain request
        has ``total`` for all of it.
        """
        if stream or self.total is None:
            return self.read, "timeouts.read"
        return self.total, "timeouts.total"


class UpstreamResponse(Protocol):
    """An answer whose headers arrived."""

    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    async def read_chunk(self) -> bytes:
        """The body's next bytes as they arrive; b"" once all of it was read. (An await per read, not an
        async iterator: a stream's relay calls it on every request, and a generator costs a frame more.)"""
        ...

    def ended(self) -> bool:
        """True once the whole body arrived and :meth:`read_chunk` returned all of it, known without
        suspending (a stream's relay then sends the last chunk together with the stream's end); False when
        the client cannot tell."""
        ...

    async def close(self) -> None: ...


class UpstreamClient(Protocol):
    name: str
    timeouts: Timeouts

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, *, provider: str = ...
    ) -> UpstreamResponse: ...
    async def close(self) -> None: ...


def _detail(exc: BaseException) -> str:
    # Some exceptions (an invalid URL) quote the URL, userinfo and all.
    text = strip_userinfo(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def unreachable(url: str, exc: BaseException, provider: str = "the provider") -> UpstreamUnreachable:
    log.warning("could not connect to %s (%s): %s", provider, safe_url(url), _detail(exc))
    return UpstreamUnreachable(
        f"could not connect to {provider} ({_detail(exc)}); check the provider's baseUrl and your network"
    )


def broken_off(url: str, exc: BaseException, provider: str = "the provider") -> UpstreamUnreachable:
    """The connection failed after the provider had started answering."""
    log.warning("the connection to %s (%s) broke off mid-answer: %s", provider, safe_url(url), _detail(exc))
    return UpstreamUnreachable(
        f"the connection to {provider} broke off mid-answer ({type(exc).__name__}); retry the request"
    )


def timeout_error(url: str, t: Timeouts, provider: str = "the provider") -> UpstreamTimeout:
    log.warning("%s (%s) sent nothing for %gs", provider, safe_url(url), t.read)
    return UpstreamTimeout(
        f"{provider} did not answer within {t.read:g}s; retry, or raise timeouts.read in the server config"
    )


def refuse_redirect(url: str, status: int, location: str | None, provider: str) -> UpstreamUnreachable:
    """The error for a provider's 3xx; following it would hand the key (and the prompt) to another address."""
    target = safe_url(location or "")
    scheme, sep, rest = target.partition("://")
    where = f" to {scheme}://{rest.split('/', 1)[0]}" if sep else ""
    log.warning("%s (%s) answered %s redirecting%s; not followed", provider, safe_url(url), status, where)
    return UpstreamUnreachable(
        f"{provider} answered {status}, a redirect{where}; Switchboard does not follow provider redirects "
        "(they would carry the API key elsewhere): fix the provider's baseUrl in models.json"
    )


class _AiohttpResponse:
    __slots__ = ("_provider", "_resp", "_t", "_url", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, url: str, t: Timeouts, provider: str) -> None:
        self._resp = resp
        self._url = url
        self._t = t
        self._provider = provider
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise timeout_error(self._url, self._t, self._provider) from exc
        except aiohttp.ClientError as exc:
            raise broken_off(self._url, exc, self._provider) from exc

    async def read_chunk(self) -> bytes:
        try:
            return await self._resp.content.readany()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise timeout_error(self._url, self._t, self._provider) from exc
        except aiohttp.ClientError as exc:
            raise broken_off(self._url, exc, self._provider) from exc

    def ended(self) -> bool:
        """The body is complete and all of it was read (aiohttp parsed its end with its last bytes)."""
        return self._resp.content.at_eof()

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        """:meth:`close` without suspending: aiohttp's release and close are synchronous."""
        # release() returns a fully read connection to the pool; close() aborts an unfinished one.
        if self._resp.content.at_eof():
            self._resp.release()
        else:
            self._resp.close()


class _Attempt:
    """One try at sending a request: whether aiohttp gave it a pooled connection."""

    __slots__ = ("reused",)

    def __init__(self) -> None:
        self.reused = False


#: The try in progress in this task, for the connector to mark (a context variable reaches it through
#: aiohttp's call chain, whose signatures have no room for it).
_ATTEMPT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar("switchboard_attempt", default=None)


class _Connector(aiohttp.TCPConnector):
    """aiohttp's pool, telling each request whether its connection was used before.

    aiohttp's own hook for this (``TraceConfig.on_connection_reuseconn``) costs ~7% of the client's CPU
    per request; a weak set of the connections seen costs one lookup.
    """

    def __init__(self) -> None:
        super().__init__(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        self._seen: weakref.WeakSet[object] = weakref.WeakSet()

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> Connection:
        conn = await super().connect(req, traces, timeout)
        protocol = conn.protocol
        if protocol is not None:
            attempt = _ATTEMPT.get()
            if protocol in self._seen:
                if attempt is not None:
                    attempt.reused = True
            else:
                self._seen.add(protocol)
        return conn


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
        self.timeouts = timeouts
        self._proxy = _ProxyTable()
        # No sock_read: the pipeline bounds every exchange itself (a Deadline until the head, or the whole
        # of a plain answer; then a clock between complete stream events), which a byte gap can only
        # trip later. aiohttp would re-arm a timer on every read for it.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily inside the running loop (aiohttp binds the session to it).
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=_Connector(),
                timeout=self._timeout,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                trust_env=False,
            )
        return self._session

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        provider: str = "the provider",
    ) -> UpstreamResponse:
        # A URL we percent-encoded ourselves (a Bedrock model id's ":" as %3A) must go out byte for
        # byte: SigV4 signs the path exactly as sent.
        target = yarl.URL(url, encoded=True) if "%" in url else url
        for retry in (True, False):
            attempt = _Attempt()
            _ATTEMPT.set(attempt)
            try:
                resp = await self._get_session().request(
                    method,
                    target,
                    headers=headers,
                    data=body,
                    proxy=self._proxy.for_url(url),
                    allow_redirects=False,
                )
                break
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise timeout_error(url, self.timeouts, provider) from exc
            except aiohttp.ClientConnectorError as exc:
                raise unreachable(url, exc, provider) from exc
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # The provider closed an idle pooled connection just as we sent on it.
                if not (retry and attempt.reused):
                    raise unreachable(url, exc, provider) from exc
                log.debug("%s closed a pooled connection (%s); sending again", provider, type(exc).__name__)
            except (aiohttp.ClientError, ValueError) as exc:
                # ValueError: a request aiohttp refuses to build (userinfo in the URL and an Authorization header).
                raise unreachable(url, exc, provider) from exc
        if 300 <= resp.status < 400:
            location = resp.headers.get("location")
            resp.close()
            raise refuse_redirect(url, resp.status, location, provider)
        return _AiohttpResponse(resp, url, self.timeouts, provider)

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
    """Close a response, even in a cancelled task; a second failure there must not hide the first."""
    if type(resp) is _AiohttpResponse:
        # No suspension point, so a cancellation cannot cut the close short: no shield needed, and no task
        # created per request for one.
        with contextlib.suppress(Exception):
            resp.close_now()
        return
    with contextlib.suppress(Exception):
        await asyncio.shield(resp.close())
