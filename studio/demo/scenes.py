"""Procedural scenes for the demo model: one or two simple coloured shapes on a plain background, each with the
caption that describes it in a small fixed grammar ("a large blue star in the center on a yellow background").
numpy and Pillow only, deterministic from a seed: every random choice comes from the numpy Generator passed in.

Coordinates are on a 128×128 canvas (CANVAS); render() scales them to any picture size."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 128
COLOURS = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 220, 40),
    "green": (50, 170, 70),
    "blue": (40, 80, 220),
    "purple": (130, 60, 180),
    "pink": (240, 130, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
}
SHAPES = ("circle", "square", "triangle", "star")
SIZES = ("small", "large")
# Side of the object's bounding box in canvas pixels, by size word (None: no size word in the caption).
SIDE_RANGES = {"small": (22, 32), None: (34, 50), "large": (56, 72)}
# Centre of the object for each position word, and the phrase a caption uses for it.
POSITIONS = {
    "left": (32, 64), "right": (96, 64), "top": (64, 32), "bottom": (64, 96), "center": (64, 64),
    "top left": (32, 32), "top right": (96, 32), "bottom left": (32, 96), "bottom right": (96, 96),
}
POSITION_PHRASES = {
    "left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
    "center": "in the center", "top left": "at the top left", "top right": "at the top right",
    "bottom left": "at the bottom left", "bottom right": "at the bottom right",
}
# Positions two objects take together: opposite sides, so objects that are never "large" cannot overlap.
POSITION_PAIRS = (("left", "right"), ("top", "bottom"), ("top left", "bottom right"), ("top right", "bottom left"))
POSITION_JITTER = 6  # ± canvas pixels around a position's centre
COLOUR_JITTER = 8  # ± per channel around a named colour, so the model sees a little variety
TWO_OBJECT_SHARE, SIZE_WORD_SHARE, POSITION_WORD_SHARE = 0.25, 0.5, 0.6
SUPERSAMPLE = 4  # drawn at 4× and box-averaged down: anti-aliased edges


def _star_outline(points: int = 5, inner: float = 0.45) -> tuple:
    angles = [-math.pi / 2 + i * math.pi / points for i in range(2 * points)]
    raw = [(r * math.cos(a), r * math.sin(a)) for a, r in zip(angles, [1.0, inner] * points)]
    xs, ys = [x for x, _ in raw], [y for _, y in raw]

    def stretched(v, low, high):  # onto [-1, 1], so `side` is the bounding box for every shape
        return 2 * (v - low) / (high - low) - 1

    return tuple((stretched(x, min(xs), max(xs)), stretched(y, min(ys), max(ys))) for x, y in raw)


# Polygon outlines in the unit box [-1, 1]² (y down); circle and square are drawn as such.
OUTLINES = {"triangle": ((0.0, -1.0), (1.0, 1.0), (-1.0, 1.0)), "star": _star_outline()}


@dataclass
class Thing:
    """One object of a scene: its words (size and position None when the caption leaves them out), its centre and
    bounding-box side in canvas pixels, and the colour it is drawn in (the named colour, jittered)."""

    colour: str
    shape: str
    size: Optional[str]
    position: Optional[str]
    centre: tuple[int, int]
    side: int
    rgb: tuple[int, int, int]


@dataclass
class Scene:
    background: str
    background_rgb: tuple[int, int, int]
    objects: list[Thing] = field(default_factory=list)

    def words(self) -> dict:
        """What the caption says, in parse_prompt's terms."""
        return {
            "background": self.background,
            "objects": [
                {"colour": t.colour, "shape": t.shape, "size": t.size, "position": t.position} for t in self.objects
            ],
        }


def _jittered(rng: np.random.Generator, colour: str) -> tuple[int, int, int]:
    rgb = np.array(COLOURS[colour]) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
    return tuple(int(v) for v in np.clip(rgb, 0, 255))


def _thing(rng: np.random.Generator, background: str, size: Optional[str], position: Optional[str]) -> Thing:
    colour = str(rng.choice([name for name in COLOURS if name != background]))
    shape = str(rng.choice(SHAPES))
    low, high = SIDE_RANGES[size]
    side = int(rng.integers(low, high + 1))
    lowest, highest = math.ceil(side / 2), CANVAS - math.ceil(side / 2)  # centres that keep the object inside
    if position is None:
        centre = tuple(int(rng.integers(lowest, highest + 1)) for _ in range(2))
    else:
        jitter = rng.integers(-POSITION_JITTER, POSITION_JITTER + 1, size=2)
        centre = tuple(int(np.clip(c + j, lowest, highest)) for c, j in zip(POSITIONS[position], jitter))
    return Thing(colour, shape, size, position, centre, side, _jittered(rng, colour))


def random_scene(rng: np.random.Generator) -> Scene:
    """A scene drawn from rng: 25% two objects at a pair of opposite positions (never "large"), otherwise one object
    with a size word half the time and a position word 60% of the time. No object shares the background's colour."""
    background = str(rng.choice(list(COLOURS)))
    if rng.random() < TWO_OBJECT_SHARE:
        pair = list(POSITION_PAIRS[int(rng.integers(len(POSITION_PAIRS)))])
        if rng.random() < 0.5:
            pair.reverse()
        objects = [_thing(rng, background, "small" if rng.random() < SIZE_WORD_SHARE else None, p) for p in pair]
    else:
        size = str(rng.choice(SIZES)) if rng.random() < SIZE_WORD_SHARE else None
        position = str(rng.choice(list(POSITIONS))) if rng.random() < POSITION_WORD_SHARE else None
        objects = [_thing(rng, background, size, position)]
    return Scene(background, _jittered(rng, background), objects)


def _with_article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def caption(scene: Scene) -> str:
    """The scene in the grammar: 'a [small|large] <colour> <shape> [<position phrase>]' for each object, joined by
    'and', then 'on a <colour> background' ("an" before a vowel: "an orange star")."""
    phrases = []
    for thing in scene.objects:
        words = " ".join(w for w in (thing.size, thing.colour, thing.shape) if w)
        position = f" {POSITION_PHRASES[thing.position]}" if thing.position else ""
        phrases.append(_with_article(words) + position)
    return f"{' and '.join(phrases)} on {_with_article(scene.background)} background"


def render(scene: Scene, size: int = CANVAS) -> Image.Image:
    """The scene as a size×size RGB picture, anti-aliased (drawn at SUPERSAMPLE× and box-averaged down)."""
    scale = SUPERSAMPLE * size / CANVAS
    big = Image.new("RGB", (SUPERSAMPLE * size, SUPERSAMPLE * size), scene.background_rgb)
    draw = ImageDraw.Draw(big)
    for thing in scene.objects:
        (cx, cy), half = thing.centre, thing.side / 2
        if thing.shape in OUTLINES:
            outline = [((cx + u * half) * scale, (cy + v * half) * scale) for u, v in OUTLINES[thing.shape]]
            draw.polygon(outline, fill=thing.rgb)
            continue
        x0, y0, x1, y1 = (round(v * scale) for v in (cx - half, cy - half, cx + half, cy + half))
        (draw.ellipse if thing.shape == "circle" else draw.rectangle)([x0, y0, x1 - 1, y1 - 1], fill=thing.rgb)
    return big.reduce(SUPERSAMPLE)


def scenes(count: int, seed: int) -> Iterator[tuple[Image.Image, str]]:
    """`count` (picture, caption) pairs, the same ones for the same seed."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        scene = random_scene(rng)
        yield render(scene), caption(scene)


_COLOUR_WORDS, _SHAPE_WORDS = "|".join(COLOURS), "|".join(SHAPES)
_PHRASE_WORDS = "|".join(sorted(POSITION_PHRASES.values(), key=len, reverse=True))
_OBJECT = rf"an? (?:(small|large) )?({_COLOUR_WORDS}) ({_SHAPE_WORDS})(?: ({_PHRASE_WORDS}))?"
_PROMPT = re.compile(rf"{_OBJECT}(?: and {_OBJECT})? on an? ({_COLOUR_WORDS}) background")
_POSITION_OF_PHRASE = {phrase: word for word, phrase in POSITION_PHRASES.items()}


def parse_prompt(text: str) -> Optional[dict]:
    """The grammar's meaning of a prompt, {"background": name, "objects": [{"colour", "shape", "size", "position"}]}
    (size and position None when not said), or None when the prompt is outside the grammar, or names an object the
    background's colour. Tolerant of case, spacing, "a"/"an", "centre", "grey" and a trailing period."""
    text = re.sub(r"\s+", " ", text.lower()).strip().rstrip(".").strip()
    text = re.sub(r"\bcentre\b", "center", re.sub(r"\bgrey\b", "gray", text))
    match = _PROMPT.fullmatch(text)
    if match is None:
        return None
    groups, background = match.groups()[:-1], match.groups()[-1]
    objects = [
        {"colour": colour, "shape": shape, "size": size, "position": _POSITION_OF_PHRASE.get(phrase)}
        for size, colour, shape, phrase in (groups[:4], groups[4:])
        if colour is not None
    ]
    if any(thing["colour"] == background for thing in objects):
        return None
    return {"background": background, "objects": objects}


EXAMPLE_PROMPTS = (
    "a red circle on a white background",
    "a large blue star in the center on a yellow background",
    "a green triangle at the top left on a black background",
    "a small yellow square at the bottom on a purple background",
    "an orange circle on the right on a blue background",
    "a pink star on a gray background",
    "a red circle on the left and a blue square on the right on a white background",
    "a small white triangle at the top and a black star at the bottom on a green background",
)

GRAMMAR_MARKDOWN = f"""### What to type

The demo model learned one small sentence pattern; prompts outside it give pictures it was never taught.

```
a [small|large] <colour> <shape> [<position>] on a <colour> background
```

- **colour**: {", ".join(COLOURS)} (the object's colour must differ from the background's)
- **shape**: {", ".join(SHAPES)}
- **size** (optional): small, large
- **position** (optional): {", ".join(POSITION_PHRASES.values())}

Two objects are joined with "and", each with a position from an opposite pair (left/right, top/bottom,
top left/bottom right, top right/bottom left), and without "large". Case, "an", "centre" and "grey" are fine.

Examples:

{chr(10).join(f"- `{prompt}`" for prompt in EXAMPLE_PROMPTS)}
"""
