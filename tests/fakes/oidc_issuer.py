"""An OIDC issuer on 127.0.0.1, as GitHub Actions' token service looks to a relying party.

``GET /.well-known/openid-configuration`` names the issuer (its own URL) and ``jwks_uri``;
``GET /.well-known/jwks`` publishes the public halves of the keys in :attr:`FakeIssuer.published`
(RSA keys for RS256, P-256 keys for ES256, generated here with ``cryptography``) plus any
:attr:`FakeIssuer.extra_jwks`. Fetches are counted; a pushed ``error`` action answers the
next discovery request. :meth:`FakeIssuer.token` signs ID tokens with
GitHub's claims (each overridable); :meth:`FakeIssuer.forge` builds the tokens an attacker would.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.fakes.server import FakeServer

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_counter = itertools.count()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeIssuer(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, PrivateKey] = {}
        #: kids whose public keys the JWKS lists, in order.
        self.published: list[str] = []
        #: Raw JWKs listed after the published keys (e.g. a symmetric key an attacker hopes is used).
        self.extra_jwks: list[dict[str, Any]] = []
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        #: Seconds the JWKS answer takes (widens the window in which concurrent fetches would overlap).
        self.jwks_delay = 0.0

    @property
    def issuer(self) -> str:
        return self.url

    def add_key(self, kid: str, kind: str = "RSA", *, publish: bool = True) -> PrivateKey:
        key: PrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if kind == "RSA"
            else ec.generate_private_key(ec.SECP256R1())
        )
        self.keys[kid] = key
        if publish:
            self.published.append(kid)
        return key

    def jwk(self, kid: str) -> dict[str, Any]:
        key = self.keys[kid]
        if isinstance(key, rsa.RSAPrivateKey):
            data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            data["alg"] = "RS256"
        else:
            data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            data["alg"] = "ES256"
        data.update(kid=kid, use="sig")
        return dict(data)

    def public_pem(self, kid: str) -> bytes:
        return (
            self.keys[kid]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """GitHub Actions' claims for acme/app on main, valid for five minutes; ``None`` drops a claim."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": "switchboard",
            "sub": "repo:acme/app:ref:refs/heads/main",
            "jti": f"jti-{next(_counter)}",
            "repository": "acme/app",
            "repository_id": "1001",
            "repository_owner": "acme",
            "repository_owner_id": "42",
            "ref": "refs/heads/main",
            "ref_type": "branch",
            "job_workflow_ref": "acme/app/.github/workflows/ci.yml@refs/heads/main",
            "event_name": "push",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, kid: str | None = None, **overrides: Any) -> str:
        """An ID token signed with ``kid`` (default: the first key) with :meth:`claims`."""
        kid = kid or next(iter(self.keys))
        key = self.keys[kid]
        alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(self.claims(**overrides), key, algorithm=alg, headers={"kid": kid})

    def forge(self, header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
        """A token with any header: signed with HMAC-SHA256 over ``secret``, or unsigned when None."""
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        if secret is None:
            return signing_input + "."
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + b64url(mac)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/.well-known/jwks", self._jwks)

    async def _discovery(self, request: web.Request) -> web.StreamResponse:
        self.discovery_fetches += 1
        played = await self.play(request, self.next_action())  # e.g. an "error" with a 302 and a Location
        if played is not None:
            return played
        return web.json_response(
            {
                "issuer": self.issuer,
                "jwks_uri": self.issuer + "/.well-known/jwks",
                "response_types_supported": ["id_token"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        if self.jwks_delay:
            await asyncio.sleep(self.jwks_delay)
        return web.json_response({"keys": [self.jwk(kid) for kid in self.published] + self.extra_jwks})
