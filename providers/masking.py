"""Masking secrets in what leaves the proxy: error messages, log lines and forwarded stream bytes.

Providers echo a rejected key back, in an error body or in an error event mid-stream, and not always
as it was sent: JSON-escaped (``\\u043a``) when the key is not ASCII, or as mojibake when the server
read the UTF-8 header as Latin-1. Every such form is masked, and always before a message is cut to
length: a cut through the middle of a key would otherwise let most of it through.

A password in a URL's userinfo (``https://user:pass@host``) is removed wherever a URL appears in a
message, and :func:`safe_url` gives the form of a URL that log lines may carry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["MAX_MESSAGE", "Mask", "safe_url", "strip_userinfo", "url_password"]

#: Longest error message passed on to a client; longer ones are cut after masking.
MAX_MESSAGE = 2000
#: Shorter values are not masked: replacing a 3-letter header value everywhere would garble messages.
_MIN_SECRET = 8
_HEX_ESCAPE = re.compile(r"\\u[0-9a-f]{4}")
_USERINFO = re.compile(r"(?<=://)[^/@\s\"']*@")


class Mask:
    """Every form in which a set of secrets may come back, ready to mask text and bytes."""

    __slots__ = ("_bytes", "_texts")

    def __init__(self, secrets: Iterable[str]) -> None:
        texts: set[str] = set()
        for secret in secrets:
            if len(secret) < _MIN_SECRET:
                continue
            texts.add(secret)
            if not secret.isascii():
                texts.add(secret.encode("utf-8", "surrogatepass").decode("latin-1"))
        forms: set[bytes] = set()
        for text in texts:
            forms.add(text.encode("utf-8", "surrogatepass"))
            escaped = json.dumps(text)[1:-1]
            if escaped != text:
                forms.add(escaped.encode())
                forms.add(_HEX_ESCAPE.sub(lambda m: "\\u" + m.group()[2:].upper(), escaped).encode())
        # Longest first, so that a secret containing another is masked whole.
        self._texts = tuple(sorted(texts, key=len, reverse=True))
        self._bytes = tuple(sorted(forms, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._texts)

    def text(self, message: str, limit: int = MAX_MESSAGE) -> str:
        """``message`` with every secret and URL userinfo masked, then cut to ``limit`` characters."""
        for secret in self._texts:
            if secret in message:
                message = message.replace(secret, "***")
        if "@" in message:
            message = strip_userinfo(message)
        return message if len(message) <= limit else message[:limit] + "…"

    def data(self, chunk: bytes) -> bytes:
        """Bytes about to be forwarded, with every secret masked (a substring test per form when clean)."""
        for form in self._bytes:
            if form in chunk:
                chunk = chunk.replace(form, b"***")
        return chunk


def strip_userinfo(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it removed."""
    return _USERINFO.sub("", text)


def url_password(url: str) -> tuple[str, ...]:
    """The password (or lone user token) in ``url``'s userinfo, if it has one, to mask wherever it appears."""
    if "@" not in url:
        return ()
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    return tuple(v for v in (parts.password, parts.username) if v)


def safe_url(url: str) -> str:
    """``url`` for a log line: no userinfo, no query (Google's ``?key=`` carries the key)."""
    return strip_userinfo(url.split("?", 1)[0].split("#", 1)[0])
