"""The demo model's training script, in miniature (python -m studio.demo.train --quick): a few steps on a few
scenes learn something (the denoising loss on a fixed batch goes down, the VAE's reconstruction too), and the folder
it writes loads through diffusers like any Stable Diffusion folder, in fp16, with the studio's demo family facts."""

from __future__ import annotations

import json

import torch

from studio.demo import train as demo_train


def test_a_few_training_steps_lower_the_loss_and_write_a_loadable_model(tmp_path):
    recipe = demo_train.QUICK
    pictures, captions = demo_train.pictures_and_captions(recipe)
    assert pictures.shape == (recipe.images, 3, 128, 128) and pictures.dtype == torch.uint8
    assert captions[0].endswith("background")

    vae, vae_losses = demo_train.train_vae(pictures, recipe, torch.device("cpu"), log=lambda line: None)
    assert sum(vae_losses[-5:]) < sum(vae_losses[:5])

    from studio.tokenizers import load_clip_tokenizer, write_clip_tokenizer

    tokenizer = load_clip_tokenizer(write_clip_tokenizer(tmp_path / "tokenizer"))
    mean, std = demo_train.encode_all(vae, pictures, torch.device("cpu"))
    assert mean.shape == (recipe.images, 4, 16, 16)  # 8x smaller, 4 channels: Stable Diffusion's latent shape
    scaling = 1.0 / float(mean.std())
    tokens = demo_train._token_ids(tokenizer, captions[:8])

    torch.manual_seed(recipe.seed + 2)  # the untrained networks train_denoiser starts from
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    before = demo_train.fixed_batch_loss(UNet2DConditionModel(**demo_train.unet_config()),
                                         CLIPTextModel(CLIPTextConfig(**demo_train.text_config())), mean[:8] * scaling, tokens)
    unet, text_encoder, losses = demo_train.train_denoiser(mean, std, captions, tokenizer, scaling, recipe, torch.device("cpu"),
                                                           log=lambda line: None)
    after = demo_train.fixed_batch_loss(unet, text_encoder, mean[:8] * scaling, tokens)
    print(f"fixed-batch denoising loss {before:.3f} -> {after:.3f} after {recipe.unet_steps} steps")
    assert after < 0.8 * before


def test_the_script_writes_an_fp16_diffusers_folder(tmp_path):
    from diffusers import StableDiffusionPipeline

    from studio.families import family_of_pipeline

    out = tmp_path / "demo"
    report = demo_train.train(demo_train.QUICK, out, "cpu", log=lambda line: None)
    assert json.loads((out / "training.json").read_text())["weights_bytes"] == report["weights_bytes"]
    assert report["weights_bytes"] <= 20_000_000  # the budget for what ships
    assert len(report["latent_rgb_factors"]) == 4 and len(report["latent_rgb_bias"]) == 3
    from safetensors import safe_open

    for part in ("unet", "vae", "text_encoder"):  # stored in fp16
        (weights,) = (out / part).glob("*.safetensors")
        with safe_open(str(weights), framework="pt") as stored:
            assert {stored.get_slice(key).get_dtype() for key in stored.keys()} == {"F16"}, part
    pipe = StableDiffusionPipeline.from_pretrained(str(out), torch_dtype=torch.float32)  # as the studio loads it on a CPU
    assert pipe.vae.config.latent_channels == 4 and round(pipe.vae.config.scaling_factor, 5) == report["scaling_factor"]
    assert family_of_pipeline(type(pipe).__name__, pipe.unet.config.cross_attention_dim).name == "demo"
    image = pipe("a red circle on a white background", num_inference_steps=2, height=128, width=128,
                 generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (128, 128)


def test_the_local_vae_recipe_trains_a_vae_without_attention():
    """--local-vae: a few steps lower its loss too, and the VAE it makes has no attention in its middle blocks."""
    from dataclasses import replace

    recipe = replace(demo_train.QUICK, **demo_train.LOCAL_VAE)
    pictures, _ = demo_train.pictures_and_captions(recipe)
    vae, losses = demo_train.train_vae(pictures, recipe, torch.device("cpu"), log=lambda line: None)
    assert sum(losses[-5:]) < sum(losses[:5])
    assert vae.config.mid_block_add_attention is False and vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean.shape == (1, 4, 8, 8)
