"""A1111's inpainting options — Inpaint area (whole picture / only masked, with its padding), Masked content (fill,
original, latent noise, latent nothing), their infotext — and outpainting, on the tiny model and through
/sdapi/v1/img2img."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from studio.contract import Finished, GenerationRequest, RequestError, Task
from studio.inpainting import (
    crop_region,
    expand_crop_region,
    fill_masked,
    latent_mask,
    latent_start,
    outpaint_canvas,
    paste_into,
)
from studio.metadata import parse_infotext, read_infotext
from studio.tasks import TASKS
from studio.validation import validate
from tests.helpers import gradient_image, pixels, reference_pipeline, square_mask
from tests.server_support import SMALL, live_server

BOX_MASK = (40, 16, 55, 31)  # drawn inclusive: its bounding box is (40, 16, 56, 32)


def _mask(size=(128, 64), box=BOX_MASK) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def _finished(engine, request: GenerationRequest) -> Finished:
    result = engine.generate(request)
    assert isinstance(result, Finished), result
    return result


def _generate(engine, **fields):
    """(pixels, infotext, PIL image) of the single image of an inpaint job on the tiny model."""
    request = GenerationRequest(**{"prompt": "a hole", "seed": 9, "steps": 4, "sampler_name": "Euler", **fields})
    saved = _finished(engine, request).images[0]
    image = Image.open(saved.path)
    image.load()
    return pixels(image), saved.infotext, image


# ---- the geometry of "Only masked", as A1111 computes it


def test_crop_region_and_its_expansion_follow_a1111():
    mask = _mask()
    assert crop_region(mask, 0) == (40, 16, 56, 32)
    assert crop_region(mask, 8) == (32, 8, 64, 40)
    assert crop_region(mask, 100) == (0, 0, 128, 64), "the padding stops at the picture's edges"
    assert crop_region(Image.new("L", (64, 64)), 8) is None
    # A1111's docstring: a mask in a 128x32 region, processed at 512x512 → a 128x128 region.
    assert expand_crop_region((0, 0, 128, 32), 512, 512, 512, 512) == (0, 0, 128, 128)
    assert expand_crop_region((32, 8, 64, 40), 128, 64, 128, 64) == (16, 8, 80, 40)  # grown to 2:1, centred
    assert expand_crop_region((400, 480, 512, 512), 512, 512, 512, 512) == (400, 400, 512, 512)  # shifted inside
    assert expand_crop_region((100, 0, 120, 64), 64, 128, 128, 64) == (94, 0, 126, 64)  # grown to 1:2
    assert expand_crop_region((100, 0, 120, 64), 256, 128, 128, 64) == (0, 0, 128, 64)  # shifted, then clipped


def test_fill_keeps_unmasked_pixels_and_paints_the_hole_from_around_it():
    image = Image.new("RGB", (64, 64), (200, 40, 40))
    ImageDraw.Draw(image).rectangle((0, 0, 63, 15), fill=(20, 20, 220))
    image.paste((0, 255, 0), (16, 16, 48, 48))  # the masked area holds a colour that is nowhere else
    filled = pixels(fill_masked(image, square_mask()))
    outside = np.asarray(square_mask()) == 0
    assert np.array_equal(filled[outside], pixels(image)[outside])
    hole = filled[16:48, 16:48]
    assert hole[..., 1].max() < 100, "the hole still shows its own (green) pixels"
    top, bottom = hole[0].mean(axis=0), hole[-1].mean(axis=0)
    assert top[2] > bottom[2] + 40 and bottom[0] > top[0] + 40, "the hole takes the colours around it (blue above, red below)"


# ---- Inpaint area: Only masked, on the engine


def test_only_masked_draws_the_crop_at_full_size_as_diffusers_would_and_pastes_it_back(engine, studio_cache):
    init, mask = gradient_image(128, 64), _mask()
    ours, infotext, image = _generate(engine, init_image=init, mask=mask, mask_blur=0, denoising_strength=1.0, width=128,
                                      height=64, inpaint_full_res=True, inpaint_full_res_padding=8, inpainting_fill=1)
    assert image.size == (128, 64)
    box = (16, 8, 80, 40)  # the mask's box (40, 16, 56, 32) + 8 pixels, grown to 2:1 (above)
    crop_image = init.crop(box).resize((128, 64), Image.LANCZOS)
    crop_mask = mask.crop(box).resize((128, 64), Image.LANCZOS)
    reference = reference_pipeline(studio_cache, "inpaint", "Euler")
    raw = reference("a hole", image=crop_image, mask_image=crop_mask, strength=1.0, num_inference_steps=4, guidance_scale=7.0,
                    width=128, height=64, generator=torch.Generator("cpu").manual_seed(9)).images[0]
    theirs = pixels(reference.image_processor.apply_overlay(mask, init, raw, crop_coords=box))
    assert np.array_equal(ours, theirs)
    outside = np.ones((64, 128), bool)
    outside[box[1]:box[3], box[0]:box[2]] = False
    assert np.array_equal(ours[outside], pixels(init)[outside]), "pixels outside the padded crop changed"
    assert not np.array_equal(ours[16:32, 40:56], pixels(init)[16:32, 40:56]), "the masked area was not repainted"
    whole, _, _ = _generate(engine, init_image=init, mask=mask, mask_blur=0, denoising_strength=1.0, width=128, height=64)
    assert not np.array_equal(ours, whole)
    fields = parse_infotext(infotext)
    assert fields["Inpaint area"] == "Only masked" and fields["Masked area padding"] == "8" and fields["Size-1"] == "128"
    assert "Mask blur" not in fields and "Masked content" not in fields  # A1111 writes neither for blur 0 / original


def test_only_masked_keeps_the_picture_size_at_another_drawing_size(engine):
    init, mask = gradient_image(128, 64), _mask()
    ours, infotext, image = _generate(engine, init_image=init, mask=mask, mask_blur=4, steps=2, width=64, height=64,
                                      inpaint_full_res=True, inpaint_full_res_padding=4)
    assert image.size == (128, 64), "the result is the picture as given, not the drawing size"
    from studio.pipelines import blur_mask

    x1, y1, x2, y2 = expand_crop_region(crop_region(blur_mask(mask, 4), 4), 64, 64, 128, 64)
    assert (x2 - x1) == (y2 - y1) and x2 - x1 < 128, "the crop is square (the drawing size's aspect) and partial"
    outside = np.ones((64, 128), bool)
    outside[y1:y2, x1:x2] = False
    assert np.array_equal(ours[outside], pixels(init)[outside])
    assert not np.array_equal(ours[~outside], pixels(init)[~outside])
    fields = parse_infotext(infotext)
    assert (fields["Size-1"], fields["Size-2"]) == ("64", "64") and fields["Mask blur"] == "4"
    assert fields["Masked area padding"] == "4"


# ---- Masked content


FILL_WORDS = {0: "fill", 1: None, 2: "latent noise", 3: "latent nothing"}


@pytest.fixture(scope="module")
def four_fills(engine):
    """The same job with each inpainting_fill: {fill: (pixels, infotext)}."""
    results = {}
    for fill in FILL_WORDS:
        ours, infotext, _ = _generate(engine, init_image=gradient_image(), mask=square_mask(), denoising_strength=0.75,
                                      inpainting_fill=fill, seed=3)
        results[fill] = (ours, infotext)
    return results


def test_each_masked_content_runs_differs_and_is_written(four_fills):
    for fill, words in FILL_WORDS.items():
        assert parse_infotext(four_fills[fill][1]).get("Masked content") == words, fill
    hole = (slice(20, 44), slice(20, 44))
    for a in FILL_WORDS:
        for b in FILL_WORDS:
            if a < b:
                assert not np.array_equal(four_fills[a][0][hole], four_fills[b][0][hole]), f"fills {a} and {b} gave the same picture"
    corner = four_fills[0][0][:8, :8]
    assert all(np.array_equal(four_fills[f][0][:8, :8], corner) for f in FILL_WORDS), "unmasked pixels must stay"


@pytest.mark.parametrize("fill", [2, 3])
def test_latent_fills_are_deterministic_for_a_seed(engine, four_fills, fill):
    again, _, _ = _generate(engine, init_image=gradient_image(), mask=square_mask(), denoising_strength=0.75, inpainting_fill=fill, seed=3)
    assert np.array_equal(again, four_fills[fill][0])
    other, _, _ = _generate(engine, init_image=gradient_image(), mask=square_mask(), denoising_strength=0.75, inpainting_fill=fill, seed=4)
    assert not np.array_equal(other, again)


def test_latent_start_replaces_only_the_masked_latents(engine):
    from studio.noise import batch_latents
    from studio.pipelines import make_scheduler, task_pipeline
    from studio.samplers import find_sampler

    model = engine.models.get("tiny")
    pipe = task_pipeline(model.pipe, model.family, Task.INPAINT, make_scheduler(find_sampler("Euler"), model.scheduler_config), engine.dtype)
    image, mask = gradient_image(), square_mask()
    nothing = latent_start(pipe, image, mask, [5, 6], noise=False)["image"]
    noise = latent_start(pipe, image, mask, [5, 6], noise=True)["image"]
    repaint = torch.from_numpy(latent_mask(mask, 8, 8)).bool()
    assert repaint.any() and not repaint.all()
    assert nothing.shape == (1, 4, 8, 8) and noise.shape == (2, 4, 8, 8)
    assert torch.all(nothing[:, :, repaint] == 0) and torch.all(nothing[:, :, ~repaint] != 0)
    seeds_noise = batch_latents([5, 6], None, 0.0, 64, 64)  # what diffusers starts images of seeds 5 and 6 from
    assert torch.equal(noise[:, :, repaint], seeds_noise[:, :, repaint])
    assert torch.equal(noise[:, :, ~repaint], nothing.expand(2, -1, -1, -1)[:, :, ~repaint])


def test_infotext_fields_are_a1111s():
    spec = TASKS[Task.INPAINT]
    plain = GenerationRequest("x", mask_blur=4)
    assert spec.infotext(plain) == {"Denoising strength": 0.75, "Mask blur": 4}
    assert spec.infotext(GenerationRequest("x", mask_blur=0))["Mask blur"] is None
    asked = spec.infotext(GenerationRequest("x", inpaint_full_res=True, inpaint_full_res_padding=32, inpainting_fill=0))
    assert list(asked) == ["Denoising strength", "Mask blur", "Inpaint area", "Masked area padding", "Masked content"]
    assert (asked["Inpaint area"], asked["Masked area padding"], asked["Masked content"]) == ("Only masked", 32, "fill")


# ---- validation


@pytest.mark.parametrize("change, words", [
    ({"inpainting_fill": 7}, "inpainting_fill"),
    ({"inpainting_fill": -1}, "inpainting_fill"),
    ({"inpaint_full_res_padding": -1}, "inpaint_full_res_padding"),
    ({"inpaint_full_res_padding": 10**9}, "inpaint_full_res_padding"),
    ({"inpaint_full_res": "yes"}, "inpaint_full_res"),
])
def test_bad_inpainting_options_are_refused_before_any_work(tiny_settings, change, words):
    request = GenerationRequest("x", init_image=gradient_image(), mask=square_mask(), **change)
    with pytest.raises(RequestError, match=words):
        validate(request, tiny_settings)
    validate(GenerationRequest("x", init_image=gradient_image(), mask=square_mask(), inpainting_fill=3, inpaint_full_res=True,
                               inpaint_full_res_padding=256), tiny_settings)


# ---- /sdapi/v1/img2img


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def client(engine):
    with live_server(engine, users=None) as server, server.client() as client:
        yield client


def _api_image(data: dict) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data["images"][0])))
    image.load()
    return image


@pytest.mark.parametrize("sent, mapped", [
    ({}, dict(inpaint_full_res=True, inpaint_full_res_padding=0, inpainting_fill=0)),  # A1111's API defaults
    ({"inpaint_full_res": False, "inpainting_fill": 1}, dict(inpaint_full_res=False, inpainting_fill=1)),
    ({"inpaint_full_res": True, "inpaint_full_res_padding": 8, "inpainting_fill": 3},
     dict(inpaint_full_res=True, inpaint_full_res_padding=8, inpainting_fill=3)),
])
def test_img2img_route_honours_the_inpainting_options(client, engine, sent, mapped):
    init, mask = gradient_image(96, 64), _mask((96, 64), (36, 20, 51, 35))
    body = dict(SMALL, prompt="a hole", seed=11, width=64, height=64, init_images=[_b64(init)], mask=_b64(mask), **sent)
    response = client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    image, info = _api_image(response.json()), json.loads(response.json()["info"])
    direct = _finished(engine, GenerationRequest("a hole", seed=11, steps=2, sampler_name="Euler", width=64, height=64,
                                                 init_image=init, mask=mask, **mapped)).images[0]
    reference = Image.open(direct.path)
    assert reference.tobytes() == image.convert(reference.mode).tobytes()
    assert info["infotexts"][0] == read_infotext(reference)
    fields = parse_infotext(info["infotexts"][0])
    only_masked = mapped["inpaint_full_res"]
    assert image.size == ((96, 64) if only_masked else (64, 64))
    assert fields.get("Inpaint area") == ("Only masked" if only_masked else None)
    assert fields.get("Masked area padding") == (str(mapped.get("inpaint_full_res_padding")) if only_masked else None)
    assert fields.get("Masked content") == FILL_WORDS[mapped["inpainting_fill"]]


@pytest.mark.parametrize("change, words", [
    ({"inpainting_fill": 7}, "inpainting_fill"),
    ({"inpaint_full_res_padding": -8}, "inpaint_full_res_padding"),
    ({"inpaint_full_res_padding": 10**6}, "inpaint_full_res_padding"),
])
def test_img2img_route_refuses_bad_inpainting_options(client, change, words):
    body = dict(SMALL, init_images=[_b64(gradient_image())], mask=_b64(square_mask()), **change)
    response = client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 422 and words in response.json()["detail"], response.text


# ---- outpainting


def test_outpaint_canvas_extends_fills_and_masks_the_new_area():
    image = gradient_image()
    canvas, mask = outpaint_canvas(image, left=16, right=0, up=8, down=24, max_size=256)
    assert canvas.size == mask.size == (80, 96)
    assert np.array_equal(pixels(canvas)[8:72, 16:80], pixels(image)), "the picture sits at (left, up), untouched"
    m = np.asarray(mask)
    assert (m[:, :16] == 255).all() and (m[:8] == 255).all() and (m[72:] == 255).all(), "the new area is masked"
    assert (m[8:16, 16:] == 255).all() and (m[:, 16:24] == 255).all() and (m[64:72] == 255).all(), "8 pixels of overlap"
    assert (m[16:64, 24:80] == 0).all(), "the picture away from the seam is kept (no overlap on the right: not extended)"
    new_left = pixels(canvas)[30, :8].mean(axis=0)
    edge = pixels(image)[22, 0]
    assert np.abs(new_left - edge).max() < 40, "the new area takes the colours of the picture's edge"
    for fill in ("fill", "black"):
        other, other_mask = outpaint_canvas(image, left=16, up=8, down=24, max_size=256, fill=fill)
        assert np.array_equal(np.asarray(other_mask), m) and np.array_equal(pixels(other)[8:72, 16:80], pixels(image))
    assert pixels(outpaint_canvas(image, left=16, max_size=256, fill="black")[0])[:, :16].max() == 0


@pytest.mark.parametrize("sides, max_size, words", [
    (dict(left=12), 256, "multiple of 8"),
    (dict(up=-8), 256, "multiple of 8"),
    (dict(), 256, "at least one side"),
    (dict(right=200), 256, "over the server's limit"),
    (dict(left=8, fill="mirror"), 256, "fill"),
])
def test_outpaint_canvas_refuses_bad_sides(sides, max_size, words):
    with pytest.raises(RequestError, match=words):
        outpaint_canvas(gradient_image(), max_size=max_size, **sides)


def test_outpainting_through_the_engine_grows_the_picture_and_keeps_its_middle(engine):
    image = gradient_image()
    canvas, mask = outpaint_canvas(image, left=16, up=8, down=24, max_size=engine.settings.max_size)
    ours, _, result = _generate(engine, init_image=canvas, mask=mask, denoising_strength=0.9)
    assert result.size == (80, 96)
    # Away from the seams (8 pixels of overlap, then the mask's blur of 4): the picture as it was.
    assert np.array_equal(ours[8 + 24:72 - 24, 16 + 24:80], pixels(image)[24:40, 24:64])
    assert not np.array_equal(ours[:, :16], pixels(canvas)[:, :16]), "the new area was not drawn"


def test_paste_into_puts_the_crop_back_through_the_mask():
    original = Image.new("RGB", (32, 16), (10, 10, 10))
    mask = Image.new("L", (32, 16), 0)
    mask.paste(255, (8, 4, 12, 8))
    drawn = Image.new("RGB", (16, 16), (250, 0, 0))
    result = pixels(paste_into(original, mask, drawn, (8, 0, 16, 8)))
    assert (result[4:8, 8:12] == (250, 0, 0)).all() and (result[np.asarray(mask) == 0] == 10).all()
