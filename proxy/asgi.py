"""Small raw-ASGI helpers for the hot endpoints (no framework request/response objects)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from providers.errors import InvalidRequest, SwitchboardError

__all__ = ["DisconnectWatch", "Receive", "Scope", "Send", "read_body", "send_error", "send_json"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Requests carry base64 images; beyond this the client is almost certainly sending something wrong.
MAX_BODY = 64 * 1024 * 1024
_JSON = [(b"content-type", b"application/json")]


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise asyncio.CancelledError
        body = msg.get("body", b"")
        size += len(body)
        if size > MAX_BODY:
            raise InvalidRequest(f"request body larger than {MAX_BODY // 1024 // 1024} MiB", status=413)
        chunks.append(body)
        if not msg.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or _JSON})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: SwitchboardError) -> None:
    headers = list(_JSON)
    headers.extend((k.encode(), v.encode()) for k, v in exc.headers.items())
    await send_json(send, exc.status, msgspec.json.encode(exc.envelope()), headers)


class DisconnectWatch:
    """Cancels the request's task when the client goes away, so the upstream request is aborted too.

    ASGI servers report a disconnect only through ``receive()``; a handler busy awaiting the upstream
    would otherwise keep the upstream request (and its tokens) running for nobody.
    """

    __slots__ = ("_task", "_watcher", "fired")

    def __init__(self, receive: Receive) -> None:
        self.fired = False
        self._task = asyncio.current_task()
        self._watcher = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                self.fired = True
                if self._task is not None:
                    self._task.cancel()
                return

    def stop(self) -> None:
        self._watcher.cancel()
