"""A1111's `script_name` / `script_args` on POST /sdapi/v1/txt2img and /sdapi/v1/img2img (studio/scripts runs
them): the call is checked and expanded before anything runs (422 naming the problem — an unknown script names the
known ones; over the image cap names the count), then its jobs run as the caller's own, and the answer is A1111's:
images = the grid(s) first, then the pictures, with info.infotexts (and all_prompts, all_seeds ...) aligned to
them and the other info fields from the first job. A client that goes away cancels every job of the script.
No torch; nothing of studio.web.a1111 (which hands calls over to here)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import threading
import time
from typing import Optional

from fastapi import HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from ..contract import QueueFullError, RequestError
from ..metadata import parse_infotext, variation_seeds
from ..scripts import ScriptResult, ScriptStopped

POLL_SECONDS = 0.05  # how often a waiting script call looks for its end or its client's leaving


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _png_base64(path: str) -> str:
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode("ascii")


def _refusal(exc: Exception) -> HTTPException:
    return HTTPException(status_code=429 if isinstance(exc, QueueFullError) else 422, detail=str(exc))


async def generate_with_script(api, request: Request, body, img2img: bool):
    """POST txt2img / img2img with body.script_name set. api: the router's studio.web.a1111.Api (its public
    build_request and service)."""
    service, user = api.service, request.state.user
    host = request.client.host if request.client else None
    try:
        gen = await run_in_threadpool(api.build_request, request, user, body, img2img)
        plan = await run_in_threadpool(service.plan_script, body.script_name, gen, body.script_args, user, host, img2img)
    except RequestError as exc:
        raise _refusal(exc) from None
    stop = threading.Event()
    task = asyncio.ensure_future(run_in_threadpool(service.run_script, plan, user, host, stop))
    try:
        while not task.done():
            if await request.is_disconnected():
                stop.set()  # every job of the script is cancelled; nobody reads the answer
                await asyncio.wait({task})
                task.exception()
                return Response(status_code=499)
            await asyncio.wait({task}, timeout=POLL_SECONDS)
    except asyncio.CancelledError:  # the server is cancelling this handler: the jobs must not run for nobody
        stop.set()
        raise
    try:
        result: ScriptResult = task.result()
    except ScriptStopped:
        return Response(status_code=499)
    except RequestError as exc:  # QueueFullError (429); an upscaler that failed (422)
        raise _refusal(exc) from None
    if result.failed is not None:
        raise HTTPException(status_code=422 if result.failed.bad_request else 500, detail=result.failed.message)
    images = await run_in_threadpool(lambda: [_png_base64(o.path) for o in result.outputs] if body.send_images else [])
    echo = body.model_dump()
    echo.pop("init_images", None)
    echo.pop("mask", None)
    if img2img:
        echo["init_images"], echo["mask"] = None, None
    info = script_info_fields(result)
    return _finite({"images": images, "parameters": echo, "info": json.dumps(_finite(info), ensure_ascii=False)})


def script_info_fields(result: ScriptResult) -> dict:
    """A1111's info for a script's answer: per-picture lists aligned with the images; the rest from the first job."""
    outputs, first, job = result.outputs, result.first_request, result.first_job
    params = parse_infotext(outputs[0].infotext) if outputs and outputs[0].infotext else {}
    started = job.started if job is not None else None
    seeds = [o.seed for o in outputs]
    subseeds = variation_seeds([o.infotext or "" for o in outputs], first.subseed)
    return {
        "prompt": first.prompt,
        "all_prompts": [o.prompt for o in outputs],
        "negative_prompt": first.negative_prompt,
        "all_negative_prompts": [o.negative_prompt for o in outputs],
        "seed": seeds[0] if seeds else first.seed,
        "all_seeds": seeds,
        "subseed": subseeds[0] if subseeds else first.subseed,
        "all_subseeds": subseeds,
        "subseed_strength": first.subseed_strength,
        "width": _int(params.get("Size-1"), first.width),
        "height": _int(params.get("Size-2"), first.height),
        "sampler_name": params.get("Sampler", first.sampler_name),
        "scheduler": params.get("Schedule type", "Automatic"),
        "cfg_scale": first.cfg_scale,
        "steps": first.steps,
        "batch_size": first.batch_size,
        "restore_faces": False,
        "sd_model_name": params.get("Model", started.model if started else first.model),
        "sd_model_hash": params.get("Model hash"),
        "denoising_strength": first.denoising_strength if first.init_image is not None else None,
        "styles": list(first.styles),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created if job is not None else time.time())),
        "clip_skip": first.clip_skip,
        "is_using_inpainting_conditioning": first.mask is not None,
        "infotexts": [o.infotext for o in outputs],
        "index_of_first_image": sum(1 for o in outputs if o.grid),
        "notes": list(result.notes) + (list(started.notes) if started else []),
        "interrupted": result.interrupted,
        "skipped": False,
        "job_id": job.id if job is not None else None,
        "version": params.get("Version"),
        "script_name": result.title,
    }


def _int(value, fallback: Optional[int]) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return int(fallback or 0)
