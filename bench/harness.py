"""The benchmark: the studio's engine against diffusers' own pipeline on the same model files, settings and device,
runs alternated, medians reported with their ratio. See bench/RESULTS.md for what each figure means.

Denoising it/s comes from the difference of two end-to-end timings that differ only in step count
((hi − lo) / (t_hi − t_lo)): fixed costs (prompt encoding, VAE decode, saving) cancel, per-step costs (UNet with CFG,
scheduler, step callbacks, previews) stay. Both sides are timed the same way, from the caller.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from . import comparisons, engine_modes
from .models import SPECS, model_folder
from .sides import Plan, Sides

log = logging.getLogger("bench")


def plan_for(name: str, device: torch.device, quick: bool) -> Plan:
    if device.type == "cuda":
        if name == "sdxl":
            return Plan(1024, 4, 16, 3, fast_batches=(1,))
        if name == "sd15":
            return Plan(512, 5, 30, 5, fast_batches=(1, 4))
        return Plan(SPECS[name].size, 5, 30, 5)
    if name == "tiny":
        return Plan(128, 2, 8, 3, previews=("off", "latent", "taesd", "vae")) if quick else Plan(128, 4, 20, 5)
    # a real-size model on a CPU: a smoke run (1 vs 2 steps, once)
    return Plan(SPECS[name].size, 1, 2, 1, batches=(1,), previews=("off", "latent"), fast_batches=())


CPU_FAST_NOTE = "torch.compile on this CPU did not finish compiling the tiny UNet in 9 minutes; fast mode is measured on the GPU"


# ---- the run


class Bench:
    """Runs the sections for each model in turn, stores each result as it comes and saves the JSON after every
    section, so a run cut short still leaves its figures."""

    def __init__(self, args, device: torch.device, dtype: torch.dtype, out_path: Path, deadline: float):
        self.args = args
        self.device = device
        self.dtype = dtype
        self.out_path = out_path
        self.deadline = deadline
        self.results = {"meta": environment(device, dtype, args), "models": {}}

    def save(self):
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str))
        os.replace(tmp, self.out_path)

    def section(self, model_result: dict, name: str, fn: Callable, *args):
        only = self.args.only.split(",") if getattr(self.args, "only", None) else None
        if only and name not in only and name not in ("load", "warm_up"):
            return None
        if time.time() > self.deadline:
            model_result[name] = {"skipped": "deadline"}
            print(f"[bench] {name}: skipped (deadline)", flush=True)
            return None
        started = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        try:
            value = fn(*args)
            model_result[name] = value
        except Exception as exc:
            traceback.print_exc()
            model_result[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            value = None
        model_result.setdefault("section_seconds", {})[name] = round(time.perf_counter() - started, 2)
        print(f"[bench] {name}: {json.dumps(model_result[name], default=str)[:600]}", flush=True)
        self.save()
        return value

    # ---- per model

    def run_model(self, name: str):
        spec = SPECS[name]
        plan = plan_for(name, self.device, self.args.quick)
        if self.args.size:
            plan.size = self.args.size
        if getattr(self.args, "reps", None):
            plan.reps = self.args.reps
        result: dict = {"plan": dataclasses.asdict(plan)}
        self.results["models"][name] = result
        work = Path(self.args.work_dir)
        init_device = "cuda" if self.device.type == "cuda" else "cpu"
        folder, build_s = model_folder(spec, work, self.dtype if self.device.type == "cuda" else torch.float16 if name != "tiny" else torch.float32, init_device)
        result["build_seconds"] = round(build_s, 2)
        sides = Sides(spec, folder, self.device, self.dtype, work, max_batch=64)
        gc.collect()
        self.section(result, "load", comparisons.load, sides)
        if sides.engine is None or sides.pipe is None:
            return
        self.section(result, "warm_up", comparisons.warm_up, sides, plan)
        self.section(result, "throughput_b1", comparisons.throughput, sides, plan, 1)
        if self.device.type == "cuda" or name == "tiny":
            self.section(result, "same_image_as_diffusers", comparisons.same_image, sides, plan)
        self.section(result, "previews", engine_modes.previews, sides, plan)
        if self.device.type == "cpu" and not self.args.fast_on_cpu:
            result["fast"] = {"skipped": CPU_FAST_NOTE}
        elif plan.fast_batches and not self.args.no_fast:
            self.section(result, "fast", engine_modes.fast, sides, plan, self.deadline)
        for batch in plan.batches:
            if batch != 1:
                self.section(result, f"throughput_b{batch}", comparisons.throughput, sides, plan, batch)
        self.section(result, "peak_memory", comparisons.peak_memory, sides, plan)
        self.section(result, "task_switch", comparisons.task_switch, sides, plan)
        if self.device.type == "cuda":
            self.section(result, "xformers", comparisons.xformers, sides, plan)
        if self.device.type == "cuda" and name == "sd15" and not self.args.no_oom:
            self.section(result, "oom", engine_modes.oom, sides, plan)
        sides.close()


def environment(device: torch.device, dtype: torch.dtype, args) -> dict:
    import diffusers
    import transformers

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "dtype": str(dtype).replace("torch.", ""),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "argv": sys.argv[1:],
    }
    try:
        import xformers

        meta["xformers"] = xformers.__version__
    except Exception as exc:
        meta["xformers"] = f"not importable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    meta["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return meta


def main(args) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from diffusers.utils import logging as diffusers_logging

    from studio.pipelines import resolve_device, resolve_dtype

    diffusers_logging.disable_progress_bar()

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if args.models:
        names = args.models.split(",")
    elif args.quick:
        names = ["tiny"]
    else:
        names = ["sd15", "sdxl"] if device.type == "cuda" else ["tiny", "sd15"]
    out_path = Path(args.out) if args.out else Path("bench/results") / f"{time.strftime('%Y%m%d-%H%M%S')}-{device.type}.json"
    deadline = time.time() + args.deadline if args.deadline else float("inf")
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    bench = Bench(args, device, dtype, out_path, deadline)
    print(f"[bench] {bench.results['meta']}", flush=True)
    for name in names:
        bench.run_model(name)
    bench.save()
    from .table import render

    print(render(bench.results), flush=True)
    print(f"[bench] raw results: {out_path}", flush=True)
    return bench.results
