"""Start noise with A1111's variation seeds and seed resize (studio/noise.py): strength 0 is the seed's own noise as
diffusers draws it, bit for bit; strength 1 the subseed's; in between A1111's slerp; seed resize pastes centred."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

from studio.noise import batch_latents, generators_after_start, slerp, start_noise
from tests.helpers import reference_pipeline


def diffusers_noise(seed: int, shape_chw, dtype=torch.float32) -> torch.Tensor:
    """What diffusers draws for one image of `seed` (its randn_tensor with a CPU generator), without the batch axis."""
    return randn_tensor((1, *shape_chw), generator=torch.Generator("cpu").manual_seed(seed), dtype=dtype)[0]


def reference_slerp(val: float, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A1111's slerp as REFERENCE.md section 8 writes it, in float64 numpy (per-image [C, H, W], norms over axis 1)."""
    low_n = low / np.sqrt((low**2).sum(axis=1, keepdims=True))
    high_n = high / np.sqrt((high**2).sum(axis=1, keepdims=True))
    dot = (low_n * high_n).sum(axis=1)  # [C, W]
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = np.arccos(dot)
    so = np.sin(omega)
    return (np.sin((1 - val) * omega) / so)[:, None, :] * low + (np.sin(val * omega) / so)[:, None, :] * high


SHAPE = (4, 16, 12)  # a 96 x 128 image (width x height)


@pytest.mark.parametrize("seed", [0, 1234, 2**32 - 1])
def test_strength_zero_is_the_seeds_diffusers_noise_bit_for_bit(seed):
    expected = diffusers_noise(seed, SHAPE)
    assert torch.equal(start_noise(seed, 99, 0.0, SHAPE), expected)
    assert torch.equal(start_noise(seed, None, 0.7, SHAPE), expected)  # no subseed: no variation


def test_batch_equals_diffusers_batch_with_a_generator_per_image():
    seeds, subseeds = [5, 6, 7], [50, 51, 52]
    expected = randn_tensor((3, *SHAPE), generator=[torch.Generator("cpu").manual_seed(s) for s in seeds])
    latents = batch_latents(seeds, subseeds, 0.0, width=96, height=128)
    assert latents.shape == (3, *SHAPE) and latents.dtype == torch.float32 and latents.device.type == "cpu"
    assert torch.equal(latents, expected)
    # strength 1: each image is its own subseed's noise
    assert torch.equal(batch_latents(seeds, subseeds, 1.0, 96, 128), torch.stack([diffusers_noise(s, SHAPE) for s in subseeds]))
    # A1111: subseeds None means no variation at all; a missing subseed is 0
    assert torch.equal(batch_latents(seeds, None, 0.5, 96, 128), expected)
    assert torch.equal(batch_latents(seeds, [50], 1.0, 96, 128)[1], diffusers_noise(0, SHAPE))


def test_latent_channels_and_vae_scale():
    latents = batch_latents([3], [4], 0.0, width=64, height=32, latent_channels=16, vae_scale=16)
    assert latents.shape == (1, 16, 2, 4)
    assert torch.equal(latents[0], diffusers_noise(3, (16, 2, 4)))


@pytest.mark.parametrize("seed, subseed", [(1, 2), (42, 7), (123456789, 0)])
def test_strength_one_is_the_subseeds_noise_bit_for_bit(seed, subseed):
    assert torch.equal(start_noise(seed, subseed, 1.0, SHAPE), diffusers_noise(subseed, SHAPE))


def test_half_strength_differs_from_both_and_keeps_unit_std():
    shape = (4, 64, 64)
    mixed = start_noise(10, 20, 0.5, shape)
    seed_noise, sub_noise = diffusers_noise(10, shape), diffusers_noise(20, shape)
    assert (mixed - seed_noise).abs().mean() > 0.3 and (mixed - sub_noise).abs().mean() > 0.3
    assert 0.95 < float(mixed.std()) < 1.05 and abs(float(mixed.mean())) < 0.05
    # slerp, not lerp: the plain average of two independent noises would have std ~0.71
    assert float(((seed_noise + sub_noise) / 2).std()) < 0.75
    # between the two: correlated with each, equally
    corr = lambda a, b: float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])  # noqa: E731
    assert corr(mixed, seed_noise) == pytest.approx(corr(mixed, sub_noise), abs=0.03)
    assert corr(mixed, seed_noise) == pytest.approx(0.707, abs=0.03)


@pytest.mark.parametrize("val", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_slerp_matches_the_reference_formula(val):
    low, high = diffusers_noise(1, SHAPE), diffusers_noise(2, SHAPE)
    ours = slerp(val, low, high)
    theirs = reference_slerp(val, low.double().numpy(), high.double().numpy())
    assert ours.shape == low.shape and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=2e-5)


def test_slerp_of_nearly_equal_noises_takes_a1111s_linear_branch():
    low = diffusers_noise(1, SHAPE)
    high = low + 1e-4 * diffusers_noise(2, SHAPE)
    # A1111's quirk: low * v + high * (1 - v) (the weights swapped against the sin formula), for dot.mean() > 0.9995
    assert torch.equal(slerp(0.25, low, high), low * 0.25 + high * (1 - 0.25))
    # seed == subseed: that branch, so the same noise up to float rounding (as in A1111)
    same = diffusers_noise(8, SHAPE)
    assert torch.equal(start_noise(8, 8, 0.6, SHAPE), same * 0.6 + same * (1 - 0.6))
    assert torch.allclose(start_noise(8, 8, 0.6, SHAPE), same, rtol=1e-6, atol=1e-7)


def test_other_dtypes_draw_what_diffusers_draws_in_that_dtype():
    shape = (4, 9, 9)  # 324 values: not a multiple of 16, where torch's float16 draw differs from float32's cast
    for dtype in (torch.float16, torch.bfloat16):
        noise = start_noise(3, 4, 0.0, shape, dtype=dtype)
        assert noise.dtype == dtype and torch.equal(noise, diffusers_noise(3, shape, dtype))
        assert torch.equal(start_noise(3, 4, 1.0, shape, dtype=dtype), diffusers_noise(4, shape, dtype))
        mixed = start_noise(3, 4, 0.3, shape, dtype=dtype)
        expected = slerp(0.3, diffusers_noise(3, shape, dtype).float(), diffusers_noise(4, shape, dtype).float()).to(dtype)
        assert torch.equal(mixed, expected)


@pytest.mark.parametrize("strength", [0.0, 0.35, 1.0])
def test_seed_resize_from_the_target_size_is_no_resize(strength):
    plain = start_noise(11, 12, strength, SHAPE)
    assert torch.equal(start_noise(11, 12, strength, SHAPE, seed_resize_from=(96, 128)), plain)
    assert torch.equal(start_noise(11, 12, strength, SHAPE, seed_resize_from=(0, 0)), plain)  # A1111's "off"
    assert torch.equal(batch_latents([11], [12], strength, 96, 128, seed_resize_from=(96, 128))[0], plain)


@pytest.mark.parametrize("strength", [0.0, 0.4])
def test_resize_from_a_smaller_size_keeps_the_small_noise_in_the_centre(strength):
    target = (4, 16, 16)  # 128 x 128
    small = start_noise(21, 22, strength, (4, 8, 8))  # what 64 x 64 would start from
    noise = start_noise(21, 22, strength, target, seed_resize_from=(64, 64))
    assert torch.equal(noise[:, 4:12, 4:12], small)
    # around it: the seed's own noise at the target size (A1111 draws it with the seed, not the subseed)
    outside = torch.ones(target, dtype=torch.bool)
    outside[:, 4:12, 4:12] = False
    assert torch.equal(noise[outside], diffusers_noise(21, target)[outside])


def a1111_paste(target_hw, source_hw):
    """A1111's offsets written out: (target rows, target cols, source rows, source cols) slices of the paste."""
    def axis(t, s):
        d = (t - s) // 2
        if d >= 0:
            return slice(d, d + s), slice(0, s)
        n = s + 2 * d
        return slice(0, n), slice(-d, -d + n)
    (ty, sy), (tx, sx) = axis(target_hw[0], source_hw[0]), axis(target_hw[1], source_hw[1])
    return ty, tx, sy, sx


@pytest.mark.parametrize("resize_from, source_hw", [
    ((192, 192), (24, 24)),  # larger: the centre of the big noise, cropped
    ((72, 136), (17, 9)),  # odd differences: a smaller width (pasted at 3), a taller height (cropped from 1, 15 rows)
    ((64, 192), (24, 8)),  # narrower and taller
])
def test_resize_offsets_are_a1111s(resize_from, source_hw):
    target = (4, 16, 16)
    source = start_noise(31, 32, 0.5, (4, *source_hw))
    noise = start_noise(31, 32, 0.5, target, seed_resize_from=resize_from)
    expected = diffusers_noise(31, target).clone()
    ty, tx, sy, sx = a1111_paste(target[1:], source_hw)
    expected[:, ty, tx] = source[:, sy, sx]
    assert torch.equal(noise, expected)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        start_noise(1, 2, 0.5, (16, 16))
    with pytest.raises(ValueError):
        start_noise(1, 2, 0.5, SHAPE, seed_resize_from=(4, 64))  # under one latent pixel wide
    with pytest.raises(ValueError):
        batch_latents([], [], 0.5, 64, 64)


def _image(pipe, **arguments):
    return pipe("a red fox", num_inference_steps=3, guidance_scale=7.0, width=64, height=96, output_type="np", **arguments).images


def test_strength_zero_and_one_on_the_tiny_model_are_the_seeds_images(studio_cache):
    pipe = reference_pipeline(studio_cache, "txt2img", "Euler")
    seed_image = _image(pipe, generator=torch.Generator("cpu").manual_seed(1234))
    sub_image = _image(pipe, generator=torch.Generator("cpu").manual_seed(77))
    zero = _image(pipe, latents=batch_latents([1234], [77], 0.0, 64, 96), generator=torch.Generator("cpu").manual_seed(1234))
    one = _image(pipe, latents=batch_latents([1234], [77], 1.0, 64, 96), generator=torch.Generator("cpu").manual_seed(1234))
    half = _image(pipe, latents=batch_latents([1234], [77], 0.5, 64, 96), generator=torch.Generator("cpu").manual_seed(1234))
    assert np.array_equal(zero, seed_image)
    assert np.array_equal(one, sub_image)
    assert not np.array_equal(half, seed_image) and not np.array_equal(half, sub_image)


def test_batch_latents_on_the_tiny_model_match_a_generator_per_image(studio_cache):
    pipe = reference_pipeline(studio_cache, "txt2img", "Euler")
    seeds = [5, 6]
    plain = _image(pipe, num_images_per_prompt=2, generator=[torch.Generator("cpu").manual_seed(s) for s in seeds])
    ours = _image(pipe, num_images_per_prompt=2, latents=batch_latents(seeds, [9, 10], 0.0, 64, 96),
                  generator=[torch.Generator("cpu").manual_seed(s) for s in seeds])
    assert np.array_equal(ours, plain)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_generators_after_start_are_where_diffusers_leaves_them(dtype):
    for width, height in ((64, 96), (72, 72)):  # 4 x 9 x 9: a draw whose length depends on the dtype
        theirs = [torch.Generator("cpu").manual_seed(s) for s in (3, 4)]
        randn_tensor((2, 4, height // 8, width // 8), generator=theirs, dtype=dtype)
        ours = generators_after_start([3, 4], width, height, dtype=dtype)
        for mine, reference in zip(ours, theirs):
            assert mine.device.type == "cpu"
            assert torch.equal(torch.randn(100, generator=mine), torch.randn(100, generator=reference))


def test_ancestral_sampler_with_latents_needs_the_advanced_generators(studio_cache):
    pipe = reference_pipeline(studio_cache, "txt2img", "Euler a")  # draws noise at every step from the generator
    plain = _image(pipe, generator=torch.Generator("cpu").manual_seed(5))
    latents = batch_latents([5], [6], 0.0, 64, 96)
    assert np.array_equal(_image(pipe, latents=latents, generator=generators_after_start([5], 64, 96)), plain)
    # with fresh generators the per-step noise would restart at the start noise: another picture
    assert not np.array_equal(_image(pipe, latents=latents, generator=torch.Generator("cpu").manual_seed(5)), plain)
