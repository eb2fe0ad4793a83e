"""The demo's scene generator (studio/demo/scenes.py) and the judge of its pictures (tests/demo_judge.py): the judge
reads the generator's own renders, clean and degraded like a model's output, and says no to prompts they do not
show; scenes are deterministic, inside the canvas, and their captions parse back to what they show."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from demo_judge import CRITERIA, judge, position_matches, quality_table, score
from PIL import Image, ImageFilter

from studio.demo.scenes import (
    CANVAS, COLOURS, EXAMPLE_PROMPTS, GRAMMAR_MARKDOWN, POSITION_PHRASES, POSITIONS, SHAPES, SIDE_RANGES, Scene,
    caption, parse_prompt, random_scene, render, scenes,
)

SCENE_SEED, NOISE_SEED = 2024, 7


def _scenes(count: int, objects: int, seed: int = SCENE_SEED) -> list[Scene]:
    rng, found = np.random.default_rng(seed), []
    while len(found) < count:
        scene = random_scene(rng)
        if len(scene.objects) == objects:
            found.append(scene)
    return found


def _degraded(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Like a model's output: blurred (Gaussian, radius 1.5) and noisy (Gaussian, σ 10)."""
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.5)), dtype=float)
    pixels += rng.normal(0, 10, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


def _shares(results: list[dict]) -> dict:
    return {key: np.mean([r[key] for r in results if r[key] is not None]) for key in CRITERIA}


@pytest.fixture(scope="module")
def one_object_scenes():
    return _scenes(300, objects=1)


def test_the_judge_reads_clean_renders(one_object_scenes):
    shares = _shares([score(caption(s), render(s)) for s in one_object_scenes])
    assert shares["background"] >= 0.98 and shares["colour"] >= 0.98, shares
    assert shares["position"] >= 0.95 and shares["shape"] >= 0.90, shares


def test_the_judge_reads_renders_degraded_like_a_model_output(one_object_scenes):
    noise = np.random.default_rng(NOISE_SEED)
    shares = _shares([score(caption(s), _degraded(render(s), noise)) for s in one_object_scenes])
    assert shares["background"] >= 0.95 and shares["colour"] >= 0.95, shares
    assert shares["position"] >= 0.90 and shares["shape"] >= 0.80, shares


def test_the_judge_pairs_two_objects_with_the_prompt():
    results = [score(caption(s), render(s)) for s in _scenes(80, objects=2)]
    assert all(share >= 0.95 for share in _shares(results).values()), _shares(results)


def _other(options, excluded, rng: np.random.Generator) -> str:
    return str(rng.choice([option for option in options if option not in excluded]))


OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}


def test_the_judge_says_no_to_what_a_picture_does_not_show(one_object_scenes):
    """Each criterion is asked about a wrong prompt: the scene's caption with one word changed."""
    rng, met = np.random.default_rng(1), {criterion: [] for criterion in CRITERIA}
    for scene in one_object_scenes[:100]:
        picture, (thing,) = render(scene), scene.objects
        other_colour = _other(COLOURS, (thing.colour, scene.background), rng)
        wrong = {
            "background": replace(scene, background=other_colour),
            "colour": replace(scene, objects=[replace(thing, colour=other_colour)]),
            "shape": replace(scene, objects=[replace(thing, shape=_other(SHAPES, (thing.shape,), rng))]),
        }
        if thing.position in OPPOSITE:
            wrong["position"] = replace(scene, objects=[replace(thing, position=OPPOSITE[thing.position])])
        for criterion, wrong_scene in wrong.items():
            met[criterion].append(score(caption(wrong_scene), picture)[criterion])
    shares = {criterion: np.mean(found) for criterion, found in met.items()}
    assert all(len(found) >= 10 for found in met.values()) and max(shares.values()) <= 0.05, shares


def test_a_blank_picture_shows_no_object():
    blank = Image.new("RGB", (CANVAS, CANVAS), COLOURS["white"])
    assert judge(blank).objects == [] and judge(blank).background == "white"
    assert score("a red circle on the left on a white background", blank) == {
        "background": True, "colour": False, "shape": False, "position": False}
    with pytest.raises(ValueError):
        score("a photo of a cat", blank)


def test_position_words_check_the_axes_they_name():
    assert position_matches("left", (30, 30)) and position_matches("left", (30, 100))
    assert not position_matches("left", (64, 64)) and not position_matches("right", (30, 64))
    assert position_matches("top left", (30, 30)) and not position_matches("top left", (30, 64))
    assert position_matches("center", (64, 60)) and not position_matches("center", (64, 30))


def test_quality_table_gives_the_share_met_per_criterion():
    results = [
        {"background": True, "colour": True, "shape": False, "position": None},
        {"background": True, "colour": False, "shape": True, "position": True},
        {"background": False, "colour": True, "shape": True, "position": False},
        {"background": True, "colour": True, "shape": True, "position": None},
    ]
    assert quality_table(results).splitlines() == [
        "| Criterion | Share met | Count |",
        "|---|---:|---:|",
        "| background colour | 75.0% | 3 / 4 |",
        "| object colour | 75.0% | 3 / 4 |",
        "| position | 50.0% | 1 / 2 |",
        "| shape | 75.0% | 3 / 4 |",
    ]


def test_scenes_are_deterministic_from_the_seed():
    def pairs(seed):
        return [(image.tobytes(), text) for image, text in scenes(6, seed)]

    assert pairs(3) == pairs(3)
    assert pairs(3) != pairs(4)
    image, _ = next(scenes(1, 3))
    assert image.size == (CANVAS, CANVAS) and image.mode == "RGB"
    assert render(random_scene(np.random.default_rng(3)), size=64).size == (64, 64)


def test_scenes_follow_the_rules():
    rng = np.random.default_rng(5)
    all_scenes = [random_scene(rng) for _ in range(2000)]
    for scene in all_scenes:
        boxes = []
        for thing in scene.objects:
            (x, y), half = thing.centre, thing.side / 2
            assert 0 <= x - half and x + half <= CANVAS and 0 <= y - half and y + half <= CANVAS, thing
            low, high = SIDE_RANGES[thing.size]
            assert low <= thing.side <= high and thing.colour != scene.background
            if thing.position and (x, y) != POSITIONS[thing.position]:
                assert max(abs(np.subtract((x, y), POSITIONS[thing.position]))) <= 6 + (36 - 32), thing  # jitter, clamp
            boxes.append((x - half, y - half, x + half, y + half))
        if len(boxes) == 2:
            (a0, b0, a1, b1), (c0, d0, c1, d1) = boxes
            assert a1 <= c0 or c1 <= a0 or b1 <= d0 or d1 <= b0, scene  # no overlap
            assert all(t.size != "large" and t.position for t in scene.objects)
    two = np.mean([len(s.objects) == 2 for s in all_scenes])
    single = [s.objects[0] for s in all_scenes if len(s.objects) == 1]
    assert 0.21 < two < 0.29
    assert 0.45 < np.mean([t.size is not None for t in single]) < 0.55
    assert 0.55 < np.mean([t.position is not None for t in single]) < 0.65


def test_captions_parse_back_to_their_scenes():
    rng = np.random.default_rng(6)
    for _ in range(200):
        scene = random_scene(rng)
        assert parse_prompt(caption(scene)) == scene.words(), caption(scene)


def test_parse_prompt_tolerates_spelling_and_refuses_other_text():
    assert parse_prompt("  A Large  BLUE star in the Centre on a grey background. ") == {
        "background": "gray", "objects": [{"colour": "blue", "shape": "star", "size": "large", "position": "center"}]}
    assert parse_prompt("an orange circle on a white background")["objects"][0]["colour"] == "orange"
    for text in ("a photo of a cat", "", "a red circle", "a red hexagon on a white background",
                 "a red circle on a red background", "a red circle in the middle on a white background",
                 "a huge red circle on a white background", "a red circle on a white background with a hat"):
        assert parse_prompt(text) is None, text


def test_example_prompts_and_the_grammar_text():
    assert 6 <= len(EXAMPLE_PROMPTS) <= 8
    assert all(parse_prompt(prompt) for prompt in EXAMPLE_PROMPTS)
    assert any(len(parse_prompt(prompt)["objects"]) == 2 for prompt in EXAMPLE_PROMPTS)
    for word in [*COLOURS, *SHAPES, *POSITION_PHRASES.values(), *EXAMPLE_PROMPTS]:
        assert word in GRAMMAR_MARKDOWN, word
