"""The shipped `demo` model (models/demo) through the studio, checked for meaning, not just plumbing: the named
colours appear, img2img recolours an object in place, inpainting changes only the masked half, emphasis moves the
colour, and the step frames' x0 estimate converges on the final picture (the image "forms"). The judge is
demo_judge.py; the full quality table is in models/demo/README.md (tests/demo_quality.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from demo_judge import judge, score
from studio.checkpoints import DEMO_FOLDER
from studio.config import Settings
from studio.contract import Finished, GenerationRequest
from studio.demo.scenes import COLOURS, Scene, Thing, render

STEPS = 20


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache):
    """This module's engine runs the demo model (the conftest's `engine` fixture reads these settings)."""
    return Settings(model="demo", outputs=tmp_path_factory.mktemp("outputs"), cache_dir=studio_cache, warmup=False)


def _make(engine, prompt: str, seed: int, **options) -> Image.Image:
    job = engine.submit(GenerationRequest(prompt, seed=seed, steps=STEPS, cfg_scale=7.0, **options))
    result = job.wait(120)
    assert isinstance(result, Finished), result
    return Image.open(result.images[0].path).convert("RGB")


def _scene(colour: str, background: str, centre=(64, 64), side: int = 48) -> Image.Image:
    thing = Thing(colour, "circle", None, None, centre, side, COLOURS[colour])
    return render(Scene(background, COLOURS[background], [thing]))


def test_the_demo_model_is_shipped_and_runs_as_its_own_family(engine):
    assert (DEMO_FOLDER / "model_index.json").is_file(), "models/demo is part of the studio"
    info = engine.info()
    assert info.model == "demo"
    loaded = engine.models.get("demo")
    assert loaded.family == "demo" and loaded.default_size == 128
    weights = sum(p.stat().st_size for p in DEMO_FOLDER.rglob("*.safetensors"))
    assert weights <= 20_000_000


# The shipped model does not meet these yet (models/demo/README.md has its table): strict, so a retrained model that
# does makes them fail until the marks go.
UNDER_TRAINED = pytest.mark.xfail(strict=True, reason="the shipped demo model is under-trained: backgrounds' colours miss")


@UNDER_TRAINED
def test_text_to_image_draws_the_named_colours(engine):
    prompts = ["a red circle on a white background", "a blue square on a yellow background",
               "a green star on a black background"]
    results = [score(p, _make(engine, p, seed)) for p in prompts for seed in range(4)]
    backgrounds = sum(r["background"] for r in results)
    colours = sum(r["colour"] for r in results)
    assert backgrounds >= 10 and colours >= 10, results  # of 12


def test_image_to_image_recolours_the_object_in_place(engine):
    start = _scene("red", "white", centre=(40, 80))
    picture = _make(engine, "a blue circle on a white background", 3, init_image=start, denoising_strength=0.6)
    found = judge(picture).objects
    assert found and found[0].colour == "blue", [f.colour for f in found]
    x, y = found[0].centre
    assert abs(x - 40) <= 12 and abs(y - 80) <= 12  # it stays where it was


def test_inpainting_changes_only_the_masked_half(engine):
    start = _scene("red", "white")
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (64, 0, 128, 128))  # the right half
    picture = _make(engine, "a red circle on a green background", 5, init_image=start, mask=mask, mask_blur=0,
                    denoising_strength=1.0)
    before, after = np.asarray(start, dtype=float), np.asarray(picture, dtype=float)
    left = np.abs(after[:, :60] - before[:, :60]).mean()
    right = np.abs(after[:, 68:] - before[:, 68:]).mean()
    assert left < 4 and right > 10, (left, right)  # untouched, and clearly redrawn (a mean change of 10 of 255)


def _redness(picture: Image.Image) -> float:
    """How close the object's colour is to the named red (smaller: redder)."""
    found = judge(picture).objects
    if not found:
        return 255.0
    return float(np.linalg.norm(np.asarray(found[0].rgb, dtype=float) - np.asarray(COLOURS["red"], dtype=float)))


def test_emphasis_moves_the_objects_colour(engine):
    strong = [_redness(_make(engine, "a (red:1.5) circle on a white background", seed)) for seed in range(4)]
    weak = [_redness(_make(engine, "a [[red]] circle on a white background", seed)) for seed in range(4)]
    assert np.mean(strong) < np.mean(weak), (strong, weak)


def test_the_picture_forms_step_by_step(engine):
    job = engine.submit(GenerationRequest("a large yellow star in the center on a blue background", seed=11, steps=STEPS))
    result = job.wait(120)
    assert isinstance(result, Finished)
    frames = list(job.step_frames)
    assert len(frames) == STEPS

    def picture(frame) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(frame.x0)).convert("RGB").resize((64, 64)), dtype=float)

    # Against the last step's x0 (the same kind of picture, so the distance can reach 0), step by step.
    final = picture(frames[-1])
    distance = [np.abs(picture(f) - final).mean() for f in frames[:-1]]
    print("x0 distance to the last step's by step:", [round(d, 1) for d in distance])
    quarter = STEPS // 4
    assert np.mean(distance[-quarter:]) < 0.5 * np.mean(distance[:quarter])
    assert distance[-1] == min(distance)


def test_the_ui_offers_the_grammars_prompts_when_running_demo(engine):
    import gradio as gr
    from server_support import job_service

    from studio.demo.scenes import EXAMPLE_PROMPTS, parse_prompt
    from studio.ui import build_ui

    blocks = build_ui(job_service(engine))
    offered = [sample[0] for block in blocks.blocks.values() if isinstance(block, gr.Dataset) for sample in block.samples]
    assert offered == list(EXAMPLE_PROMPTS) and all(parse_prompt(text) for text in offered)


def test_the_families_preview_factors_are_the_models_own():
    import json

    from studio.families import family

    report = json.loads((DEMO_FOLDER / "training.json").read_text())
    demo = family("demo")
    assert [list(row) for row in demo.latent_rgb_factors] == report["latent_rgb_factors"]
    assert list(demo.latent_rgb_bias) == report["latent_rgb_bias"]
