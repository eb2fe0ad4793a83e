"""Image to image tab: the shared panel plus an input image (upload, paste or drop) and the denoising strength.
Its handler is also the `/img2img` API endpoint."""

from __future__ import annotations

import gradio as gr

from studio.contract import GenerationRequest, RequestError

from .panel import Panel, build_panel, check_vae, generate_listener
from .streaming import Services, Session, stream_job
from .txt2img import common_fields

TAB = "img2img"


def build(services: Services, session: gr.State) -> Panel:
    def inputs():
        init_image = gr.Image(label="Input image (upload, paste or drop)", type="pil", image_mode="RGB", format="png",
                              sources=["upload", "clipboard"], height=300, elem_id=f"{TAB}-init-image")
        denoising_strength = gr.Slider(0.01, 1.0, value=0.75, step=0.01, label="Denoising strength", elem_id=f"{TAB}-denoising")
        return dict(init_image=init_image, denoising_strength=denoising_strength)

    panel = build_panel(services.job_service, TAB, session, size_label="0 = the input image's size; otherwise 64 or more", inputs_block=inputs)

    async def img2img(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                      styles, clip_skip, vae, scheduler, tiling, init_image, denoising_strength, state: Session, request: gr.Request):
        """Image to image. Streams (live preview, progress, gallery, parameters, downloads)."""
        if init_image is None:
            raise gr.Error("Add an input image first (upload, paste or drop one).", print_exception=False)
        try:
            req = GenerationRequest(
                **common_fields(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                                styles, clip_skip, vae, scheduler, tiling),
                init_image=init_image,
                denoising_strength=denoising_strength if denoising_strength is not None else 0.75,
            )
            check_vae(services.job_service, req.vae)
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        async for update in stream_job(services, state, TAB, req, request):
            yield update

    inputs_ = panel.parameter_inputs() + [panel.extra["init_image"], panel.extra["denoising_strength"], session]
    generate_listener(panel, img2img, inputs_, api_name="img2img")
    return panel
