"""CI jobs as callers: an OIDC ID token as the bearer key → a stable identity and its rule's limits.

A token that looks like a JWT (``eyJ…``, three base64url parts) goes to :meth:`OidcAuth.verify`:

1. a token verified before answers from memory (sha256 → identity, until its ``exp``; bounded), so a
   CI job's repeated calls cost a dict lookup;
2. its ``iss`` picks the configured issuer (unknown: 401); its header's ``alg`` must be RS256 or ES256
   (``none`` and HMAC are refused before any key is looked at, whatever the issuer's key set holds);
3. the signature is checked with PyJWT against the issuer's key for the token's ``kid``
   (:class:`proxy.gateway.oidc_jwks.IssuerKeys`: cached, refetched once per rotation), then ``iss``
   exactly, ``aud``, ``exp`` / ``nbf`` / ``iat`` with the configured leeway;
4. the first rule whose conditions hold gives the limits (none: 403 naming the claims checked);
5. the caller is a :class:`KeyRecord` that is not in the store: id ``oidc:NAME:IDENTITY`` (e.g.
   ``oidc:github:acme/app@refs/heads/main``), so every token of one repository and ref shares one
   rate-limit bucket and one line in the usage ledger.

The token itself is never logged, stored or repeated in an error: refusals name the issuer, the
claims and what to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections import OrderedDict
from typing import Any

import httpx
import jwt

from .contract import GatewayError, KeyRecord, Limiter, Store
from .oidc_config import OidcConfig, OidcIssuer, claim_text
from .oidc_jwks import ALGORITHMS, IssuerKeys
from .periods import iso, period_bounds
from .store import StoreUnavailable

__all__ = ["OidcAuth"]

log = logging.getLogger("switchboard")

#: Verified tokens kept in memory (each until its exp).
_TOKEN_CACHE = 10_000
#: Seconds between two background refreshes of every issuer's keys (removed keys stop working).
_REFRESH = 3600.0
#: How long the start waits for the first keys before going on without them.
_WARM_TIMEOUT = 5.0
#: The store's key_id column holds 64 characters; characters outside this set would break Redis hash tags.
_MAX_ID = 64
_SAFE_ID = re.compile(r"[A-Za-z0-9._~:/@+=-]+")


def _refused(message: str, code: str = "invalid_oidc_token", status: int = 401) -> GatewayError:
    return GatewayError(message, status=status, code=code)


class _Issuer:
    __slots__ = ("config", "index", "keys", "pieces")

    def __init__(self, config: OidcIssuer, index: int, keys: IssuerKeys) -> None:
        self.config = config
        self.index = index
        self.keys = keys
        self.pieces = config.claims_of_identity()


class OidcAuth:
    def __init__(self, config: OidcConfig, store: Store, limiter: Limiter) -> None:
        self._leeway = config.leeway
        self._store = store
        self._limiter = limiter
        # Redirects are never followed: the keys come from the URLs the issuer names, or not at all.
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(5.0), follow_redirects=False)
        self._issuers = {
            c.issuer: _Issuer(c, i, IssuerKeys(c.issuer, self._client, self._forget_tokens))
            for i, c in enumerate(config.issuers)
        }
        self._verified: OrderedDict[str, tuple[float, KeyRecord]] = OrderedDict()
        #: identity id → the budget period whose spend the limiter was given from the ledger.
        self._seeded: dict[str, float] = {}
        self._seeding: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def problem(self) -> str | None:
        found = [p for i in self._issuers.values() if (p := i.keys.problem)]
        return "; ".join(found) or None

    async def start(self) -> None:
        """Fetch every issuer's keys (waiting a few seconds at most), then refresh them hourly."""
        warm = [asyncio.ensure_future(i.keys.refresh()) for i in self._issuers.values()]
        await asyncio.wait(warm, timeout=_WARM_TIMEOUT)
        self._task = asyncio.create_task(self._refresh_loop(), name="switchboard-oidc-refresh")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def verify(self, token: str) -> KeyRecord:
        """The caller the ID token stands for; raises :class:`GatewayError` 401 (token) or 403 (no rule)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.time()
        hit = self._verified.get(digest)
        if hit is not None and hit[0] > now:
            record = hit[1]
        else:
            if hit is not None:
                del self._verified[digest]
            exp, record = await self._verify(token, now)
            self._verified[digest] = (exp, record)
            while len(self._verified) > _TOKEN_CACHE:
                self._verified.popitem(last=False)
        if record.budget is not None:
            await self._seed(record, now)
        return record

    async def _verify(self, token: str, now: float) -> tuple[float, KeyRecord]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _refused("the bearer token looks like an OIDC ID token but is not a well-formed JWT") from None
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            trusted = ", ".join(repr(u) for u in self._issuers)
            raise _refused(
                f"the token's issuer {str(iss)[:200]!r} is not trusted; this gateway trusts {trusted} "
                "(an admin adds issuers under oidc.issuers in config.json)"
            )
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _refused(
                f"the token is signed with {str(alg)[:20]!r}; only {' and '.join(ALGORITHMS)} are accepted",
                code="invalid_oidc_token",
            )
        kid = header.get("kid")
        kid = kid if isinstance(kid, str) else None
        key = await issuer.keys.key(kid, alg)
        if key is None:
            wait = issuer.keys.retry_in()
            raise _refused(
                f"the token's signing key {str(kid)[:100]!r} is not among the keys {issuer.config.issuer} publishes"
                + (f"; they are fetched again for an unknown key in {wait:.0f} s at the earliest" if wait else "")
            )
        cfg = issuer.config
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            exp = unverified.get("exp")
            at = iso(float(exp)) if isinstance(exp, int | float) else "its exp"
            raise _refused(
                f"the OIDC token expired at {at}; request a new ID token for each job (they live minutes)",
                code="oidc_token_expired",
            ) from None
        except jwt.ImmatureSignatureError:
            raise _refused(
                "the OIDC token is not valid yet (its nbf or iat is in the future); check the clocks of the CI "
                "runner and of this gateway"
            ) from None
        except jwt.InvalidAudienceError:
            raise _refused(
                f"the OIDC token's audience {str(unverified.get('aud'))[:200]!r} is not {cfg.audience!r}; request "
                f"the token with audience={cfg.audience}"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise _refused(f"the OIDC token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise _refused(f"the OIDC token was refused: {_reason(exc)}") from None
        rule = next((r for r in cfg.rules if r.matches(claims)), None)
        if rule is None:
            checked = ", ".join(f"{c}={_shown(claims.get(c))}" for c in cfg.claims_checked())
            raise _refused(
                f"no rule of the OIDC issuer {cfg.name!r} admits this token; the rules check {checked}. An admin "
                f"can add a rule for it under oidc.issuers[{issuer.index}].rules in config.json",
                code="oidc_no_matching_rule",
                status=403,
            )
        identity = self._identity(issuer, claims)
        record = KeyRecord(
            id=_bounded_id(identity),
            name=identity[:200],
            key_hash="",
            key_prefix="oidc",
            expires_at=float(claims["exp"]),
            metadata={"oidc_issuer": cfg.name},
            **rule.limits(),
        )
        return float(claims["exp"]), record

    def _identity(self, issuer: _Issuer, claims: dict[str, Any]) -> str:
        out = [f"oidc:{issuer.config.name}:"]
        for literal, claim in issuer.pieces:
            out.append(literal)
            if claim is not None:
                value = claim_text(claims.get(claim))
                if value is None:
                    raise _refused(
                        f"the OIDC token has no {claim!r} claim, which the identity of issuer "
                        f"{issuer.config.name!r} names (oidc.issuers[{issuer.index}].identity in config.json)",
                        code="oidc_no_matching_rule",
                        status=403,
                    )
                out.append(value)
        return "".join(out)

    async def _seed(self, record: KeyRecord, now: float) -> None:
        """Give the limiter the ledger's spend of an identity's budget period before its first request
        here (another replica, or this one before a restart, may have spent some): once per period."""
        start = period_bounds(record.period, now)[0]
        if self._seeded.get(record.id) == start:
            return
        task = self._seeding.get(record.id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._seed_from_store(record.id, start))
            self._seeding[record.id] = task
            task.add_done_callback(lambda _: self._seeding.pop(record.id, None))
        await asyncio.shield(task)

    async def _seed_from_store(self, key_id: str, start: float) -> None:
        with contextlib.suppress(StoreUnavailable):
            self._limiter.seed_spend(key_id, start, await self._store.spend(key_id, start))
        if len(self._seeded) >= _TOKEN_CACHE:
            self._seeded.clear()  # seeding again is harmless: the limiter ignores a period it counts
        self._seeded[key_id] = start

    def _forget_tokens(self) -> None:
        self._verified.clear()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(_REFRESH)
            for issuer in self._issuers.values():
                await issuer.keys.refresh()


def _bounded_id(identity: str) -> str:
    """The identity itself when it fits the store's key_id column and Redis hash tags; else a readable
    prefix and a digest of the whole (still one id per identity)."""
    if len(identity) <= _MAX_ID and _SAFE_ID.fullmatch(identity):
        return identity
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9._~:/@+=-]", "_", identity)[: _MAX_ID - len(digest) - 1]
    return f"{readable}#{digest}"


def _shown(value: Any) -> str:
    text = claim_text(value)
    return "(absent)" if text is None else repr(text[:200])


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.InvalidIssuerError):
        return "its issuer does not match"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "its signature does not verify with the issuer's key"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "its algorithm does not match the issuer's key"
    return str(exc)[:200]
