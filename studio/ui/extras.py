"""Extras tab, as A1111's "Extras → Single image": an input picture upscaled by Upscaler 1 (optionally blended with
Upscaler 2), scaled by a factor ("Scale by") or to a size ("Scale to", with "Crop to fit"), then its faces restored
by GFPGAN and CodeFormer, each blended in by its visibility; the result with its info text, a download of the PNG
(its "postprocessing" text included) and sends to Image to image and Inpainting. A line says which face restorers
are installed (and where the others' weights go); asking for one that is not gives the engine's message.

Its handler is also the `/extras` API endpoint, with the parameter names of A1111's /sdapi/v1/extra-single-image
body (image, resize_mode, upscaling_resize, upscaling_resize_w, upscaling_resize_h, upscaling_crop, upscaler_1,
upscaler_2, extras_upscaler_2_visibility, gfpgan_visibility, codeformer_visibility, codeformer_weight). The work is
JobService.extras (studio/extras.py): checked before any work, one Extras job at a time in the process."""

from __future__ import annotations

import html
import logging
import os
from typing import Any, Optional

import gradio as gr

from studio.contract import RequestError
from studio.extras import MIN_SIDE, SCALE_BY, SCALE_TO, ExtrasRequest
from studio.faces import CODEFORMER, FOLDER_NAMES, GFPGAN

from .options import face_restorer_names
from .panel import whole
from .streaming import SILENT, Services, Session, owner_of

log = logging.getLogger(__name__)

TAB = "extras"
NONE = "None"  # A1111's "no upscaler": as Upscaler 1, the picture is left as it is
MAX_RESIZE = 8.0  # A1111's "Resize" slider
LATENT_PREFIX = "Latent"  # hires fix's latent modes: not picture upscalers
EXTRAS_QUEUE = "extras"  # one Extras job at a time per process anyway (Engine.extras_gate): the rest wait in Gradio's queue


CSS = """
.studio-faces-hint { font-size: 0.9em; color: var(--body-text-color-subdued); padding: 2px 2px 0; }
"""


def upscaler_names(job_service) -> list[str]:
    """The picture upscalers (A1111's /sdapi/v1/upscalers names: None, Lanczos, Nearest, the model files), "None"
    first; never hires fix's latent modes."""
    try:
        names = [entry["name"] for entry in job_service.upscalers() if isinstance(entry, dict) and entry.get("name")]
    except Exception:  # the tab must not go down with the upscaler folder
        log.exception("Listing the upscalers failed")
        names = []
    names = [name for name in dict.fromkeys(names) if not name.startswith(LATENT_PREFIX) and name != NONE]
    return [NONE] + names


def faces_hint(installed: list[str]) -> str:
    """The line above the face sliders: which restorers are installed, and where the others' weights go."""
    missing = [name for name in (GFPGAN, CODEFORMER) if name not in installed]
    if not installed:
        text = ("Face restoration: none installed. GFPGAN's weights go in "
                f"{FOLDER_NAMES[GFPGAN]}, CodeFormer's in {FOLDER_NAMES[CODEFORMER]}.")
    elif missing:
        text = (f"Face restoration installed: {', '.join(installed)}. {missing[0]} is not (its weights go in "
                f"{FOLDER_NAMES[missing[0]]}).")
    else:
        text = f"Face restoration installed: {', '.join(installed)}."
    return f"<div class='studio-faces-hint'>{html.escape(text)}</div>"


def _upscaler(value: Any, name: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return NONE
    if not isinstance(value, str):
        raise RequestError(f"{name} must be an upscaler's name, such as Lanczos (or None).")
    return value.strip()


def _number(value: Any, name: str, default: float) -> Any:
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{name} must be a number, got {value!r}.")
    return value


def _flag(value: Any, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise RequestError(f"{name} must be true or false.")


def extras_request(image, resize_mode: Any = SCALE_BY, upscaling_resize: Any = 2.0, upscaling_resize_w: Any = 512,
                   upscaling_resize_h: Any = 512, upscaling_crop: Any = True, upscaler_1: Any = NONE, upscaler_2: Any = NONE,
                   extras_upscaler_2_visibility: Any = 0.0, gfpgan_visibility: Any = 0.0, codeformer_visibility: Any = 0.0,
                   codeformer_weight: Any = 0.0) -> ExtrasRequest:
    """The tab's controls (A1111's field names, in the handler's order) → the request (raises RequestError). Sliders
    and numbers arrive as floats: whole ones become ints; the engine checks ranges, names and sizes."""
    if image is None:
        raise RequestError("Add an input image first (upload, paste or drop one).")
    return ExtrasRequest(
        image=image,
        resize_mode=whole(_number(resize_mode, "resize_mode", SCALE_BY), "resize_mode"),
        upscaling_resize=_number(upscaling_resize, "upscaling_resize", 2.0),
        upscaling_resize_w=whole(_number(upscaling_resize_w, "upscaling_resize_w", 512), "upscaling_resize_w"),
        upscaling_resize_h=whole(_number(upscaling_resize_h, "upscaling_resize_h", 512), "upscaling_resize_h"),
        upscaling_crop=_flag(upscaling_crop, "upscaling_crop", True),
        upscaler_1=_upscaler(upscaler_1, "upscaler_1"),
        upscaler_2=_upscaler(upscaler_2, "upscaler_2"),
        extras_upscaler_2_visibility=_number(extras_upscaler_2_visibility, "extras_upscaler_2_visibility", 0.0),
        gfpgan_visibility=_number(gfpgan_visibility, "gfpgan_visibility", 0.0),
        codeformer_visibility=_number(codeformer_visibility, "codeformer_visibility", 0.0),
        codeformer_weight=_number(codeformer_weight, "codeformer_weight", 0.0),
    )


def run_extras(services: Services, request: ExtrasRequest, gr_request: Optional[gr.Request]) -> tuple[Any, str]:
    """(the result as a value Gradio may show this user — a PNG in its cache, with its text —, the info text). Raises
    gr.Error with the engine's message; never a stack trace."""
    try:
        picture, info = services.job_service.extras(owner_of(gr_request), request)
    except RequestError as exc:  # a bad field or name, a size over the limits, ExtrasBusyError
        raise gr.Error(str(exc), print_exception=False) from None
    except Exception:
        log.exception("Extras failed")
        raise gr.Error("Could not upscale the picture; the server log says why.", print_exception=False) from None
    if not info:
        gr.Warning("Upscaler 1 is None: the picture is left as it is. Choose an upscaler such as Lanczos.")
    return services.hand_over(gr_request, picture, name="extras"), info


def _inputs(job_service, settings) -> dict:
    image = gr.Image(label="Input image (upload, paste or drop)", type="pil", image_mode=None, sources=["upload", "clipboard"],
                     height=360, elem_id=f"{TAB}-image")
    # A1111's sub-tabs choose resize_mode; the hidden number carries it (and is the API's parameter).
    resize_mode = gr.Number(SCALE_BY, precision=0, visible=False, elem_id=f"{TAB}-resize-mode")
    with gr.Tabs(elem_id=f"{TAB}-resize-tabs"):
        with gr.Tab("Scale by", id="scale-by", elem_id=f"{TAB}-scale-by") as scale_by:
            resize = gr.Slider(1.0, MAX_RESIZE, value=2.0, step=0.05, label="Resize", elem_id=f"{TAB}-resize")
        with gr.Tab("Scale to", id="scale-to", elem_id=f"{TAB}-scale-to") as scale_to:
            with gr.Row(equal_height=True):
                width = gr.Slider(MIN_SIDE, settings.max_size, value=512, step=8, label="Width", elem_id=f"{TAB}-width", scale=3)
                height = gr.Slider(MIN_SIDE, settings.max_size, value=512, step=8, label="Height", elem_id=f"{TAB}-height", scale=3)
                crop = gr.Checkbox(True, label="Crop to fit", elem_id=f"{TAB}-crop", scale=1, min_width=120)
    upscalers = upscaler_names(job_service)
    # Names outside the list (a model file added since the page was built) go to the engine, which says what it has.
    with gr.Row(equal_height=True):
        upscaler_1 = gr.Dropdown(upscalers, value=NONE, label="Upscaler 1", allow_custom_value=True, elem_id=f"{TAB}-upscaler-1")
        upscaler_2 = gr.Dropdown(upscalers, value=NONE, label="Upscaler 2", allow_custom_value=True, elem_id=f"{TAB}-upscaler-2")
    visibility = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="Upscaler 2 visibility", elem_id=f"{TAB}-upscaler-2-visibility")
    # A1111's face restoration after the upscale: GFPGAN, then CodeFormer, each blended in by its visibility.
    faces = gr.HTML(faces_hint(face_restorer_names(job_service)), elem_id=f"{TAB}-faces-hint")
    gfpgan = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="GFPGAN visibility", info="0 = off",
                       elem_id=f"{TAB}-gfpgan-visibility")
    with gr.Row():
        codeformer = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="CodeFormer visibility", info="0 = off",
                               elem_id=f"{TAB}-codeformer-visibility", min_width=240)
        weight = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="CodeFormer weight", info="0 = strongest effect, 1 = weakest",
                           elem_id=f"{TAB}-codeformer-weight", min_width=240)
    scale_by.select(lambda: SCALE_BY, None, resize_mode, **SILENT)
    scale_to.select(lambda: SCALE_TO, None, resize_mode, **SILENT)
    return dict(image=image, resize_mode=resize_mode, resize=resize, width=width, height=height, crop=crop,
                upscaler_1=upscaler_1, upscaler_2=upscaler_2, visibility=visibility, faces_hint=faces,
                gfpgan_visibility=gfpgan, codeformer_visibility=codeformer, codeformer_weight=weight)


def _outputs() -> dict:
    generate = gr.Button("Generate", variant="primary", elem_id=f"{TAB}-generate", elem_classes=["studio-generate"])
    result = gr.Image(label="Result", type="filepath", format="png", interactive=False, height=420,
                      buttons=["download", "fullscreen"], elem_id=f"{TAB}-result")
    with gr.Row():
        to_img2img = gr.Button("→ Image to image", size="sm", elem_id=f"{TAB}-to-img2img")
        to_inpaint = gr.Button("→ Inpainting", size="sm", elem_id=f"{TAB}-to-inpaint")
    info = gr.Textbox(label="Info", lines=2, interactive=False, buttons=["copy"], elem_id=f"{TAB}-info")
    return dict(generate=generate, result=result, to_img2img=to_img2img, to_inpaint=to_inpaint, info=info)


def build(services: Services, session: gr.State) -> dict:
    """The tab's controls, by name (the sends to Image to image / Inpainting are wired by the caller)."""
    job_service = services.job_service
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=360):
            parts = _inputs(job_service, job_service.settings)
        with gr.Column(scale=4, min_width=320):
            parts.update(_outputs())

    def extras(image, resize_mode, upscaling_resize, upscaling_resize_w, upscaling_resize_h, upscaling_crop, upscaler_1,
               upscaler_2, extras_upscaler_2_visibility, gfpgan_visibility, codeformer_visibility, codeformer_weight,
               state: Session, request: gr.Request):
        """A1111's Extras on one picture: (the result PNG, its info text, e.g. "Postprocess upscale by: 2,
        Postprocess upscaler: Lanczos, GFPGAN visibility: 0.5"). resize_mode 0: scale by upscaling_resize; 1: scale
        to upscaling_resize_w × upscaling_resize_h (upscaling_crop: cut the centre out). gfpgan_visibility,
        codeformer_visibility (0..1, 0 = off): faces restored after the upscale, blended in by this much;
        codeformer_weight: CodeFormer's fidelity (0 = strongest effect, 1 = weakest)."""
        try:
            req = extras_request(image, resize_mode, upscaling_resize, upscaling_resize_w, upscaling_resize_h, upscaling_crop,
                                 upscaler_1, upscaler_2, extras_upscaler_2_visibility, gfpgan_visibility, codeformer_visibility,
                                 codeformer_weight)
        except RequestError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        picture, info = run_extras(services, req, request)
        if state is not None:
            state.extras_result = picture
        return picture, info

    inputs = [parts[name] for name in ("image", "resize_mode", "resize", "width", "height", "crop", "upscaler_1", "upscaler_2",
                                       "visibility", "gfpgan_visibility", "codeformer_visibility", "codeformer_weight")]
    parts["generate"].click(extras, inputs + [session], [parts["result"], parts["info"]], api_name="extras",
                            concurrency_id=EXTRAS_QUEUE, concurrency_limit=1)
    return parts


def wire(services: Services, parts: dict, tab: gr.Tab, session: gr.State) -> None:
    """Selecting the tab lists the upscalers and face restorers installed now (a model file dropped into its folder
    shows up)."""
    def refresh(first, second):
        names = upscaler_names(services.job_service)
        return (gr.Dropdown(choices=names, value=first if first else NONE),
                gr.Dropdown(choices=names, value=second if second else NONE),
                faces_hint(face_restorer_names(services.job_service)))

    tab.select(refresh, [parts["upscaler_1"], parts["upscaler_2"]], [parts["upscaler_1"], parts["upscaler_2"], parts["faces_hint"]],
               **SILENT)


def last_result(state: Optional[Session]) -> Any:
    """This session's last Extras result (a value for an image input), or a gr.Error saying to make one first."""
    picture = getattr(state, "extras_result", None)
    if picture is None:
        raise gr.Error("No result to send yet: press Generate in Extras first.", print_exception=False)
    if isinstance(picture, str) and not os.path.exists(picture):  # Gradio's cache forgets files unused for an hour
        raise gr.Error("That result is no longer kept: press Generate in Extras again.", print_exception=False)
    return picture


__all__ = ["build", "extras_request", "faces_hint", "last_result", "run_extras", "upscaler_names", "wire"]
