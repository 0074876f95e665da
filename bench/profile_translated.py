"""Profile the translated stream's CPU work without a network: bench/anthropic-stream.txt through the
Anthropic stream decoder and the OpenAI chat chunk encoder, as ``relay`` drives them.

    .venv/bin/python bench/profile_translated.py            # streams per second of process CPU time
    .venv/bin/python bench/profile_translated.py --profile  # cProfile's top entries
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path

from providers.wire.anthropic_stream import MessageStreamDecoder
from proxy.surfaces.openai_chat_out import ChunkEncoder

_BODY = (Path(__file__).parent / "anthropic-stream.txt").read_bytes()
#: The fake upstream's body arrives in socket-sized reads; a few chunks per stream, as on loopback.
_CHUNKS = [_BODY[i : i + 2048] for i in range(0, len(_BODY), 2048)]


def _one() -> int:
    decoder = MessageStreamDecoder("bench")
    encoder = ChunkEncoder("claude-bench", False)
    n = 0
    for chunk in _CHUNKS:
        n += len(encoder.encode(decoder.feed(chunk)))
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
    print(f"{_rate():.0f} streams/s ({len(_BODY)} bytes each)")


if __name__ == "__main__":
    main()
