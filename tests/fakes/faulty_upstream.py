"""A fault-injecting OpenAI-compatible upstream: a raw HTTP/1.1 server on 127.0.0.1 in its own thread.

It is written on asyncio streams, not a web framework, because the faults live below what frameworks
let a handler do: a body dripped one byte at a time, a stream that ends cleanly without ``[DONE]`` or
inside an event, a keep-alive connection dropped when it is reused. Headers are read as Latin-1, as
many servers do, so a non-ASCII key comes back as the mojibake a real server would echo.

Set :attr:`FaultyUpstream.mode` to one of :data:`MODES`; every request is recorded in ``requests``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Self

MODES = (
    "ok",  # a normal answer: a chat completion, or an SSE stream ending in [DONE]
    "redirect",  # `redirect_status` with Location: `redirect_to`
    "drip",  # status and headers, then one byte of a never-ending body every `drip_interval` s
    "hang",  # reads the request, then answers nothing (until the client leaves or `max_seconds`)
    "truncated_json",  # 200, application/json, a body cut in the middle (with a matching length)
    "no_done",  # a complete SSE stream that ends cleanly without data: [DONE]
    "half_event",  # SSE events, then half an event, then a clean end
    "slow_stream",  # one complete SSE event every `drip_interval` s, up to `max_seconds`
    "echo_key_stream",  # a content event, then an error event quoting the request's key, then [DONE]
    "echo_key_error",  # 401 whose message quotes the key after `echo_padding` characters
    "anthropic_error_200",  # 200 with an Anthropic error body quoting the key (POST /v1/messages)
    "anthropic_stream_error",  # an Anthropic stream whose error event quotes the key
    "keepalive_race",  # answers the first request on a connection; drops the connection on reuse
)

HALF_EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"HALF-EVENT-SENTINEL'


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FaultyUpstream:
    mode: str = "ok"
    redirect_status: int = 307
    redirect_to: str = ""
    drip_interval: float = 0.2
    #: Bound on every slow answer, so that a test can never hang the suite.
    max_seconds: float = 30.0
    echo_padding: int = 0
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        # Bound here and handed to asyncio as is: the port is known at once and never re-bound.
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def last_key(self) -> str:
        """The key the last request carried, as this server read it."""
        return _key(self.requests[-1])

    def start(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._sock.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._connection, sock=self._sock)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._connections += 1
        number = self._connections
        served = 0
        try:
            while True:
                req = await _read_request(reader, number)
                if req is None:
                    return
                self.requests.append(req)
                if self.mode == "keepalive_race" and served:
                    return  # the provider closed this idle connection just as it was reused
                await self._answer(req, writer)
                served += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            return  # stopped: asyncio's stream callback would log a cancelled handler as an error
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, req: Received, w: asyncio.StreamWriter) -> None:
        mode = self.mode
        stream = _wants_stream(req)
        if mode == "redirect":
            await _respond(w, self.redirect_status, b"", extra=f"location: {self.redirect_to}\r\n")
        elif mode == "hang":
            await asyncio.sleep(self.max_seconds)
        elif mode == "drip":
            await self._drip(w, stream)
        elif mode == "truncated_json":
            await _respond(w, 200, _completion("cut short")[:40])
        elif mode == "echo_key_error":
            message = "x" * self.echo_padding + f"Incorrect API key provided: {_key(req)}"
            await _respond(
                w, 401, json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
            )
        elif mode == "anthropic_error_200":
            body = {
                "type": "error",
                "error": {"type": "authentication_error", "message": f"invalid x-api-key {_key(req)}"},
            }
            await _respond(w, 200, json.dumps(body).encode())
        elif mode == "anthropic_stream_error":
            w.write(_head(200, "text/event-stream", chunked=True))
            error = {"type": "error", "error": {"type": "authentication_error", "message": f"bad key {_key(req)}"}}
            await _chunk(w, b"event: error\n" + _event(error))
            await _chunk(w, b"")
        elif not stream:
            await _respond(w, 200, _completion("hello from the faulty upstream"))
        else:
            await self._stream(req, w, mode)

    async def _stream(self, req: Received, w: asyncio.StreamWriter, mode: str) -> None:
        w.write(_head(200, "text/event-stream", chunked=True))
        for word in ("one ", "two "):
            await _chunk(w, _event({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}))
        if mode == "slow_stream":
            deadline = asyncio.get_running_loop().time() + self.max_seconds
            while asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(self.drip_interval)
                await _chunk(w, _event({"choices": [{"index": 0, "delta": {"content": "."}, "finish_reason": None}]}))
        elif mode == "half_event":
            await _chunk(w, HALF_EVENT)
        elif mode == "echo_key_stream":
            await _chunk(w, _event({"error": {"message": f"invalid api key {_key(req)}", "type": "auth"}}))
            await _chunk(w, b"data: [DONE]\n\n")
        elif mode != "no_done":
            await _chunk(w, _event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
            await _chunk(w, b"data: [DONE]\n\n")
        await _chunk(w, b"")  # the last chunk: a clean end of the body

    async def _drip(self, w: asyncio.StreamWriter, stream: bool) -> None:
        ctype = "text/event-stream" if stream else "application/json"
        w.write(_head(200, ctype, chunked=True))
        body = HALF_EVENT if stream else _completion("a very slow answer")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_seconds
        for i in range(len(body) * 100):
            if loop.time() > deadline:
                return
            await _chunk(w, body[i % len(body) : i % len(body) + 1])
            await asyncio.sleep(self.drip_interval)


async def _read_request(reader: asyncio.StreamReader, connection: int) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(method, path, headers, body, connection)


def _wants_stream(req: Received) -> bool:
    try:
        return bool(req.json().get("stream"))
    except ValueError:
        return False


def _key(req: Received) -> str:
    auth = req.headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth else req.headers.get("x-api-key", "")


def _completion(text: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-faulty",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _head(status: int, ctype: str, *, chunked: bool = False, length: int = 0, extra: str = "") -> bytes:
    framing = "transfer-encoding: chunked\r\n" if chunked else f"content-length: {length}\r\n"
    return (f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\n{framing}{extra}connection: keep-alive\r\n\r\n").encode(
        "latin-1"
    )


async def _respond(w: asyncio.StreamWriter, status: int, body: bytes, extra: str = "") -> None:
    w.write(_head(status, "application/json", length=len(body), extra=extra) + body)
    await w.drain()


async def _chunk(w: asyncio.StreamWriter, data: bytes) -> None:
    w.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await w.drain()
