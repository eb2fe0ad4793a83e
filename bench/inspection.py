"""What looking inside sampling costs: seconds per job with nothing inspected, with "cfg", with "attention" and with
both, alternated over rounds in one run (medians and ratios to nothing inspected), and the memory the capture keeps.

    python -m bench.inspection                        # CPU: the demo model, 20 steps at 128 px
    python -m bench.inspection --device cuda --model <SD 1.5 folder or hub id> --size 512
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

MODES = {"off": (), "cfg": ("cfg",), "attention": ("attention",), "both": ("attention", "cfg")}


def one_job(engine, inspect: tuple, size: int, steps: int, seed: int) -> tuple[float, int]:
    from studio.contract import Finished, GenerationRequest

    started = time.perf_counter()
    job = engine.submit(GenerationRequest("a large red circle in the center on a white background", seed=seed, steps=steps,
                                          width=size, height=size, sampler_name="Euler", inspect=inspect))
    result = job.wait()
    seconds = time.perf_counter() - started
    assert isinstance(result, Finished), result
    return seconds, job.inspection.nbytes if job.inspection is not None else 0


def measure(engine, size: int, steps: int, rounds: int) -> dict:
    for inspect in MODES.values():
        one_job(engine, inspect, size, steps, 0)  # warm-up
    seconds: dict = {name: [] for name in MODES}
    kept: dict = {}
    for r in range(rounds):
        order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
        for name in order:
            spent, kept[name] = one_job(engine, MODES[name], size, steps, r + 1)
            seconds[name].append(spent)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {"size": size, "steps": steps, "rounds": rounds,
            "seconds_per_job": {name: round(value, 3) for name, value in median.items()},
            "ratio_to_off": {name: round(value / median["off"], 3) for name, value in median.items()},
            "capture_bytes": kept}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.inspection")
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default="demo")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=None)
    p.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "sd-studio-bench"))
    args = p.parse_args()

    from studio.config import Settings
    from studio.engine import Engine
    from studio.outputs import OutputStore

    work = Path(args.work_dir)
    settings = Settings(model=args.model, outputs=work / "outputs-inspection", cache_dir=work / "studio-cache",
                        device=args.device, preview="latent", warmup=False)
    engine = Engine(settings, OutputStore(settings.outputs)).start()
    try:
        if engine.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        report = {"device": str(engine.device), "torch": torch.__version__, "model": args.model,
                  **measure(engine, args.size, args.steps, args.rounds)}
        if engine.device.type == "cuda":
            report["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    finally:
        engine.stop()
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
