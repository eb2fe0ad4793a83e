"""A1111's Extras tab ("Postprocess upscale"), engine side: a picture upscaled by Upscaler 1, optionally blended with
Upscaler 2, scaled by a factor or to a size, and the text that says what was done. Plain: no web, no UI; the UI and
the /sdapi/v1 routes reach it through JobService.extras / extras_batch with PIL images and plain values.

It follows A1111's scripts/postprocessing_upscale.py:
- the picture is made RGB; Upscaler 1 "None" leaves it as it is (and Upscaler 2 is then not used either);
- scale by s: the upscaler's A1111 target, (w × s, h × s) rounded down to a multiple of 8;
- scale to W×H with crop: scaled by max(W / w, H / h), then the centre W×H is cut out (A1111 pastes onto a W×H
  canvas, which leaves black edges where its rounding to 8 falls short; here the picture is scaled to cover W×H);
  without crop: resized onto exactly W×H;
- Upscaler 2 makes its own picture the same way from the same input; it is blended in with its visibility (0..1);
- then faces are restored (studio/faces.py) by GFPGAN, then CodeFormer, each blended in with its visibility, as
  A1111's postprocessing scripts run ("GFPGAN visibility: 0.5, CodeFormer visibility: 1.0, CodeFormer weight: 0.5");
- the info text uses A1111's keys and order ("Postprocess upscale by: 2, Postprocess upscaler: Lanczos"); the
  result's PNG text keeps it as A1111 does ("postprocessing"), and as "parameters" unless the input had its own.

Everything is checked before any work (plan_extras): the result's sides (≤ --max-size) and pixels (≤
--max-image-pixels), the upscalers' names (a latent mode is hires fix only), the visibilities, the face restorers
asked for (not installed: the message names the folder for the weights). DeepDanbooru is not installed and says
so; interrogate's "clip" captions with BLIP when a model is at hand (studio/interrogate.py). ExtrasGate lets one
Extras job run at a time in the process: upscales never stack on the device."""

from __future__ import annotations

import math
import numbers
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

from PIL import Image

from .config import Settings
from .contract import RequestError
from .faces import CODEFORMER, GFPGAN, FaceRestorers
from .upscalers import NONE, UpscalerLibrary

SCALE_BY, SCALE_TO = 0, 1  # A1111's resize_mode
MIN_SIDE = 8
MAX_SCALE = 64  # upscaling_resize (A1111's slider stops at 8; the size limits are checked later)
MAX_SIDE = 1 << 16  # upscaling_resize_w / _h, before the server's own --max-size is checked
MAX_NAME_CHARS = 300
MAX_BATCH_IMAGES = 16  # pictures in one extras_batch
BATCH_PIXELS_FACTOR = 4  # a batch's pictures, and its results, in all at most this many × --max-image-pixels
EXTRAS_WAIT_SECONDS = 20.0  # how long a caller waits for the one Extras slot before ExtrasBusyError
MAX_WAITING = 4  # callers waiting for it at once; more are told "busy" at once
MAX_KEPT_PARAMETERS = 64 * 1024  # the input's own "parameters" text is kept when no longer than this
INTERROGATE_MODELS = ("clip", "deepdanbooru")


class ExtrasError(RequestError):
    """An Extras request the studio will not run; the message says which field and why."""


class ExtrasBusyError(RequestError):
    """Another Extras job held the one slot for too long (an HTTP front end answers 429)."""


class NotInstalledError(RequestError):
    """Asks for something this server does not have: face restoration, a captioning model."""


@dataclass(frozen=True)
class ExtrasRequest:
    """One picture for Extras, with A1111's field names (its /sdapi/v1/extra-single-image body, less the base64)."""

    image: Optional[Image.Image] = None
    resize_mode: int = SCALE_BY  # 0: scale by upscaling_resize; 1: scale to upscaling_resize_w × upscaling_resize_h
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True  # scale to: cut the centre out (True) or resize onto the size (False)
    upscaler_1: str = NONE  # "None": the picture is left as it is
    upscaler_2: str = NONE
    extras_upscaler_2_visibility: float = 0.0
    gfpgan_visibility: float = 0.0  # faces restored by GFPGAN, blended in by this much (after the upscale)
    codeformer_visibility: float = 0.0  # then by CodeFormer
    codeformer_weight: float = 0.0  # CodeFormer's fidelity (0: most restored)


@dataclass(frozen=True)
class ExtrasPlan:
    """A checked request: the RGB picture, the upscalers to run, and the sizes they make."""

    image: Image.Image
    upscalers: tuple[str, ...]  # (): nothing to do; (upscaler 1,) or (upscaler 1, upscaler 2)
    visibility: float  # upscaler 2's share of the blend
    scale: Optional[float]  # scale by; None: scale to
    cover: tuple[int, int]  # scale to: the size upscaled to (bigger than `size` on one side when cropping)
    size: tuple[int, int]  # the result's size
    info: str  # what was done, A1111's infotext for extras ("" when nothing)
    faces: tuple[tuple[str, float, float], ...] = ()  # (restorer, visibility, CodeFormer weight), in order


# ---- checks


def _fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ExtrasError(f"{name} must be a number from 0 to 1, got {value!r}.")
    return float(value)


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value != int(value):
        raise ExtrasError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def _name(field: str, value) -> str:
    if value is None:
        return NONE
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS:
        raise ExtrasError(f"{field} must be an upscaler's name, such as Lanczos (or None).")
    return value


def check_fields(request: ExtrasRequest) -> None:
    """The checks that need neither the picture nor the upscaler folders: cheap, made before decoding a picture."""
    for field in ("gfpgan_visibility", "codeformer_visibility", "codeformer_weight"):
        _fraction(field, getattr(request, field))
    if isinstance(request.resize_mode, bool) or request.resize_mode not in (SCALE_BY, SCALE_TO):
        raise ExtrasError(f"resize_mode must be 0 (scale by upscaling_resize) or 1 (scale to upscaling_resize_w × "
                          f"upscaling_resize_h), got {request.resize_mode!r}.")
    if request.resize_mode == SCALE_BY:
        scale = request.upscaling_resize
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) or not 0 < scale <= MAX_SCALE:
            raise ExtrasError(f"upscaling_resize must be a number above 0 and at most {MAX_SCALE}, got {scale!r}.")
    else:
        for field in ("upscaling_resize_w", "upscaling_resize_h"):
            if not MIN_SIDE <= _whole(field, getattr(request, field)) <= MAX_SIDE:
                raise ExtrasError(f"{field} must be at least {MIN_SIDE} (and at most {MAX_SIDE}), got {getattr(request, field)!r}.")
        if not isinstance(request.upscaling_crop, bool):
            raise ExtrasError("upscaling_crop must be true or false.")
    _name("upscaler_1", request.upscaler_1)
    _name("upscaler_2", request.upscaler_2)
    _fraction("extras_upscaler_2_visibility", request.extras_upscaler_2_visibility)


def _quote(text: str) -> str:
    """A1111's infotext quoting: text with a comma, a colon or a new line goes in JSON quotes."""
    import json

    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def _sizes(request: ExtrasRequest, width: int, height: int) -> tuple[Optional[float], tuple[int, int], tuple[int, int], list[str]]:
    """(scale or None, the size upscaled to, the result's size, A1111's info entries for the size)."""
    if request.resize_mode == SCALE_BY:
        scale = float(request.upscaling_resize)
        size = (int(width * scale // 8 * 8), int(height * scale // 8 * 8))  # A1111's Upscaler.upscale target
        return scale, size, size, [f"Postprocess upscale by: {scale:g}"]
    size = (int(request.upscaling_resize_w), int(request.upscaling_resize_h))
    info = [f"Postprocess upscale to: {size[0]}x{size[1]}"]
    if not request.upscaling_crop:
        return None, size, size, info
    by = max(size[0] / width, size[1] / height)
    cover = (max(size[0], round(width * by)), max(size[1], round(height * by)))
    return None, cover, size, info + [f"Postprocess crop to: {size[0]}x{size[1]}"]


def _check_sizes(image: Image.Image, cover: tuple[int, int], size: tuple[int, int], settings: Settings) -> None:
    shown = f"{size[0]}×{size[1]}"
    if min(size) < MIN_SIDE:
        raise ExtrasError(f"The result would be {shown}, under {MIN_SIDE} pixels on a side: choose a larger scale.")
    if max(size) > settings.max_size:
        raise ExtrasError(f"The result would be {shown}, over this server's limit of {settings.max_size} pixels a side: "
                          "choose a smaller scale or size.")
    if max(size[0] * size[1], cover[0] * cover[1]) > settings.max_image_pixels:
        what = "The result" if cover == size else f"Cropping to {shown} needs {cover[0]}×{cover[1]}, which"
        raise ExtrasError(f"{what} would be over this server's limit of {settings.max_image_pixels:,} pixels: "
                          "choose a smaller scale or size.")


def _face_steps(request: ExtrasRequest, faces: Optional[FaceRestorers]) -> tuple[tuple[tuple[str, float, float], ...], list[str]]:
    """A1111's postprocessing order after the upscale: GFPGAN, then CodeFormer; and their info entries."""
    steps, info = [], []
    for name, visibility in ((GFPGAN, request.gfpgan_visibility), (CODEFORMER, request.codeformer_visibility)):
        if visibility <= 0:
            continue
        if faces is None:
            raise NotInstalledError(f"Face restoration with {name} is not available here: set {name.lower()}_visibility to 0.")
        faces.check(name)  # not installed: says which folder and what to put there
        steps.append((name, float(visibility), float(request.codeformer_weight)))
        info.append(f"{name} visibility: {round(float(visibility), 3)}")
        if name == CODEFORMER:
            info.append(f"CodeFormer weight: {round(float(request.codeformer_weight), 3)}")
    return tuple(steps), info


def plan_extras(library: UpscalerLibrary, request: ExtrasRequest, settings: Settings,
                faces: Optional[FaceRestorers] = None) -> ExtrasPlan:
    """`request` checked against the server's limits, upscalers and face restorers, before any work. Raises
    RequestError."""
    check_fields(request)
    image = request.image
    if not isinstance(image, Image.Image):
        raise ExtrasError("Extras needs a picture.")
    if min(image.size) < MIN_SIDE or image.width * image.height > settings.max_image_pixels:
        raise ExtrasError(f"The picture is {image.width}×{image.height}: it must be at least {MIN_SIDE}×{MIN_SIDE} and at "
                          f"most {settings.max_image_pixels:,} pixels.")
    first, second = _name("upscaler_1", request.upscaler_1), _name("upscaler_2", request.upscaler_2)
    for name in (first, second):
        library.check(name, latent=False)  # an unknown name or a latent mode: refused now
    visibility = float(request.extras_upscaler_2_visibility)
    face_steps, face_info = _face_steps(request, faces)
    if first == NONE:  # A1111: Upscaler 1 "None" leaves the size alone, whatever Upscaler 2 says
        return ExtrasPlan(image, (), 0.0, None, image.size, image.size, ", ".join(face_info), face_steps)
    scale, cover, size, info = _sizes(request, image.width, image.height)
    _check_sizes(image, cover, size, settings)
    upscalers = (first, second) if second != NONE and visibility > 0 else (first,)
    info.append(f"Postprocess upscaler: {_quote(first)}")
    if len(upscalers) == 2:
        info.append(f"Postprocess upscaler 2: {_quote(second)}")
    return ExtrasPlan(image, upscalers, visibility, scale, cover, size, ", ".join(info + face_info), face_steps)


def check_batch(library: UpscalerLibrary, requests: Sequence[ExtrasRequest], settings: Settings,
                faces: Optional[FaceRestorers] = None) -> list[ExtrasPlan]:
    """Every request of a batch planned, and the batch within MAX_BATCH_IMAGES and its pixel budget, before any work."""
    if not requests:
        raise ExtrasError("The batch has no pictures.")
    if len(requests) > MAX_BATCH_IMAGES:
        raise ExtrasError(f"A batch may hold at most {MAX_BATCH_IMAGES} pictures, got {len(requests)}.")
    plans = [plan_extras(library, request, settings, faces) for request in requests]
    budget = batch_pixel_budget(settings)
    if sum(p.size[0] * p.size[1] for p in plans) > budget:
        raise ExtrasError(f"The batch's results would be over {budget:,} pixels in all: send fewer pictures or a smaller scale.")
    return plans


def batch_pixel_budget(settings: Settings) -> int:
    """The most pixels a batch's pictures, and its results, may have in all."""
    return BATCH_PIXELS_FACTOR * int(settings.max_image_pixels)


# ---- the work


def run_plan(library: UpscalerLibrary, plan: ExtrasPlan, device="cpu", dtype=None,
             faces: Optional[FaceRestorers] = None) -> tuple[Image.Image, str]:
    """(the picture, the info text) for a checked plan, on this thread. Raises UpscalerError, FaceRestoreError (both
    RequestErrors)."""
    source = plan.image.convert("RGB")
    if not plan.upscalers:
        result = source
    else:
        result = _upscaled(library, plan, source, plan.upscalers[0], device, dtype)
        if len(plan.upscalers) == 2:
            second = _upscaled(library, plan, source, plan.upscalers[1], device, dtype)
            result = Image.blend(result, second.convert(result.mode), plan.visibility)
    for name, visibility, weight in plan.faces:
        restored = faces.restore(result, name, weight, device)
        result = restored if visibility >= 1 else Image.blend(result.convert("RGB"), restored, visibility)
    result.info = png_text(plan.image, plan.info)
    return result, plan.info


def run_extras(library: UpscalerLibrary, request: ExtrasRequest, device="cpu", dtype=None,
               settings: Optional[Settings] = None, faces: Optional[FaceRestorers] = None) -> tuple[Image.Image, str]:
    """A1111's Extras upscale of request.image: (the picture, the info text). Checked first against `settings`' limits
    (default: the studio's defaults). Raises RequestError. Takes no ExtrasGate: JobService.extras does."""
    return run_plan(library, plan_extras(library, request, settings or Settings(), faces), device, dtype, faces)


def _upscaled(library: UpscalerLibrary, plan: ExtrasPlan, image: Image.Image, name: str, device, dtype) -> Image.Image:
    if plan.scale is not None:
        return library.upscale(image, scale=plan.scale, name=name, device=device, dtype=dtype)
    image = library.upscale(image, width=plan.cover[0], height=plan.cover[1], name=name, device=device, dtype=dtype)
    if plan.cover == plan.size:
        return image
    left, top = (plan.cover[0] - plan.size[0]) // 2, (plan.cover[1] - plan.size[1]) // 2
    return image.crop((left, top, left + plan.size[0], top + plan.size[1]))


def png_text(original: Image.Image, info: str) -> dict[str, str]:
    """The result's PNG text: A1111's "postprocessing" chunk with `info`, and "parameters" — the input's own (its
    generation parameters) when it has them, else `info`. Nothing when nothing was done to a picture without any."""
    text: dict[str, str] = {}
    kept = original.info.get("parameters")
    if isinstance(kept, str) and len(kept) <= MAX_KEPT_PARAMETERS:
        text["parameters"] = kept
    if info:
        text.setdefault("parameters", info)
        text["postprocessing"] = info
    return text


def interrogate(image: Optional[Image.Image], model: str = "clip", settings: Optional[Settings] = None,
                device=None, dtype=None, captioner=None) -> str:
    """A1111's interrogate: a caption for the picture. "clip" captions with the BLIP model of --caption-model (or the
    hub's from the local cache: studio/interrogate.py) on `device` in `dtype`; NotInstalledError when none can be had,
    and always for "deepdanbooru" (ExtrasError for a model A1111 does not have, or no picture)."""
    if model not in INTERROGATE_MODELS:
        shown = model[:MAX_NAME_CHARS] if isinstance(model, str) else repr(model)
        raise ExtrasError(f"Unknown interrogate model '{shown}': A1111's are clip and deepdanbooru.")
    if model == "clip":
        if image is None:
            raise ExtrasError("image must be a base64-encoded image.")
        if captioner is None:  # a one-off (the server passes the engine's, which stays loaded)
            from .interrogate import Captioner

            captioner = Captioner(settings.caption_model if settings is not None else None, device or "cpu", dtype)
        caption = captioner.caption(image)
        if caption is not None:
            return caption
    wanted = "a BLIP captioning model" if model == "clip" else "DeepDanbooru"
    raise NotInstalledError(f"Interrogate is not available: no captioning model is installed on this server ({wanted} "
                            "is not here).")


class ExtrasGate:
    """One Extras job at a time: a caller waits up to `wait_seconds` for the slot, behind at most `max_waiting`
    others; past either, ExtrasBusyError (an HTTP caller gets 429 and tries again), so a flood neither stacks upscales
    on the device nor ties up the server's threads."""

    def __init__(self, wait_seconds: float = EXTRAS_WAIT_SECONDS, max_waiting: int = MAX_WAITING):
        self.wait_seconds = wait_seconds
        self.max_waiting = max_waiting
        self._slot = threading.Lock()
        self._count_lock = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """How many callers wait for the slot now."""
        with self._count_lock:
            return self._waiting

    @contextmanager
    def hold(self) -> Iterator[None]:
        """The slot for the `with` block; raises ExtrasBusyError when too many wait or the wait runs out."""
        with self._count_lock:
            if self._waiting >= self.max_waiting:
                raise ExtrasBusyError("The server is busy with other Extras jobs: try again in a moment.")
            self._waiting += 1
        try:
            got = self._slot.acquire(timeout=max(0.0, self.wait_seconds))
        finally:
            with self._count_lock:
                self._waiting -= 1
        if not got:
            raise ExtrasBusyError(f"Another Extras job has been running for over {self.wait_seconds:g} s: try again in a moment.")
        try:
            yield
        finally:
            self._slot.release()


