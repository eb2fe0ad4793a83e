"""Text to image tab. Its handler is also the `/txt2img` API endpoint, with A1111's parameter names."""

from __future__ import annotations

import gradio as gr

from studio.contract import GenerationRequest, RequestError

from .panel import Panel, build_panel, generate_listener, size, whole
from .streaming import Services, Session, stream_job

TAB = "txt2img"


def common_fields(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model) -> dict:
    """The request fields every generate tab shares, from UI/API values (raises RequestError)."""
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
    )


def build(services: Services, session: gr.State) -> Panel:
    panel = build_panel(services.job_service, TAB, session, size_label="0 = the model's default size; otherwise 64 or more")

    async def txt2img(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                state: Session, request: gr.Request):
        """Text to image. Streams (live preview, progress, gallery, parameters, downloads); the gallery ends with
        the saved PNG files (served by the studio's file route)."""
        try:
            req = GenerationRequest(**common_fields(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed,
                                                    batch_size, batch_count, model))
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        async for update in stream_job(services, state, TAB, req, request):
            yield update

    generate_listener(panel, txt2img, panel.parameter_inputs() + [session], api_name="txt2img")
    return panel
