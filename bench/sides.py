"""What every benchmark section shares: the plan of sizes and repetitions, the two sides compared (the studio engine
through its job service, and a bare diffusers pipeline on the same files), one timed run on each side, and the
statistics that turn alternated timings into it/s and ratios."""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from pathlib import Path
from typing import Optional

import torch

from .models import ModelSpec, random_taesd

PROMPT = "a photograph of an astronaut riding a horse, detailed, 35mm"
SAMPLER = "Euler"  # deterministic; the equality check uses the studio's default sampler instead


@dataclasses.dataclass
class Plan:
    """Sizes and repetitions for one model on one device."""

    size: int
    lo: int  # steps of the short run
    hi: int  # steps of the long run (and of the end-to-end figure)
    reps: int
    batches: tuple = (1, 4)
    previews: tuple = ("off", "latent", "taesd", "vae")
    fast_batches: tuple = (1,)


# ---- timing statistics


def alternate(reps: int, lo: int, hi: int, sides: dict) -> dict:
    """Time each side (steps → seconds) at `lo` and `hi` steps, rotating the order of sides and of step counts
    from one repetition to the next, so drift and warm caches fall on every side alike. {side: {steps: [s]}}"""
    runs: dict = {name: {} for name in sides}
    order = list(sides)
    for rep in range(reps):
        sequence = order[rep % len(order) :] + order[: rep % len(order)]
        for steps in ((lo, hi) if rep % 2 == 0 else (hi, lo)):
            for name in sequence:
                runs[name].setdefault(steps, []).append(sides[name](steps))
    return runs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return (a / b) if a and b else None


def operator_jobs(engine):
    """The job service over a benchmarked engine, as the operator (any model may be named). Cheap to build: made per
    call, so no engine is kept alive by a cache after the benchmark stops it."""
    from studio.service import JobService

    return JobService.for_operator(engine)


class Sides:
    """The two things compared: the studio engine (default mode) and a bare diffusers pipeline, same files."""

    def __init__(self, spec: ModelSpec, folder: Path, device: torch.device, dtype: torch.dtype, work: Path, max_batch: int):
        self.spec, self.folder, self.device, self.dtype, self.work = spec, folder, device, dtype, work
        self.max_batch = max_batch
        self.engine = None
        self.fast_engine = None
        self.pipe = None

    def settings(self, **overrides):
        from studio.config import Settings

        dtype_name = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[self.dtype]
        base = dict(
            model=self.folder.name,  # found in models_dir by name, as users' models are
            models_dir=self.folder.parent,
            outputs=self.work / "outputs",
            device=str(self.device),
            dtype=dtype_name,
            attention="sdpa",
            preview="latent",
            warmup=False,
            max_batch=self.max_batch,
            cache_dir=self.work / "studio-cache",
        )
        base.update(overrides)
        return Settings(**base)

    def start_engine(self, **overrides):
        from studio.engine import Engine
        from studio.outputs import OutputStore

        settings = self.settings(**overrides)
        started = time.perf_counter()
        engine = Engine(settings, OutputStore(settings.outputs), taesd_loader=random_taesd).start()
        sync(self.device)
        return engine, time.perf_counter() - started

    def close(self):
        """Stop both engines and drop the pipe, so the next model starts with the device memory free."""
        for engine in (self.engine, self.fast_engine):
            if engine is not None:
                engine.stop()
        self.engine = self.fast_engine = self.pipe = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def load_diffusers(self):
        import diffusers

        started = time.perf_counter()
        kwargs = dict(torch_dtype=self.dtype)
        if self.spec.family != "sdxl":
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        pipe = diffusers.DiffusionPipeline.from_pretrained(str(self.folder), **kwargs).to(self.device)
        pipe.set_progress_bar_config(disable=True)
        sync(self.device)
        return pipe, time.perf_counter() - started


def engine_job(engine, size: int, steps: int, batch: int = 1, seed: int = 1, preview: Optional[str] = None, sampler: str = SAMPLER, **extra):
    """Run one job on the engine through the job service; (seconds submit→finished, job). The job's event_times
    say when the worker emitted each kind of event. Raises on a failed job."""
    from studio.contract import LOCAL_USER, Finished, GenerationRequest

    jobs = operator_jobs(engine)
    if preview is not None and jobs.settings.preview != preview:
        jobs.configure(LOCAL_USER, preview=preview)
    request = GenerationRequest(
        PROMPT, seed=seed, steps=steps, cfg_scale=7.0, sampler_name=sampler, width=size, height=size, batch_size=batch, **extra
    )
    started = time.perf_counter()
    job = jobs.submit(request, LOCAL_USER)
    result = job.wait()
    seconds = time.perf_counter() - started
    if not isinstance(result, Finished):
        raise RuntimeError(f"engine job failed: {result}")
    return seconds, job


def diffusers_call(pipe, device, size: int, steps: int, batch: int = 1, seed: int = 1, sampler: str = SAMPLER, task_pipe=None, **extra):
    """Diffusers as its users call it: prompt, steps, CFG, size, one CPU generator per image; PIL images out."""
    from studio.pipelines import plain_scheduler
    from studio.samplers import find_sampler

    target = task_pipe or pipe
    target.set_progress_bar_config(disable=True)
    target.scheduler = plain_scheduler(find_sampler(sampler), dict(pipe.scheduler.config))
    generator = [torch.Generator("cpu").manual_seed(seed + i) for i in range(batch)]
    arguments = dict(num_inference_steps=steps, guidance_scale=7.0, num_images_per_prompt=batch, generator=generator)
    if "image" not in extra or "mask_image" in extra:
        arguments.update(width=size, height=size)
    started = time.perf_counter()
    images = target(PROMPT, **arguments, **extra).images
    sync(device)
    return time.perf_counter() - started, images


def its_from(times_lo, times_hi, lo, hi):
    a, b = median(times_lo), median(times_hi)
    if a is None or b is None or b <= a:
        return None
    return (hi - lo) / (b - a)
