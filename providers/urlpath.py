"""Client values in upstream URLs: the one encoding rule of every wire API and cloud adapter.

A model id (or a deployment name) comes from the client's request. Put raw into a path, ``/`` and ``..``
would move the call to another endpoint of the provider, sent with the operator's key, and ``?``/``#``
would cut the path short (``google/../../admin/delete?x=`` once reached ``POST /admin/delete?x=``).
So such a value always becomes exactly one path segment: every byte but RFC 3986's unreserved
characters (plus ``@`` for Google) is percent-encoded (UTF-8), as botocore encodes a Bedrock model id,
and the dot segments ``.``/``..`` (which URL normalisation would still resolve) are refused. The transport sends a URL
holding ``%`` byte for byte (:mod:`providers.transport`), so what is built here is what the upstream gets.

Wire APIs whose model travels in the body (OpenAI chat and Responses, Anthropic Messages, Codex, Azure's
deployment, Cloudflare's routes) put no client value in the URL and need none of this.
"""

from __future__ import annotations

from urllib.parse import quote

from .errors import InvalidRequest

__all__ = ["path_segment"]

_DOT_SEGMENTS = frozenset({"", ".", ".."})


def path_segment(value: str, *, provider: str, safe: str = "", what: str = "model id", param: str = "model") -> str:
    """``value`` as one percent-encoded path segment; raises :class:`InvalidRequest` (400, naming
    ``param``) for an empty value or a dot segment, which no provider serves as a name.

    ``safe`` may only name characters that RFC 3986 allows inside a segment with no meaning there, such
    as ``@`` in Vertex's versioned ids (``claude-sonnet-4-5@20250929``), sent as Google's SDKs send it."""
    if value in _DOT_SEGMENTS:
        raise InvalidRequest(
            f"{provider}: {value!r} is not a valid {what}; use an id that 'GET /v1/models' lists",
            param=param,
        )
    return quote(value, safe=safe)
