"""A1111's inpainting options and outpainting, on pictures.

- "Inpaint area: Only masked" (inpaint_full_res): the blurred mask's bounding box, widened by the padding
  (A1111 1.10 masking.get_crop_region_v2), then grown to the job's width:height aspect inside the picture
  (masking.expand_crop_region); that crop is drawn at the job's size (images.resize_image mode 2, "resize and fill")
  and pasted back into the whole picture through the mask (processing.apply_overlay with paste_loc).
- "Masked content" (inpainting_fill): 0 fill — the masked area painted with colours blurred from around it
  (masking.fill), 1 original, 2 latent noise and 3 latent nothing — the masked area of the init latents replaced by
  the seed's noise or by zeros (StableDiffusionProcessingImg2Img.init); fill, latent noise and latent nothing all
  start from the filled picture, as in A1111.
- Outpainting: `outpaint_canvas` makes the larger picture and its mask; an inpaint job on them draws the new area.

PIL and numpy at import; `latent_start` (the latent fills, on a diffusers pipeline) imports torch when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from .contract import RequestError

MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")  # A1111's inpainting_fill, by index
FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = range(4)
OUTPAINT_FILLS = ("edge", "fill", "black")

Box = tuple[int, int, int, int]  # (x1, y1, x2, y2), x2 and y2 exclusive, as PIL's crop


@dataclass(frozen=True)
class PasteBack:
    """What an inpainted picture goes back into: the picture as given (never filled), the blurred mask at its size,
    and where the job's crop came from (None: the job drew the whole picture)."""

    image: Image.Image
    mask: Image.Image
    crop: Optional[Box] = None


# ---- Inpaint area: only masked


def crop_region(mask: Image.Image, padding: int) -> Optional[Box]:
    """The box holding every non-black pixel of `mask`, widened by `padding` on each side within the picture; None
    for an all-black mask (A1111's get_crop_region_v2)."""
    box = mask.convert("L").getbbox()
    if box is None or not padding:
        return box
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def expand_crop_region(box: Box, width: int, height: int, image_width: int, image_height: int) -> Box:
    """`box` grown to the width:height aspect, centred, shifted back inside the picture and clipped to it (A1111's
    expand_crop_region, integer arithmetic included)."""
    x1, y1, x2, y2 = box
    ratio_crop, ratio_job = (x2 - x1) / (y2 - y1), width / height
    if ratio_crop > ratio_job:
        y1, y2 = _grown(y1, y2, int((x2 - x1) / ratio_job - (y2 - y1)), image_height)
    else:
        x1, x2 = _grown(x1, x2, int((y2 - y1) * ratio_job - (x2 - x1)), image_width)
    return x1, y1, x2, y2


def _grown(low: int, high: int, grow: int, limit: int) -> tuple[int, int]:
    """The span [low, high) grown by `grow` (half each side), shifted back inside [0, limit), cut at the limit."""
    low, high = low - grow // 2, high + grow - grow // 2
    if high >= limit:
        low, high = low - (high - limit), limit
    if low < 0:
        low, high = 0, high - low
    return low, min(high, limit)


def resize_and_fill(image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's resize mode 2: the picture fitted inside width × height (Lanczos), the bands left over filled by
    stretching its edge rows or columns. An RGB picture (a mask comes back as RGB grey, as in A1111)."""
    ratio, src_ratio = width / height, image.width / image.height
    src_w = width if ratio < src_ratio else image.width * height // image.height
    src_h = height if ratio >= src_ratio else image.height * width // image.width
    resized = image.resize((src_w, src_h), Image.LANCZOS)
    result = Image.new("RGB", (width, height))
    result.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if ratio < src_ratio:
        band = height // 2 - src_h // 2
        if band > 0:
            result.paste(resized.resize((width, band), box=(0, 0, width, 0)), box=(0, 0))
            result.paste(resized.resize((width, band), box=(0, resized.height, width, resized.height)), box=(0, band + src_h))
    elif ratio > src_ratio:
        band = width // 2 - src_w // 2
        if band > 0:
            result.paste(resized.resize((band, height), box=(0, 0, 0, height)), box=(0, 0))
            result.paste(resized.resize((band, height), box=(resized.width, 0, resized.width, height)), box=(band + src_w, 0))
    return result


def resize_and_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's resize mode 1: the picture covering width × height (Lanczos), centred, the overflow cut off."""
    ratio, src_ratio = width / height, image.width / image.height
    src_w = width if ratio > src_ratio else image.width * height // image.height
    src_h = height if ratio <= src_ratio else image.height * width // image.width
    result = Image.new("RGB", (width, height))
    result.paste(image.resize((src_w, src_h), Image.LANCZOS), box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    return result


@dataclass(frozen=True)
class MaskedCrop:
    box: Box  # in the picture as given
    image: Image.Image  # the crop at the job's size
    mask: Image.Image  # the blurred mask's crop at the job's size ("L")


def only_masked(image: Image.Image, blurred_mask: Image.Image, width: int, height: int, padding: int) -> Optional[MaskedCrop]:
    """The crop A1111's "Only masked" draws at width × height, from the picture and its blurred mask (same size);
    None when the mask is all black."""
    box = crop_region(blurred_mask, padding)
    if box is None:
        return None
    box = expand_crop_region(box, width, height, image.width, image.height)
    crop = resize_and_fill(image.crop(box), width, height)
    mask = resize_and_fill(blurred_mask.crop(box), width, height).convert("L")
    return MaskedCrop(box, crop, mask)


def paste_into(original: Image.Image, mask: Image.Image, image: Image.Image, box: Box) -> Image.Image:
    """The drawn crop scaled back to `box` (resize mode 1) and put into the original picture, whose pixels stay
    wherever the (blurred) mask is black (A1111's apply_overlay with paste_loc). The original picture's size."""
    x1, y1, x2, y2 = box
    base = Image.new("RGBA", original.size)
    base.paste(resize_and_crop(image.convert("RGB"), x2 - x1, y2 - y1), (x1, y1))
    overlay = Image.new("RGBa", original.size)
    overlay.paste(original.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    base.alpha_composite(overlay.convert("RGBA"))
    return base.convert("RGB")


# ---- Masked content


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's masking.fill: the masked area painted with the colours around it, blurred at falling radii; the
    unmasked pixels stay as they are."""
    filled = Image.new("RGBA", image.size)
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            filled.alpha_composite(blurred)
    return filled.convert("RGB")


def latent_mask(mask: Image.Image, width: int, height: int) -> np.ndarray:
    """The mask at latent size as A1111 uses it for the latent fills: resized (bicubic), 0..1, rounded."""
    resized = mask.convert("L").resize((width, height), Image.BICUBIC)
    return np.around(np.asarray(resized, dtype=np.float32) / 255.0)


def latent_start(pipe, image: Image.Image, mask: Image.Image, seeds: list[int], noise: bool) -> dict:
    """A1111's latent noise (noise=True) / latent nothing as arguments of a diffusers inpaint call: the init picture
    encoded by the pipeline's VAE (sampled with the first seed's generator, as diffusers encodes it), its masked area
    (latent_mask) replaced by each image's seed noise — the very noise diffusers then starts that image from, as
    A1111's is — or by zeros. diffusers takes 4-channel `image` latents as they are and noises them for the strength;
    `masked_image_latents` is an inpainting model's conditioning (the masked picture, encoded) and must be given
    with latents anyway (diffusers would otherwise mask the latents as a picture). Call it with the job's VAE on."""
    import torch

    from .noise import batch_latents
    from .pipelines import encode_pixels, execution_device

    device, dtype, scale = execution_device(pipe), pipe.unet.dtype, pipe.vae_scale_factor
    width, height = image.size
    generator = torch.Generator("cpu").manual_seed(int(seeds[0]))
    pixels = pipe.image_processor.preprocess(image, height=height, width=width)
    latents = encode_pixels(pipe, pixels, generator, device)
    repaint = torch.from_numpy(latent_mask(mask, width // scale, height // scale)).to(device)[None, None]
    start = latents * (1 - repaint)
    if noise:
        drawn = batch_latents(seeds, None, 0.0, width, height, latent_channels=latents.shape[1], vae_scale=scale, dtype=dtype)
        start = start + drawn.to(device=device, dtype=start.dtype) * repaint
    if pipe.unet.config.in_channels == 9:
        condition = pipe.mask_processor.preprocess(mask, height=height, width=width)
        masked = encode_pixels(pipe, pixels * (condition < 0.5), generator, device)
    else:
        masked = start
    return dict(image=start.to(dtype), masked_image_latents=masked.to(dtype))


# ---- Outpainting


def outpaint_canvas(image: Image.Image, left: int = 0, right: int = 0, up: int = 0, down: int = 0, *, max_size: int,
                    fill: str = "edge", overlap: int = 8) -> tuple[Image.Image, Image.Image]:
    """(canvas, mask) for outpainting: the picture extended by left/right/up/down pixels (each a multiple of 8; the
    canvas at most max_size a side), the new area filled — "edge": its edge colours stretched outwards and blurred
    (A1111's "Poor man's outpainting" then fills it with masked content "fill"; this start keeps the edge's colours
    and structure); "fill": A1111's masking.fill; "black": left black — and a mask white over the new area and
    `overlap` pixels into the picture on each extended side, so the seam is repainted. An inpaint job on the two
    (the canvas's size, whole picture) outpaints; the picture away from the seam comes back untouched."""
    sides = _outpaint_sides(left, right, up, down)
    if fill not in OUTPAINT_FILLS:
        raise RequestError(f"The outpainting fill must be one of {', '.join(OUTPAINT_FILLS)}, got {fill!r}.")
    image = image.convert("RGB")
    left, right, up, down = sides
    width, height = image.width + left + right, image.height + up + down
    if max(width, height) > max_size:
        raise RequestError(f"The outpainted picture would be {width}×{height}, over the server's limit of {max_size} a side.")
    overlap = max(0, int(overlap))
    mask = Image.new("L", (width, height), 255)
    inner = (left + (overlap if left else 0), up + (overlap if up else 0),
             left + image.width - (overlap if right else 0), up + image.height - (overlap if down else 0))
    if inner[0] < inner[2] and inner[1] < inner[3]:
        ImageDraw.Draw(mask).rectangle((inner[0], inner[1], inner[2] - 1, inner[3] - 1), fill=0)
    return _outpaint_fill(image, sides, fill), mask


def _outpaint_sides(*sides) -> tuple[int, int, int, int]:
    names = ("left", "right", "up", "down")
    for name, value in zip(names, sides):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value % 8:
            raise RequestError(f"Outpainting {name} must be a whole number of pixels, a multiple of 8, 0 or more; got {value!r}.")
    if not any(sides):
        raise RequestError("Outpainting needs at least one side to extend (left, right, up or down).")
    return tuple(int(v) for v in sides)


def _outpaint_fill(image: Image.Image, sides: tuple[int, int, int, int], fill: str) -> Image.Image:
    """The canvas: the picture at (left, up), the new area as `fill` says."""
    left, right, up, down = sides
    if fill == "edge":
        stretched = Image.fromarray(np.pad(np.asarray(image), ((up, down), (left, right), (0, 0)), mode="edge"))
        canvas = stretched.filter(ImageFilter.GaussianBlur(max(4, max(sides) // 4)))
    else:
        canvas = Image.new("RGB", (image.width + left + right, image.height + up + down))
    canvas.paste(image, (left, up))
    if fill == "fill":
        known = Image.new("L", canvas.size, 255)
        known.paste(0, (left, up, left + image.width, up + image.height))
        canvas = fill_masked(canvas, known)
    return canvas
