"""Profile the translated stream's CPU work without a network: bench/anthropic-stream.txt through the
Anthropic stream decoder and the OpenAI chat chunk encoder, as ``relay`` drives them.

    .venv/bin/python bench/profile_translated.py              # streams per second of process CPU time
    .venv/bin/python bench/profile_translated.py --profile    # cProfile's top entries
    .venv/bin/python bench/profile_translated.py --canonical  # every event canonical (no text splicing)
    .venv/bin/python bench/profile_translated.py --chunk 2048 # upstream reads of 2048 bytes (default: one)
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
#: On loopback the fake upstream's whole body usually arrives in one read; --chunk N cuts it in N bytes.
_SIZE = int(sys.argv[sys.argv.index("--chunk") + 1]) if "--chunk" in sys.argv else len(_BODY)
_CHUNKS = [_BODY[i : i + _SIZE] for i in range(0, len(_BODY), _SIZE)]
_CANONICAL = "--canonical" in sys.argv


def _one() -> int:
    decoder = MessageStreamDecoder("bench")
    encoder = ChunkEncoder("claude-bench", True)
    # As TranslatedLeg.stream_steps drives them: text runs spliced unless --canonical.
    feed = decoder.feed if _CANONICAL else decoder.feed_spliced
    n = 0
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
    print(f"{_rate():.0f} streams/s ({len(_BODY)} bytes each, reads of {_SIZE} bytes, {mode})")


if __name__ == "__main__":
    main()
