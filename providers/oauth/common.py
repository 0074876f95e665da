"""Small pieces every OAuth flow shares: PKCE, and reading a token endpoint's answer."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

import httpx

__all__ = ["b64url", "failure_detail", "json_body", "pkce_pair"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier (32 random bytes, base64url) and its S256 challenge (RFC 7636)."""
    verifier = b64url(secrets.token_bytes(32))
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def json_body(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def failure_detail(resp: httpx.Response) -> str:
    """The endpoint's own words about a failure (OAuth ``error``/``error_description`` or a JSON error)."""
    data = json_body(resp)
    err = data.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err.get("code") or err.get("type") or "")
    desc = data.get("error_description") or data.get("detail")
    if isinstance(err, str):
        return f"{err}: {desc}" if desc else err
    return str(desc) if desc else resp.text[:200]
