"""Sections about the engine's own modes and limits: preview modes against previews off, fast mode (torch.compile)
against default mode and diffusers, and a job too large for GPU memory. Each function is one section of a model's
results."""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image

from .sides import PROMPT, SAMPLER, Plan, Sides, alternate, diffusers_call, engine_job, its_from, median, operator_jobs, ratio


def previews(sides: Sides, plan: Plan):
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


def fast(sides: Sides, plan: Plan, deadline: float):
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
        if time.time() > deadline:
            out[f"b{batch}"] = {"skipped": "deadline"}
            continue
        started = time.perf_counter()
        engine_job(sides.fast_engine, plan.size, plan.lo, batch)  # compiles a new batch size (first use)
        engine_job(sides.fast_engine, plan.size, plan.lo, batch)
        warm = time.perf_counter() - started
        runs = alternate(plan.reps, plan.lo, plan.hi, {
            "fast": lambda steps: engine_job(sides.fast_engine, plan.size, steps, batch, preview="latent")[0],
            "fast_no_previews": lambda steps: engine_job(sides.fast_engine, plan.size, steps, batch, preview="off")[0],
            "diffusers": lambda steps: diffusers_call(sides.pipe, sides.device, plan.size, steps, batch)[0],
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


def oom(sides: Sides, plan: Plan):
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
    out["memory_allocated_after_gb"] = torch.cuda.memory_allocated(sides.device) / 2**30
    return out
