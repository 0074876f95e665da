"""Profile the translated stream's CPU work without a network: bench/anthropic-stream.txt through the
Anthropic stream decoder and the OpenAI chat chunk encoder, as ``relay`` drives them.

    .venv/bin/python bench/profile_translated.py              # streams per second of process CPU time
    .venv/bin/python bench/profile_translated.py --profile    # cProfile's top entries
    .venv/bin/python bench/profile_translated.py --canonical  # every event canonical (no text splicing)
    .venv/bin/python bench/profile_translated.py --chunk 2048 # upstream reads of 2048 bytes (default: one)
    .venv/bin/python bench/profile_translated.py --request    # also the request side: bench/post-stream.lua's
                                                              # body decoded, made canonical, built for Anthropic

The options combine (``--request --profile``).
"""

from __future__ import annotations

import cProfile
import pstats
import re
import sys
import time
from pathlib import Path

from providers.registry import Compat
from providers.wire.anthropic_messages import API
from providers.wire.anthropic_stream import MessageStreamDecoder
from providers.wire.base import WireTarget
from proxy.surfaces.openai_chat_in import decode_request
from proxy.surfaces.openai_chat_out import ChunkEncoder
from proxy.surfaces.openai_chat_types import decode_body

_HERE = Path(__file__).parent
_BODY = (_HERE / "anthropic-stream.txt").read_bytes()
#: On loopback the fake upstream's whole body usually arrives in one read; --chunk N cuts it in N bytes.
_SIZE = int(sys.argv[sys.argv.index("--chunk") + 1]) if "--chunk" in sys.argv else len(_BODY)
_CHUNKS = [_BODY[i : i + _SIZE] for i in range(0, len(_BODY), _SIZE)]
_CANONICAL = "--canonical" in sys.argv
_REQUEST = "--request" in sys.argv


def _client_body() -> bytes:
    """The request bench/run.sh sends on its streaming rows, as the client's bytes."""
    match = re.search(r"wrk\.body = '(.*)'", (_HERE / "post-stream.lua").read_text())
    assert match is not None, "bench/post-stream.lua sets wrk.body"
    return match.group(1).replace("MODEL", "bench-ant-stream/claude-bench").encode()


_CLIENT_BODY = _client_body()
_TARGET = WireTarget(
    "bench-ant-stream",
    "bench-ant-stream",
    "http://127.0.0.1:18080/s",
    "claude-bench",
    None,
    Compat(),
    {"x-api-key": "sk-ant-upstream"},
)


def _request() -> int:
    # As the pipeline's build step does it (OpenAIChat.decode, .canonical, then the wire module's build).
    creq = decode_request(decode_body(bytearray(_CLIENT_BODY)), "claude-bench", "bench-ant-stream")
    return len(API.build(creq, _TARGET).body)


def _one() -> int:
    n = _request() if _REQUEST else 0
    decoder = MessageStreamDecoder("bench")
    encoder = ChunkEncoder("claude-bench", True)
    # As TranslatedLeg.stream_steps drives them: text runs spliced unless --canonical.
    feed = decoder.feed if _CANONICAL else decoder.feed_spliced
    for chunk in _CHUNKS:
        n += len(encoder.encode(feed(chunk)))
    return n + len(encoder.finish(decoder.close()))


def _rate(seconds: float = 2.0) -> float:
    # Process CPU time, not wall time: on a shared machine the figure should not depend on the neighbours.
    start = time.process_time()
    end = start + seconds
    count = 0
    while (now := time.process_time()) < end:
        _one()
        count += 1
    return count / (now - start)


def main() -> None:
    if "--profile" in sys.argv:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(3000):
            _one()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
        return
    _one()
    mode = "canonical" if _CANONICAL else "spliced"
    what = "requests and streams" if _REQUEST else "streams"
    rate = _rate()
    print(f"{rate:.0f} {what}/s, {1e6 / rate:.1f} µs each ({len(_BODY)} bytes each, reads of {_SIZE} bytes, {mode})")


if __name__ == "__main__":
    main()
