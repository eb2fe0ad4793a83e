"""Text to image tab. The `/txt2img` API endpoint runs what Generate runs, with A1111's parameter names; the Script
panel's controls (studio/ui/script_panel.py) are its `script_name` / `script_args` there."""

from __future__ import annotations

from typing import Optional

import gradio as gr

from studio.contract import GenerationRequest, RequestError
from studio.samplers import DEFAULT_SAMPLER

from .networks import AUTOMATIC_VAE
from .options import DEFAULT_UPSCALER, hires_fields, restore_faces_choice, schedule_choice, tiling_choice, variation_fields
from .panel import Panel, build_panel, check_vae, generate_listener, size, whole
from .script_panel import api_script, build_script_panel
from .script_runs import generate
from .streaming import Services, Session

TAB = "txt2img"


def style_choice(styles) -> tuple[str, ...]:
    """The Styles dropdown's value (a list of names; one name from an API caller) as the request's tuple. The engine
    checks the names and their number; anything but names is refused here."""
    if styles is None or styles == "":
        return ()
    if isinstance(styles, str):
        styles = [styles]
    if not isinstance(styles, (list, tuple)) or not all(isinstance(name, str) for name in styles):
        raise RequestError("styles must be a list of style names.")
    return tuple(name for name in styles if name)


def vae_choice(vae) -> Optional[str]:
    """The VAE dropdown's value: "Automatic" (or nothing) is the model's own VAE; anything else a VAE file's name."""
    if vae is None or (isinstance(vae, str) and vae.strip().lower() in ("", AUTOMATIC_VAE.lower(), "none")):
        return None
    if not isinstance(vae, str):
        raise RequestError("vae must be the name of a VAE file, or Automatic.")
    return vae


def common_fields(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                  styles=(), clip_skip=1, vae=None, scheduler=None, tiling=False, restore_faces=False) -> dict:
    """The request fields every generate tab shares, from UI/API values (raises RequestError). scheduler: A1111's
    Schedule type ("Automatic" or None: the sampler's own). restore_faces: the engine's first installed restorer (it
    refuses the job, naming the folders, when none is)."""
    return dict(
        prompt=prompt if prompt is not None else "",
        negative_prompt=negative_prompt if negative_prompt is not None else "",
        sampler_name=sampler_name or "",
        steps=whole(steps, "steps"),
        cfg_scale=cfg_scale if cfg_scale is not None else 7.0,
        width=size(width, "width"),
        height=size(height, "height"),
        seed=whole(seed if seed is not None else -1, "seed"),
        batch_size=whole(batch_size if batch_size is not None else 1, "batch_size"),
        batch_count=whole(batch_count if batch_count is not None else 1, "batch_count"),
        model=model or None,
        styles=style_choice(styles),
        clip_skip=whole(clip_skip if clip_skip is not None else 1, "clip_skip"),
        vae=vae_choice(vae),
        scheduler=schedule_choice(scheduler),
        tiling=tiling_choice(tiling),
        restore_faces=restore_faces_choice(restore_faces),
    )


def txt2img_request(prompt, negative_prompt="", sampler_name=DEFAULT_SAMPLER, steps=20, cfg_scale=7.0, width=0, height=0, seed=-1,
                    batch_size=1, batch_count=1, model=None, styles=(), clip_skip=1, vae=None, scheduler=None, tiling=False,
                    restore_faces=False, subseed=-1, subseed_strength=0.0, seed_resize_from_w=0, seed_resize_from_h=0,
                    enable_hr=False, hr_scale=2.0, hr_upscaler=DEFAULT_UPSCALER, hr_second_pass_steps=0, hr_resize_x=0,
                    hr_resize_y=0, hr_sampler_name=None, hr_scheduler=None, hr_prompt="", hr_negative_prompt="",
                    denoising_strength=0.7) -> GenerationRequest:
    """Text to image's controls (A1111's API names, in the handler's order) → the request (raises RequestError).
    denoising_strength is the hires pass's, as in A1111's txt2img API."""
    fields = common_fields(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count,
                           model, styles, clip_skip, vae, scheduler, tiling, restore_faces)
    fields.update(variation_fields(subseed, subseed_strength, seed_resize_from_w, seed_resize_from_h))
    fields.update(hires_fields(enable_hr, hr_scale, hr_upscaler, hr_second_pass_steps, hr_resize_x, hr_resize_y, hr_sampler_name,
                               hr_scheduler, hr_prompt, hr_negative_prompt, denoising_strength,
                               width=fields["width"], height=fields["height"]))
    return GenerationRequest(**fields)


def build(services: Services, session: gr.State) -> Panel:
    panel = build_panel(services.job_service, TAB, session, size_label="0 = the model's default size; otherwise 64 or more",
                        txt2img_options=True, scripts_block=lambda: build_script_panel(services.job_service, TAB, img2img=False),
                        model=services.model_picker)
    fields = panel.parameter_inputs() + panel.variation.inputs() + panel.hires.inputs()

    def request_from(values) -> GenerationRequest:
        try:
            req = txt2img_request(*values)
            check_vae(services.job_service, req.vae)
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        return req

    async def txt2img(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                      styles, clip_skip, vae, scheduler, tiling, restore_faces, subseed, subseed_strength, seed_resize_from_w,
                      seed_resize_from_h, enable_hr, hr_scale, hr_upscaler, hr_second_pass_steps, hr_resize_x, hr_resize_y,
                      hr_sampler_name, hr_scheduler, hr_prompt, hr_negative_prompt, denoising_strength, script_name, script_args,
                      state: Session, request: gr.Request):
        """Text to image, with A1111's variation seed, tiling, restore faces and hires fix (enable_hr; denoising_strength
        is the hires pass's), and its scripts (script_name: "X/Y/Z plot", "Prompt matrix", "Prompts from file or
        textbox"; script_args: JSON, a list in A1111's order or an object by name). Streams (live preview, progress, gallery,
        parameters, downloads); the gallery ends with the saved PNG files (served by the studio's file route) — a
        script's grid(s) first, then its pictures."""
        req = request_from((prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count,
                            model, styles, clip_skip, vae, scheduler, tiling, restore_faces, subseed, subseed_strength,
                            seed_resize_from_w, seed_resize_from_h, enable_hr, hr_scale, hr_upscaler, hr_second_pass_steps,
                            hr_resize_x, hr_resize_y, hr_sampler_name, hr_scheduler, hr_prompt, hr_negative_prompt,
                            denoising_strength))
        try:
            script = api_script(script_name, script_args)
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        async for update in generate(services, state, TAB, req, request, script):
            yield update

    async def txt2img_ui(values: dict, request: gr.Request):
        """The Generate button: the tab's controls and its Script panel."""
        req = request_from([values[control] for control in fields])
        try:
            script = panel.scripts.call(values)
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        async for update in generate(services, values[session], TAB, req, request, script):
            yield update

    generate_listener(panel, txt2img_ui, set(fields + panel.scripts.inputs() + [session]), api_name="txt2img_ui",
                      api_visibility="private")
    generate_listener(panel, txt2img, fields + panel.scripts.api_inputs() + [session], api_name="txt2img",
                      trigger=panel.scripts.api_trigger.click)
    return panel
