"""A1111's generation features on the tiny model, through the engine and through /sdapi/v1 with A1111-style bodies:
variation seeds (the end points are exactly the seed's and the subseed's images), hires fix (the scaled size, both
passes' steps and previews, A1111's infotext), tiling, schedule types, and A1111's interrupt and skip."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image
from server_support import live_server

from studio.contract import Finished, GenerationRequest
from studio.metadata import parse_infotext
from tests.helpers import pixels

COMMON = dict(seed=5, steps=6, width=64, height=64, sampler_name="Euler")


def _image(engine, **fields) -> tuple[np.ndarray, Finished]:
    result = engine.generate(GenerationRequest("a fox", **{**COMMON, **fields}))
    assert isinstance(result, Finished), result
    return pixels(result.images[0].path), result


# ---- variation seeds


def test_variation_strength_0_and_1_are_exactly_the_seeds_and_the_subseeds_images(engine):
    plain, _ = _image(engine)
    subseed_image, _ = _image(engine, seed=9)
    assert np.array_equal(_image(engine, subseed=9, subseed_strength=0.0, seed_resize_from=(64, 64))[0], plain)
    assert np.array_equal(_image(engine, subseed=9, subseed_strength=1.0)[0], subseed_image)
    between, result = _image(engine, subseed=9, subseed_strength=0.5)
    assert not np.array_equal(between, plain) and not np.array_equal(between, subseed_image)
    assert "Seed: 5, Size: 64x64" in result.images[0].infotext
    assert "Variation seed: 9, Variation seed strength: 0.5" in result.images[0].infotext


def test_an_ancestral_sampler_keeps_its_step_noise_with_a_seed_resize(engine):
    plain, _ = _image(engine, sampler_name="Euler a")
    same, result = _image(engine, sampler_name="Euler a", seed_resize_from=(64, 64))
    assert np.array_equal(same, plain)
    assert "Seed resize from: 64x64" in result.images[0].infotext
    assert not np.array_equal(_image(engine, sampler_name="Euler a", seed_resize_from=(96, 96))[0], plain)


def test_a_batch_of_variations_gives_each_image_its_subseed(engine):
    result = engine.generate(GenerationRequest("a fox", subseed=20, subseed_strength=0.3, batch_size=2, **COMMON))
    texts = [image.infotext for image in result.images]
    assert "Seed: 5," in texts[0] and "Variation seed: 20," in texts[0]
    assert "Seed: 6," in texts[1] and "Variation seed: 21," in texts[1]


# ---- hires fix


def test_hires_fix_draws_at_the_scaled_size_with_both_passes_steps_and_a1111s_infotext(engine):
    job = engine.submit(GenerationRequest("a fox", enable_hr=True, hr_scale=2.0, **COMMON))
    result = job.wait(120)
    assert isinstance(result, Finished), result
    assert Image.open(result.images[0].path).size == (128, 128)
    # First pass 6 steps, second pass int(6 × 0.7) = 4: one step count over both, previews through the second.
    assert len(job.step_frames) == 10 and job.last_step.step == job.last_step.total == 10
    fields = parse_infotext(result.images[0].infotext)
    assert fields["Size"] == "64x64" and fields["Hires upscale"] == "2" and fields["Hires upscaler"] == "Latent"
    assert fields["Denoising strength"] == "0.7" and "Hires steps" not in fields


def test_hires_fix_with_a_picture_upscaler_its_own_steps_sampler_and_prompt(engine):
    _, latent = _image(engine, enable_hr=True, hr_scale=1.5)
    pixels_out, result = _image(engine, enable_hr=True, hr_scale=1.5, hr_upscaler="Lanczos", hr_second_pass_steps=4,
                                hr_denoising_strength=0.5, hr_sampler_name="DPM++ 2M", hr_prompt="a red fox")
    assert pixels_out.shape[:2] == (96, 96)
    assert not np.array_equal(pixels_out, pixels(latent.images[0].path))
    fields = parse_infotext(result.images[0].infotext)
    assert (fields["Hires upscaler"], fields["Hires steps"], fields["Hires sampler"], fields["Hires prompt"]) == ("Lanczos", "4", "DPM++ 2M", "a red fox")
    resized, result = _image(engine, enable_hr=True, hr_resize=(128, 96))
    assert resized.shape[:2] == (96, 128) and "Hires resize: 128x96" in result.images[0].infotext


def test_hires_fix_refuses_an_unknown_upscaler_before_running(engine):
    from studio.contract import RequestError

    with pytest.raises(RequestError, match="No such"):
        engine.submit(GenerationRequest("a fox", enable_hr=True, hr_upscaler="No such upscaler", **COMMON))
    with pytest.raises(RequestError, match="hires fix size"):
        engine.submit(GenerationRequest("a fox", enable_hr=True, hr_scale=4, **{**COMMON, "width": 1024, "height": 1024}))


# ---- tiling, schedule types


def test_tiling_changes_the_picture_for_its_job_only(engine):
    plain, _ = _image(engine)
    tiled, result = _image(engine, tiling=True)
    assert not np.array_equal(tiled, plain) and "Tiling: True" in result.images[0].infotext
    assert np.array_equal(_image(engine)[0], plain)


def test_a_schedule_type_equals_diffusers_with_its_sigmas(engine, studio_cache):
    from tests.helpers import reference_pipeline

    ours, result = _image(engine, sampler_name="DPM++ 2M", scheduler="Exponential")
    assert "Sampler: DPM++ 2M, Schedule type: Exponential" in result.images[0].infotext
    pipe = reference_pipeline(studio_cache, "txt2img", "DPM++ 2M")
    import torch
    from diffusers import DPMSolverMultistepScheduler

    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_exponential_sigmas=True, timestep_spacing="linspace")
    theirs = pipe("a fox", num_inference_steps=6, guidance_scale=7.0, width=64, height=64,
                  generator=torch.Generator("cpu").manual_seed(5)).images[0]
    assert np.array_equal(ours, pixels(theirs))


# ---- the same through A1111's API


@pytest.fixture(scope="module")
def client(engine):
    with live_server(engine, users=None) as server, server.client() as client:
        yield client


def _decoded(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_a1111_bodies_for_hires_variation_tiling_and_schedule(client):
    body = dict(prompt="a fox", steps=6, width=64, height=64, seed=5, sampler_name="Euler", enable_hr=True, hr_scale=2,
                hr_upscaler="Latent (nearest-exact)", hr_second_pass_steps=5, denoising_strength=0.6, subseed=9,
                subseed_strength=0.25, tiling=True)
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert _decoded(data["images"][0]).size == (128, 128)
    text = json.loads(data["info"])["infotexts"][0]
    for words in ("Variation seed: 9", "Variation seed strength: 0.25", "Denoising strength: 0.6", "Hires upscale: 2",
                  "Hires steps: 5", "Hires upscaler: Latent (nearest-exact)", "Tiling: True"):
        assert words in text, words
    info = client.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + data["images"][0]}).json()
    assert info["parameters"]["Hires upscaler"] == "Latent (nearest-exact)" and info["parameters"]["Variation seed"] == "9"
    resized = client.post("/sdapi/v1/txt2img", json=dict(body, hr_resize_x=96, hr_resize_y=0, tiling=False)).json()
    assert _decoded(resized["images"][0]).size == (96, 96)
    exponential = client.post("/sdapi/v1/txt2img", json=dict(prompt="x", steps=3, width=64, height=64, sampler_name="DPM++ 2M", scheduler="exponential"))
    assert "Schedule type: Exponential" in json.loads(exponential.json()["info"])["infotexts"][0]
    assert [u["name"] for u in client.get("/sdapi/v1/upscalers").json()][:3] == ["None", "Lanczos", "Nearest"]
    assert client.get("/sdapi/v1/realesrgan-models").json() == []


def _post_in_thread(client, body: dict) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def post():
        out["response"] = client.post("/sdapi/v1/txt2img", json=body, timeout=300)

    thread = threading.Thread(target=post)
    thread.start()
    return thread, out


def _wait_for_steps(client, at_least: int) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        state = client.get("/sdapi/v1/progress").json()["state"]
        if state["sampling_step"] >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError("the job did not start")


def test_an_interrupted_150_step_job_returns_its_image_as_it_stood(client, engine):
    thread, out = _post_in_thread(client, dict(prompt="long", steps=150, width=64, height=64, seed=3, n_iter=3))
    _wait_for_steps(client, 2)
    assert client.post("/sdapi/v1/interrupt").json()["interrupted"]
    thread.join(120)
    response = out["response"]
    assert response.status_code == 200, response.text
    data = response.json()
    assert len(data["images"]) == 1 and json.loads(data["info"])["interrupted"]  # the other 2 batches never ran
    progress = client.get("/sdapi/v1/progress").json()
    assert progress["progress"] == 0 and progress["state"]["job_count"] == 0


def test_skip_ends_the_batch_and_the_job_goes_on(client):
    thread, out = _post_in_thread(client, dict(prompt="long", steps=50, width=64, height=64, seed=3, n_iter=2))
    _wait_for_steps(client, 2)
    assert client.post("/sdapi/v1/skip").json()["skipped"]
    thread.join(300)
    data = out["response"].json()
    assert len(data["images"]) == 2  # the skipped batch as it stood, and the next one whole
