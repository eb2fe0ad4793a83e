"""Step frames → one PNG "contact sheet" of the diffusion, step by step: a row per chosen step with the x0 estimate,
the noisy latent and its 4 channels side by side, as in the seed articles' figure. Plain Pillow (no torch, no web
framework), like animation.py, so the route that serves it stays thin and the layout is testable on its own."""

from __future__ import annotations

import io
from typing import Callable, Sequence

from PIL import Image, ImageDraw, ImageFont

COLUMNS = ("x0 estimate", "noisy latent", "channel 1", "channel 2", "channel 3", "channel 4")
BACKGROUND = (246, 245, 241)
INK = (34, 34, 34)
MARGIN = 8  # around the sheet
GAP = 4  # between cells
TEXT_SIZE = 15
TEXT_PAD = 6  # above and below a line of text


def contact_sheet_png(frames: Sequence, title: str = "", max_rows: int = 10, cell: int = 128,
                      extra_columns: Sequence[tuple[str, Callable]] = ()) -> bytes:
    """The PNG bytes of a contact sheet of previews.StepFrames: a header row of column labels, then one row per
    chosen step (at most `max_rows`, evenly spread, always the first and the last) labelled "Step k/N", each
    picture fitted into a `cell`×`cell` square; `title` (the prompt) on top, cut with "…" to fit the width.
    extra_columns: (label, frame → encoded picture) pairs after the six, such as a word's attention at that step."""
    if not frames:
        raise ValueError("no step frames for a contact sheet.")
    rows = [frames[i] for i in spread_indices(len(frames), max_rows)]
    font, ellipsis = _font()
    labels = [f"Step {frame.step}/{frame.total}" for frame in rows]
    label_width = max(_text_width(font, text) for text in labels) + 2 * TEXT_PAD
    line_height = _line_height(font)
    grid_left = MARGIN + label_width
    columns = list(COLUMNS) + [label for label, _ in extra_columns]
    width = grid_left + len(columns) * (cell + GAP) - GAP + MARGIN
    title_height = line_height if title else 0
    grid_top = MARGIN + title_height + line_height  # below the title and the header row
    height = grid_top + len(rows) * (cell + GAP) - GAP + MARGIN

    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        text = _fitted(" ".join(title.split()), font, width - 2 * MARGIN, ellipsis)
        draw.text((MARGIN, MARGIN + TEXT_PAD), text, fill=INK, font=font)
    header_top = MARGIN + title_height + TEXT_PAD
    for column, name in enumerate(columns):
        left = grid_left + column * (cell + GAP)
        name = _fitted(name, font, cell, ellipsis)
        draw.text((left + (cell - _text_width(font, name)) // 2, header_top), name, fill=INK, font=font)
    for row, (frame, label) in enumerate(zip(rows, labels)):
        top = grid_top + row * (cell + GAP)
        draw.text((MARGIN, top + (cell - line_height) // 2 + TEXT_PAD), label, fill=INK, font=font)
        for column, jpeg in enumerate((frame.x0, frame.noisy, *frame.channels, *(draw_one(frame) for _, draw_one in extra_columns))):
            picture = _fitted_picture(jpeg, cell)
            left = grid_left + column * (cell + GAP)
            sheet.paste(picture, (left + (cell - picture.width) // 2, top + (cell - picture.height) // 2))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")  # optimize=True saves ~1% on photos and costs half again the time
    return buffer.getvalue()


def spread_indices(count: int, limit: int) -> list[int]:
    """At most `limit` indices into `count` items, evenly spread, always the first and the last, none twice."""
    if limit < 2:
        raise ValueError("a contact sheet needs room for at least 2 rows (the first step and the last).")
    if count <= limit:
        return list(range(count))
    # The spacing (count-1)/(limit-1) is over 1, so rounded positions strictly increase: no index repeats.
    return [round(i * (count - 1) / (limit - 1)) for i in range(limit)]


def _fitted_picture(jpeg: bytes, cell: int) -> Image.Image:
    with Image.open(io.BytesIO(jpeg)) as image:
        picture = image.convert("RGB")
    scale = cell / max(picture.size)  # keep the aspect: the longer side fills the cell
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.LANCZOS)


def _font():
    """The bundled font at a readable size, and its ellipsis; old Pillow without FreeType has only a small bitmap
    font, which cannot draw "…"."""
    try:
        return ImageFont.load_default(size=TEXT_SIZE), "…"
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default(), "..."


def _text_width(font, text: str) -> int:
    return round(font.getlength(text))


def _line_height(font) -> int:
    bottom = font.getbbox("Step 8/8 hgjy")[3]  # ascenders and descenders both
    return bottom + 2 * TEXT_PAD


def _fitted(text: str, font, width: int, ellipsis: str) -> str:
    """`text`, cut at the end with an ellipsis where it is wider than `width`."""
    if _text_width(font, text) <= width:
        return text
    while text and _text_width(font, text + ellipsis) > width:
        text = text[:-1]
    return text.rstrip() + ellipsis
