"""An OIDC issuer's signing keys, fetched without blocking the event loop and kept in memory.

``{issuer}/.well-known/openid-configuration`` names the ``jwks_uri``; both are fetched with httpx's
async client, redirects never followed, bodies capped. The keys are fetched when the gateway starts
(best effort: an unreachable issuer does not stop the start), again every hour in the background, and
when a token names a ``kid`` the cache does not hold: a key rotation. That last refetch is shared by
every request waiting for it and happens at most once a minute per issuer, so tokens with invented
``kid``\\ s cannot turn into a flood of fetches. Only RSA (RS256) and P-256 (ES256) signing keys are
kept: a symmetric (``oct``) key published by mistake can never verify anything.

PyJWT's own ``PyJWKClient`` is not used: it fetches with urllib, blocking the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWKSetError

from .oidc_config import is_loopback_url

__all__ = ["ALGORITHMS", "IssuerKeys"]

log = logging.getLogger("switchboard")

#: The only signature algorithms accepted: ``none`` and HMAC (HS*) never are.
ALGORITHMS = ("RS256", "ES256")
_KEY_TYPES = {"RSA": "RS256", "EC": "ES256"}
#: Seconds between two refetches for an unknown ``kid`` (one per rotation; invented kids wait).
REFETCH_INTERVAL = 60.0
#: Largest discovery document or key set read.
_MAX_BODY = 1 << 20


class _FetchError(Exception):
    pass


class IssuerKeys:
    """The signing keys of one issuer. ``on_removed`` is called when a refresh drops a key that was
    in use (revoked: the tokens it signed must be verified again)."""

    def __init__(self, issuer: str, client: httpx.AsyncClient, on_removed: Callable[[], None]) -> None:
        self.issuer = issuer
        self._client = client
        self._on_removed = on_removed
        self._keys: dict[str, PyJWK] = {}
        self._inflight: asyncio.Task[None] | None = None
        self._last_refetch = -REFETCH_INTERVAL
        self._failing_since: float | None = None
        self._failure = ""
        self.fetched_at: float | None = None

    @property
    def problem(self) -> str | None:
        if self._failing_since is None:
            return None
        since = time.strftime("%H:%M:%SZ", time.gmtime(self._failing_since))
        held = f"using the {len(self._keys)} keys fetched before" if self._keys else "no key yet: its tokens fail"
        return f"oidc: the signing keys of {self.issuer} cannot be fetched since {since} ({self._failure}); {held}"

    def cached(self, kid: str | None, alg: str) -> PyJWK | None:
        """The key for a token's ``kid`` and ``alg``, from memory. A token without ``kid`` is accepted
        only when the issuer publishes exactly one key for its algorithm."""
        if kid is not None:
            key = self._keys.get(kid)
            return key if key is not None and key.algorithm_name == alg else None
        fits = [k for k in self._keys.values() if k.algorithm_name == alg]
        return fits[0] if len(fits) == 1 else None

    async def key(self, kid: str | None, alg: str) -> PyJWK | None:
        """:meth:`cached`, refetching the keys once for an unknown ``kid`` (shared, rate-limited)."""
        found = self.cached(kid, alg)
        if found is not None:
            return found
        if self._inflight is None:
            now = time.monotonic()
            if now - self._last_refetch < REFETCH_INTERVAL:
                return None
            self._last_refetch = now
        await self.refresh()
        return self.cached(kid, alg)

    def retry_in(self) -> float:
        """Seconds until an unknown ``kid`` may cause the next refetch."""
        return max(0.0, self._last_refetch + REFETCH_INTERVAL - time.monotonic())

    async def refresh(self) -> None:
        """Fetch the keys, or wait for the fetch under way; never raises (failures are kept in
        :attr:`problem` and logged)."""
        if self._inflight is None:
            task = asyncio.get_running_loop().create_task(self._fetch(), name="switchboard-oidc-jwks")
            self._inflight = task
            task.add_done_callback(self._fetched)
        # Shielded: a client that leaves does not cancel the fetch other requests are waiting for.
        await asyncio.shield(self._inflight)

    def _fetched(self, task: asyncio.Task[None]) -> None:
        self._inflight = None

    async def _fetch(self) -> None:
        try:
            discovery = await self._get_json(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
            if discovery.get("issuer") != self.issuer:
                raise _FetchError(f"its discovery document names the issuer {str(discovery.get('issuer'))[:200]!r}")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not _fetchable(jwks_uri):
                raise _FetchError(f"its discovery document's jwks_uri {str(jwks_uri)[:200]!r} is not an https URL")
            keys = _signing_keys(await self._get_json(jwks_uri))
        except _FetchError as exc:
            self._failed(str(exc))
            return
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            return
        removed = set(self._keys) - set(keys)
        self._keys = keys
        self.fetched_at = time.time()
        if self._failing_since is not None:
            log.info("oidc: the signing keys of %s are fetched again", self.issuer)
        self._failing_since = None
        if removed:
            self._on_removed()

    def _failed(self, why: str) -> None:
        if self._failing_since is None:
            self._failing_since = time.time()
        self._failure = why[:300]
        log.warning("oidc: fetching the signing keys of %s failed: %s", self.issuer, self._failure)

    async def _get_json(self, url: str) -> dict[str, Any]:
        async with self._client.stream("GET", url, headers={"accept": "application/json"}) as response:
            if response.status_code != 200:
                what = " (redirects are not followed)" if response.is_redirect else ""
                raise _FetchError(f"GET {url[:200]} answered {response.status_code}{what}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_BODY:
                    raise _FetchError(f"GET {url[:200]} answered more than {_MAX_BODY} bytes")
        try:
            data = msgspec.json.decode(bytes(body))
        except msgspec.DecodeError:
            raise _FetchError(f"GET {url[:200]} did not answer JSON") from None
        if not isinstance(data, dict):
            raise _FetchError(f"GET {url[:200]} did not answer a JSON object")
        return data


def _fetchable(url: str) -> bool:
    scheme = urlsplit(url).scheme
    return scheme == "https" or (scheme == "http" and is_loopback_url(url))


def _signing_keys(jwks: dict[str, Any]) -> dict[str, PyJWK]:
    """kid → key of the set's RS256 / ES256 signing keys; keys without a kid are kept under ``""``."""
    raw = jwks.get("keys")
    if not isinstance(raw, list):
        raise _FetchError("its key set has no 'keys' list")
    wanted = [
        k
        for k in raw
        if isinstance(k, dict)
        and k.get("kty") in _KEY_TYPES
        and k.get("use", "sig") == "sig"
        and k.get("alg", _KEY_TYPES[k["kty"]]) == _KEY_TYPES[k["kty"]]
    ]
    try:
        keys = PyJWKSet(wanted).keys if wanted else []
    except PyJWKSetError:
        keys = []
    usable = {str(k.key_id or ""): k for k in keys if k.algorithm_name in ALGORITHMS}
    if not usable:
        raise _FetchError("its key set holds no RS256 or ES256 signing key")
    return usable
