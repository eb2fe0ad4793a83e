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
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

from .models import SPECS, ModelSpec, model_folder, random_taesd

log = logging.getLogger("bench")

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


# ---- helpers


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


# ---- sections


class Bench:
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
        self.section(result, "load", self.load, sides)
        if sides.engine is None or sides.pipe is None:
            return
        self.section(result, "warm_up", self.warm_up, sides, plan)
        self.section(result, "throughput_b1", self.throughput, sides, plan, 1)
        if self.device.type == "cuda" or name == "tiny":
            self.section(result, "same_image_as_diffusers", self.same_image, sides, plan)
        self.section(result, "previews", self.previews, sides, plan)
        if self.device.type == "cpu" and not self.args.fast_on_cpu:
            result["fast"] = {"skipped": CPU_FAST_NOTE}
        elif plan.fast_batches and not self.args.no_fast:
            self.section(result, "fast", self.fast, sides, plan)
        for batch in plan.batches:
            if batch != 1:
                self.section(result, f"throughput_b{batch}", self.throughput, sides, plan, batch)
        self.section(result, "peak_memory", self.peak_memory, sides, plan)
        self.section(result, "task_switch", self.task_switch, sides, plan)
        if self.device.type == "cuda":
            self.section(result, "xformers", self.xformers, sides, plan)
        if self.device.type == "cuda" and name == "sd15" and not self.args.no_oom:
            self.section(result, "oom", self.oom, sides, plan)
        self.close(sides)

    def close(self, sides: Sides):
        for engine in (sides.engine, sides.fast_engine):
            if engine is not None:
                engine.stop()
        sides.engine = sides.fast_engine = sides.pipe = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def load(self, sides: Sides):
        """Model load time from the saved folder, engine vs diffusers, alternated. The engine's first load also hashes
        the UNet file (cached afterwards), so its first and later loads are reported apart."""
        engine_times, diffusers_times = [], []
        reps = 2 if self.device.type == "cuda" or sides.spec.name == "tiny" else 1
        for rep in range(reps):
            for side in (("engine", "diffusers") if rep % 2 == 0 else ("diffusers", "engine")):
                if side == "engine":
                    if sides.engine is not None:
                        sides.engine.stop()
                        sides.engine = None
                        gc.collect()
                        if self.device.type == "cuda":
                            torch.cuda.empty_cache()
                    sides.engine, seconds = sides.start_engine()
                    engine_times.append(seconds)
                else:
                    sides.pipe = None
                    gc.collect()
                    sides.pipe, seconds = sides.load_diffusers()
                    diffusers_times.append(seconds)
        later = engine_times[1:] or engine_times
        return {
            "engine_s": engine_times,
            "diffusers_s": diffusers_times,
            "engine_first_s": engine_times[0],
            "engine_median_later_s": median(later),
            "diffusers_median_s": median(diffusers_times),
            "ratio_diffusers_over_engine": ratio(median(diffusers_times), median(later)),
        }

    def warm_up(self, sides: Sides, plan: Plan):
        """First calls (cuDNN autotune, allocator growth, lazy imports) kept out of every later figure."""
        first_engine, _ = engine_job(sides.engine, plan.size, plan.lo)
        first_diffusers, _ = diffusers_call(sides.pipe, self.device, plan.size, plan.lo)
        engine_job(sides.engine, plan.size, plan.lo)
        diffusers_call(sides.pipe, self.device, plan.size, plan.lo)
        return {"engine_first_job_s": first_engine, "diffusers_first_call_s": first_diffusers}

    def throughput(self, sides: Sides, plan: Plan, batch: int):
        """Denoising it/s and end-to-end seconds per image at `batch`, CFG on: engine (previews as default: latent
        every step; and previews off) vs diffusers, alternated run by run."""
        reps = plan.reps if batch == 1 else max(2, plan.reps - 2)
        runs = alternate(reps, plan.lo, plan.hi, {
            "engine": lambda steps: engine_job(sides.engine, plan.size, steps, batch, preview="latent")[0],
            "engine_no_previews": lambda steps: engine_job(sides.engine, plan.size, steps, batch, preview="off")[0],
            "diffusers": lambda steps: diffusers_call(sides.pipe, self.device, plan.size, steps, batch)[0],
        })
        out = {"batch": batch, "size": plan.size, "steps": [plan.lo, plan.hi], "raw_s": {k: {str(s): v for s, v in d.items()} for k, d in runs.items()}}
        for side, d in runs.items():
            its = its_from(d[plan.lo], d[plan.hi], plan.lo, plan.hi)
            out[side] = {
                "denoise_it_s": its,
                "images_it_s": its * batch if its else None,
                "e2e_s_per_image": median(d[plan.hi]) / batch,
                "e2e_s_job_hi": median(d[plan.hi]),
            }
        for side in ("engine", "engine_no_previews"):
            out[f"ratio_{side}_over_diffusers_it_s"] = ratio(out[side]["denoise_it_s"], out["diffusers"]["denoise_it_s"])
            out[f"ratio_{side}_over_diffusers_e2e_speed"] = ratio(out["diffusers"]["e2e_s_per_image"], out[side]["e2e_s_per_image"])
            if out[side]["denoise_it_s"] and out["diffusers"]["denoise_it_s"]:
                out[f"{side}_per_step_overhead"] = out["diffusers"]["denoise_it_s"] / out[side]["denoise_it_s"] - 1
        return out

    def previews(self, sides: Sides, plan: Plan):
        """Cost of previews every step per mode vs previews off (engine, batch 1), and time from job start to the
        first preview frame. vae previews run at their default interval (every 5th step) and every step."""
        from studio.contract import LOCAL_USER

        modes = list(plan.previews)
        runs: dict = {m: {} for m in modes}
        if "vae" in modes:
            runs["vae_every_step"] = {}
        first_frame: dict = {m: [] for m in runs}
        first_step: dict = {m: [] for m in runs}
        names = list(runs)
        for mode in modes:  # builds each mode's decoder (and TAESD) outside the timings
            engine_job(sides.engine, plan.size, plan.lo, 1, preview=mode)
        for rep in range(plan.reps):
            sequence = names[rep % len(names) :] + names[: rep % len(names)]
            for steps in ((plan.lo, plan.hi) if rep % 2 == 0 else (plan.hi, plan.lo)):
                for mode in sequence:
                    preview = "vae" if mode == "vae_every_step" else mode
                    every = 1 if mode == "vae_every_step" else None
                    operator_jobs(sides.engine).configure(LOCAL_USER, preview_every=every)
                    seconds, job = engine_job(sides.engine, plan.size, steps, 1, preview=preview)
                    runs[mode].setdefault(steps, []).append(seconds)
                    times = job.event_times
                    if "Started" in times and "Preview" in times:
                        first_frame[mode].append(times["Preview"] - times["Started"])
                    if "Started" in times and "Step" in times:
                        first_step[mode].append(times["Step"] - times["Started"])
        operator_jobs(sides.engine).configure(LOCAL_USER, preview="latent", preview_every=None)
        out = {"size": plan.size, "steps": [plan.lo, plan.hi], "raw_s": {k: {str(s): v for s, v in d.items()} for k, d in runs.items()}}
        base = its_from(runs["off"][plan.lo], runs["off"][plan.hi], plan.lo, plan.hi) if "off" in runs else None
        for mode, d in runs.items():
            its = its_from(d[plan.lo], d[plan.hi], plan.lo, plan.hi)
            out[mode] = {
                "denoise_it_s": its,
                "cost_vs_off": (base / its - 1) if (its and base) else None,
                "start_to_first_preview_s": median(first_frame[mode]),
                "start_to_first_step_s": median(first_step[mode]),
                "e2e_s_job_hi": median(d[plan.hi]),
            }
        return out

    def peak_memory(self, sides: Sides, plan: Plan):
        if self.device.type != "cuda":
            import resource

            return {"note": "CPU: process peak RSS only (engine and diffusers share the process)", "process_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
        out = {}
        for side in ("engine", "diffusers"):
            for batch in (1, max(plan.batches)):
                gc.collect()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(self.device)
                base = torch.cuda.memory_allocated(self.device)
                if side == "engine":
                    engine_job(sides.engine, plan.size, plan.lo, batch, preview="latent")
                else:
                    diffusers_call(sides.pipe, self.device, plan.size, plan.lo, batch)
                peak = torch.cuda.max_memory_allocated(self.device)
                out[f"{side}_b{batch}_peak_gb"] = peak / 2**30
                out[f"{side}_b{batch}_peak_over_resident_gb"] = (peak - base) / 2**30
        out["note"] = "peak torch allocations during one job/call; both models resident on the device (the other side's weights are in the baseline)"
        return out

    def task_switch(self, sides: Sides, plan: Plan):
        """txt2img → img2img → inpaint on the same loaded model: each job right after a different task ('switch')
        vs right after the same task ('same'); and the pipeline-construction cost itself (from_pipe)."""
        from studio.pipelines import make_scheduler, pipeline_class, task_pipeline
        from studio.contract import Task
        from studio.samplers import find_sampler

        size = plan.size
        rng = np.random.default_rng(0)
        init = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        mask_array = np.zeros((size, size), dtype=np.uint8)
        mask_array[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
        mask = Image.fromarray(mask_array)
        steps = max(plan.lo, 2)
        extra = {
            Task.TXT2IMG: {},
            Task.IMG2IMG: {"init_image": init, "denoising_strength": 0.75},
            Task.INPAINT: {"init_image": init, "mask": mask, "denoising_strength": 0.75},
        }
        engine_runs: dict = {}
        diffusers_runs: dict = {}
        reps = max(1, min(plan.reps, 3))
        for _ in range(reps):
            for task in (Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT):
                for kind in ("switch", "same"):
                    seconds, _ = engine_job(sides.engine, size, steps, 1, preview="latent", **extra[task])
                    engine_runs.setdefault(f"{task.value}_{kind}", []).append(seconds)
                    started = time.perf_counter()
                    cls = pipeline_class(sides.spec.family, task)
                    task_pipe = cls.from_pipe(sides.pipe) if task is not Task.TXT2IMG else sides.pipe
                    build = time.perf_counter() - started
                    d_extra = {}
                    if task is Task.IMG2IMG:
                        d_extra = dict(image=init, strength=0.75)
                    elif task is Task.INPAINT:
                        d_extra = dict(image=init, mask_image=mask, strength=0.75)
                    seconds, _ = diffusers_call(sides.pipe, self.device, size, steps, 1, task_pipe=task_pipe, **d_extra)
                    diffusers_runs.setdefault(f"{task.value}_{kind}", []).append(seconds + build)
        builds = {}  # the studio's task_pipeline (from_pipe with the model's dtype) over the same loaded files
        scheduler_config = dict(sides.pipe.scheduler.config)
        for task in (Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                task_pipeline(sides.pipe, sides.spec.family, task, make_scheduler(find_sampler(SAMPLER), scheduler_config), self.dtype)
                times.append(time.perf_counter() - started)
            builds[task.value] = median(times)
        out = {"steps": steps, "engine_s": {k: median(v) for k, v in engine_runs.items()}, "diffusers_s": {k: median(v) for k, v in diffusers_runs.items()}, "engine_task_pipeline_build_s": builds}
        out["engine_switch_cost_s"] = {
            t: out["engine_s"][f"{t}_switch"] - out["engine_s"][f"{t}_same"] for t in ("txt2img", "img2img", "inpaint")
        }
        out["diffusers_switch_cost_s"] = {
            t: out["diffusers_s"][f"{t}_switch"] - out["diffusers_s"][f"{t}_same"] for t in ("txt2img", "img2img", "inpaint")
        }
        return out

    def same_image(self, sides: Sides, plan: Plan):
        """The engine's txt2img image for a seed vs diffusers' own call with generator=torch.Generator('cpu').manual_seed(seed),
        the studio's default sampler (Euler a), same steps and CFG. Max abs pixel difference (0..255)."""
        from studio.samplers import DEFAULT_SAMPLER

        out = {"sampler": DEFAULT_SAMPLER, "steps": plan.hi}
        for seed in (42, 7):
            _, job = engine_job(sides.engine, plan.size, plan.hi, 1, seed=seed, sampler=DEFAULT_SAMPLER)
            engine_image = np.asarray(Image.open(job.result.images[0].path).convert("RGB")).astype(np.int16)
            from studio.pipelines import plain_scheduler
            from studio.samplers import find_sampler

            sides.pipe.scheduler = plain_scheduler(find_sampler(DEFAULT_SAMPLER), dict(sides.pipe.scheduler.config))
            image = sides.pipe(
                PROMPT, num_inference_steps=plan.hi, guidance_scale=7.0, width=plan.size, height=plan.size,
                generator=torch.Generator("cpu").manual_seed(seed),
            ).images[0]
            reference = np.asarray(image.convert("RGB")).astype(np.int16)
            diff = np.abs(engine_image - reference)
            out[f"seed_{seed}"] = {
                "max_abs_diff": int(diff.max()),
                "mean_abs_diff": float(diff.mean()),
                "pixels_over_2": float((diff > 2).mean()),
                "image_std": float(reference.std()),  # not a flat (NaN/black) picture
            }
        return out

    def xformers(self, sides: Sides, plan: Plan):
        """xformers vs SDPA attention, denoising it/s batch 1, on both sides: the engine as started (SDPA) against a
        second engine started with --attention xformers; diffusers' pipe with its attention processors switched."""
        from studio.pipelines import _xformers_works

        problem = _xformers_works(self.device, self.dtype)
        out: dict = {"usable": problem is None, "problem": problem}
        try:
            import xformers

            out["version"] = xformers.__version__
        except Exception as exc:
            out["import_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if problem is not None:
            return out
        from diffusers.models.attention_processor import AttnProcessor2_0

        engines = {"sdpa": sides.engine}
        engines["xformers"], _ = sides.start_engine(attention="xformers")
        runs: dict = {}
        try:
            for attention in ("sdpa", "xformers", "sdpa", "xformers"):
                if attention == "xformers":
                    sides.pipe.enable_xformers_memory_efficient_attention()
                else:
                    sides.pipe.unet.set_attn_processor(AttnProcessor2_0())
                    sides.pipe.vae.set_attn_processor(AttnProcessor2_0())
                for rep in range(max(2, plan.reps // 2)):
                    for steps in (plan.lo, plan.hi):
                        seconds, _ = engine_job(engines[attention], plan.size, steps, 1, preview="latent")
                        runs.setdefault(f"engine_{attention}", {}).setdefault(steps, []).append(seconds)
                        seconds, _ = diffusers_call(sides.pipe, self.device, plan.size, steps, 1)
                        runs.setdefault(f"diffusers_{attention}", {}).setdefault(steps, []).append(seconds)
        finally:
            engines["xformers"].stop()
            sides.pipe.unet.set_attn_processor(AttnProcessor2_0())
            sides.pipe.vae.set_attn_processor(AttnProcessor2_0())
        for name, d in runs.items():
            out[f"{name}_it_s"] = its_from(d[plan.lo], d[plan.hi], plan.lo, plan.hi)
        out["ratio_xformers_over_sdpa_diffusers"] = ratio(out.get("diffusers_xformers_it_s"), out.get("diffusers_sdpa_it_s"))
        out["ratio_xformers_over_sdpa_engine"] = ratio(out.get("engine_xformers_it_s"), out.get("engine_sdpa_it_s"))
        return out

    def oom(self, sides: Sides, plan: Plan):
        """A job too large for GPU memory fails with the engine's message; the next job succeeds."""
        from studio.contract import LOCAL_USER, Failed, Finished, GenerationRequest

        request = GenerationRequest(PROMPT, seed=1, steps=1, width=2048, height=2048, batch_size=32, sampler_name=SAMPLER)
        started = time.perf_counter()
        result = operator_jobs(sides.engine).generate(request, LOCAL_USER)
        failed_s = time.perf_counter() - started
        out = {"request": "2048x2048, batch 32, 1 step", "result": type(result).__name__, "message": getattr(result, "message", None), "seconds": failed_s}
        out["oom_message_ok"] = isinstance(result, Failed) and result.message.startswith("Out of GPU memory")
        seconds, job = engine_job(sides.engine, plan.size, plan.lo, 1)
        out["next_job"] = type(job.result).__name__
        out["next_job_ok"] = isinstance(job.result, Finished)
        out["next_job_s"] = seconds
        out["memory_allocated_after_gb"] = torch.cuda.memory_allocated(self.device) / 2**30
        return out

    def fast(self, sides: Sides, plan: Plan):
        """Fast mode (--fast) vs diffusers and vs default mode: its start-up (load + compile for the common size),
        denoising it/s and end-to-end per image; and its images vs default mode's for the same seeds."""
        out: dict = {}
        # default mode's images first (the default engine is then stopped to free memory)
        seeds = (11, 12)
        reference = {}
        for seed in seeds:
            _, job = engine_job(sides.engine, plan.size, plan.hi, 1, seed=seed, preview="latent")
            reference[seed] = np.asarray(Image.open(job.result.images[0].path).convert("RGB")).astype(np.int16)
        sides.fast_engine, start_s = sides.start_engine(fast=True)
        out["start_s_including_compile"] = start_s
        for seed in seeds:
            _, job = engine_job(sides.fast_engine, plan.size, plan.hi, 1, seed=seed, preview="latent")
            image = np.asarray(Image.open(job.result.images[0].path).convert("RGB")).astype(np.int16)
            diff = np.abs(image - reference[seed])
            out[f"equal_seed_{seed}"] = {"max_abs_diff": int(diff.max()), "mean_abs_diff": float(diff.mean()), "pixels_over_8": float((diff > 8).mean())}
        for batch in plan.fast_batches:
            if time.time() > self.deadline:
                out[f"b{batch}"] = {"skipped": "deadline"}
                continue
            started = time.perf_counter()
            engine_job(sides.fast_engine, plan.size, plan.lo, batch)  # compiles a new batch size (first use)
            engine_job(sides.fast_engine, plan.size, plan.lo, batch)
            warm = time.perf_counter() - started
            runs = alternate(plan.reps, plan.lo, plan.hi, {
                "fast": lambda steps: engine_job(sides.fast_engine, plan.size, steps, batch, preview="latent")[0],
                "fast_no_previews": lambda steps: engine_job(sides.fast_engine, plan.size, steps, batch, preview="off")[0],
                "diffusers": lambda steps: diffusers_call(sides.pipe, self.device, plan.size, steps, batch)[0],
            })
            res = {"first_use_s": warm, "raw_s": {k: {str(s): v for s, v in d.items()} for k, d in runs.items()}}
            for side, d in runs.items():
                its = its_from(d[plan.lo], d[plan.hi], plan.lo, plan.hi)
                res[side] = {"denoise_it_s": its, "e2e_s_per_image": median(d[plan.hi]) / batch}
            for side in ("fast", "fast_no_previews"):
                res[f"ratio_{side}_over_diffusers_it_s"] = ratio(res[side]["denoise_it_s"], res["diffusers"]["denoise_it_s"])
                res[f"ratio_{side}_over_diffusers_e2e_speed"] = ratio(res["diffusers"]["e2e_s_per_image"], res[side]["e2e_s_per_image"])
            out[f"b{batch}"] = res
        return out


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
