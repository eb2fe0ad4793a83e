"""Image to image tab: the shared panel plus an input image (upload, paste or drop), the denoising strength and, for
depth-to-image models, the artist's own depth map.
The `/img2img` API endpoint runs what Generate runs; the Script panel's controls are its `script_name` / `script_args`."""

from __future__ import annotations

import gradio as gr

from studio.contract import GenerationRequest, RequestError

from .panel import Panel, build_panel, check_vae, generate_listener
from .script_panel import api_script, build_script_panel
from .script_runs import generate
from .streaming import Services, Session
from .txt2img import common_fields

TAB = "img2img"


def build(services: Services, session: gr.State) -> Panel:
    def inputs():
        init_image = gr.Image(label="Input image (upload, paste or drop)", type="pil", image_mode="RGB", format="png",
                              sources=["upload", "clipboard"], height=300, elem_id=f"{TAB}-init-image")
        denoising_strength = gr.Slider(0.01, 1.0, value=0.75, step=0.01, label="Denoising strength", elem_id=f"{TAB}-denoising")
        with gr.Accordion("Depth map (depth-to-image models)", open=False, elem_id=f"{TAB}-depth"):
            depth_map = gr.Image(label="Your own depth map: white = near (empty: the model estimates one from the input)", type="pil",
                                 image_mode="L", format="png", sources=["upload", "clipboard"], height=200, elem_id=f"{TAB}-depth-map")
        return dict(init_image=init_image, denoising_strength=denoising_strength, depth_map=depth_map)

    panel = build_panel(services.job_service, TAB, session, size_label="0 = the input image's size; otherwise 64 or more", inputs_block=inputs,
                        scripts_block=lambda: build_script_panel(services.job_service, TAB, img2img=True),
                        model=services.model_picker)
    # The public /img2img API keeps its A1111-style inputs; a depth map goes through /studio/api/jobs/img2img there.
    fields = panel.parameter_inputs() + [panel.extra["init_image"], panel.extra["denoising_strength"]]
    ui_fields = fields + [panel.extra["depth_map"]]

    def request_from(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                     styles, clip_skip, vae, scheduler, tiling, restore_faces, init_image, denoising_strength, depth_map=None) -> GenerationRequest:
        if init_image is None:
            raise gr.Error("Add an input image first (upload, paste or drop one).", print_exception=False)
        try:
            req = GenerationRequest(
                **common_fields(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                                styles, clip_skip, vae, scheduler, tiling, restore_faces),
                init_image=init_image,
                denoising_strength=denoising_strength if denoising_strength is not None else 0.75,
                depth_map=depth_map,
            )
            check_vae(services.job_service, req.vae)
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        return req

    async def img2img(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                      styles, clip_skip, vae, scheduler, tiling, restore_faces, init_image, denoising_strength, script_name, script_args,
                      state: Session, request: gr.Request):
        """Image to image, and A1111's scripts (script_name: "X/Y/Z plot", "Prompt matrix", "Prompts from file or
        textbox", "SD upscale"; script_args: JSON, a list in A1111's order or an object by name). Streams (live preview,
        progress, gallery, parameters, downloads)."""
        req = request_from(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count,
                           model, styles, clip_skip, vae, scheduler, tiling, restore_faces, init_image, denoising_strength)
        try:
            script = api_script(script_name, script_args)
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        async for update in generate(services, state, TAB, req, request, script, img2img=True):
            yield update

    async def img2img_ui(values: dict, request: gr.Request):
        """The Generate button: the tab's controls and its Script panel."""
        req = request_from(*(values[control] for control in ui_fields))
        try:
            script = panel.scripts.call(values)
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        async for update in generate(services, values[session], TAB, req, request, script, img2img=True):
            yield update

    generate_listener(panel, img2img_ui, set(ui_fields + panel.scripts.inputs() + [session]), api_name="img2img_ui",
                      api_visibility="private")
    generate_listener(panel, img2img, fields + panel.scripts.api_inputs() + [session], api_name="img2img",
                      trigger=panel.scripts.api_trigger.click)
    return panel
