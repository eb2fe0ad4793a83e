"""Depth-to-image models (Stable Diffusion 2 depth): image to image through the model's own depth pipeline, the
same image as diffusers' StableDiffusionDepth2ImgPipeline for the seed; what such a model cannot run is refused with
a message that says what it can."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
import torch

from helpers import engine_on, gradient_image, pixels
from studio.checkpoints import materialize_config
from studio.contract import Finished, GenerationRequest, RequestError
from support.depth_model import write_tiny_depth_model


@pytest.fixture(scope="module")
def depth_folder(tmp_path_factory, studio_cache):
    return write_tiny_depth_model(tmp_path_factory.mktemp("models") / "tiny-depth", materialize_config("tiny", studio_cache) / "tokenizer")


@pytest.fixture(scope="module")
def depth_engine(tmp_path_factory, studio_cache, depth_folder):
    with engine_on(str(depth_folder), tmp_path_factory.mktemp("outputs"), studio_cache) as engine:
        yield engine


def test_image_to_image_on_a_depth_model_equals_diffusers_depth_pipeline(depth_engine, depth_folder):
    from diffusers import StableDiffusionDepth2ImgPipeline

    from studio.pipelines import plain_scheduler
    from studio.samplers import find_sampler

    init = gradient_image(64, 64)
    request = GenerationRequest("a stone bridge", seed=11, steps=4, sampler_name="Euler a", init_image=init, denoising_strength=0.7)
    result = depth_engine.generate(request)
    assert isinstance(result, Finished), result
    reference = StableDiffusionDepth2ImgPipeline.from_pretrained(depth_folder)
    reference.scheduler = plain_scheduler(find_sampler("Euler a"), dict(reference.scheduler.config))
    reference.set_progress_bar_config(disable=True)
    theirs = reference("a stone bridge", image=init, strength=0.7, num_inference_steps=4, guidance_scale=7.0,
                       generator=torch.Generator("cpu").manual_seed(11)).images[0]
    assert np.array_equal(pixels(result.images[0].path), pixels(theirs))


def test_a_depth_model_refuses_text_to_image_and_says_what_it_runs(depth_engine):
    with pytest.raises(RequestError, match="is a depth-to-image model and cannot run Text to image: it runs Image to image only"):
        depth_engine.submit(GenerationRequest("a stone bridge", seed=1, steps=2, width=64, height=64))


def _correlation(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel())[0, 1])


def test_the_artists_own_depth_map_is_used_and_kept_as_the_job_depth(depth_engine, depth_folder):
    from diffusers import StableDiffusionDepth2ImgPipeline
    from PIL import Image

    from studio.pipelines import depth_tensor, plain_scheduler
    from studio.samplers import find_sampler

    init = gradient_image(64, 64)
    near_left = Image.fromarray(np.tile(np.linspace(255, 0, 64, dtype=np.uint8), (64, 1)), "L")
    jobs = {}
    for name, depth in (("estimated", None), ("near left", near_left), ("near right", near_left.transpose(Image.FLIP_LEFT_RIGHT))):
        job = depth_engine.submit(GenerationRequest("a stone bridge", seed=4, steps=4, sampler_name="Euler", init_image=init,
                                                    denoising_strength=0.8, depth_map=depth))
        assert isinstance(job.wait(120), Finished), job.result
        jobs[name] = job
    pictures = {name: pixels(job.result.images[0].path) for name, job in jobs.items()}
    assert not np.array_equal(pictures["near left"], pictures["near right"])
    # What the studio kept is the map it was given (shrunk to the latents and grown back: still near on the left).
    kept = jobs["near left"].depth_map
    assert kept.size == (64, 64) and _correlation(kept, near_left) > 0.95
    assert jobs["estimated"].depth_map is not None and jobs["estimated"].depth_map.size == (64, 64)
    # The same image as diffusers' pipeline handed the same depth map.
    reference = StableDiffusionDepth2ImgPipeline.from_pretrained(depth_folder)
    reference.scheduler = plain_scheduler(find_sampler("Euler"), dict(reference.scheduler.config))
    reference.set_progress_bar_config(disable=True)
    theirs = reference("a stone bridge", image=init, depth_map=depth_tensor(near_left, (64, 64)), strength=0.8, num_inference_steps=4,
                       guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(4)).images[0]
    assert np.array_equal(pictures["near left"], pixels(theirs))


def test_a_depth_map_for_a_model_without_depth_is_refused(engine):
    request = GenerationRequest("a stone bridge", seed=1, steps=2, init_image=gradient_image(64, 64), depth_map=gradient_image(64, 64))
    with pytest.raises(RequestError, match="depth_map is for depth-to-image models; model 'tiny' is a text-to-image model"):
        engine.submit(request)


def test_over_http_a_depth_model_answers_422_and_only_the_owner_sees_the_depth(depth_engine):
    from PIL import Image
    from server_support import live_server, png_b64

    with live_server(depth_engine) as server, server.client("alice") as alice, server.client("bob") as bob:
        refused = alice.post("/sdapi/v1/txt2img", json={"prompt": "a bridge", "steps": 2, "width": 64, "height": 64})
        assert refused.status_code == 422 and "is a depth-to-image model" in refused.json()["detail"], refused.text
        body = {"prompt": "a bridge", "steps": 2, "width": 64, "height": 64, "init_images": [png_b64()], "depth_map": png_b64(mode="L", color=90)}
        submitted = alice.post("/studio/api/jobs/img2img", json=body)
        assert submitted.status_code == 200, submitted.text
        job_id = submitted.json()["id"]
        deadline = time.monotonic() + 120
        while alice.get(f"/studio/api/jobs/{job_id}").json()["status"] not in ("finished", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
        depth = alice.get(f"/studio/api/jobs/{job_id}/depth")
        assert depth.status_code == 200, depth.text
        assert Image.open(io.BytesIO(base64.b64decode(depth.json()["depth_map"]))).size == (64, 64)
        assert bob.get(f"/studio/api/jobs/{job_id}/depth").status_code == 404
