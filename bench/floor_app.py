"""The Python floor for a passthrough proxy, run beside Switchboard by run.sh (FLOOR=1, the default).

A bare ASGI callable that forwards path and body to the fake upstream over one shared aiohttp session and
streams the answer back: no framework, no parsing, no checks. Nothing written in Python on this machine can
pass a request through faster, so Switchboard's figures are read as a fraction of this one.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:18080")
_session: aiohttp.ClientSession | None = None


async def _lifespan(receive: Any, send: Any) -> None:
    global _session
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            if _session is not None:
                await _session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    assert _session is not None
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    async with _session.request(
        scope["method"], UPSTREAM + scope["path"], data=body or None, headers={"content-type": "application/json"}
    ) as resp:
        ctype = resp.headers.get("content-type", "application/json").encode()
        await send({"type": "http.response.start", "status": resp.status, "headers": [(b"content-type", ctype)]})
        async for chunk in resp.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
