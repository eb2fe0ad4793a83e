"""Where does the engine's per-step time go vs diffusers (GPU, batch 1)? `python -m bench.diag [--model sd15]`.
Each variant: denoising it/s from 5- vs 30-step calls (medians of 3), alternated."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import torch

from .models import SPECS, model_folder
from .sides import PROMPT, SAMPLER, Sides, diffusers_call, engine_job, median, sync


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="sd15")
    p.add_argument("--work-dir", default="/tmp/sdb")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers.utils import logging as dl

    dl.disable_progress_bar()
    from studio.pipelines import make_scheduler
    from studio.samplers import find_sampler

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    spec = SPECS[a.model]
    folder, _ = model_folder(spec, Path(a.work_dir), dtype, "cuda" if device.type == "cuda" else "cpu")
    sides = Sides(spec, folder, device, dtype, Path(a.work_dir), 8)
    sides.engine, _ = sides.start_engine(preview="off")
    sides.pipe, _ = sides.load_diffusers()
    size, lo, hi = spec.size, 5, 30

    def in_thread(fn):
        def run(*args, **kw):
            box = {}
            t = threading.Thread(target=lambda: box.update(r=fn(*args, **kw)))
            t.start()
            t.join()
            return box["r"]
        return run

    def with_callback(pipe, device, size, steps):
        cb = lambda p, i, t, k: {}
        from studio.pipelines import plain_scheduler

        pipe.scheduler = plain_scheduler(find_sampler(SAMPLER), dict(pipe.scheduler.config))
        started = time.perf_counter()
        pipe(PROMPT, num_inference_steps=steps, guidance_scale=7.0, width=size, height=size,
             generator=[torch.Generator("cpu").manual_seed(1)], callback_on_step_end=cb)
        sync(device)
        return time.perf_counter() - started, None

    def recording(pipe, device, size, steps):
        pipe.scheduler = make_scheduler(find_sampler(SAMPLER), dict(pipe.scheduler.config))
        started = time.perf_counter()
        pipe(PROMPT, num_inference_steps=steps, guidance_scale=7.0, width=size, height=size, generator=[torch.Generator("cpu").manual_seed(1)])
        sync(device)
        return time.perf_counter() - started, None

    variants = {
        "diffusers": lambda s: diffusers_call(sides.pipe, device, size, s)[0],
        "diffusers_in_thread": lambda s: in_thread(diffusers_call)(sides.pipe, device, size, s)[0],
        "diffusers_noop_callback": lambda s: with_callback(sides.pipe, device, size, s)[0],
        "diffusers_recording_scheduler": lambda s: recording(sides.pipe, device, size, s)[0],
        "engine_job_previews_off": lambda s: engine_job(sides.engine, size, s, 1, preview="off")[0],
    }
    for fn in variants.values():
        fn(lo)
    runs = {k: {lo: [], hi: []} for k in variants}
    for rep in range(3):
        for k, fn in variants.items():
            for s in (lo, hi):
                runs[k][s].append(fn(s))
    out = {}
    for k, d in runs.items():
        out[k] = {"it_s": (hi - lo) / (median(d[hi]) - median(d[lo])), "t5": median(d[lo]), "t30": median(d[hi])}
        print(f"{k:32s} {out[k]['it_s']:7.2f} it/s   5 steps {out[k]['t5']:.3f} s   30 steps {out[k]['t30']:.3f} s", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2))
    sides.engine.stop()


if __name__ == "__main__":
    main()
