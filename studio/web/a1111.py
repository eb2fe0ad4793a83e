"""The AUTOMATIC1111-compatible REST API under /sdapi/v1.

Every route acts for the caller only (request.state.user, set by the auth middleware): their jobs, their progress,
their files, their model choice. No torch.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import os
import time
from typing import Any, Optional

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict

from ..jobs import Job
from ..metadata import parse_infotext, read_infotext, variation_seeds
from ..contract import Cancelled, Failed, Finished, GenerationRequest, QueueFullError, RequestError
from ..samplers import DEFAULT_SAMPLER, SCHEDULE_TYPES, sampler_aliases, sampler_names
from .a1111_extras import register_extras_routes
from .base64_images import decode_base64_image
from .a1111_listings import idle_progress, register_listing_routes
from .a1111_scripts import generate_with_script
from .a1111_options import apply_posted, options_for
from .state import ServerState

DISCONNECT_POLL_SECONDS = 0.05  # how often a waiting txt2img/img2img looks for its job's end or its client's leaving


class Txt2ImgBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str = ""
    negative_prompt: str = ""
    styles: Optional[list[str]] = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: Optional[str] = None
    sampler_index: Optional[str] = None  # older clients
    scheduler: Optional[str] = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: Optional[bool] = None
    tiling: Optional[bool] = None
    denoising_strength: Optional[float] = None
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: Optional[str] = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_sampler_name: Optional[str] = None
    hr_scheduler: Optional[str] = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    override_settings: Optional[dict[str, Any]] = None
    override_settings_restore_afterwards: bool = True
    send_images: bool = True
    save_images: bool = False
    script_name: Optional[str] = None  # A1111's scripts (studio/scripts): "x/y/z plot", ...
    script_args: list = []
    alwayson_scripts: Optional[dict[str, Any]] = None  # extensions' settings (ControlNet, ADetailer, ...)
    hr_checkpoint_name: Optional[str] = None
    inspect: Optional[list[str]] = None  # the studio's own: what to capture from inside sampling ("attention", "cfg")


class Img2ImgBody(Txt2ImgBody):
    init_images: Optional[list[str]] = None
    mask: Optional[str] = None
    depth_map: Optional[str] = None  # the studio's: a depth model's own depth picture (white = near), base64
    mask_blur: Optional[int] = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    # A1111's API defaults (StableDiffusionProcessingImg2Img's), not its UI's: masked content fill, only masked, no padding.
    inpainting_fill: int = 0  # 0 fill, 1 original, 2 latent noise, 3 latent nothing
    inpaint_full_res: bool = True  # "Inpaint area": true only masked, false whole picture
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    resize_mode: int = 0
    denoising_strength: Optional[float] = 0.75
    image_cfg_scale: Optional[float] = None
    include_init_images: bool = False


class PngInfoBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image: str = ""


class OptionsBody(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- helpers


def bad_request(message: str, status: int = 422) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def client_host(request: Request) -> Optional[str]:
    """The peer's address, for Access.is_admin (without logins only a loopback client is an admin)."""
    return request.client.host if request.client else None


def json_safe(value):
    """Non-finite floats become None, so a response never fails to serialise (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def encode_png_file(path: str) -> str:
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode("ascii")


def encode_image(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _sampler(body: Txt2ImgBody) -> tuple[str, Optional[str]]:
    """(sampler name, schedule type): A1111's `scheduler` field, or a name that carries it ("DPM++ 2M Karras")."""
    name = (body.sampler_name or body.sampler_index or DEFAULT_SAMPLER).strip()
    return name, _schedule_type(body.scheduler)


def _schedule_type(key: Optional[str]) -> Optional[str]:
    if key is None or key.strip().lower() in ("", "automatic"):
        return None
    labels = {k: label for k, label in SCHEDULE_TYPES}
    wanted = key.strip().lower().replace(" ", "_")
    if wanted not in labels and key.strip() not in labels.values():
        raise RequestError(f"Unknown scheduler {key!r}. Supported: {', '.join(label for _, label in SCHEDULE_TYPES)}.")
    return labels.get(wanted, key.strip())


def _variation(body: Txt2ImgBody) -> dict:
    resize = None
    if body.seed_resize_from_w > 0 and body.seed_resize_from_h > 0:
        resize = (body.seed_resize_from_w, body.seed_resize_from_h)
    return dict(subseed=body.subseed, subseed_strength=body.subseed_strength or 0.0, seed_resize_from=resize,
                tiling=bool(body.tiling))


def _hires(body: Txt2ImgBody) -> dict:
    """A1111's hires fields (txt2img only; A1111 ignores them in img2img)."""
    if not body.enable_hr:
        return {}
    resize = None
    if body.hr_resize_x > 0 or body.hr_resize_y > 0:  # A1111: one side given → the other keeps the aspect ratio
        width = body.hr_resize_x or round(body.width * body.hr_resize_y / body.height / 8) * 8
        height = body.hr_resize_y or round(body.height * body.hr_resize_x / body.width / 8) * 8
        resize = (width, height)
    return dict(
        enable_hr=True,
        hr_scale=body.hr_scale,
        hr_resize=resize,
        hr_upscaler=body.hr_upscaler or "Latent",
        hr_second_pass_steps=body.hr_second_pass_steps,
        hr_sampler_name=None if body.hr_sampler_name in (None, "", "Use same sampler") else body.hr_sampler_name,
        hr_scheduler=None if body.hr_scheduler in (None, "", "Use same scheduler") else _schedule_type(body.hr_scheduler),
        hr_prompt=body.hr_prompt or None,
        hr_negative_prompt=body.hr_negative_prompt or None,
        hr_denoising_strength=0.7 if body.denoising_strength is None else body.denoising_strength,
    )


def _saving_and_previews(body: Txt2ImgBody) -> dict:
    """Two of A1111's options a request may override for itself: samples_filename_pattern (the saved files' names)
    and show_progress_every_n_steps (the live preview period; -1, as in A1111: none while sampling; 0: every step)."""
    override = body.override_settings or {}
    chosen = {}
    pattern = override.get("samples_filename_pattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise RequestError("samples_filename_pattern must be text, such as [seed]-[model_name].")
        chosen["filename_pattern"] = pattern
    every = override.get("show_progress_every_n_steps")
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, int) or every < -1:
            raise RequestError("show_progress_every_n_steps must be a whole number of steps (-1: no live previews).")
        if every == -1:
            chosen["preview"] = "off"
        else:
            chosen["preview_every"] = max(1, every)  # 0: every step, as in A1111; validation bounds the rest
    return chosen


# A1111's own always-on scripts whose settings are the request's fields already (the client's echo of them).
_ALWAYSON_ECHOES = ("seed", "sampler")


def _refuse_unsupported(body: Txt2ImgBody) -> None:
    unknown = [name for name in (body.alwayson_scripts or {}) if str(name).strip().lower() not in _ALWAYSON_ECHOES]
    if unknown:  # as A1111 answers without the extension, rather than a picture made without it
        raise RequestError(f"Always-on script {unknown[0]!r} is not available on this server (no extensions are "
                           "installed); send the request without it.")
    if body.hr_checkpoint_name not in (None, "", "Use same checkpoint"):
        raise RequestError("hr_checkpoint_name is not supported by this server: hires fix runs its second pass on the "
                           "first pass's model.")


class Api:
    def __init__(self, state: ServerState):
        self.state = state
        self.service = state.service

    # ---- building a request

    def _model(self, request: Request, user: str, body: Txt2ImgBody) -> str:
        wanted = (body.override_settings or {}).get("sd_model_checkpoint")
        if wanted is None:
            return self.state.model_for(user)
        if not isinstance(wanted, str):
            raise RequestError("override_settings.sd_model_checkpoint must be a model name.")
        return self.service.model_for_request(user, client_host(request), wanted)

    def _prompt_settings(self, body: Txt2ImgBody, user: str) -> dict:
        """CLIP skip and the VAE: the request's override_settings, else the user's own options, else what an admin
        set for the server, else A1111's defaults (1, Automatic)."""
        override = body.override_settings or {}
        options = options_for(self.state, user)
        clip_skip = override.get("CLIP_stop_at_last_layers", options.get("CLIP_stop_at_last_layers", 1))
        if isinstance(clip_skip, bool) or not isinstance(clip_skip, (int, float)) or clip_skip != int(clip_skip):
            raise RequestError("CLIP_stop_at_last_layers must be a whole number (1 = the last layer).")
        vae = override.get("sd_vae", options.get("sd_vae", "Automatic"))
        if not isinstance(vae, str):
            raise RequestError("sd_vae must be the name of a VAE file, or Automatic.")
        return dict(clip_skip=int(clip_skip), vae=None if vae.strip().lower() in ("", "automatic", "none") else vae)

    def _face_settings(self, body: Txt2ImgBody, user: str) -> dict:
        """restore_faces (None: the face_restoration option, as in A1111) with the restorer and CodeFormer weight of
        the face_restoration_model and code_former_weight options (override_settings first)."""
        override = body.override_settings or {}
        options = {**options_for(self.state, user), **override}
        restore = options.get("face_restoration", False) if body.restore_faces is None else body.restore_faces
        if not restore:
            return {}
        weight = options.get("code_former_weight", 0.5)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise RequestError("code_former_weight must be a number from 0 to 1.")
        # The user's own choice of restorer, else the first installed (A1111's default, CodeFormer, may not be here).
        restorer = {**self.state.user_options(user), **override}.get("face_restoration_model")
        if restorer is not None and not isinstance(restorer, str):
            raise RequestError("face_restoration_model must be GFPGAN or CodeFormer.")
        return dict(restore_faces=True, face_restorer=restorer or None, codeformer_weight=float(weight))

    def build_request(self, request: Request, user: str, body: Txt2ImgBody, img2img: bool) -> GenerationRequest:
        _refuse_unsupported(body)
        settings = self.service.settings
        sampler_name, schedule_type = _sampler(body)
        arguments = dict(
            prompt=body.prompt,
            negative_prompt=body.negative_prompt,
            seed=body.seed,
            steps=body.steps,
            cfg_scale=body.cfg_scale,
            sampler_name=sampler_name,
            scheduler=schedule_type,
            width=body.width,
            height=body.height,
            batch_size=body.batch_size,
            batch_count=body.n_iter,
            model=self._model(request, user, body),
            styles=tuple(body.styles or ()),
            **self._prompt_settings(body, user),
            **self._face_settings(body, user),
            **_variation(body),
            **_saving_and_previews(body),
            inspect=tuple(body.inspect or ()),
        )
        if not img2img:
            arguments.update(_hires(body))
        if img2img:
            assert isinstance(body, Img2ImgBody)
            if not body.init_images:
                raise RequestError("init_images must hold one base64-encoded image.")
            if body.resize_mode != 0:
                raise RequestError("Only resize_mode 0 (just resize) is supported by this server.")
            arguments["init_image"] = decode_base64_image(body.init_images[0], "init_images[0]", settings)
            arguments["denoising_strength"] = 0.75 if body.denoising_strength is None else body.denoising_strength
            if body.depth_map is not None:
                arguments["depth_map"] = decode_base64_image(body.depth_map, "depth_map", settings).convert("L")
            if body.mask is not None:
                mask = decode_base64_image(body.mask, "mask", settings).convert("L")
                if body.inpainting_mask_invert:
                    mask = ImageOps.invert(mask)
                arguments["mask"] = mask
                arguments["mask_blur"] = body.mask_blur if body.mask_blur is not None else max(body.mask_blur_x, body.mask_blur_y)
                arguments.update(inpainting_fill=body.inpainting_fill, inpaint_full_res=body.inpaint_full_res,
                                 inpaint_full_res_padding=body.inpaint_full_res_padding)
        return GenerationRequest(**arguments)

    # ---- running it

    async def generate(self, request: Request, body: Txt2ImgBody, img2img: bool) -> dict:
        if body.script_name:  # A1111's scripts: studio/web/a1111_scripts.py
            return await generate_with_script(self, request, body, img2img)
        user = request.state.user
        try:
            gen = await run_in_threadpool(self.build_request, request, user, body, img2img)
            job = await run_in_threadpool(self.service.submit, gen, user, client_host(request))
        except QueueFullError as exc:
            raise bad_request(str(exc), 429) from None
        except RequestError as exc:
            raise bad_request(str(exc)) from None
        if not await self._wait_for(job, request):
            return Response(status_code=499)  # nobody reads it: the client has gone
        result = job.result
        if isinstance(result, Failed):
            raise bad_request(result.message, 422 if result.bad_request else 500)
        echo = body.model_dump()
        echo.pop("init_images", None)
        echo.pop("mask", None)
        if img2img:
            echo["init_images"] = None
            echo["mask"] = None
        images = result.images if isinstance(result, Finished) else []
        payload = await run_in_threadpool(lambda: [encode_png_file(i.path) for i in images] if body.send_images else [])
        stopped_early = getattr(result, "skipped", False)  # A1111's interrupt: the images as they stood
        info = self._info(job, gen, images, interrupted=isinstance(result, Cancelled) or stopped_early, skipped=stopped_early)
        return json_safe({"images": payload, "parameters": echo, "info": json.dumps(json_safe(info), ensure_ascii=False)})

    async def _wait_for(self, job: Job, request: Request) -> bool:
        """Wait for the job's end; False when the client went away first, and then the job is cancelled (it stops
        within a step and saves nothing). Starlette does not cancel a plain handler on a disconnect, so this
        looks — every DISCONNECT_POLL_SECONDS, not a busy loop."""
        try:
            while not job.done:
                if await request.is_disconnected():
                    self.service.cancel(job.owner, job)
                    return False
                await asyncio.sleep(DISCONNECT_POLL_SECONDS)
        except asyncio.CancelledError:  # the server is cancelling this handler: the job must not run for nobody
            self.service.cancel(job.owner, job)
            raise
        return True

    def _info(self, job: Job, gen: GenerationRequest, images, interrupted: bool, skipped: bool) -> dict:
        seeds = [i.seed for i in images] or (job.started.seeds if job.started else [gen.seed])
        infotexts = [i.infotext for i in images]
        first = parse_infotext(infotexts[0]) if infotexts else {}
        subseeds = variation_seeds(infotexts, gen.subseed) or [gen.subseed] * len(seeds)
        return {
            "prompt": gen.prompt,
            "all_prompts": [gen.prompt] * len(seeds),
            "negative_prompt": gen.negative_prompt,
            "all_negative_prompts": [gen.negative_prompt] * len(seeds),
            "seed": seeds[0] if seeds else gen.seed,
            "all_seeds": seeds,
            "subseed": subseeds[0] if subseeds else gen.subseed,
            "all_subseeds": subseeds,
            "subseed_strength": gen.subseed_strength,
            "width": int(first.get("Size-1", gen.width or 0)),
            "height": int(first.get("Size-2", gen.height or 0)),
            "sampler_name": first.get("Sampler", gen.sampler_name),
            "scheduler": first.get("Schedule type", "Automatic"),
            "cfg_scale": gen.cfg_scale,
            "steps": gen.steps,
            "batch_size": gen.batch_size,
            "restore_faces": False,
            "sd_model_name": first.get("Model", job.started.model if job.started else gen.model),
            "sd_model_hash": first.get("Model hash"),
            "denoising_strength": gen.denoising_strength if gen.init_image is not None else None,
            "styles": list(gen.styles),
            "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created)),
            "clip_skip": gen.clip_skip,
            "is_using_inpainting_conditioning": gen.mask is not None,
            "infotexts": infotexts,
            "index_of_first_image": 0,
            "notes": list(job.started.notes) if job.started else [],
            "interrupted": interrupted,
            "skipped": skipped,
            "job_id": job.id,
            "version": first.get("Version"),
        }

    # ---- progress

    def progress(self, user: str, with_image: bool = True) -> dict:
        job = self.service.current_job(user)
        active = self.service.active_jobs(user)
        state = {
            "skipped": False,
            "interrupted": False,
            "stopping_generation": False,
            "job": "",
            "job_count": len(active),
            "job_timestamp": "0",
            "job_no": 0,
            "sampling_step": 0,
            "sampling_steps": 0,
        }
        reply = {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None,
                 "current_task": None, "queue_position": None}
        if job is None:
            return reply
        request = job.request
        state.update(
            skipped=job.skip_requested.is_set(),
            interrupted=job.cancel_requested.is_set(),
            job=job.id,
            job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(job.created)),
            sampling_steps=int(request.steps),
        )
        reply["current_task"] = job.id
        if job.done:
            reply["progress"] = 1.0 if job.status == "finished" else 0.0
            reply["textinfo"] = {"finished": "Done.", "cancelled": "Interrupted.", "failed": "Failed: " + getattr(job.result, "message", "")}.get(job.status)
            return reply
        if job.status == "queued":
            position = self.service.position(job) or 0
            reply["queue_position"] = position
            reply["eta_relative"] = round(self.service.eta_seconds(job), 2)
            reply["textinfo"] = f"In queue: {position} job(s) ahead, about {reply['eta_relative']:.0f} s to go."
            return reply
        step = job.last_step
        if step is not None and step.total:
            per_batch = max(1, step.total // max(1, int(request.batch_count)))
            state.update(job_no=(step.step - 1) // per_batch, sampling_step=(step.step - 1) % per_batch + 1, sampling_steps=per_batch)
            reply["progress"] = round(step.step / step.total, 4)
            reply["eta_relative"] = round(step.eta_seconds, 2)
        reply["textinfo"] = f"Step {step.step if step else 0} of {step.total if step else request.steps}."
        preview = job.last_preview
        if with_image and preview is not None:
            reply["current_image"] = encode_image(preview.image)
        return reply

    def running_job(self, user: str) -> Optional[Job]:
        active = self.service.active_jobs(user)
        return active[0] if active and active[0].status == "running" else None


def build_router(state: ServerState) -> APIRouter:
    api = Api(state)
    router = APIRouter()
    _job_routes(router, state, api, state.service)
    _model_and_option_routes(router, state, api, state.service)
    _prompt_library_routes(router, state.service)
    register_listing_routes(router, state)
    register_extras_routes(router, state)
    return router


def _job_routes(router: APIRouter, state: ServerState, api: Api, service) -> None:
    """Generation, PNG info, and the caller's own progress, interrupt and skip."""
    @router.post("/sdapi/v1/txt2img")
    async def txt2img(body: Txt2ImgBody, request: Request):
        return await api.generate(request, body, img2img=False)

    @router.post("/sdapi/v1/img2img")
    async def img2img(body: Img2ImgBody, request: Request):
        return await api.generate(request, body, img2img=True)

    @router.post("/sdapi/v1/png-info")
    def png_info(body: PngInfoBody):
        try:
            image = decode_base64_image(body.image, "image", service.settings)
        except RequestError as exc:
            raise bad_request(str(exc)) from None
        text = read_infotext(image) or ""
        items = {k: v for k, v in image.info.items() if isinstance(v, str) and k != "parameters"}
        return {"info": text, "items": items, "parameters": parse_infotext(text) if text else {}}

    @router.get("/sdapi/v1/progress")
    def progress(request: Request, skip_current_image: bool = False):
        reply = api.progress(request.state.user, with_image=not skip_current_image)
        if reply["state"]["job_count"]:
            return reply
        # No job of theirs running or queued: A1111's idle answer, which keeps the last job's text ("Failed: ...").
        return {**idle_progress(), "textinfo": reply["textinfo"]}

    @router.post("/sdapi/v1/interrupt")
    def interrupt(request: Request):
        """A1111's interrupt: the running job stops now and returns its images as they stand."""
        user = request.state.user
        job = service.skip(user, api.running_job(user))
        return {"interrupted": job.id if job else None}

    @router.post("/sdapi/v1/skip")
    def skip(request: Request):
        """A1111's skip: the batch being sampled ends now; the job goes on with its next batch."""
        user = request.state.user
        job = service.skip_batch(user, api.running_job(user))
        return {"skipped": job.id if job else None}


def _prompt_library_routes(router: APIRouter, service) -> None:
    """What prompts may use: LoRAs, embeddings, styles, VAEs (names and metadata; server paths never leave)."""
    @router.get("/sdapi/v1/loras")
    def loras():
        return service.loras()

    @router.post("/sdapi/v1/refresh-loras")
    def refresh_loras():
        service.refresh_loras()
        return None

    @router.get("/sdapi/v1/embeddings")
    def embeddings():
        return service.embeddings()

    @router.post("/sdapi/v1/refresh-embeddings")
    def refresh_embeddings():
        service.refresh_embeddings()
        return None

    @router.get("/sdapi/v1/prompt-styles")
    def prompt_styles():
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt} for s in service.styles()]

    @router.get("/sdapi/v1/upscalers")
    def upscalers():
        return service.upscalers()

    @router.get("/sdapi/v1/realesrgan-models")
    def realesrgan_models():
        return service.realesrgan_models()

    @router.get("/sdapi/v1/sd-vae")
    def sd_vae():
        return service.vaes()


def _model_and_option_routes(router: APIRouter, state: ServerState, api: Api, service) -> None:
    """Samplers, schedulers, models, options (admins change the server's; everyone picks their model), memory."""
    @router.get("/sdapi/v1/samplers")
    def samplers():
        return [{"name": name, "aliases": sampler_aliases(name), "options": {"scheduler": "karras"} if name.endswith(" Karras") else {}} for name in sampler_names()]

    @router.get("/sdapi/v1/schedulers")
    def schedulers():
        return [{"name": key, "label": label, "aliases": None, "default_rho": -1, "need_inner_model": False} for key, label in SCHEDULE_TYPES]

    @router.get("/sdapi/v1/sd-models")
    def sd_models():
        hashes = service.model_hashes()
        return [
            {
                "title": name,
                "model_name": name.rsplit("/", 1)[-1].rsplit(".", 1)[0],
                "hash": hashes.get(name),
                "sha256": None,
                "filename": name,
                "config": None,
            }
            for name in service.available_models()
        ]

    @router.post("/sdapi/v1/refresh-checkpoints")
    def refresh_checkpoints():
        return {"models": service.available_models()}

    @router.get("/sdapi/v1/options")
    def get_options(request: Request):
        """A1111's full option set as this user sees it (studio.web.a1111_options.options_for)."""
        return options_for(state, request.state.user)

    @router.post("/sdapi/v1/options")
    def set_options(body: OptionsBody, request: Request):
        """The user's own options; an admin's CLIP skip / VAE are everyone's default. Refused (422): nothing stored."""
        user = request.state.user
        try:
            apply_posted(state, user, state.is_admin(user, client_host(request)), dict(body.model_extra or {}))
        except RequestError as exc:  # OptionsError, ModelRefused
            raise bad_request(str(exc)) from None
        return None  # A1111 answers null

    @router.get("/sdapi/v1/memory")
    def memory(request: Request):
        """Server-wide memory use says what everyone is doing: for admins only."""
        if not state.is_admin(request.state.user, client_host(request)):
            raise bad_request("Only an admin can see the server's memory use.", 403)
        import psutil

        vm = psutil.virtual_memory()
        rss = psutil.Process(os.getpid()).memory_info().rss
        info = service.info()
        return {
            "ram": {"free": vm.available, "used": vm.total - vm.available, "total": vm.total, "process_rss": rss},
            "cuda": {"error": f"the engine runs on {info.device}"} if not info.device.startswith("cuda") else {"device": info.device},
        }
