"""Step frames → an animated GIF or WebP, in memory. Plain Pillow (no torch, no web framework), so the studio
route that serves it stays thin and the encoding is testable on its own."""

from __future__ import annotations

import io
from typing import Sequence

from PIL import Image

FORMATS = {"gif": "image/gif", "webp": "image/webp"}
FRAME_MS = 120
HOLD_LAST_MS = 1200  # the finished picture stays up a moment before the loop restarts


def animation_bytes(jpegs: Sequence[bytes], fmt: str, frame_ms: int = FRAME_MS, hold_last_ms: int = HOLD_LAST_MS) -> bytes:
    """One looping animation of the given JPEG frames, as `fmt` ("gif" or "webp") file bytes."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"animation format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    if not jpegs:
        raise ValueError("no frames to animate.")
    images = [_rgb(data) for data in jpegs]
    size = images[0].size
    images = [im if im.size == size else im.resize(size, Image.BILINEAR) for im in images]
    durations = [frame_ms] * (len(images) - 1) + [hold_last_ms]
    buffer = io.BytesIO()
    options = dict(save_all=True, append_images=images[1:], duration=durations, loop=0)
    if fmt == "gif":
        images[0].save(buffer, format="GIF", optimize=False, **options)
    else:
        images[0].save(buffer, format="WEBP", quality=90, **options)
    return buffer.getvalue()


def _rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
