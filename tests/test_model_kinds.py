"""What a model's UNet was made for decides the tasks it runs: a model asked for a task it cannot do is refused with a
message that says what it can do (a 4xx over HTTP), never a server error."""

from __future__ import annotations

import pytest

from helpers import engine_on, gradient_image
from studio.checkpoints import materialize_config
from studio.contract import Finished, GenerationRequest, RequestError, Task
from studio.families import TEXT_TO_IMAGE, model_kind
from studio.tasks import refuse_unless_runs
from support.depth_model import write_tiny_upscaler_model


@pytest.mark.parametrize("channels, kind, runs", [
    (4, "text-to-image", {Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT, Task.HIRES_FIX}),
    (9, "inpainting", {Task.INPAINT}),
    (5, "depth", {Task.IMG2IMG}),
    (7, "upscaler", set()),
    (8, "unknown", set()),
])
def test_the_kind_of_a_model_follows_its_unet_inputs(channels, kind, runs):
    found = model_kind(channels)
    assert found.name == kind and set(found.tasks) == runs


def test_refusals_say_what_the_model_can_do():
    inpainting = model_kind(9)
    with pytest.raises(ValueError, match="Model 'fill' is an inpainting model and cannot run Image to image: it runs Inpainting only"):
        refuse_unless_runs(inpainting, "fill", GenerationRequest("x", init_image=gradient_image()))
    with pytest.raises(ValueError, match="is an x4 upscaler and cannot run Text to image: the studio makes no pictures with it"):
        refuse_unless_runs(model_kind(7), "x4", GenerationRequest("x"))
    refuse_unless_runs(TEXT_TO_IMAGE, "sd", GenerationRequest("x", enable_hr=True))  # runs everything


@pytest.fixture(scope="module")
def upscaler_folder(tmp_path_factory, studio_cache):
    return write_tiny_upscaler_model(tmp_path_factory.mktemp("models") / "tiny-x4", materialize_config("tiny", studio_cache) / "tokenizer")


@pytest.fixture(scope="module")
def upscaler_engine(tmp_path_factory, studio_cache, upscaler_folder):
    # Its warm-up (a txt2img) must not run: start() would raise it.
    with engine_on(str(upscaler_folder), tmp_path_factory.mktemp("outputs"), studio_cache, warmup=True) as engine:
        yield engine


@pytest.mark.parametrize("extra", [{}, {"init_image": gradient_image(64, 64)}])
def test_an_upscaler_model_refuses_to_generate_with_a_clear_message(upscaler_engine, extra):
    with pytest.raises(RequestError, match="is an x4 upscaler and cannot run .*Choose another model"):
        upscaler_engine.submit(GenerationRequest("a bridge", steps=2, width=64, height=64, **extra))


def test_a_model_not_loaded_yet_is_refused_from_what_its_files_say(engine, upscaler_folder):
    """An operator naming another model's folder: its kind is read from its UNet config, so the job is refused at once
    (nothing loaded), and the engine goes on with its model."""
    request = GenerationRequest("a bridge", steps=2, width=64, height=64, model=str(upscaler_folder))
    with pytest.raises(RequestError, match="is an x4 upscaler and cannot run Text to image"):
        engine.submit(request, may_name_any_model=True)
    assert upscaler_folder.name not in engine.models.loaded_names()
    assert isinstance(engine.generate(GenerationRequest("a bridge", steps=2, width=64, height=64)), Finished)


def test_the_model_line_says_what_a_model_does_and_looks_up_only_offered_names(engine, upscaler_folder):
    from server_support import job_service

    from studio.service import model_about

    service = job_service(engine)
    assert model_about(service) == "tiny is a text-to-image model: it runs Text to image, Image to image and Inpainting."
    # A name the user may not pick — a path on the server included — is not looked up at all.
    assert model_about(service, str(upscaler_folder)) == ""
    assert model_about(service, None) == model_about(service, "tiny")


def test_an_unloaded_models_kind_is_read_from_its_files(upscaler_folder, tmp_path):
    from studio.checkpoints import ModelSource, peek_kind

    assert peek_kind(ModelSource("folder", str(upscaler_folder), "x4")).name == "upscaler"
    assert peek_kind(ModelSource("folder", str(tmp_path), "empty")) is None
    assert peek_kind(ModelSource("hub", "owner/name", "owner/name")) is None


def test_a_folders_default_size_is_the_size_its_unet_was_made_for(studio_cache):
    """SD 2.x 512 "base" and 768 folders are both "SD 2.x": the size comes from the UNet's sample size × the VAE's
    scale, not from the family."""
    from helpers import _tiny_base

    from studio.checkpoints import native_size

    pipe = _tiny_base(str(studio_cache))
    assert native_size(pipe) == 128  # the tiny model: 16 latents × 8
    sample = pipe.unet.config.sample_size
    try:
        for latents, pixels in ((64, 512), (96, 768), (128, 1024)):
            pipe.unet.register_to_config(sample_size=latents)
            assert native_size(pipe) == pixels
    finally:
        pipe.unet.register_to_config(sample_size=sample)
