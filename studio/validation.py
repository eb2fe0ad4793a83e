"""Checks a request before any GPU work, with messages a user can act on. No torch."""

from __future__ import annotations

import logging

import io
import math
import re
import warnings
from dataclasses import replace
from typing import BinaryIO, Union

from PIL import Image

from .config import PREVIEW_MODES, Settings
from .contract import INSPECTABLE, GenerationRequest, RequestError, Task
from .outputs import FILENAME_TOKENS, unknown_filename_tokens
from .samplers import find_sampler

# The studio's one prompt-length cap, on every path: validation, the API, the UI's prompt boxes (max_length) and the
# live token counter, which refuses longer text instead of tokenizing it.
log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 20_000
MAX_SEED = 2**63 - 1
# The only image formats any upload may be: their decoders are the well-trodden ones, and their headers give the size.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
_FORMAT_NAMES = "a PNG, JPEG or WebP image"
MIN_IMAGE_SIDE = 8
# Magic numbers of images we refuse, only to name them in the message (never opened).
_OTHER_FORMATS = ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x01\x00", "ICO"),
                  (b"8BPS", "PSD"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x0a", "JPEG XL"))


def check_prompt_length(text: str, name: str = "prompt") -> None:
    """Refuse text over MAX_PROMPT_CHARS: a cheap check, made before anything costly looks at the text."""
    if len(text) > MAX_PROMPT_CHARS:
        raise RequestError(f"The {name} is too long (over {MAX_PROMPT_CHARS} characters).")


def limit_decoder(settings: Settings) -> None:
    """Bound every PIL decode in the process (Gradio's own decoding of an upload included) by --max-image-pixels:
    PIL refuses over twice Image.MAX_IMAGE_PIXELS and only warns between once and twice, so that warning is made an
    error too. Called once at start by the composition root."""
    Image.MAX_IMAGE_PIXELS = int(settings.max_image_pixels)
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def _int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise RequestError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


MAX_CLIP_SKIP = 12  # SD's text encoders have 12 (CLIP-L) to 32 layers; A1111's slider stops at 12
MAX_STYLES = 32
MAX_NAME_CHARS = 300
MAX_PREVIEW_EVERY = 1000


def validate(request: GenerationRequest, settings: Settings) -> None:
    """Raise RequestError for anything the engine would refuse or fail on."""
    if not isinstance(request.prompt, str) or not isinstance(request.negative_prompt, str):
        raise RequestError("prompt and negative_prompt must be text.")
    check_prompt_length(request.prompt)
    check_prompt_length(request.negative_prompt, "negative prompt")
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
    _check_sampler(request.sampler_name, request.scheduler)
    clip_skip = _int("clip_skip", request.clip_skip)
    if not 1 <= clip_skip <= MAX_CLIP_SKIP:
        raise RequestError(f"clip_skip must be between 1 and {MAX_CLIP_SKIP}, got {clip_skip}.")
    styles = request.styles
    if not isinstance(styles, (tuple, list)) or len(styles) > MAX_STYLES or not all(isinstance(n, str) and len(n) <= MAX_NAME_CHARS for n in styles):
        raise RequestError(f"styles must be a list of at most {MAX_STYLES} style names.")
    if request.vae is not None and (not isinstance(request.vae, str) or len(request.vae) > MAX_NAME_CHARS):
        raise RequestError("vae must be the name of a VAE file (or Automatic).")
    _check_variation(request, settings)
    if not isinstance(request.tiling, bool):
        raise RequestError("tiling must be true or false.")
    _check_faces(request)
    _check_output_options(request)
    if request.task is Task.HIRES_FIX:
        _check_hires(request, settings, steps)
    if request.depth_map is not None:
        if request.task is not Task.IMG2IMG:
            raise RequestError("depth_map goes with init_images (image to image on a depth model), without a mask.")
        _check_image("depth_map", request.depth_map, settings)
    if request.task in (Task.TXT2IMG, Task.HIRES_FIX):
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
        _check_inpainting(request, settings)


def _check_sampler(name, schedule_type, label: str = "sampler") -> None:
    if schedule_type is not None and (not isinstance(schedule_type, str) or len(schedule_type) > MAX_NAME_CHARS):
        raise RequestError(f"The {label}'s schedule type must be a name such as Karras.")
    try:
        find_sampler(name, schedule_type)
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def _fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
        raise RequestError(f"{name} must be a number from 0 to 1, got {value!r}.")
    return float(value)


def _size_pair(name: str, value, settings: Settings) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise RequestError(f"{name} must be a width and a height.")
    for side in value:
        side = _int(name, side)
        if side % 8 or not 64 <= side <= settings.max_size:
            raise RequestError(f"{name}: each side must be a multiple of 8 between 64 and {settings.max_size}, got {side}.")


def _check_variation(request: GenerationRequest, settings: Settings) -> None:
    subseed = _int("subseed", request.subseed)
    if not -1 <= subseed <= MAX_SEED:
        raise RequestError(f"subseed must be -1 (random) or between 0 and {MAX_SEED}, got {subseed}.")
    strength = _fraction("subseed_strength", request.subseed_strength)
    if request.seed_resize_from is not None:
        _size_pair("seed_resize_from", request.seed_resize_from, settings)
    if (strength > 0 or request.seed_resize_from is not None) and request.task not in (Task.TXT2IMG, Task.HIRES_FIX):
        raise RequestError("Variation seeds and seed resize work in text to image (and hires fix) only on this server.")


MAX_HIRES_SCALE = 4.0


def hires_size(request: GenerationRequest, default_size: int) -> tuple[int, int]:
    """The second pass's size: hr_resize if given, else width and height × hr_scale (down to a multiple of 8)."""
    if request.hr_resize is not None:
        return int(request.hr_resize[0]), int(request.hr_resize[1])
    width, height = request.width or default_size, request.height or default_size
    return int(width * request.hr_scale) // 8 * 8, int(height * request.hr_scale) // 8 * 8


def _check_hires(request: GenerationRequest, settings: Settings, steps: int) -> None:
    scale = request.hr_scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or not 1 <= scale <= MAX_HIRES_SCALE:
        raise RequestError(f"hr_scale must be between 1 and {MAX_HIRES_SCALE:g}, got {scale!r}.")
    if request.hr_resize is not None:
        _size_pair("hr_resize", request.hr_resize, settings)
    width, height = hires_size(request, 0)  # with the model's default size, the task's preparation checks it
    if (request.hr_resize is not None or (request.width and request.height)) and max(width, height) > settings.max_size:
        raise RequestError(f"The hires fix size {width}×{height} is over the server's limit of {settings.max_size}: "
                           "lower hr_scale or the first pass's size.")
    if not isinstance(request.hr_upscaler, str) or not request.hr_upscaler.strip() or len(request.hr_upscaler) > MAX_NAME_CHARS:
        raise RequestError("hr_upscaler must be an upscaler's name, such as Latent.")
    hr_steps = _int("hr_second_pass_steps", request.hr_second_pass_steps)
    if not 0 <= hr_steps <= settings.max_steps:
        raise RequestError(f"hr_second_pass_steps must be between 0 (the same as steps) and {settings.max_steps}, got {hr_steps}.")
    strength = _fraction("denoising_strength", request.hr_denoising_strength)
    if strength <= 0 or int((hr_steps or steps) * strength) < 1:
        raise RequestError("The hires fix's second pass needs denoising_strength × its steps to be at least 1.")
    if request.hr_sampler_name is not None or request.hr_scheduler is not None:
        _check_sampler(request.hr_sampler_name or request.sampler_name, request.hr_scheduler, "hires sampler")
    for name in ("hr_prompt", "hr_negative_prompt"):
        text = getattr(request, name)
        if text is not None:
            if not isinstance(text, str):
                raise RequestError(f"{name} must be text.")
            check_prompt_length(text, name.replace("_", " "))


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


def _open_header(data: Union[bytes, BinaryIO], name: str, settings: Settings) -> Image.Image:
    # PIL's open reads the header only; the pixels are decoded by load(), which only decode_image calls.
    fp = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    fp.seek(0)  # PIL reads an image from the start of its file
    prefix = fp.read(16)
    fp.seek(0)
    try:
        image = Image.open(fp, formats=IMAGE_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # over limit_decoder's bound
        raise RequestError(_too_large(name, exc, settings)) from None
    except Image.UnidentifiedImageError:
        if prefix.startswith((b"\x89PNG", b"\xff\xd8\xff")) or (prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP"):
            raise RequestError(f"{name} is not a readable image (a broken header).") from None
        other = next((fmt for magic, fmt in _OTHER_FORMATS if prefix.startswith(magic)), None)
        what = f"is a {other} image" if other else "is not an image"
        raise RequestError(f"{name} {what}: it must be {_FORMAT_NAMES}.") from None
    except Exception as exc:
        raise RequestError(_unreadable(name, exc)) from None
    width, height = image.size
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        raise RequestError(f"{name} is too small ({width}×{height}); it must be at least {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} pixels.")
    if width * height > settings.max_image_pixels:
        raise RequestError(f"{name} is too large ({width}×{height}); at most {settings.max_image_pixels:,} pixels.")
    return image


def _too_large(name: str, exc: Exception, settings: Settings) -> str:
    # PIL's own refusal gives the pixel count only ("Image size (144000000 pixels) exceeds limit of ...").
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f" ({int(found.group(1)):,} pixels)" if found else ""
    return f"{name} is too large{size}; at most {settings.max_image_pixels:,} pixels."


def _unreadable(name: str, exc: Exception) -> str:
    """What the user is told about a broken image; the decoder's own words (which may hold paths) go to the log."""
    log.info("%s could not be read: %s: %s", name, type(exc).__name__, exc)
    return f"{name} is not a readable image (the data is damaged or truncated)."


def image_header(data: Union[bytes, BinaryIO], name: str, settings: Settings) -> tuple[str, int, int]:
    """(format, width, height) of an upload from its header alone — no pixel is decoded — for a route to refuse what
    decode_image would (not an image, not PNG/JPEG/WebP, too small, too many pixels) before it keeps the bytes.
    A file object is read from its start and left at the position it was at."""
    fp = data if not isinstance(data, (bytes, bytearray, memoryview)) else io.BytesIO(data)
    start = fp.tell()
    try:
        image = _open_header(fp, name, settings)
        return image.format, image.size[0], image.size[1]
    finally:
        fp.seek(start)


def decode_image(data: bytes, name: str, settings: Settings) -> Image.Image:
    """Open uploaded bytes as an image: the header is checked first (PNG, JPEG or WebP; size within the limits), so a
    decompression bomb is refused before a single pixel is allocated; only then is it decoded."""
    image = _open_header(data, name, settings)
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RequestError(_too_large(name, exc, settings)) from None
    except Exception as exc:
        raise RequestError(_unreadable(name, exc)) from None
    return image


def _check_faces(request: GenerationRequest) -> None:
    if not isinstance(request.restore_faces, bool):
        raise RequestError("restore_faces must be true or false.")
    if request.face_restorer is not None and (not isinstance(request.face_restorer, str) or len(request.face_restorer) > MAX_NAME_CHARS):
        raise RequestError("face_restorer must be GFPGAN or CodeFormer.")
    weight = request.codeformer_weight
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or not 0 <= weight <= 1:
        raise RequestError(f"codeformer_weight must be a number from 0 to 1, got {weight!r}.")


def _check_output_options(request: GenerationRequest) -> None:
    """A user's own live preview settings and file name pattern."""
    if request.preview is not None and (not isinstance(request.preview, str) or request.preview not in PREVIEW_MODES):
        raise RequestError(f"preview must be one of {', '.join(PREVIEW_MODES)} (or left out for the server's setting), "
                           f"got {request.preview!r}.")
    if request.preview_every is not None:
        every = _int("preview_every", request.preview_every)
        if not 1 <= every <= MAX_PREVIEW_EVERY:
            raise RequestError(f"preview_every must be between 1 and {MAX_PREVIEW_EVERY} steps (or left out for the "
                               f"server's setting), got {every}.")
    inspect = request.inspect
    if not isinstance(inspect, tuple) or any(not isinstance(v, str) or v not in INSPECTABLE for v in inspect) or len(set(inspect)) != len(inspect):
        raise RequestError(f"inspect must be a list of distinct names from {', '.join(INSPECTABLE)}, got {inspect!r:.200}.")
    pattern = request.filename_pattern
    if not isinstance(pattern, str) or len(pattern) > MAX_NAME_CHARS:
        raise RequestError(f"filename_pattern must be text of at most {MAX_NAME_CHARS} characters.")
    unknown = unknown_filename_tokens(pattern)
    if unknown:
        raise RequestError(f"filename_pattern: unknown {', '.join(f'[{token}]' for token in unknown)[:MAX_NAME_CHARS]}; "
                           f"the known tokens are {' '.join(f'[{token}]' for token in FILENAME_TOKENS)}.")


def job_preview(request: GenerationRequest, settings: Settings) -> tuple[str, int]:
    """A job's live preview mode and interval: the request's, else the server's. The interval's default (1; 5 for
    the full VAE) stays Settings.preview_interval's rule, asked with the job's own values."""
    mode = request.preview or settings.preview
    every = request.preview_every or settings.preview_every
    return mode, int(replace(settings, preview=mode, preview_every=every).preview_interval())


def _check_inpainting(request: GenerationRequest, settings: Settings) -> None:
    """A1111's inpainting options: masked content by index, the inpaint area, the only-masked padding."""
    from .inpainting import MASKED_CONTENT

    fill = request.inpainting_fill
    if isinstance(fill, bool) or not isinstance(fill, int) or not 0 <= fill < len(MASKED_CONTENT):
        choices = ", ".join(f"{i} ({name})" for i, name in enumerate(MASKED_CONTENT))
        raise RequestError(f"inpainting_fill must be one of {choices}; got {fill!r}.")
    if not isinstance(request.inpaint_full_res, bool):
        raise RequestError("inpaint_full_res must be true (only masked) or false (whole picture).")
    padding = _int("inpaint_full_res_padding", request.inpaint_full_res_padding)
    if not 0 <= padding <= settings.max_size:
        raise RequestError(f"inpaint_full_res_padding must be between 0 and {settings.max_size} pixels, got {padding}.")
