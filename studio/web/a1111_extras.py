"""A1111's Extras and interrogate routes under /sdapi/v1: extra-single-image, extra-batch-images (studio/extras.py
through JobService.extras / extras_batch) and interrogate (JobService.interrogate: a BLIP caption, or a clear 422 when no captioning model is
at hand).

Each route acts for request.state.user (logins apply as everywhere). Bodies, answers and defaults are A1111's; the
answers' PNGs carry the info text (studio.extras.png_text). A refused request is a 422 {"detail": ...} before any
work; 429 with Retry-After when the one Extras slot stays taken (studio.extras.ExtrasGate). No torch."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import replace
from typing import Optional

from fastapi import APIRouter, HTTPException, Request
from PIL import Image, PngImagePlugin
from pydantic import BaseModel, ConfigDict

from ..contract import RequestError
from ..extras import MAX_BATCH_IMAGES, ExtrasBusyError, ExtrasError, ExtrasRequest, batch_pixel_budget, check_fields
from .base64_images import decode_base64_image

RETRY_AFTER_SECONDS = 5


class ExtrasBody(BaseModel):
    """A1111's ExtrasBaseRequest (its defaults)."""

    model_config = ConfigDict(extra="ignore")

    resize_mode: int = 0
    show_extras_results: bool = True
    gfpgan_visibility: float = 0.0
    codeformer_visibility: float = 0.0
    codeformer_weight: float = 0.0
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: Optional[str] = "None"
    upscaler_2: Optional[str] = "None"
    extras_upscaler_2_visibility: float = 0.0
    upscale_first: bool = False  # ignored, as A1111's API does: the upscale always runs before face restoration


class ExtrasSingleBody(ExtrasBody):
    image: str = ""


class FileData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: str = ""
    name: str = ""


class ExtrasBatchBody(ExtrasBody):
    imageList: list[FileData] = []


class InterrogateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image: str = ""
    model: str = "clip"




def encode_png(image: Image.Image) -> str:
    """base64 PNG with the picture's text (its info's str items: "parameters", "postprocessing"), as A1111's API."""
    text = PngImagePlugin.PngInfo()
    items = [(k, v) for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)]
    for key, value in items:
        text.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=text if items else None)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def html_info(info: str) -> str:
    """A1111's html_info: the info text as plaintext_to_html makes it."""
    return "<p>" + "<br>\n".join(html.escape(line) for line in info.split("\n")) + "</p>"


def options(body: ExtrasBody) -> ExtrasRequest:
    """The body's fields as an ExtrasRequest without a picture, checked (check_fields) before any decoding."""
    request = ExtrasRequest(
        resize_mode=body.resize_mode, upscaling_resize=body.upscaling_resize, upscaling_resize_w=body.upscaling_resize_w,
        upscaling_resize_h=body.upscaling_resize_h, upscaling_crop=body.upscaling_crop,
        upscaler_1=body.upscaler_1 or "None", upscaler_2=body.upscaler_2 or "None",
        extras_upscaler_2_visibility=body.extras_upscaler_2_visibility,
        gfpgan_visibility=body.gfpgan_visibility, codeformer_visibility=body.codeformer_visibility,
        codeformer_weight=body.codeformer_weight)
    check_fields(request)
    return request


def refused(exc: RequestError) -> HTTPException:
    if isinstance(exc, ExtrasBusyError):
        return HTTPException(status_code=429, detail=str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return HTTPException(status_code=422, detail=str(exc))


def batch_pictures(body: ExtrasBatchBody, settings) -> list[Image.Image]:
    """The batch's pictures, decoded one by one: refused past MAX_BATCH_IMAGES at once, and as soon as their pixels
    pass the batch's budget (so a batch of small files that decode huge is stopped early)."""
    if not body.imageList:
        raise ExtrasError("imageList must hold at least one base64-encoded image.")
    if len(body.imageList) > MAX_BATCH_IMAGES:
        raise ExtrasError(f"A batch may hold at most {MAX_BATCH_IMAGES} pictures, got {len(body.imageList)}.")
    budget, total, pictures = batch_pixel_budget(settings), 0, []
    for index, item in enumerate(body.imageList):
        picture = decode_base64_image(item.data, f"imageList[{index}]", settings)
        total += picture.width * picture.height
        if total > budget:
            raise ExtrasError(f"The batch's pictures are over {budget:,} pixels in all: send fewer or smaller pictures.")
        pictures.append(picture)
    return pictures


def register_extras_routes(router: APIRouter, state) -> None:
    """Add Extras and interrogate to the A1111 router (state: the ServerState)."""
    service = state.service

    @router.post("/sdapi/v1/extra-single-image")
    def extra_single_image(body: ExtrasSingleBody, request: Request):
        user = request.state.user
        try:
            wanted = options(body)
            picture = decode_base64_image(body.image, "image", service.settings)
            result, info = service.extras(user, replace(wanted, image=picture))
        except RequestError as exc:
            raise refused(exc) from None
        return {"html_info": html_info(info), "image": encode_png(result)}

    @router.post("/sdapi/v1/extra-batch-images")
    def extra_batch_images(body: ExtrasBatchBody, request: Request):
        user = request.state.user
        try:
            wanted = options(body)
            pictures = batch_pictures(body, service.settings)
            results = service.extras_batch(user, [replace(wanted, image=picture) for picture in pictures])
        except RequestError as exc:
            raise refused(exc) from None
        return {"html_info": html_info(results[-1][1]), "images": [encode_png(image) for image, _ in results]}

    @router.post("/sdapi/v1/interrogate")
    def interrogate(body: InterrogateBody, request: Request):
        """A1111's caption of a picture ({"caption": text}); refused with the reason when no captioning model is at
        hand (always for deepdanbooru, whose picture is left undecoded)."""
        user = request.state.user
        try:
            if not body.image.strip():
                raise ExtrasError("image must be a base64-encoded image.")
            picture = None
            if body.model == "clip":
                picture = decode_base64_image(body.image, "image", service.settings)
            return {"caption": service.interrogate(user, picture, body.model)}
        except RequestError as exc:
            raise refused(exc) from None
