"""Pictures the scripts make from generated ones, laid out as A1111 lays them out (its modules/images.py):

- image_grid: pictures in rows, each in a cell as big as the biggest picture;
- annotate: a grid with labels across the top (one column each) and down the left side (one row each), margins
  between the cells; a label line may be "inactive" (grey, struck through: the prompt matrix's parts left out);
- tile_layout / cut_tiles / join_tiles: SD upscale's overlapping tiles, and their blend back into one picture.

Sizes follow A1111: font size (cell width + cell height) // 25 (at least MIN_FONT_SIZE here, so small cells stay
readable), the left labels' column 3/4 of a cell wide, the top band as tall as the tallest label plus a line."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

MIN_FONT_SIZE = 10
ACTIVE, INACTIVE = (0, 0, 0), (153, 153, 153)


@dataclass(frozen=True)
class Label:
    text: str
    active: bool = True


def image_grid(images: list[Image.Image], rows: int) -> Image.Image:
    """`images` row by row in `rows` rows (columns: as many as needed), each cell the size of the biggest image."""
    rows = max(1, min(rows, len(images)))
    cols = math.ceil(len(images) / rows)
    width, height = (max(sizes) for sizes in zip(*(image.size for image in images)))
    grid = Image.new("RGB", (cols * width, rows * height), "black")
    for index, image in enumerate(images):
        grid.paste(image, (index % cols * width, index // cols * height))
    return grid


@lru_cache(maxsize=16)
def label_font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's scalable default font (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if not line or draw.textlength(candidate, font=font) <= width:
            line = candidate
        else:
            lines.append(line)
            line = word
    return lines + ([line] if line else [])


def _layout(draw, groups: list[list[Label]], font, width: int) -> list[list[tuple[Label, int, int]]]:
    """Each group's labels wrapped to `width`, with each line's (label, width, height)."""
    laid = []
    for labels in groups:
        lines = []
        for label in labels:
            for text in _wrap(draw, label.text, font, max(width, 1)) if label.text else []:
                left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
                lines.append((Label(text, label.active), right - left, bottom - top))
        laid.append(lines)
    return laid


def _height(lines, spacing: int) -> int:
    return max(0, sum(h + spacing for _, _, h in lines) - spacing)


def _draw_lines(draw, x: float, y: float, lines, font, font_size: int, spacing: int) -> None:
    for label, width, height in lines:
        colour = ACTIVE if label.active else INACTIVE
        draw.text((x, y + height / 2), label.text, font=font, fill=colour, anchor="mm")
        if not label.active:
            draw.line((x - width / 2, y + height / 2, x + width / 2, y + height / 2), fill=colour, width=max(1, font_size // 8))
        y += height + spacing


def annotate(grid: Image.Image, cell_w: int, cell_h: int, top: list[list[Label]], left: list[list[Label]],
             margin: int = 0) -> Image.Image:
    """`grid` (len(top) columns × len(left) rows of cell_w × cell_h) with its labels and `margin` pixels between
    cells, on white."""
    cols, rows = len(top), len(left)
    font_size = max(MIN_FONT_SIZE, (cell_w + cell_h) // 25)
    spacing = font_size // 2
    font = label_font(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad_left = cell_w * 3 // 4 if any(label.text for labels in left for label in labels) else 0
    top_lines = _layout(measure, top, font, cell_w)
    left_lines = _layout(measure, left, font, pad_left)
    top_heights = [_height(lines, spacing) for lines in top_lines]
    pad_top = max(top_heights) + spacing * 2 if any(top_heights) else 0
    result = Image.new("RGB", (cols * cell_w + pad_left + margin * (cols - 1), rows * cell_h + pad_top + margin * (rows - 1)), "white")
    for row in range(rows):
        for col in range(cols):
            cell = grid.crop((cell_w * col, cell_h * row, cell_w * (col + 1), cell_h * (row + 1)))
            result.paste(cell, (pad_left + (cell_w + margin) * col, pad_top + (cell_h + margin) * row))
    draw = ImageDraw.Draw(result)
    for col, lines in enumerate(top_lines):
        x = pad_left + (cell_w + margin) * col + cell_w / 2
        _draw_lines(draw, x, pad_top / 2 - top_heights[col] / 2, lines, font, font_size, spacing)
    for row, lines in enumerate(left_lines):
        y = pad_top + (cell_h + margin) * row + cell_h / 2 - _height(lines, spacing) / 2
        _draw_lines(draw, pad_left / 2, y, lines, font, font_size, spacing)
    return result


def labelled_grid(images: list[Image.Image], rows: int, top: list[list[Label]], left: list[list[Label]],
                  margin: int = 0, legend: bool = True) -> Image.Image:
    """image_grid, annotated with `top` / `left` when `legend` (A1111's draw_legend; margins come with the legend)."""
    grid = image_grid(images, rows)
    if not legend:
        return grid
    width, height = (max(sizes) for sizes in zip(*(image.size for image in images)))
    return annotate(grid, width, height, top, left, margin)


def prompt_matrix_labels(parts: list[str]) -> tuple[list[list[Label]], list[list[Label]]]:
    """A1111's draw_prompt_matrix labels: the first half of the optional parts across the top, the rest down the
    side; each column / row shows every part, active where that combination includes it."""
    optional = parts[1:]
    boundary = math.ceil(len(optional) / 2)
    across, down = optional[:boundary], optional[boundary:]
    top = [[Label(text, pos & (1 << i) != 0) for i, text in enumerate(across)] for pos in range(1 << len(across))]
    left = [[Label(text, pos & (1 << i) != 0) for i, text in enumerate(down)] for pos in range(1 << len(down))]
    return top, left


# ---- SD upscale's tiles (A1111's split_grid / combine_grid)


@dataclass(frozen=True)
class TileLayout:
    width: int
    height: int
    tile_w: int
    tile_h: int
    overlap: int
    rows: tuple[tuple[int, tuple[int, ...]], ...]  # (y, (x, x, ...)) per row of tiles

    @property
    def count(self) -> int:
        return sum(len(xs) for _, xs in self.rows)


def _starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1) if count > 1 else 0
    return tuple(min(int(i * step), length - tile) for i in range(count))


def tile_layout(width: int, height: int, tile_w: int, tile_h: int, overlap: int) -> TileLayout:
    """Where the tiles of a width × height picture go (needs tile_w <= width, tile_h <= height, overlap < tiles)."""
    xs = _starts(width, tile_w, overlap)
    return TileLayout(width, height, tile_w, tile_h, overlap, tuple((y, xs) for y in _starts(height, tile_h, overlap)))


def cut_tiles(image: Image.Image, layout: TileLayout) -> list[Image.Image]:
    return [image.crop((x, y, x + layout.tile_w, y + layout.tile_h)) for y, xs in layout.rows for x in xs]


def _ramp(length: int, across: int, horizontal: bool) -> Image.Image:
    """A mask rising from 0 to 255 over `length` pixels (left to right, or top to bottom), `across` pixels wide."""
    values = bytes(int(i * 255 / length) for i in range(length))
    if horizontal:
        return Image.frombytes("L", (length, 1), values).resize((length, across), Image.Resampling.NEAREST)
    return Image.frombytes("L", (1, length), values).resize((across, length), Image.Resampling.NEAREST)


def join_tiles(layout: TileLayout, tiles: list[Image.Image]) -> Image.Image:
    """The tiles back into one picture, each blended into the one before it over `overlap` pixels."""
    overlap, tiles = layout.overlap, iter(tiles)
    combined = Image.new("RGB", (layout.width, layout.height))
    ramp_x = _ramp(overlap, layout.tile_h, True) if overlap else None
    ramp_y = _ramp(overlap, layout.width, False) if overlap else None
    for y, xs in layout.rows:
        row = Image.new("RGB", (layout.width, layout.tile_h))
        for x in xs:
            tile = next(tiles).convert("RGB")
            if x == 0 or not overlap:
                row.paste(tile, (x, 0))
                continue
            row.paste(tile.crop((0, 0, overlap, layout.tile_h)), (x, 0), mask=ramp_x)
            row.paste(tile.crop((overlap, 0, layout.tile_w, layout.tile_h)), (x + overlap, 0))
        if y == 0 or not overlap:
            combined.paste(row, (0, y))
            continue
        combined.paste(row.crop((0, 0, layout.width, overlap)), (0, y), mask=ramp_y)
        combined.paste(row.crop((0, overlap, layout.width, layout.tile_h)), (0, y + overlap))
    return combined
