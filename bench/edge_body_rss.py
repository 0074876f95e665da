"""Peak RSS of ``switchboard serve`` while it forwards large request bodies.

Starts a tiny OpenAI-compatible upstream (reads the body, answers a fixed completion), runs
``python -m proxy serve`` against it in a temporary SWITCHBOARD_HOME, sends N bodies of SIZE MB at
once and prints the server's VmHWM (peak resident set) before and after.

    .venv/bin/python bench/edge_body_rss.py --mb 60 --concurrency 1
    .venv/bin/python bench/edge_body_rss.py --mb 60 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from aiohttp import web

_ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _upstream(port: int) -> None:
    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(_ANSWER)

    async def main() -> None:
        app = web.Application(client_max_size=1 << 31)
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def _hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=60)
    ap.add_argument("--concurrency", type=int, default=1)
    args = ap.parse_args()
    up_port, port = _free_port(), _free_port()
    threading.Thread(target=_upstream, args=(up_port,), daemon=True).start()
    with tempfile.TemporaryDirectory() as home:
        Path(home, "models.json").write_text(
            json.dumps(
                {
                    "providers": {
                        "local": {
                            "baseUrl": f"http://127.0.0.1:{up_port}/v1",
                            "api": "openai-completions",
                            "apiKey": "k",
                            "models": [{"id": "m"}],
                        }
                    }
                }
            )
        )
        Path(home, "config.json").write_text(json.dumps({"max_body_mb": args.mb + 8, "discovery": {"enabled": False}}))
        env = {**os.environ, "SWITCHBOARD_HOME": home}
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url + "/healthz").raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            before = _hwm(proc.pid)
            text = "x" * int(args.mb * 1024 * 1024)
            body = json.dumps({"model": "local/m", "messages": [{"role": "user", "content": text}]}).encode()
            del text

            def post(_: int) -> int:
                r = httpx.post(
                    url + "/v1/chat/completions",
                    content=body,
                    headers={"content-type": "application/json"},
                    timeout=120,
                )
                return r.status_code

            with ThreadPoolExecutor(args.concurrency) as pool:
                codes = list(pool.map(post, range(args.concurrency)))
            after = _hwm(proc.pid)
            print(
                f"{args.concurrency} x {len(body) / 1e6:.0f} MB: statuses {sorted(set(codes))}, "
                f"peak RSS {before} MiB idle -> {after} MiB (+{after - before} MiB)"
            )
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
