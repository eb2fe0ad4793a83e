"""Seamless textures (studio/tiling.py): inside `seamless(pipe)` every Conv2d of the UNet and VAE pads circularly,
so the picture lives on a torus — shifting the start latents by whole UNet cells shifts the image by the same amount,
with no edge anywhere (random weights make noise-like pictures, so "no seam" is tested as that exact wrap-around
rather than by looking at edge pixels). After the block everything is as before, bit for bit."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from studio.noise import batch_latents
from studio.tiling import conv_layers, seamless
from tests.helpers import reference_pipeline

SIZE = 128  # latents 16 x 16; the tiny UNet downsamples 3 times, so shifts by 8 latent pixels commute with it
SHIFT = 8


@pytest.fixture(scope="module")
def pipe(studio_cache):
    return reference_pipeline(studio_cache, "txt2img", "Euler")


def modes(pipe) -> set:
    return {layer.padding_mode for layer in conv_layers(pipe)}


def _image(pipe, latents=None, seed=3):
    return pipe("a mossy stone wall", num_inference_steps=2, guidance_scale=7.0, width=SIZE, height=SIZE, output_type="np",
                latents=latents, generator=torch.Generator("cpu").manual_seed(seed)).images[0]


def test_every_conv_of_unet_and_vae_is_circular_inside_and_back_after(pipe):
    layers = conv_layers(pipe)
    expected = [m for part in (pipe.unet, pipe.vae) for m in part.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(layers) == len(expected) > 20 and {id(m) for m in layers} == {id(m) for m in expected}
    assert modes(pipe) == {"zeros"}  # diffusers' convs pad with zeros
    with seamless(pipe) as switched:
        assert len(switched) == len(layers) and modes(pipe) == {"circular"}
        assert not any(isinstance(m, torch.nn.Conv2d) and m.padding_mode != "zeros" for m in pipe.text_encoder.modules())
    assert modes(pipe) == {"zeros"}


def test_padding_is_restored_after_an_exception(pipe):
    with pytest.raises(RuntimeError, match="boom"):
        with seamless(pipe):
            assert modes(pipe) == {"circular"}
            raise RuntimeError("boom")
    assert modes(pipe) == {"zeros"}


def test_nested_blocks_restore_each_layers_own_mode(pipe):
    with seamless(pipe):
        with seamless(pipe):
            assert modes(pipe) == {"circular"}
        assert modes(pipe) == {"circular"}
    assert modes(pipe) == {"zeros"}


def test_a_pipeline_without_unet_or_vae_is_left_alone():
    with seamless(SimpleNamespace(unet=None)) as switched:
        assert switched == []


def test_vae_decoder_wraps_around(pipe):
    z = torch.randn(1, 4, 8, 12, generator=torch.Generator("cpu").manual_seed(0))

    def decode(latents):
        with torch.no_grad():
            return pipe.vae.decode(latents).sample

    plain = decode(z)
    with seamless(pipe):
        tiled = decode(z)
        shifted = decode(torch.roll(z, shifts=(3, 5), dims=(2, 3)))
    assert not torch.allclose(tiled, plain, atol=1e-3)
    # the decoder has no downsampling: any latent shift is the same picture shifted by 8x, wrapped around
    assert torch.allclose(shifted, torch.roll(tiled, shifts=(24, 40), dims=(2, 3)), atol=1e-5)
    assert not torch.allclose(decode(torch.roll(z, shifts=(3, 5), dims=(2, 3))), torch.roll(plain, shifts=(24, 40), dims=(2, 3)), atol=1e-2)
    assert torch.equal(decode(z), plain)


def test_seamless_image_tiles_and_the_plain_image_is_unchanged(pipe):
    latents = batch_latents([3], None, 0.0, SIZE, SIZE)
    plain = _image(pipe)  # diffusers' own image of the seed
    assert np.array_equal(_image(pipe, latents), plain)

    with seamless(pipe):
        tiled = _image(pipe, latents)
        across = _image(pipe, torch.roll(latents, shifts=SHIFT, dims=3))  # the left half moved to the right
        down = _image(pipe, torch.roll(latents, shifts=SHIFT, dims=2))
    pixels_shift = SHIFT * pipe.vae_scale_factor  # half the picture

    assert np.abs(tiled - plain).max() > 0.05
    # On a torus: shifting the start noise by half the picture shifts the picture by half, its old edges now in
    # the middle and made exactly like any interior column/row — no seam.
    assert np.abs(across - np.roll(tiled, pixels_shift, axis=1)).max() < 1e-4
    assert np.abs(down - np.roll(tiled, pixels_shift, axis=0)).max() < 1e-4
    # Not so with zero padding: the edges are edges.
    plain_across = _image(pipe, torch.roll(latents, shifts=SHIFT, dims=3))
    assert np.abs(plain_across - np.roll(plain, pixels_shift, axis=1)).max() > 0.05

    assert modes(pipe) == {"zeros"}
    assert np.array_equal(_image(pipe), plain)  # after the block: the plain image, bit for bit


def test_lora_wrapped_convs_are_switched_too():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    unet = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 4, 3, padding=1))
    vae = torch.nn.Sequential(torch.nn.Conv2d(4, 3, 3, padding=1))
    config = peft.LoraConfig(r=2, lora_alpha=2, target_modules=["0", "2"], init_lora_weights=False)
    unet = peft.inject_adapter_in_model(config, unet)
    wrapped = unet[0]
    assert not isinstance(wrapped, torch.nn.Conv2d) and isinstance(wrapped.base_layer, torch.nn.Conv2d)
    pipe = SimpleNamespace(unet=unet, vae=vae)

    layers = conv_layers(pipe)
    lora_convs = [m for m in unet.modules() if isinstance(m, torch.nn.Conv2d) and m not in (unet[0].base_layer, unet[2].base_layer)]
    assert len(lora_convs) == 4  # lora_A (3x3, padded) and lora_B (1x1) of each
    assert len(layers) == 2 + 4 + 1

    x = torch.randn(1, 4, 8, 8, generator=torch.Generator("cpu").manual_seed(1))
    with torch.no_grad():
        plain = unet(x)
        with seamless(pipe):
            assert {m.padding_mode for m in layers} == {"circular"}
            assert wrapped.base_layer.padding_mode == "circular" and wrapped.lora_A["default"].padding_mode == "circular"
            tiled = unet(x)
            shifted = unet(torch.roll(x, shifts=(2, 5), dims=(2, 3)))
        assert torch.equal(unet(x), plain)
    assert not torch.allclose(tiled, plain, atol=1e-3)
    # base conv and LoRA delta both wrap around: the whole wrapped layer commutes with shifts
    assert torch.allclose(shifted, torch.roll(tiled, shifts=(2, 5), dims=(2, 3)), atol=1e-5)
    assert {m.padding_mode for m in layers} == {"zeros"}
