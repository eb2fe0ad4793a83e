"""Checks a request before any GPU work, with messages a user can act on. No torch."""

from __future__ import annotations

import math

from PIL import Image

from .config import Settings
from .requests import GenerationRequest, RequestError, Task
from .samplers import find_sampler

MAX_PROMPT_CHARS = 20_000
MAX_SEED = 2**63 - 1


def _int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise RequestError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def validate(request: GenerationRequest, settings: Settings) -> None:
    """Raise RequestError for anything the engine would refuse or fail on."""
    if not isinstance(request.prompt, str) or not isinstance(request.negative_prompt, str):
        raise RequestError("prompt and negative_prompt must be text.")
    if len(request.prompt) > MAX_PROMPT_CHARS or len(request.negative_prompt) > MAX_PROMPT_CHARS:
        raise RequestError(f"The prompt is too long (over {MAX_PROMPT_CHARS} characters).")
    for name in ("width", "height"):
        value = getattr(request, name)
        if value is None:
            continue
        value = _int(name, value)
        if value % 8:
            raise RequestError(f"{name} must be a multiple of 8, got {value}.")
        if not 64 <= value <= settings.max_size:
            raise RequestError(f"{name} must be between 64 and {settings.max_size}, got {value}.")
    steps = _int("steps", request.steps)
    if not 1 <= steps <= settings.max_steps:
        raise RequestError(f"steps must be between 1 and {settings.max_steps}, got {steps}.")
    batch = _int("batch_size", request.batch_size)
    if not 1 <= batch <= settings.max_batch:
        raise RequestError(f"batch_size must be between 1 and {settings.max_batch}, got {batch}.")
    count = _int("batch_count", request.batch_count)
    if not 1 <= count <= settings.max_batch_count:
        raise RequestError(f"batch_count must be between 1 and {settings.max_batch_count}, got {count}.")
    seed = _int("seed", request.seed)
    if not -1 <= seed <= MAX_SEED:
        raise RequestError(f"seed must be -1 (random) or between 0 and {MAX_SEED}, got {seed}.")
    try:
        cfg = float(request.cfg_scale)
    except (TypeError, ValueError):
        raise RequestError(f"cfg_scale must be a number, got {request.cfg_scale!r}.") from None
    if not math.isfinite(cfg) or not 0 <= cfg <= 100:
        raise RequestError(f"cfg_scale must be a finite number between 0 and 100, got {request.cfg_scale!r}.")
    try:
        find_sampler(request.sampler_name)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    if request.task is Task.TXT2IMG:
        return
    strength = request.denoising_strength
    if not isinstance(strength, (int, float)) or not math.isfinite(strength) or not 0 < strength <= 1:
        raise RequestError(f"denoising_strength must be above 0 and at most 1, got {strength!r}.")
    if int(steps * strength) < 1:
        raise RequestError(
            f"steps × denoising_strength must be at least 1 (got {steps} × {strength:g}): raise steps or the strength."
        )
    _check_image("init_image", request.init_image, settings)
    if request.task is Task.INPAINT:
        _check_image("mask", request.mask, settings)
        blur = _int("mask_blur", request.mask_blur)
        if not 0 <= blur <= 64:
            raise RequestError(f"mask_blur must be between 0 and 64, got {blur}.")
        if request.mask.convert("L").getbbox() is None:
            raise RequestError("The mask is empty: paint the area to repaint (white) before generating.")


def _check_image(name: str, image, settings: Settings) -> None:
    if image is None:
        raise RequestError(f"{name} is missing.")
    if not isinstance(image, Image.Image):
        raise RequestError(f"{name} is not an image.")
    width, height = image.size
    if width < 8 or height < 8:
        raise RequestError(f"{name} is too small ({width}×{height}); it must be at least 8×8 pixels.")
    if width * height > settings.max_image_pixels:
        raise RequestError(f"{name} is too large ({width}×{height}); at most {settings.max_image_pixels:,} pixels.")


def decode_image(data: bytes, name: str, settings: Settings) -> Image.Image:
    """Open uploaded bytes as an image, refusing what is not one or is too large (decompression bombs included)."""
    import io

    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        width, height = image.size
        if width * height > settings.max_image_pixels:
            raise RequestError(f"{name} is too large ({width}×{height}); at most {settings.max_image_pixels:,} pixels.")
        image.load()
    except RequestError:
        raise
    except Image.UnidentifiedImageError:
        raise RequestError(f"{name} is not an image (PNG, JPEG, WebP, ... expected).") from None
    except Exception as exc:
        raise RequestError(f"{name} is not a readable image ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'broken data'}).") from None
    return image
