"""A judge for the demo model's 128×128 pictures: which named colour the background is, which objects stand out from
it (colour, shape, where), and whether that is what a prompt in the demo grammar asked for. Measured from pixels
only (numpy, Pillow, scipy.ndimage for connected components), and meant for a model's blurry, noisy outputs, so it
smooths first, finds edges halfway between background and object colour, and keeps its shape thresholds wide."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from studio.demo.scenes import CANVAS, COLOURS, parse_prompt

BORDER = 4  # px of the picture's edge the background colour is read from
OBJECT_DISTANCE = 40  # RGB distance from the background that marks a pixel as object (named colours are ≥ 80 apart)
MIN_OBJECT_AREA = 60  # px; the smallest object drawn (a small star) covers about 180
MAX_OBJECTS = 2
SIDE_LOW, SIDE_HIGH = 48, 80  # x (or y) below 48 is left (top), above 80 right (bottom), else the centre column (row)
# Shape features and their ideal values, from the geometry (y down, star inner radius 0.45):
#            fill (area / bounding box)   solidity (area / convex hull)   drop (centroid's height in its box, from top)
#  square    1.0                          1.0                             0.5
#  circle    π/4 ≈ 0.785                  1.0                             0.5
#  triangle  0.5                          1.0                             2/3
#  star      ≈ 0.38                       ≈ 0.56                          ≈ 0.55
# Blur rounds corners and fattens arms: measured on renders blurred (radius 1.5) and noised (σ 10), a small square's
# fill falls to 0.91, a circle's stays 0.72–0.84, a triangle's rises to 0.67 and a small star's solidity to 0.82.
# So: fill above 0.88 is a square, above 0.70 a circle; below that a triangle or a star, told apart by how far
# solidity and drop have moved from the star's ideal toward the triangle's (each 0–1, summed; a triangle sums ≈ 2).
SQUARE_FILL, CIRCLE_FILL = 0.88, 0.70
STAR_IDEAL, TRIANGLE_IDEAL = {"solidity": 0.56, "drop": 0.555}, {"solidity": 1.0, "drop": 2 / 3}
TRIANGLE_LIKENESS = 1.0  # above: triangle


_NAMES = list(COLOURS)
_NAMED_RGB = np.array(list(COLOURS.values()), dtype=float)


def colour_name(rgb) -> str:
    """The named colour nearest to `rgb` by the "redmean" weighted RGB distance, a cheap perceptual approximation:
    it spreads the named colours' closest pairs (blue/purple, orange/yellow, red/orange) most evenly. (CIELAB's
    ΔE76 puts blue and purple much closer than any other pair.)"""
    rgb = np.asarray(rgb, dtype=float)
    red_mean = (_NAMED_RGB[:, 0] + rgb[0]) / 2
    d = _NAMED_RGB - rgb
    distance = (2 + red_mean / 256) * d[:, 0] ** 2 + 4 * d[:, 1] ** 2 + (2 + (255 - red_mean) / 256) * d[:, 2] ** 2
    return _NAMES[int(np.argmin(distance))]


def position_word(centre: tuple[float, float]) -> str:
    """The grammar's position word for a point: "top left", "left", "center", ..."""
    x, y = centre
    column = "left" if x < SIDE_LOW else "right" if x > SIDE_HIGH else ""
    row = "top" if y < SIDE_LOW else "bottom" if y > SIDE_HIGH else ""
    return f"{row} {column}".strip() or "center"


def position_matches(word: str, centre: tuple[float, float]) -> bool:
    """Whether a point is where a position word says, on the axes the word names only: "left" checks x, "top left"
    checks both, "center" wants both centred."""
    found = position_word(centre)
    if word == "center":
        return found == "center"
    axes = {"left": "x", "right": "x", "top": "y", "bottom": "y"}
    found_by_axis = {axes[part]: part for part in found.split() if part in axes}
    return all(found_by_axis.get(axes[part]) == part for part in word.split())


@dataclass
class Found:
    """One object the judge sees. centre is the bounding box's (the grammar places boxes; a triangle's centroid sits a
    sixth of its height below its box centre, which would move a large top triangle into the middle row)."""

    colour: str
    rgb: tuple[int, int, int]
    shape: str
    centre: tuple[float, float]
    centroid: tuple[float, float]
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 inclusive
    area: int
    fill: float
    solidity: float
    drop: float

    @property
    def position(self) -> str:
        return position_word(self.centre)


@dataclass
class Verdict:
    background: str
    background_rgb: tuple[int, int, int]
    objects: list[Found] = field(default_factory=list)  # largest first


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of (x, y) points: Andrew's monotone chain, then the shoelace formula."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) < 3:
        return 0.0

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(chain_points):
        chain = []
        for p in chain_points:
            while len(chain) >= 2 and cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    hull = np.array(half(pts) + half(reversed(pts)), dtype=float)
    x, y = hull[:, 0], hull[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def classify_shape(fill: float, solidity: float, drop: float) -> str:
    """The shape whose features these are (see the table above SQUARE_FILL)."""
    if fill > SQUARE_FILL:
        return "square"
    if fill > CIRCLE_FILL:
        return "circle"
    measured = {"solidity": solidity, "drop": drop}
    likeness = sum((measured[k] - STAR_IDEAL[k]) / (TRIANGLE_IDEAL[k] - STAR_IDEAL[k]) for k in measured)
    return "triangle" if likeness > TRIANGLE_LIKENESS else "star"


def _own_colour(pixels: np.ndarray, background: np.ndarray) -> np.ndarray:
    """An object's colour: the median of its half farthest from the background, as its edge pixels (all of a small
    blurred star's arms) are mixed with the background."""
    distance = np.linalg.norm(pixels - background, axis=-1)
    return np.median(pixels[distance >= np.median(distance)], axis=0)


def _measure(mask: np.ndarray, pixels: np.ndarray, background: np.ndarray) -> Found:
    """The object a boolean mask covers, described."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    area = int(mask.sum())
    rows = np.unique(ys)
    left = np.array([xs[ys == r].min() for r in rows])
    right = np.array([xs[ys == r].max() + 1 for r in rows])
    # Hull over pixel corners (each row's outermost pixels) so it is comparable with the pixel count.
    corners = np.concatenate([np.stack([edge, rows + dy], axis=1) for edge in (left, right) for dy in (0, 1)])
    solidity = area / max(_hull_area(corners), 1.0)
    fill = area / ((x1 - x0 + 1) * (y1 - y0 + 1))
    drop = (float(ys.mean()) + 0.5 - y0) / (y1 - y0 + 1)
    rgb = _own_colour(pixels[mask], background)
    return Found(
        colour=colour_name(rgb), rgb=tuple(int(v) for v in rgb), shape=classify_shape(fill, solidity, drop),
        centre=((x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2), centroid=(float(xs.mean()) + 0.5, float(ys.mean()) + 0.5),
        bbox=(x0, y0, x1, y1), area=area, fill=fill, solidity=solidity, drop=drop,
    )


def _refined(component: np.ndarray, pixels: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The component's mask redrawn where pixels are at least halfway from the background to its own colour: the true
    edge of a blurred shape, whatever the contrast (a fixed threshold would fatten dark-on-light shapes)."""
    direction = _own_colour(pixels[component], background) - background
    share = (pixels - background) @ direction / max(float(direction @ direction), 1.0)
    near = ndimage.binary_dilation(component, iterations=3)
    labels, _ = ndimage.label(near & (share > 0.5))
    overlap = np.bincount(labels[component], minlength=labels.max() + 1)
    overlap[0] = 0
    return labels == int(np.argmax(overlap)) if overlap.max() else component


def judge(image: Image.Image) -> Verdict:
    """What a picture shows: background colour (median of the border), and up to two objects, largest first."""
    image = image.convert("RGB")
    if image.size != (CANVAS, CANVAS):
        image = image.resize((CANVAS, CANVAS), Image.LANCZOS)
    pixels = np.asarray(image.filter(ImageFilter.MedianFilter(3)), dtype=float)  # noise off, edges kept
    border = np.ones(pixels.shape[:2], bool)
    border[BORDER:-BORDER, BORDER:-BORDER] = False
    background = np.median(pixels[border], axis=0)
    standing_out = np.linalg.norm(pixels - background, axis=-1) > OBJECT_DISTANCE
    labels, count = ndimage.label(ndimage.binary_opening(standing_out))  # 3×3 opening: specks of noise off
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    objects = []
    for index in np.argsort(-areas)[:MAX_OBJECTS]:
        if areas[index] < MIN_OBJECT_AREA:
            break
        mask = _refined(labels == index + 1, pixels, background)
        if mask.sum() >= MIN_OBJECT_AREA:
            objects.append(_measure(mask, pixels, background))
    objects.sort(key=lambda found: -found.area)
    return Verdict(colour_name(background), tuple(int(v) for v in background), objects)


def _agreement(named: dict, found: Optional[Found]) -> dict:
    if found is None:
        return {"colour": False, "shape": False, "position": False if named["position"] else None}
    return {
        "colour": found.colour == named["colour"],
        "shape": found.shape == named["shape"],
        "position": position_matches(named["position"], found.centre) if named["position"] else None,
    }


def score(prompt: str, image: Image.Image) -> dict:
    """Whether a picture shows what a grammar prompt asks: {"background", "colour", "shape": bool, "position": bool,
    or None when the prompt names no position}. Named objects are paired with found ones the way that agrees most
    (two objects may share a colour, so position counts as much as colour); every named object must agree."""
    wanted = parse_prompt(prompt)
    if wanted is None:
        raise ValueError(f"not a prompt of the demo grammar: {prompt!r}")
    verdict = judge(image)
    candidates = verdict.objects + [None] * len(wanted["objects"])
    best = max(
        ([_agreement(named, found) for named, found in zip(wanted["objects"], pairing)]
         for pairing in itertools.permutations(candidates, len(wanted["objects"]))),
        key=lambda agreements: sum(bool(v) for a in agreements for v in a.values()),
    )
    positions = [a["position"] for a in best if a["position"] is not None]
    return {
        "background": verdict.background == wanted["background"],
        "colour": all(a["colour"] for a in best),
        "shape": all(a["shape"] for a in best),
        "position": all(positions) if positions else None,
    }


CRITERIA = {"background": "background colour", "colour": "object colour", "position": "position", "shape": "shape"}


def quality_table(results: list[dict]) -> str:
    """A Markdown table of how often each criterion was met across score() results (position: prompts naming one)."""
    lines = ["| Criterion | Share met | Count |", "|---|---:|---:|"]
    for key, label in CRITERIA.items():
        judged = [r[key] for r in results if r.get(key) is not None]
        share = f"{100 * sum(judged) / len(judged):.1f}%" if judged else "–"
        lines.append(f"| {label} | {share} | {sum(judged)} / {len(judged)} |")
    return "\n".join(lines)
