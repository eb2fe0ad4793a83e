"""Every bad request gets a clear message before any GPU work."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from studio.config import Settings
from studio.contract import Finished, GenerationRequest, RequestError
from studio.validation import decode_image, validate
from tests.helpers import gradient_image, square_mask

SETTINGS = Settings(max_size=1024, max_steps=100, max_batch=4)
INIT = gradient_image()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"width": 100}, "width must be a multiple of 8"),
        ({"height": 60}, "height must be a multiple of 8"),
        ({"width": 2048}, "width must be between 64 and 1024"),
        ({"height": 32}, "height must be between 64 and 1024"),
        ({"steps": 0}, "steps must be between 1 and 100"),
        ({"steps": 101}, "steps must be between 1 and 100"),
        ({"batch_size": 5}, "batch_size must be between 1 and 4"),
        ({"batch_count": 0}, "batch_count must be between 1"),
        ({"cfg_scale": float("nan")}, "cfg_scale must be a finite number"),
        ({"cfg_scale": float("inf")}, "cfg_scale must be a finite number"),
        ({"sampler_name": "Euler z"}, "Unknown sampler 'Euler z'. Known samplers: Euler, Euler Karras"),
        ({"sampler_name": "Euler a Karras"}, "has no Karras schedule"),
        ({"seed": -5}, "seed must be -1 (random)"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"prompt": "x" * 20_001}, "prompt is too long"),
        ({"init_image": INIT, "denoising_strength": 0}, "denoising_strength must be above 0"),
        ({"init_image": INIT, "denoising_strength": 0.1, "steps": 5}, "steps × denoising_strength must be at least 1"),
        ({"init_image": Image.new("RGB", (4, 4))}, "init_image is too small"),
        ({"init_image": Image.new("RGB", (5000, 5000))}, "init_image is too large"),
        ({"init_image": INIT, "mask": Image.new("L", (64, 64), 0)}, "The mask is empty"),
        ({"init_image": INIT, "mask": square_mask(), "mask_blur": 500}, "mask_blur must be between 0 and 64"),
    ],
)
def test_bad_request_gets_its_message(changes, message):
    request = GenerationRequest(**{"prompt": "p", "width": 64, "height": 64, **changes})
    with pytest.raises(RequestError) as caught:
        validate(request, Settings(max_size=1024, max_steps=100, max_batch=4, max_image_pixels=4096 * 4096))
    assert message in str(caught.value)


def test_submit_refuses_before_queueing(engine):
    with pytest.raises(RequestError, match="multiple of 8"):
        engine.submit(GenerationRequest("p", width=100, height=64))
    assert engine.queue.snapshot() == []


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_unreadable_upload(data):
    with pytest.raises(RequestError, match="is not an image|is not a readable image"):
        decode_image(data, "init_image", SETTINGS)


def test_oversized_upload_is_refused_from_its_header():
    buffer = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buffer, format="PNG")
    with pytest.raises(RequestError, match="too large"):
        decode_image(buffer.getvalue(), "init_image", Settings(max_image_pixels=1024 * 1024))


def test_mask_of_another_size_is_resized_with_a_note(engine):
    request = GenerationRequest("fix", seed=1, steps=2, init_image=gradient_image(64, 64), mask=square_mask(32, 32, (8, 8, 24, 24)), denoising_strength=1.0)
    job = engine.submit(request)
    result = job.wait(timeout=60)
    assert isinstance(result, Finished)
    assert any("mask (32×32) was resized" in note for note in job.started.notes)


def test_a1111_sampler_aliases_are_understood():
    from studio.samplers import find_sampler, sampler_aliases

    assert find_sampler("k_euler_a").name == "Euler a"
    assert find_sampler("k_dpmpp_2m_ka").name == "DPM++ 2M Karras"
    assert find_sampler("DPM++ 2M", schedule_type="Karras").name == "DPM++ 2M Karras"
    assert sampler_aliases("DPM++ 2M Karras") == ["k_dpmpp_2m_ka"]
