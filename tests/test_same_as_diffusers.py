"""The studio's image for a seed is exactly what diffusers' own pipeline makes with a CPU generator of that seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.contract import Finished, GenerationRequest
from studio.samplers import find_sampler, sampler_names
from tests.helpers import gradient_image, pixels, reference_pipeline, square_mask


def finished(engine, request) -> Finished:
    result = engine.generate(request)
    assert isinstance(result, Finished), result
    return result


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M Karras", "Euler", "UniPC"])
def test_txt2img_equals_diffusers(engine, studio_cache, sampler):
    request = GenerationRequest("a red fox in snow", negative_prompt="blurry", seed=1234, steps=4, cfg_scale=6.5, sampler_name=sampler, width=64, height=64)
    ours = finished(engine, request).images
    theirs = reference_pipeline(studio_cache, "txt2img", sampler)(
        "a red fox in snow", negative_prompt="blurry", num_inference_steps=4, guidance_scale=6.5, width=64, height=64,
        generator=torch.Generator("cpu").manual_seed(1234),
    ).images
    assert len(ours) == 1
    assert np.array_equal(pixels(ours[0].path), pixels(theirs[0]))


def test_batch_uses_consecutive_seeds_and_matches_diffusers(engine, studio_cache):
    request = GenerationRequest("a lighthouse", seed=77, steps=3, sampler_name="Euler a", width=64, height=64, batch_size=2, batch_count=2)
    ours = finished(engine, request).images
    assert [image.seed for image in ours] == [77, 78, 79, 80]
    reference = reference_pipeline(studio_cache, "txt2img", "Euler a")
    theirs = reference(
        "a lighthouse", num_inference_steps=3, guidance_scale=7.0, width=64, height=64, num_images_per_prompt=2,
        generator=[torch.Generator("cpu").manual_seed(s) for s in (79, 80)],
    ).images
    assert np.array_equal(pixels(ours[2].path), pixels(theirs[0]))
    assert np.array_equal(pixels(ours[3].path), pixels(theirs[1]))
    # Image 0 of a batch is the single image of its seed (batched convolutions may differ in the last bit).
    single = finished(engine, GenerationRequest("a lighthouse", seed=77, steps=3, sampler_name="Euler a", width=64, height=64)).images[0]
    assert np.abs(pixels(single.path) - pixels(ours[0].path)).max() <= 1


def test_img2img_equals_diffusers(engine, studio_cache):
    init = gradient_image()
    request = GenerationRequest("a watercolor", seed=5, steps=6, sampler_name="DPM++ 2M", init_image=init, denoising_strength=0.6)
    ours = finished(engine, request).images
    theirs = reference_pipeline(studio_cache, "img2img", "DPM++ 2M")(
        "a watercolor", image=init, strength=0.6, num_inference_steps=6, guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(5)
    ).images
    assert np.array_equal(pixels(ours[0].path), pixels(theirs[0]))


def test_inpaint_equals_diffusers_and_keeps_unpainted_pixels(engine, studio_cache):
    init, mask = gradient_image(), square_mask()
    request = GenerationRequest("a hole", seed=9, steps=4, sampler_name="Euler", init_image=init, mask=mask, mask_blur=0, denoising_strength=1.0)
    ours = pixels(finished(engine, request).images[0].path)
    reference = reference_pipeline(studio_cache, "inpaint", "Euler")
    raw = reference(
        "a hole", image=init, mask_image=mask, strength=1.0, num_inference_steps=4, guidance_scale=7.0, width=64, height=64,
        generator=torch.Generator("cpu").manual_seed(9),
    ).images[0]
    theirs = pixels(reference.image_processor.apply_overlay(mask, init, raw))
    assert np.array_equal(ours, theirs)
    outside = np.asarray(mask) == 0
    assert np.array_equal(ours[outside], pixels(init)[outside]), "pixels outside the mask changed"
    assert not np.array_equal(ours[~outside], pixels(init)[~outside]), "the painted area was not repainted"


def test_three_tasks_share_modules_and_dtype(engine):
    from studio.pipelines import make_scheduler, task_pipeline
    from studio.families import PIPELINE_TASKS

    model = engine.models.get("tiny")
    pipes = [task_pipeline(model.pipe, model.family, task, make_scheduler(find_sampler("Euler"), model.scheduler_config), engine.dtype) for task in PIPELINE_TASKS]  # hires fix runs txt2img then img2img
    for name in ("unet", "vae", "text_encoder"):
        assert all(getattr(p, name) is getattr(model.pipe, name) for p in pipes), name
        assert {getattr(p, name).dtype for p in pipes} == {engine.dtype}
    assert len({id(p.scheduler) for p in pipes}) == 3, "each job gets a fresh scheduler"


def test_every_sampler_name_maps_to_a_scheduler(engine):
    from studio.pipelines import make_scheduler

    model = engine.models.get("tiny")
    names = sampler_names()
    assert {"Euler", "Euler a", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ SDE", "DDIM", "UniPC", "DPM++ 2M Karras"} <= set(names)
    for name in names:
        scheduler = make_scheduler(find_sampler(name), model.scheduler_config)
        assert scheduler.config.get("use_karras_sigmas", False) == name.endswith("Karras"), name


def test_task_pipelines_are_kept_but_each_job_gets_a_fresh_scheduler(engine):
    from studio.pipelines import job_pipeline, make_scheduler
    from studio.contract import Task

    model = engine.models.get("tiny")
    built: dict = {}
    first = job_pipeline(built, model.pipe, model.family, Task.IMG2IMG, make_scheduler(find_sampler("Euler"), model.scheduler_config), engine.dtype)
    second_scheduler = make_scheduler(find_sampler("DPM++ 2M Karras"), model.scheduler_config)
    second = job_pipeline(built, model.pipe, model.family, Task.IMG2IMG, second_scheduler, engine.dtype)
    assert second is first and second.scheduler is second_scheduler
    assert second.scheduler.config.use_karras_sigmas
