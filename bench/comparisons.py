"""Head-to-head sections: the studio engine against diffusers' own pipeline on the same loaded files, timed the same
way from the caller. Each function is one section of a model's results (its return value is stored under the
section's name)."""

from __future__ import annotations

import gc
import time

import numpy as np
import torch
from PIL import Image

from .sides import PROMPT, SAMPLER, Plan, Sides, alternate, diffusers_call, engine_job, its_from, median, ratio


def load(sides: Sides):
    """Model load time from the saved folder, engine vs diffusers, alternated. The engine's first load also hashes
    the UNet file (cached afterwards), so its first and later loads are reported apart."""
    engine_times, diffusers_times = [], []
    reps = 2 if sides.device.type == "cuda" or sides.spec.name == "tiny" else 1
    for rep in range(reps):
        for side in (("engine", "diffusers") if rep % 2 == 0 else ("diffusers", "engine")):
            if side == "engine":
                if sides.engine is not None:
                    sides.engine.stop()
                    sides.engine = None
                    gc.collect()
                    if sides.device.type == "cuda":
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


def warm_up(sides: Sides, plan: Plan):
    """First calls (cuDNN autotune, allocator growth, lazy imports) kept out of every later figure."""
    first_engine, _ = engine_job(sides.engine, plan.size, plan.lo)
    first_diffusers, _ = diffusers_call(sides.pipe, sides.device, plan.size, plan.lo)
    engine_job(sides.engine, plan.size, plan.lo)
    diffusers_call(sides.pipe, sides.device, plan.size, plan.lo)
    return {"engine_first_job_s": first_engine, "diffusers_first_call_s": first_diffusers}


def throughput(sides: Sides, plan: Plan, batch: int):
    """Denoising it/s and end-to-end seconds per image at `batch`, CFG on: engine (previews as default: latent
    every step; and previews off) vs diffusers, alternated run by run."""
    reps = plan.reps if batch == 1 else max(2, plan.reps - 2)
    runs = alternate(reps, plan.lo, plan.hi, {
        "engine": lambda steps: engine_job(sides.engine, plan.size, steps, batch, preview="latent")[0],
        "engine_no_previews": lambda steps: engine_job(sides.engine, plan.size, steps, batch, preview="off")[0],
        "diffusers": lambda steps: diffusers_call(sides.pipe, sides.device, plan.size, steps, batch)[0],
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


def peak_memory(sides: Sides, plan: Plan):
    if sides.device.type != "cuda":
        import resource

        return {"note": "CPU: process peak RSS only (engine and diffusers share the process)", "process_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    out = {}
    for side in ("engine", "diffusers"):
        for batch in (1, max(plan.batches)):
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(sides.device)
            base = torch.cuda.memory_allocated(sides.device)
            if side == "engine":
                engine_job(sides.engine, plan.size, plan.lo, batch, preview="latent")
            else:
                diffusers_call(sides.pipe, sides.device, plan.size, plan.lo, batch)
            peak = torch.cuda.max_memory_allocated(sides.device)
            out[f"{side}_b{batch}_peak_gb"] = peak / 2**30
            out[f"{side}_b{batch}_peak_over_resident_gb"] = (peak - base) / 2**30
    out["note"] = "peak torch allocations during one job/call; both models resident on the device (the other side's weights are in the baseline)"
    return out


def task_switch(sides: Sides, plan: Plan):
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
                seconds, _ = diffusers_call(sides.pipe, sides.device, size, steps, 1, task_pipe=task_pipe, **d_extra)
                diffusers_runs.setdefault(f"{task.value}_{kind}", []).append(seconds + build)
    builds = {}  # the studio's task_pipeline (from_pipe with the model's dtype) over the same loaded files
    scheduler_config = dict(sides.pipe.scheduler.config)
    for task in (Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT):
        times = []
        for _ in range(5):
            started = time.perf_counter()
            task_pipeline(sides.pipe, sides.spec.family, task, make_scheduler(find_sampler(SAMPLER), scheduler_config), sides.dtype)
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


def same_image(sides: Sides, plan: Plan):
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


def xformers(sides: Sides, plan: Plan):
    """xformers vs SDPA attention, denoising it/s batch 1, on both sides: the engine as started (SDPA) against a
    second engine started with --attention xformers; diffusers' pipe with its attention processors switched."""
    from studio.pipelines import xformers_problem

    problem = xformers_problem(sides.device, sides.dtype)
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
                    seconds, _ = diffusers_call(sides.pipe, sides.device, plan.size, steps, 1)
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
