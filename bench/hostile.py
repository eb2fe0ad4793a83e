"""python -m bench.hostile [--reps N] [--out FILE]

What refusing hostile input costs, on the CPU (no model, no torch): counting a 16,000-character prompt with the live
CLIP token counter (one word of random letters: the case that was quadratic in the hand-written BPE, ~28 s; one
repeated letter; and a realistic long prompt), refusing a prompt over the length cap, and refusing a ~17 KB PNG that declares 12000×12000 pixels (decode_image
and the header-only image_header, after limit_decoder as the server sets it). Medians of N runs, in milliseconds, with
the peak Python allocation of the image refusals. JSON to artifacts/bench/hostile-DATE.json unless --out says where.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import struct
import tempfile
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Callable

LONG_PROMPT = ("a lighthouse at dusk on a rocky shore, oil painting by an old master, dramatic clouds, 8k, "
               "highly detailed, (golden hour:1.2), masterpiece, trending on artstation, ")


def declared_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width×height black pixels built row by row, never holding the pixels (~17 KB at 12000²)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def hostile_word(n: int) -> str:
    """n random letters, one word: few BPE merges apply at once (the tests' word, the same seed)."""
    rng = random.Random(n)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def timed(fn: Callable[[], object], reps: int) -> dict:
    """Median and best of `reps` calls, in milliseconds (the first call is a warm-up, not counted)."""
    fn()
    runs = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(runs), 3), "best_ms": round(min(runs), 3), "reps": reps}


def refused(fn: Callable[[], object]) -> Callable[[], str]:
    from studio.contract import RequestError

    def call() -> str:
        try:
            fn()
        except RequestError as exc:
            return str(exc)
        raise AssertionError("not refused")

    return call


def peak_allocation(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run(reps: int) -> dict:
    import tokenizers

    from studio.config import Settings
    from studio.tokenizers import write_clip_tokenizer
    from studio.ui.tokens import TokenCounter
    from studio.validation import MAX_PROMPT_CHARS, decode_image, image_header, limit_decoder

    results: dict = {"meta": {"python": platform.python_version(), "machine": platform.machine(),
                              "processor": platform.processor() or platform.machine(), "tokenizers": tokenizers.__version__,
                              "date": time.strftime("%Y-%m-%d %H:%M:%S")}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_clip_tokenizer(Path(tmp) / "tokenizer")
        start = time.perf_counter()
        counter = TokenCounter(folder / "merges.txt")
        results["counter_load_ms"] = round((time.perf_counter() - start) * 1000, 3)

    texts = {
        "random_word_4000": hostile_word(4_000),
        "random_word_16000": hostile_word(16_000),
        "x_16000": "x" * 16_000,
        "prompt_16000": (LONG_PROMPT * (16_000 // len(LONG_PROMPT) + 1))[:16_000],
        f"prompt_{MAX_PROMPT_CHARS}": (LONG_PROMPT * (MAX_PROMPT_CHARS // len(LONG_PROMPT) + 1))[:MAX_PROMPT_CHARS],
    }
    over = "x" * (MAX_PROMPT_CHARS + 1)
    results["count"] = {
        **{name: {**timed(lambda t=text: counter.count(t), reps), "tokens": counter.count(text)[0]} for name, text in texts.items()},
        f"refuse_{len(over)}": {**timed(refused(lambda: counter.count(over)), reps), "message": refused(lambda: counter.count(over))()},
    }

    settings = Settings()
    limit_decoder(settings)  # as the server's composition root does at start
    bomb = declared_png(12_000, 12_000)
    by_decode = refused(lambda: decode_image(bomb, "init_image", settings))
    by_header = refused(lambda: image_header(bomb, "init_image", settings))
    results["png_12000x12000"] = {
        "file_bytes": len(bomb),
        "max_image_pixels": settings.max_image_pixels,
        "decode_image": {**timed(by_decode, reps), "peak_python_alloc_bytes": peak_allocation(by_decode), "message": by_decode()},
        "image_header": {**timed(by_header, reps), "peak_python_alloc_bytes": peak_allocation(by_header), "message": by_header()},
    }
    return results


def render(results: dict) -> str:
    lines = [f"token counter load: {results['counter_load_ms']:.1f} ms"]
    for name, row in results["count"].items():
        extra = f"{row['tokens']} tokens" if "tokens" in row else row["message"]
        lines.append(f"count {name:<18} median {row['median_ms']:8.3f} ms  best {row['best_ms']:8.3f} ms  ({extra})")
    png = results["png_12000x12000"]
    for name in ("decode_image", "image_header"):
        row = png[name]
        lines.append(f"refuse 12000² PNG ({png['file_bytes']:,} B) by {name:<12} median {row['median_ms']:.3f} ms  "
                     f"peak {row['peak_python_alloc_bytes'] / 1024:.0f} KiB  ({row['message']})")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.hostile", description="the cost of refusing hostile input (CPU, no model)")
    p.add_argument("--reps", type=int, default=20, help="timed calls per figure (median reported)")
    p.add_argument("--out", default=None, help="JSON results file (default artifacts/bench/hostile-DATE.json)")
    args = p.parse_args(argv)
    results = run(args.reps)
    out = Path(args.out) if args.out else Path("artifacts/bench") / f"hostile-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(render(results), flush=True)
    print(f"[bench.hostile] raw results: {out}", flush=True)


if __name__ == "__main__":
    main()
