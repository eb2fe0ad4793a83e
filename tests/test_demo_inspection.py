"""Seeing inside sampling on the demo model, where pictures mean something: the shape word's attention is on the
shape, the background colour word's off it; guidance changes the estimate; the strength view starts from the input
at denoising 0 and from noise at 1, and an img2img job's start lies between."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from demo_judge import judge
from studio.config import Settings
from studio.contract import Finished, GenerationRequest
from studio.demo.scenes import COLOURS, Scene, Thing, render

STEPS = 20
SEEDS = range(6)


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache):
    """This module's engine runs the demo model (the conftest's `engine` fixture reads these settings)."""
    return Settings(model="demo", outputs=tmp_path_factory.mktemp("outputs"), cache_dir=studio_cache, warmup=False)


def _inspected(engine, prompt: str, seed: int, **options):
    job = engine.submit(GenerationRequest(prompt, seed=seed, steps=STEPS, cfg_scale=7.0, inspect=("attention", "cfg"), **options))
    result = job.wait(120)
    assert isinstance(result, Finished), result
    return job.inspection, Image.open(result.images[0].path).convert("RGB")


def _object_mask(picture: Image.Image) -> np.ndarray:
    """Where the judge sees the object (its bounding box, the map's resolution being coarse)."""
    found = judge(picture).objects
    mask = np.zeros((128, 128), bool)
    if found:
        x0, y0, x1, y1 = found[0].bbox
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


@pytest.fixture(scope="module")
def circles(engine) -> list:
    """(inspected, picture) of "a large red circle ..." for each seed."""
    return [_inspected(engine, "a large red circle in the center on a white background", seed) for seed in SEEDS]


def _word_ratios(circles: list, word: str) -> list[float]:
    """How much hotter a word's attention map (as the route draws it) is on the drawn object than off it, by seed."""
    from studio.inspected import heatmap

    ratios = []
    for inspected, picture in circles:
        inside = _object_mask(picture)
        if not inside.any() or inside.all():
            continue
        heat = heatmap(inspected, {w.text: w for w in inspected.words}[word]).astype(float) + 1
        ratios.append(heat[inside].mean() / heat[~inside].mean())
    print(f"{word!r} on/off the object:", np.round(ratios, 2))
    return ratios


def test_the_shape_word_looks_at_the_shape(circles):
    ratios = _word_ratios(circles, "circle")
    assert len(ratios) >= 4 and sum(r >= 1.5 for r in ratios) > len(ratios) / 2


# The shipped model's attention for the background colour word is on the object too (2.7-3.9 times hotter there): its
# small text encoder, trained from nothing, does not keep that word's meaning at that word. Strict: a model that
# learns it makes this fail until the mark goes.
@pytest.mark.xfail(strict=True, reason="the demo model attends to the background colour word on the object")
def test_the_background_colour_word_looks_away_from_the_shape(circles):
    ratios = _word_ratios(circles, "white")
    assert len(ratios) >= 4 and sum(r < 1 for r in ratios) > len(ratios) / 2


def test_guidance_changes_the_estimate(engine):
    inspected, _ = _inspected(engine, "a blue square on a yellow background", 1)
    middle = inspected.cfg[STEPS // 2 - 1]
    change = np.abs(middle["guided"].astype(float) - middle["cond"].astype(float)).mean()
    assert change > 2, change


def _vae_round_trip(pipe, latents: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample[0]
    return ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def test_the_strength_view_starts_from_the_input_at_0_and_from_noise_at_1(engine):
    from studio.inspection import forward_diffused
    from studio.pipelines import make_scheduler
    from studio.samplers import find_sampler

    model = engine.models.get("demo")
    pipe = model.pipe
    source = render(Scene("white", COLOURS["white"], [Thing("red", "circle", None, None, (64, 64), 56, COLOURS["red"])]))
    pixels = torch.from_numpy(np.asarray(source, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.no_grad():
        latents = pipe.vae.encode(pixels.to(pipe.vae.dtype)).latent_dist.mean * pipe.vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0)).to(latents.dtype)
    scheduler = make_scheduler(find_sampler("Euler"), model.scheduler_config)
    difference = {}
    for strength in (0.0, 1.0):
        start, _steps = forward_diffused(scheduler, latents, noise, strength, STEPS)
        difference[strength] = np.abs(_vae_round_trip(pipe, start).astype(float) - np.asarray(source, dtype=float)).mean()
    assert difference[0.0] < 8 and difference[1.0] > 40, difference


def test_an_img2img_jobs_start_is_nearer_the_input_the_lower_the_strength(engine):
    source = render(Scene("white", COLOURS["white"], [Thing("red", "circle", None, None, (64, 64), 56, COLOURS["red"])]))
    distance = {}
    for strength in (0.3, 1.0):
        inspected, _ = _inspected(engine, "a red circle on a white background", 2, init_image=source, denoising_strength=strength)
        distance[strength] = np.abs(inspected.start.astype(float) - np.asarray(source, dtype=float)).mean()
    assert distance[0.3] < distance[1.0], distance
