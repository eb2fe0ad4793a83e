"""Dynamic batching: images/s when several users submit compatible jobs at once, batching on vs off.

    python -m bench.batching                     # CPU: tiny model, 4 users
    python -m bench.batching --device cuda --models sd15,sdxl   # GPU: random-weight SD 1.5 / SDXL, fp16

Each round: every user submits one job at the same moment while the worker is busy with a short "blocker" job, so
the users' jobs are all queued when it finishes (as on a busy server). Rounds alternate on/off; medians and the
ratio are reported, and each image is checked against the same seed's image with batching off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PROMPTS = ["a red house by a lake", "a blue boat at dawn", "a forest in autumn", "a city street at night",
           "a cat on a sofa", "a mountain cabin", "a bowl of fruit", "a desert road"]


def run_round(engine, users: int, size: int, steps: int, batching: bool, seed0: int):
    from studio.contract import LOCAL_USER, Finished, GenerationRequest
    from studio.service import JobService

    service = JobService.for_operator(engine)
    service.configure(LOCAL_USER, dynamic_batching=batching)
    blocker = service.submit(GenerationRequest("blocker", seed=0, steps=1, width=size, height=size), "blocker")
    jobs = [
        service.submit(GenerationRequest(PROMPTS[u % len(PROMPTS)], seed=seed0 + u, steps=steps, width=size, height=size, sampler_name="Euler"), f"user{u}")
        for u in range(users)
    ]
    blocker.wait()
    started = time.perf_counter()
    results = [job.wait() for job in jobs]
    seconds = time.perf_counter() - started
    assert all(isinstance(r, Finished) for r in results), results
    return seconds, [r.images[0].path for r in results]


def measure(engine, users: int, size: int, steps: int, rounds: int) -> dict:
    run_round(engine, users, size, steps, True, 100)  # warm-up of the batched shapes
    run_round(engine, users, size, steps, False, 100)
    times = {True: [], False: []}
    paths = {}
    for r in range(rounds):
        for batching in ((True, False) if r % 2 == 0 else (False, True)):
            seconds, images = run_round(engine, users, size, steps, batching, 1000)
            times[batching].append(seconds)
            paths[batching] = images
    worst = max(
        int(np.abs(np.asarray(Image.open(a), np.int16) - np.asarray(Image.open(b), np.int16)).max())
        for a, b in zip(paths[True], paths[False])
    )
    on, off = statistics.median(times[True]), statistics.median(times[False])
    return {
        "users": users, "size": size, "steps": steps, "rounds": rounds,
        "seconds_batched": on, "seconds_one_by_one": off,
        "images_per_s_batched": users / on, "images_per_s_one_by_one": users / off,
        "ratio": off / on, "max_pixel_difference": worst,
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.batching")
    p.add_argument("--device", default="auto")
    p.add_argument("--models", default=None, help="tiny (CPU default), sd15, sdxl")
    p.add_argument("--users", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "sd-studio-bench"))
    args = p.parse_args()

    from studio.config import Settings
    from studio.engine import Engine
    from studio.outputs import OutputStore
    from studio.pipelines import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    names = (args.models or ("sd15,sdxl" if device.type == "cuda" else "tiny")).split(",")
    work = Path(args.work_dir)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "torch": torch.__version__, "results": {}}
    for name in names:
        if name == "tiny":
            model, size = "tiny", 128
        else:
            from .models import SPECS, model_folder

            spec = SPECS[name]
            folder, _ = model_folder(spec, work, resolve_dtype("auto", device), init_device="cuda" if device.type == "cuda" else "cpu")
            model, size = str(folder), spec.size
        steps = args.steps or (20 if device.type == "cuda" else 8)
        settings = Settings(model=model, outputs=work / "outputs-batching", cache_dir=work / "studio-cache", device=args.device,
                            preview="latent", warmup=False, max_batch=max(8, args.users))
        engine = Engine(settings, OutputStore(settings.outputs)).start()
        try:
            report["results"][name] = measure(engine, args.users, size, steps, args.rounds)
        finally:
            engine.stop()
        print(json.dumps({name: report["results"][name]}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
