"""One proxy in front of one fake upstream per wire API, for the bad-input and fuzz tests.

Built with explicit paths (not ``SWITCHBOARD_HOME``) so a module-scoped fixture can share it across
tests despite the function-scoped ``isolated_env``. Keys live in ``models.json``; Bedrock alone reads the
environment (``AWS_BEARER_TOKEN_BEDROCK``, ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``), which
:data:`BEDROCK_ENV` gives and the tests set around each request.

:class:`PermissiveOpenAI` is an OpenAI-compatible server that accepts any JSON object (as many
self-hosted servers do), so a passthrough answer other than 200 can only come from the proxy itself.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from aiohttp import web

from proxy.app import create_app
from proxy.config import DiscoveryConfig, Paths, ServerConfig
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.responses_upstream import FakeResponses
from tests.fakes.server import FakeServer, read_body

__all__ = ["BEDROCK_ENV", "MODELS", "PermissiveOpenAI", "Stack", "running_stack"]

BEDROCK_TOKEN = "bedrock-fuzz-token"
#: Each wire API Switchboard speaks, by the model id that reaches it.
MODELS = {
    "openai-completions": "pass/gpt-4o",
    "anthropic-messages": "claude/claude-sonnet-4-5",
    "google-generative-ai": "gem/gemini-2.5-flash",
    "openai-responses": "resp/gpt-5-pro",
    "bedrock-converse-stream": "amazon-bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
}
BEDROCK_ENV = {"AWS_BEARER_TOKEN_BEDROCK": BEDROCK_TOKEN, "AWS_REGION": "us-east-1"}

_COMPLETION = {
    "id": "chatcmpl-permissive",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
_CHUNK = {**_COMPLETION, "object": "chat.completion.chunk"}
_CHUNK["choices"] = [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]


class PermissiveOpenAI(FakeServer):
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        self.requests.append(body)
        if not isinstance(body, dict):
            err = {"error": {"message": "not JSON", "type": "invalid_request_error", "param": None, "code": None}}
            return web.json_response(err, status=400)
        if body.get("stream") is not True:
            return web.json_response(_COMPLETION)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + json.dumps(_CHUNK).encode() + b"\n\ndata: [DONE]\n\n")
        await resp.write_eof()
        return resp


@dataclass
class Stack:
    url: str
    app: Any
    openai: PermissiveOpenAI
    bedrock: FakeBedrock

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime


def _providers(openai: str, anthropic: str, gemini: str, responses: str) -> dict[str, Any]:
    return {
        "pass": {"baseUrl": openai + "/v1", "api": "openai-completions", "apiKey": "k", "models": [{"id": "gpt-4o"}]},
        "claude": {
            "baseUrl": anthropic,
            "api": "anthropic-messages",
            "apiKey": "sk-ant-test",
            "models": [{"id": "claude-sonnet-4-5", "reasoning": True, "input": ["text", "image"]}],
        },
        "gem": {
            "baseUrl": gemini + "/v1beta",
            "api": "google-generative-ai",
            "apiKey": "gm-test-key",
            "models": [{"id": "gemini-2.5-flash", "reasoning": True, "input": ["text", "image"]}],
        },
        "resp": {
            "baseUrl": responses + "/v1",
            "api": "openai-responses",
            "apiKey": "sk-test",
            "models": [{"id": "gpt-5-pro", "reasoning": True, "input": ["text", "image"]}],
        },
    }


@contextmanager
def running_stack(home: Path) -> Iterator[Stack]:
    """Fakes for every wire API and a proxy under uvicorn on loopback, all stopped on exit."""
    fakes: list[FakeServer] = []
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    try:
        openai = PermissiveOpenAI().start()
        fakes.append(openai)
        anthropic = FakeAnthropic().start()
        fakes.append(anthropic)
        gemini = FakeGemini().start()
        fakes.append(gemini)
        responses = FakeResponses().start()
        fakes.append(responses)
        bedrock = FakeBedrock({}, {BEDROCK_TOKEN}).start()
        fakes.append(bedrock)
        home.mkdir(parents=True, exist_ok=True)
        providers = _providers(openai.url, anthropic.url, gemini.url, responses.url)
        (home / "models.json").write_text(json.dumps({"providers": providers}))
        (home / "models.json").chmod(0o600)
        app = create_app(Paths(home), ServerConfig(discovery=DiscoveryConfig(enabled=False)))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("proxy did not start")
            time.sleep(0.01)
        yield Stack(f"http://127.0.0.1:{port}", app, openai, bedrock)
    finally:
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(10)
        for fake in fakes:
            fake.stop()
