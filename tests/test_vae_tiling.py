"""VAE tiling: large pictures are encoded and decoded in overlapping tiles (diffusers' tiled VAE), for less memory —
"auto" only above 4× the model's own area, "on" always (--vae-tiling). A tiled job is the image diffusers' own
pipeline makes with its VAE tiled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import pixels, reference_pipeline
from studio.config import Settings
from studio.contract import Finished, GenerationRequest
from studio.pipelines import tiles_vae


@pytest.mark.parametrize("mode, size, native, tiled", [
    ("auto", (1024, 1024), 512, False), ("auto", (1032, 1024), 512, True), ("auto", (2048, 2048), 1024, False),
    ("on", (64, 64), 512, True), ("off", (4096, 4096), 512, False),
])
def test_when_the_vae_works_in_tiles(mode, size, native, tiled):
    assert tiles_vae(mode, size, native) is tiled


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache):
    """This module's engine tiles every picture (the conftest's `engine` fixture reads these settings)."""
    return Settings(model="tiny", outputs=tmp_path_factory.mktemp("outputs"), cache_dir=studio_cache, warmup=False, vae_tiling="on")


def test_a_tiled_job_is_diffusers_image_with_its_vae_tiled(engine, studio_cache):
    request = GenerationRequest("a harbour at night", seed=21, steps=3, sampler_name="Euler", width=256, height=256)
    result = engine.generate(request)
    assert isinstance(result, Finished), result
    reference = reference_pipeline(studio_cache, "txt2img", "Euler")
    arguments = dict(num_inference_steps=3, guidance_scale=7.0, width=256, height=256, generator=torch.Generator("cpu").manual_seed(21))
    reference.vae.enable_tiling()
    try:
        tiled = pixels(reference("a harbour at night", **arguments).images[0])
    finally:
        reference.vae.disable_tiling()
    arguments["generator"] = torch.Generator("cpu").manual_seed(21)
    whole = pixels(reference("a harbour at night", **arguments).images[0])
    ours = pixels(result.images[0].path)
    assert np.array_equal(ours, tiled)
    assert not np.array_equal(ours, whole)  # the tiles really were used (the tiny VAE's tile is 128 px)
    assert not engine.models.get("tiny").pipe.vae.use_tiling  # and the VAE is back as it was
