"""Inpainting tab: paint the mask in the browser (brush with size control, eraser), invert it, blur it, set the
denoising strength. The engine pastes the untouched pixels back.

The browser's handler reads the editor; the `/inpaint` API endpoint takes A1111's `init_image` and `mask` (white =
repaint) as plain images, through an invisible trigger that shares the tab's outputs."""

from __future__ import annotations

from typing import Optional

import gradio as gr
from PIL import Image, ImageChops, ImageOps

from studio.contract import GenerationRequest, RequestError

from .panel import Panel, build_panel, check_vae, generate_listener, whole
from .streaming import TELLING, Services, Session, stream_job
from .txt2img import common_fields

TAB = "inpaint"


def mask_from_editor(value) -> tuple[Optional[Image.Image], Optional[Image.Image]]:
    """(init image, mask) from an ImageEditor value: every painted pixel of every layer is white (repaint)."""
    if not value:
        return None, None
    background = value.get("background")
    if background is None:
        return None, None
    if not isinstance(background, Image.Image):
        background = Image.open(background)
    init = background.convert("RGB")
    mask = Image.new("L", init.size, 0)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        if not isinstance(layer, Image.Image):
            layer = Image.open(layer)
        alpha = layer.getchannel("A") if "A" in layer.getbands() else layer.convert("L")
        if alpha.size != init.size:
            alpha = alpha.resize(init.size, Image.NEAREST)
        mask = ImageChops.lighter(mask, alpha.point(lambda v: 255 if v > 0 else 0))
    return init, mask


def without_mask(value, hand_over=lambda picture: picture):
    """The editor's value with its background and no painted layers (the editor's own 🗑 also drops the image).
    hand_over: makes the background a value Gradio may show this user (see Services.hand_over)."""
    background = value.get("background") if value else None
    if background is None:
        gr.Info("No image to clear the mask of.")
        return gr.skip()
    background = hand_over(background)
    return {"background": background, "layers": [], "composite": background}


def editor_inputs() -> dict:
    """The tab's own inputs: the image editor (image + painted mask), mask options, and the API-only inputs."""
    editor = gr.ImageEditor(
        label="Image and mask: upload/paste/drop an image, then paint over what to repaint",
        type="pil",
        image_mode="RGBA",
        format="png",
        sources=["upload", "clipboard"],
        brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=12),
        eraser=gr.Eraser(default_size=12),
        layers=False,
        transforms=(),
        height=420,
        elem_id=f"{TAB}-editor",
    )
    clear_mask = gr.Button("Clear mask (keep the image)", size="sm", elem_id=f"{TAB}-clear-mask")
    with gr.Row():
        invert = gr.Checkbox(False, label="Invert mask (repaint what is NOT painted)", elem_id=f"{TAB}-invert")
        mask_blur = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id=f"{TAB}-mask-blur")
    denoising_strength = gr.Slider(0.01, 1.0, value=0.75, step=0.01, label="Denoising strength", elem_id=f"{TAB}-denoising")
    # API-only inputs (never shown): A1111's init_image and mask as plain images.
    api_init = gr.Image(type="pil", image_mode="RGB", format="png", visible=False, label="init_image")
    api_mask = gr.Image(type="pil", image_mode="L", format="png", visible=False, label="mask")
    api_trigger = gr.Button("inpaint (API)", visible=False)
    return dict(editor=editor, clear_mask=clear_mask, inpainting_mask_invert=invert, mask_blur=mask_blur, denoising_strength=denoising_strength,
                api_init=api_init, api_mask=api_mask, api_trigger=api_trigger)


def build(services: Services, session: gr.State) -> Panel:
    panel = build_panel(services.job_service, TAB, session, size_label="0 = the input image's size; otherwise 64 or more", inputs_block=editor_inputs)

    async def run(fields: tuple, init_image, mask, denoising_strength, mask_blur, inpainting_mask_invert, state: Session,
                  request: gr.Request):
        if init_image is None:
            raise gr.Error("Add an image to inpaint first (upload, paste or drop one).", print_exception=False)
        if mask is None:
            raise gr.Error("The mask is missing: paint the area to repaint.", print_exception=False)
        mask = mask.convert("L")
        if inpainting_mask_invert:
            mask = ImageOps.invert(mask)
        try:
            req = GenerationRequest(
                **common_fields(*fields),
                init_image=init_image,
                mask=mask,
                denoising_strength=denoising_strength if denoising_strength is not None else 0.75,
                mask_blur=whole(mask_blur if mask_blur is not None else 4, "mask_blur"),
            )
            check_vae(services.job_service, req.vae)
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        async for update in stream_job(services, state, TAB, req, request):
            yield update

    async def inpaint(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                styles, clip_skip, vae, scheduler, tiling, init_image, mask, denoising_strength, mask_blur, inpainting_mask_invert, state: Session, request: gr.Request):
        """Inpainting: `mask` is white where to repaint. Streams previews; ends with the saved PNG files."""
        fields = (prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                  styles, clip_skip, vae, scheduler, tiling)
        async for update in run(fields, init_image, mask, denoising_strength, mask_blur, inpainting_mask_invert, state, request):
            yield update

    async def inpaint_editor(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                       styles, clip_skip, vae, scheduler, tiling, editor, denoising_strength, mask_blur, inpainting_mask_invert, state: Session, request: gr.Request):
        init_image, mask = mask_from_editor(editor)
        if init_image is not None and mask is not None and mask.getbbox() is None and not inpainting_mask_invert:
            raise gr.Error("The mask is empty: paint over the area to repaint (the brush tool) before generating.", print_exception=False)
        fields = (prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                  styles, clip_skip, vae, scheduler, tiling)
        async for update in run(fields, init_image, mask, denoising_strength, mask_blur, inpainting_mask_invert, state, request):
            yield update

    x = panel.extra
    def clear_mask(value, request: gr.Request):
        return without_mask(value, lambda picture: services.hand_over(request, picture))

    x["clear_mask"].click(clear_mask, x["editor"], x["editor"], **TELLING)
    generate_listener(
        panel, inpaint_editor,
        panel.parameter_inputs() + [x["editor"], x["denoising_strength"], x["mask_blur"], x["inpainting_mask_invert"], session],
        api_name="inpaint_editor", api_visibility="private",
    )
    generate_listener(
        panel, inpaint,
        panel.parameter_inputs() + [x["api_init"], x["api_mask"], x["denoising_strength"], x["mask_blur"], x["inpainting_mask_invert"], session],
        api_name="inpaint", trigger=x["api_trigger"].click,
    )
    return panel
