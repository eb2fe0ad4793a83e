"""Inpainting tab: paint the mask in the browser (a translucent white brush with size control, eraser), invert it,
blur it, set the denoising strength; A1111's "Masked content", "Inpaint area" and "Only masked padding"; and
outpainting: "Extend canvas" puts the picture on a larger canvas with a mask over the new area, so Generate draws it.
The engine pastes the untouched pixels back.

The browser's handler reads the editor; the `/inpaint` API endpoint takes A1111's `init_image` and `mask` (white =
repaint) as plain images, through an invisible trigger that shares the tab's outputs."""

from __future__ import annotations

from typing import Any, Optional

import gradio as gr
from PIL import Image, ImageChops, ImageOps

from studio.contract import GenerationRequest, RequestError
from studio.inpainting import MASKED_CONTENT, OUTPAINT_FILLS, outpaint_canvas  # PIL and numpy only (no torch)

from .panel import Panel, build_panel, check_vae, generate_listener, whole
from .streaming import SILENT, TELLING, Services, Session, stream_job
from .txt2img import common_fields

TAB = "inpaint"

# The brush paints the mask translucent white (the picture shows through what will be repainted); any painted pixel,
# however faint, is masked (mask_from_editor).
MASK_COLOUR, MASK_OPACITY = "#ffffff", 0.5
BRUSH_SIZE, MAX_BRUSH_SIZE = 12, 200


def mask_brush(size: int) -> gr.Brush:
    """The one mask colour (no colour picker: a dead tool for a mask), at `size` pixels."""
    return gr.Brush(colors=[(MASK_COLOUR, MASK_OPACITY)], default_color=(MASK_COLOUR, MASK_OPACITY), color_mode="fixed",
                    default_size=int(size))
# A1111's radios; the values are its API's: inpainting_fill 0-3, inpaint_full_res 0/1 (a bool in the request).
MASKED_CONTENT_CHOICES = [(name, index) for index, name in enumerate(MASKED_CONTENT)]
INPAINT_AREAS = ("Whole picture", "Only masked")
INPAINT_AREA_CHOICES = [(name, index) for index, name in enumerate(INPAINT_AREAS)]
OUTPAINT_FILL_CHOICES = [("stretched edges", "edge"), ("blurred colours (A1111's fill)", "fill"), ("black", "black")]
MAX_OUTPAINT = 1024


def _choice(value: Any, names: tuple, name: str, default: int) -> int:
    """A radio's value as its index: the index itself (an API caller's int, or a whole float) or the choice's name."""
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.strip() in names:
        return names.index(value.strip())
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and float(value).is_integer() and 0 <= int(value) < len(names):
        return int(value)
    choices = ", ".join(f"{i} ({n})" for i, n in enumerate(names))
    raise RequestError(f"{name} must be one of {choices}; got {value!r}.")


def inpaint_fields(inpainting_fill: Any = 1, inpaint_full_res: Any = 0, inpaint_full_res_padding: Any = 32) -> dict:
    """A1111's inpainting options from the tab's controls (or an API caller's values) as request fields."""
    padding = inpaint_full_res_padding if inpaint_full_res_padding not in (None, "") else 32
    return dict(
        inpainting_fill=_choice(inpainting_fill, MASKED_CONTENT, "Masked content (inpainting_fill)", 1),
        inpaint_full_res=bool(_choice(inpaint_full_res, INPAINT_AREAS, "Inpaint area (inpaint_full_res)", 0)),
        inpaint_full_res_padding=whole(padding, "inpaint_full_res_padding"),
    )


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


def mask_layer(mask: Image.Image) -> Image.Image:
    """The editor's paint layer for a mask (white = repaint): the brush's translucent white where the mask is set."""
    mask = mask.convert("L").point(lambda v: 255 if v > 0 else 0)
    layer = Image.new("RGBA", mask.size, (255, 255, 255, 0))
    layer.putalpha(mask.point(lambda v: round(255 * MASK_OPACITY) if v else 0))
    return layer


def _side(value: Any) -> Any:
    """A number box's value: empty is 0, whole floats are ints; anything else goes on to outpaint_canvas's check."""
    if value in (None, ""):
        return 0
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def extend_canvas(value, left: Any, right: Any, up: Any, down: Any, fill: Any, max_size: int, hand_over=lambda picture: picture) -> dict:
    """The editor's value with its picture on the outpainting canvas and the mask over the new area (plus the seam),
    so the next Generate outpaints. Raises RequestError for bad sides (not multiples of 8, none, too large)."""
    init, _ = mask_from_editor(value)
    if init is None:
        raise RequestError("Add an image to extend first (upload, paste or drop one).")
    canvas, mask = outpaint_canvas(init, _side(left), _side(right), _side(up), _side(down), max_size=max_size,
                                   fill=fill or OUTPAINT_FILLS[0])
    layer = mask_layer(mask)
    composite = canvas.convert("RGBA")
    composite.alpha_composite(layer)
    return {"background": hand_over(canvas), "layers": [hand_over(layer)], "composite": hand_over(composite)}


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
        brush=mask_brush(BRUSH_SIZE),
        eraser=gr.Eraser(default_size=BRUSH_SIZE),
        layers=False,
        transforms=(),
        height=420,
        elem_id=f"{TAB}-editor",
    )
    with gr.Row(equal_height=True):
        # Gradio's editor shows its brush size as a bare slider: this one has the number, and sets brush and eraser.
        brush_size = gr.Slider(1, MAX_BRUSH_SIZE, value=BRUSH_SIZE, step=1, label="Brush size, pixels", elem_id=f"{TAB}-brush-size",
                               scale=3)
        clear_mask = gr.Button("Clear mask (keep the image)", size="sm", elem_id=f"{TAB}-clear-mask", scale=1)
    with gr.Row():
        invert = gr.Checkbox(False, label="Invert mask (repaint what is NOT painted)", elem_id=f"{TAB}-invert")
        mask_blur = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id=f"{TAB}-mask-blur")
    denoising_strength = gr.Slider(0.01, 1.0, value=0.75, step=0.01, label="Denoising strength", elem_id=f"{TAB}-denoising")
    with gr.Row():
        masked_content = gr.Radio(MASKED_CONTENT_CHOICES, value=1, label="Masked content", elem_id=f"{TAB}-masked-content", min_width=280)
        inpaint_area = gr.Radio(INPAINT_AREA_CHOICES, value=0, label="Inpaint area", elem_id=f"{TAB}-inpaint-area", min_width=200)
    padding = gr.Slider(0, 256, value=32, step=4, label="Only masked padding, pixels", elem_id=f"{TAB}-padding")
    with gr.Accordion("Outpaint (extend the canvas)", open=False, elem_id=f"{TAB}-outpaint"):
        with gr.Row():
            sides = {side: gr.Number(0, label=f"{side.capitalize()}, pixels", precision=0, minimum=0, maximum=MAX_OUTPAINT, step=8,
                                     elem_id=f"{TAB}-outpaint-{side}", min_width=90)
                     for side in ("left", "right", "up", "down")}
        outpaint_fill = gr.Radio(OUTPAINT_FILL_CHOICES, value="edge", label="New area starts as", elem_id=f"{TAB}-outpaint-fill")
        extend = gr.Button("Extend canvas", size="sm", elem_id=f"{TAB}-extend")
        gr.Markdown("Multiples of 8. The picture goes on a larger canvas with the new area masked; Generate then draws it "
                    "(Denoising strength about 0.8 or more).", elem_classes=["studio-quiet"])
    # API-only inputs (never shown): A1111's init_image and mask as plain images.
    api_init = gr.Image(type="pil", image_mode="RGB", format="png", visible=False, label="init_image")
    api_mask = gr.Image(type="pil", image_mode="L", format="png", visible=False, label="mask")
    api_trigger = gr.Button("inpaint (API)", visible=False)
    return dict(editor=editor, brush_size=brush_size, clear_mask=clear_mask, inpainting_mask_invert=invert, mask_blur=mask_blur, denoising_strength=denoising_strength,
                inpainting_fill=masked_content, inpaint_full_res=inpaint_area, inpaint_full_res_padding=padding,
                outpaint_sides=[sides[side] for side in ("left", "right", "up", "down")], outpaint_fill=outpaint_fill, extend=extend,
                api_init=api_init, api_mask=api_mask, api_trigger=api_trigger)


def inpaint_request(fields: tuple, init_image, mask, denoising_strength, mask_blur, inpainting_mask_invert, inpainting_fill=1,
                    inpaint_full_res=0, inpaint_full_res_padding=32) -> GenerationRequest:
    """The request the tab's controls make (raises RequestError). fields: common_fields' values, in order."""
    mask = mask.convert("L")
    if inpainting_mask_invert:
        mask = ImageOps.invert(mask)
    return GenerationRequest(
        **common_fields(*fields),
        init_image=init_image,
        mask=mask,
        denoising_strength=denoising_strength if denoising_strength is not None else 0.75,
        mask_blur=whole(mask_blur if mask_blur is not None else 4, "mask_blur"),
        **inpaint_fields(inpainting_fill, inpaint_full_res, inpaint_full_res_padding),
    )


def build(services: Services, session: gr.State) -> Panel:
    panel = build_panel(services.job_service, TAB, session, size_label="0 = the input image's size; otherwise 64 or more", inputs_block=editor_inputs,
                        model=services.model_picker)

    async def run(fields: tuple, init_image, mask, denoising_strength, mask_blur, inpainting_mask_invert, options: tuple, state: Session,
                  request: gr.Request):
        if init_image is None:
            raise gr.Error("Add an image to inpaint first (upload, paste or drop one).", print_exception=False)
        if mask is None:
            raise gr.Error("The mask is missing: paint the area to repaint.", print_exception=False)
        try:
            req = inpaint_request(fields, init_image, mask, denoising_strength, mask_blur, inpainting_mask_invert, *options)
            check_vae(services.job_service, req.vae)
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        async for update in stream_job(services, state, TAB, req, request):
            yield update

    async def inpaint(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                styles, clip_skip, vae, scheduler, tiling, restore_faces, init_image, mask, denoising_strength, mask_blur, inpainting_mask_invert,
                inpainting_fill, inpaint_full_res, inpaint_full_res_padding, state: Session, request: gr.Request):
        """Inpainting: `mask` is white where to repaint. inpainting_fill: 0 fill, 1 original, 2 latent noise, 3 latent
        nothing; inpaint_full_res: 0 whole picture, 1 only masked (with inpaint_full_res_padding pixels around the mask).
        Streams previews; ends with the saved PNG files."""
        fields = (prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                  styles, clip_skip, vae, scheduler, tiling, restore_faces)
        options = (inpainting_fill, inpaint_full_res, inpaint_full_res_padding)
        async for update in run(fields, init_image, mask, denoising_strength, mask_blur, inpainting_mask_invert, options, state, request):
            yield update

    async def inpaint_editor(prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                       styles, clip_skip, vae, scheduler, tiling, restore_faces, editor, denoising_strength, mask_blur, inpainting_mask_invert,
                       inpainting_fill, inpaint_full_res, inpaint_full_res_padding, state: Session, request: gr.Request):
        init_image, mask = mask_from_editor(editor)
        if init_image is not None and mask is not None and mask.getbbox() is None and not inpainting_mask_invert:
            raise gr.Error("The mask is empty: paint over the area to repaint (the brush tool) before generating.", print_exception=False)
        fields = (prompt, negative_prompt, sampler_name, steps, cfg_scale, width, height, seed, batch_size, batch_count, model,
                  styles, clip_skip, vae, scheduler, tiling, restore_faces)
        options = (inpainting_fill, inpaint_full_res, inpaint_full_res_padding)
        async for update in run(fields, init_image, mask, denoising_strength, mask_blur, inpainting_mask_invert, options, state, request):
            yield update

    x = panel.extra
    def clear_mask(value, request: gr.Request):
        return without_mask(value, lambda picture: services.hand_over(request, picture))

    x["clear_mask"].click(clear_mask, x["editor"], x["editor"], **TELLING)

    def brush_size(size):
        size = min(max(int(size or BRUSH_SIZE), 1), MAX_BRUSH_SIZE)
        return gr.ImageEditor(brush=mask_brush(size), eraser=gr.Eraser(default_size=size))

    x["brush_size"].change(brush_size, x["brush_size"], x["editor"], trigger_mode="always_last", **SILENT)

    def extend(value, left, right, up, down, fill, request: gr.Request):
        try:
            extended = extend_canvas(value, left, right, up, down, fill, services.job_service.settings.max_size,
                                     lambda picture: services.hand_over(request, picture))
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        # Width and height 0: the job draws at the canvas's own size (a size sent from a result would shrink it).
        return extended, 0, 0

    x["extend"].click(extend, [x["editor"], *x["outpaint_sides"], x["outpaint_fill"]], [x["editor"], panel.width, panel.height],
                      **TELLING)
    options = [x["inpainting_fill"], x["inpaint_full_res"], x["inpaint_full_res_padding"]]
    # A1111's inpainting options come after the older inputs (the session is no API input), so positional callers
    # of /inpaint are not shifted.
    generate_listener(
        panel, inpaint_editor,
        panel.parameter_inputs() + [x["editor"], x["denoising_strength"], x["mask_blur"], x["inpainting_mask_invert"], *options, session],
        api_name="inpaint_editor", api_visibility="private",
    )
    generate_listener(
        panel, inpaint,
        panel.parameter_inputs() + [x["api_init"], x["api_mask"], x["denoising_strength"], x["mask_blur"], x["inpainting_mask_invert"], *options,
                                    session],
        api_name="inpaint", trigger=x["api_trigger"].click,
    )
    return panel
