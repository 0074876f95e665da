"""Small raw-ASGI helpers for the hot endpoints (no framework request/response objects)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from providers.errors import ClientDisconnected, SwitchboardError

__all__ = [
    "DisconnectWatch",
    "Receive",
    "Scope",
    "Send",
    "hide_paths",
    "read_body_buffer",
    "send_error",
    "send_json",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]


async def read_body_buffer(receive: Receive, scope: Scope) -> bytearray:
    """The whole request body in one buffer sized from ``Content-Length``: the peak is the body's size.

    Holding the chunks and then their join would need twice the body; a large body with base64 images
    is where that matters. msgspec decodes a bytearray as it does bytes. The size limit is enforced in
    front of the app (:mod:`proxy.guard`).
    """
    length = 0
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = int(value)
            break
    buf = bytearray(length)
    pos = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientDisconnected("the client closed the connection while sending the request body")
        body = msg.get("body", b"")
        end = pos + len(body)
        # Within the preallocated size this copies in place; past it (a chunked body) it appends.
        buf[pos:end] = body
        pos = end
        if not msg.get("more_body", False):
            break
    del buf[pos:]
    return buf


async def send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or _JSON})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: SwitchboardError) -> None:
    headers = list(_JSON)
    headers.extend((k.encode(), v.encode()) for k, v in exc.headers.items())
    envelope = exc.envelope()
    envelope["error"]["message"] = hide_paths(exc.message)
    await send_json(send, exc.status, msgspec.json.encode(envelope), headers)


def hide_paths(message: str) -> str:
    """``message`` without the server's directories: the home directory becomes ``~`` and
    ``SWITCHBOARD_HOME`` becomes ``$SWITCHBOARD_HOME``, so the hint still names the file to fix.

    Only on the error path, so reading the environment per call costs nothing that matters.
    """
    sb_home = os.environ.get("SWITCHBOARD_HOME")
    if sb_home:
        message = _replace_dir(message, os.path.abspath(os.path.expanduser(sb_home)), "$SWITCHBOARD_HOME")
    home = os.path.expanduser("~")
    if len(home) > 1:
        message = _replace_dir(message, home, "~")
    return message


def _replace_dir(message: str, directory: str, name: str) -> str:
    # Whole path prefixes only: not "/root" inside "https://host/root/x" or "/rootless".
    return re.sub(rf"(?<![\w./:-]){re.escape(directory.rstrip('/'))}(?=/|\b|$)", name, message)


#: The ASGI extension through which Switchboard's own server (:mod:`proxy.server`) reports a lost
#: connection: ``scope["extensions"][DISCONNECT_EXTENSION](callback)`` registers ``callback`` for the
#: request's connection and returns what unregisters it.
DISCONNECT_EXTENSION = "switchboard.disconnect"


class DisconnectWatch:
    """Cancels the request's task when the client goes away, so the upstream request is aborted too.

    ASGI servers report a disconnect only through ``receive()``; a handler busy awaiting the upstream
    would otherwise keep the upstream request (and its tokens) running for nobody. Under Switchboard's
    server the connection itself calls back (:data:`DISCONNECT_EXTENSION`): no task per request; under
    another server a task waits on ``receive()``.
    """

    __slots__ = ("_task", "_unregister", "_watcher", "fired")

    def __init__(self, receive: Receive, scope: Scope | None = None) -> None:
        self.fired = False
        self._task = asyncio.current_task()
        self._watcher: asyncio.Future[None] | None = None
        self._unregister: Callable[[], None] | None = None
        extensions = scope.get("extensions") if scope is not None else None
        register = extensions.get(DISCONNECT_EXTENSION) if extensions else None
        if register is not None:
            self._unregister = register(self._lost)
        else:
            self._watcher = asyncio.ensure_future(self._watch(receive))

    def _lost(self) -> None:
        self.fired = True
        if self._task is not None:
            self._task.cancel()

    async def _watch(self, receive: Receive) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                self._lost()
                return

    def stop(self) -> None:
        # Dropped, not only called: the withdrawal holds this watch's bound method, a reference cycle that
        # (with the request's task, which the watch holds) only the cyclic collector would free.
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
        unregister, self._unregister = self._unregister, None
        if unregister is not None:
            unregister()
