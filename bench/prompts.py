"""python -m bench.prompts [--reps N] [--out FILE]

What A1111's prompt semantics cost on the real SD 1.5 text encoder (models/configs/sd15, seeded random weights,
fp32, CPU), against diffusers' own `encode_prompt` of the same text: one prompt of about 40 tokens, as plain text and
with emphasis on six of its phrases (`(word:1.3)`, `((word))`, `[word]`), and a three-chunk prompt (about 170 tokens,
emphasis and a BREAK). Timed, median of N, milliseconds: the parse and chunking alone (no torch: what the UI's
counter does), and the studio's encode (parse, chunks, CLIP, emphasis with the mean restored). Prints a table; JSON
to bench/results/DATE-cpu-prompts.json unless --out says where.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PLAIN = ("a lighthouse on a rocky shore at dusk, dramatic sky, crashing waves, oil painting, warm light, "
         "highly detailed, masterpiece, by an old master")
EMPHASIS = ("a lighthouse on a (rocky shore:1.2) at dusk, (dramatic sky:1.3), crashing waves, ((oil painting)), "
            "[warm light], highly detailed, (masterpiece:1.1), by an [[old master]]")
LONG = ", ".join([EMPHASIS] * 3) + " BREAK a small boat in the distance, (seagulls:0.8)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # diffusers' "truncated to 77 tokens" warning, every call

    from bench.models import SPECS, build_pipeline
    from studio.prompts.chunks import build_chunks
    from studio.prompts.encode import PromptEncoder
    from studio.prompts.syntax import parse_emphasis

    pipe = build_pipeline(SPECS["sd15"], Path(tempfile.mkdtemp(prefix="bench-prompts-")) / "studio-cache")
    encoder = PromptEncoder(pipe, "sd1")
    tokenizer = pipe.tokenizer
    comma = tokenizer.get_vocab().get(",</w>", -1)

    def tokenize(text: str) -> list:
        return tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]

    def diffusers_encode(text: str):
        with torch.inference_mode():
            pipe.encode_prompt(text, pipe.device, 1, False)

    def studio_encode(text: str):
        with torch.inference_mode():
            encoder.encode(text)

    texts = {"plain": PLAIN, "emphasis": EMPHASIS, "3 chunks + emphasis": LONG}
    timed = {  # (prompt, what) → callable; run alternated, one of each per round, so load drifts hit all alike
        (name, what): fn
        for name, text in texts.items()
        for what, fn in (("parse_and_chunk_ms", lambda text=text: build_chunks(parse_emphasis(text), tokenize, comma)),
                         ("studio_encode_ms", lambda text=text: studio_encode(text)),
                         ("diffusers_encode_prompt_ms", lambda text=text: diffusers_encode(text)))  # plain CLIP, cut at 77
    }
    samples: dict = {key: [] for key in timed}
    for fn in timed.values():
        fn()  # warm-up, untimed
    for _ in range(args.reps):
        for key, fn in timed.items():
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)
    rows = {
        name: {"tokens": sum(len(chunk.tokens) for chunk in encoder.chunks(text)), "chunks": len(encoder.chunks(text)),
               **{what: round(statistics.median(samples[(name, what)]) * 1000, 2) for (n, what) in timed if n == name}}
        for name, text in texts.items()
    }
    load = os.getloadavg()[0]
    print(f"SD1.5 text encoder, random weights, CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads); "
          f"median of {args.reps}; load average {load:.1f}")
    header = f"{'prompt':<22}{'tokens':>7}{'chunks':>7}{'parse+chunk ms':>16}{'studio ms':>11}{'diffusers ms':>14}"
    print(header)
    for name, row in rows.items():
        print(f"{name:<22}{row['tokens']:>7}{row['chunks']:>7}{row['parse_and_chunk_ms']:>16.2f}"
              f"{row['studio_encode_ms']:>11.2f}{row['diffusers_encode_prompt_ms']:>14.2f}")
    result = {
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
                 "torch": torch.__version__, "threads": torch.get_num_threads()},
        "model": "sd15 text encoder (models/configs/sd15, random weights, fp32, cpu)",
        "prompts": {"plain": PLAIN, "emphasis": EMPHASIS, "3 chunks + emphasis": LONG},
        "reps": args.reps,
        "load_average_1min_at_end": round(load, 2),
        "median_ms": rows,
    }
    out = args.out or Path(__file__).parent / "results" / f"{datetime.date.today().isoformat()}-cpu-prompts.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
