"""Train the `demo` model from nothing: python -m studio.demo.train [--out models/demo] [--device cuda]

A genuine latent diffusion model with Stable Diffusion's shape, small enough to train on a laptop CPU: the scenes
of studio/demo/scenes.py (simple shapes, captions from a small grammar), an 8x AutoencoderKL with 4 latent channels
trained first, then a small CLIP text encoder and a small cross-attention UNet trained together on the VAE's
latents (epsilon prediction on SD 1.5's noise schedule, so every diffusers scheduler applies). Everything is
seeded: the same recipe on the same machine gives the same weights. The result is a diffusers folder in fp16
(StableDiffusionPipeline.from_pretrained loads it) plus training.json (the recipe, losses, times, the preview
factors fitted to the VAE).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..families import DEMO_CROSS_ATTENTION_DIM, TINY_FAMILY, family
from . import NAME
from .scenes import scenes

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_OUT = ROOT / "models" / NAME
# SD 1.5's noise schedule (the studio's SD 1.x config folder), so every scheduler the studio offers applies.
SD15_SCHEDULER = ROOT / "models" / "configs" / family(TINY_FAMILY).base_config / "scheduler" / "scheduler_config.json"
TEXT_WIDTH = DEMO_CROSS_ATTENTION_DIM  # the demo family is told apart by this cross-attention width


@dataclass(frozen=True)
class Recipe:
    seed: int = 0
    images: int = 12000
    size: int = 128
    vae_steps: int = 2400
    vae_batch: int = 16
    vae_crop: int = 64  # the VAE is convolutional: it learns from crops, 4x cheaper than whole pictures
    # A VAE whose latent cells each say their own patch's colour (`--local-vae`, LOCAL_VAE; off in the shipped
    # model): no attention in its middle blocks, the decoder shown a random window of the crop's latent (6 of 8
    # cells a side), and a linear latent -> colour map trained alongside. With the shipped VAE, flat red and flat
    # gray have the same latent inside the picture (0.02 apart; the colour rides in from the border), which a
    # denoiser cannot draw; with this one every pair of named colours is >= 0.77 latent stds apart.
    vae_attention: bool = True
    vae_window: int = 0  # 0: the decoder sees the whole crop's latent
    colour_weight: float = 0.0
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    # The decoder again, on whole pictures with the encoder frozen: trained on crops alone, its group norms see other
    # statistics than a whole picture has, and whole pictures come out smeared. The latents stay as they were.
    decoder_steps: int = 300
    decoder_batch: int = 8
    decoder_lr: float = 3e-4
    unet_steps: int = 4800
    unet_batch: int = 32
    lr: float = 5e-4
    warmup: int = 200
    ema: float = 0.999
    caption_dropout: float = 0.1  # the empty prompt, so classifier-free guidance has something to push away from
    min_snr_gamma: float = 5.0


LOCAL_VAE = dict(vae_attention=False, vae_window=6, colour_weight=1.0)
QUICK = Recipe(images=48, vae_steps=30, vae_batch=8, decoder_steps=4, decoder_batch=4, unet_steps=40, unet_batch=8, warmup=5,
               ema=0.9)


def vae_config(attention: bool = True) -> dict:
    # 8 norm groups (2–8 channels each): with one or two channels a group, a flat-coloured picture normalizes to
    # almost nothing and colours come back mixed with their neighbours'.
    return dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=[16, 32, 64, 64],
                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, norm_num_groups=8,
                sample_size=128, **({} if attention else {"mid_block_add_attention": False}))


def unet_config() -> dict:
    return dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[48, 96, 96],
                down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim=TEXT_WIDTH,
                attention_head_dim=4, norm_num_groups=16)


def text_config() -> dict:
    return dict(vocab_size=49408, hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_hidden_layers=3,
                num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406,
                eos_token_id=49407, pad_token_id=49407, projection_dim=TEXT_WIDTH)


def pictures_and_captions(recipe: Recipe) -> tuple[torch.Tensor, list[str]]:
    """The data set: uint8 pictures [N, 3, H, W] and their captions, regenerated from the recipe's seed."""
    pictures, captions = [], []
    for image, text in scenes(recipe.images, recipe.seed):
        pictures.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
        captions.append(text)
    return torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous(), captions


def as_unit(pictures: torch.Tensor) -> torch.Tensor:
    return pictures.float() / 127.5 - 1.0


def train_vae(pictures: torch.Tensor, recipe: Recipe, device: torch.device, log: Callable[[str], None]):
    from diffusers import AutoencoderKL

    torch.manual_seed(recipe.seed)
    vae = AutoencoderKL(**vae_config(recipe.vae_attention)).to(device)
    trained = list(vae.parameters())
    colour_of_cell = None
    if recipe.colour_weight:
        colour_of_cell = torch.nn.Conv2d(4, 3, 1).to(device)  # a linear latent -> colour map, trained alongside
        trained += list(colour_of_cell.parameters())
    optimizer = torch.optim.AdamW(trained, lr=recipe.vae_lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(recipe.seed + 1)

    def loss_at(step: int) -> torch.Tensor:
        batch = _crops(pictures, recipe.vae_batch, recipe.vae_crop, generator).to(device)
        posterior = vae.encode(batch).latent_dist
        if not recipe.vae_window and colour_of_cell is None:  # the shipped model's recipe, draw for draw
            recon = vae.decode(posterior.sample(generator=None)).sample
            return _reconstruction_loss(recon, batch) + recipe.kl_weight * posterior.kl().mean()
        sample = posterior.sample(generator=generator)
        latents, pixels = _window(sample, batch, recipe.vae_window, generator) if recipe.vae_window else (sample, batch)
        loss = _reconstruction_loss(vae.decode(latents).sample, pixels) + recipe.kl_weight * posterior.kl().mean()
        if colour_of_cell is not None:  # each latent cell, noise and all, says its patch's colour through one linear map
            loss = loss + recipe.colour_weight * F.mse_loss(colour_of_cell(sample), F.avg_pool2d(batch, batch.shape[-1] // sample.shape[-1]))
        return loss

    losses = _fit(optimizer, recipe.vae_lr, recipe.vae_steps, loss_at, "vae", log)
    vae.eval()
    return vae, losses


def train_decoder(vae, pictures: torch.Tensor, recipe: Recipe, device: torch.device, log: Callable[[str], None]) -> list:
    """Fine-tune the decoder on whole pictures from the frozen encoder's latent means (what the denoiser learns)."""
    vae.requires_grad_(False)
    vae.decoder.requires_grad_(True)
    vae.post_quant_conv.requires_grad_(True)
    trained = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    optimizer = torch.optim.AdamW(trained, lr=recipe.decoder_lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(recipe.seed + 5)
    vae.train()

    def loss_at(step: int) -> torch.Tensor:
        index = torch.randint(0, len(pictures), (recipe.decoder_batch,), generator=generator)
        batch = as_unit(pictures[index]).to(device)
        with torch.no_grad():
            latents = vae.encode(batch).latent_dist.mean
        recon = vae.decode(latents).sample
        return _reconstruction_loss(recon, batch)

    losses = _fit(optimizer, recipe.decoder_lr, recipe.decoder_steps, loss_at, "decoder", log)
    vae.requires_grad_(True)
    vae.eval()
    return losses


def _reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE, plus half of L1 for crisp flat-colour edges."""
    return F.mse_loss(recon, target) + 0.5 * F.l1_loss(recon, target)


def _fit(optimizer, lr: float, steps: int, loss_at: Callable[[int], torch.Tensor], name: str,
         log: Callable[[str], None]) -> list:
    """The VAE stages' loop: `steps` optimizer steps on loss_at(step), a short warm-up then a cosine learning rate."""
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * _cosine(step, steps, 20)
        loss = loss_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == steps - 1:
            log(f"{name} step {step}/{steps} loss {np.mean(losses[-100:]):.4f}")
    return losses


def encode_all(vae, pictures: torch.Tensor, device: torch.device, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Each picture's latent distribution (mean, std) at full size, unscaled."""
    means, stds = [], []
    with torch.no_grad():
        for start in range(0, len(pictures), batch):
            dist = vae.encode(as_unit(pictures[start : start + batch]).to(device)).latent_dist
            means.append(dist.mean.cpu())
            stds.append(dist.std.cpu())
    return torch.cat(means), torch.cat(stds)


def preview_factors(latents: torch.Tensor, pictures: torch.Tensor) -> tuple[list[list[float]], list[float]]:
    """The latent -> RGB linear map (4x3 factors and a bias) that best predicts each picture, shrunk to the latent
    grid, from its scaled latent (least squares): the studio's cheap live preview for this model."""
    small = F.interpolate(as_unit(pictures), size=latents.shape[-2:], mode="area")  # [N, 3, h, w] in [-1, 1]
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).double()
    y = small.permute(0, 2, 3, 1).reshape(-1, 3).double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution  # [5, 3]
    return [[round(float(v), 4) for v in row] for row in solution[:-1]], [round(float(v), 4) for v in solution[-1]]


def train_denoiser(latent_mean: torch.Tensor, latent_std: torch.Tensor, captions: list[str], tokenizer, scaling: float,
                   recipe: Recipe, device: torch.device, log: Callable[[str], None]):
    """The text encoder and UNet, trained together; returns their EMA copies (what ships) and the losses."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(recipe.seed + 2)
    unet = UNet2DConditionModel(**unet_config()).to(device)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config())).to(device)
    noise_schedule = DDPMScheduler.from_config(_scheduler_config())
    ids = _token_ids(tokenizer, captions)
    empty = _token_ids(tokenizer, [""])[0]
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.01)
    ema = [p.detach().clone() for p in params]
    snr = (noise_schedule.alphas_cumprod / (1 - noise_schedule.alphas_cumprod)).to(device)
    generator = torch.Generator().manual_seed(recipe.seed + 3)
    losses = []
    started = time.perf_counter()
    for step in range(recipe.unet_steps):
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr * _cosine(step, recipe.unet_steps, recipe.warmup)
        index = torch.randint(0, len(captions), (recipe.unet_batch,), generator=generator)
        latents = (latent_mean[index] + latent_std[index] * torch.randn(latent_mean[index].shape, generator=generator)) * scaling
        tokens = ids[index].clone()
        tokens[torch.rand(len(index), generator=generator) < recipe.caption_dropout] = empty
        noise = torch.randn(latents.shape, generator=generator)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (len(index),), generator=generator)
        loss = _denoising_loss(unet, text_encoder, noise_schedule, latents.to(device), noise.to(device), t.to(device),
                               tokens.to(device), snr, recipe.min_snr_gamma)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        decay = min(recipe.ema, (1 + step) / (10 + step))  # a short memory at first, while the weights move fast
        with torch.no_grad():
            for kept, live in zip(ema, params):
                kept.lerp_(live.detach(), 1 - decay)
        losses.append(loss.item())
        if step % 100 == 0 or step == recipe.unet_steps - 1:
            rate = (time.perf_counter() - started) / (step + 1)
            log(f"unet step {step}/{recipe.unet_steps} loss {np.mean(losses[-100:]):.4f} ({rate:.2f} s/step)")
    with torch.no_grad():
        for kept, live in zip(ema, params):
            live.copy_(kept)
    unet.eval()
    text_encoder.eval()
    return unet, text_encoder, losses


def _denoising_loss(unet, text_encoder, noise_schedule, latents, noise, t, tokens, snr, gamma: float) -> torch.Tensor:
    """Epsilon-prediction MSE, weighted by min(SNR, gamma) / SNR (Min-SNR: faster, steadier training)."""
    noisy = noise_schedule.add_noise(latents, noise, t)
    context = text_encoder(tokens)[0]
    predicted = unet(noisy, t, context).sample
    per_sample = F.mse_loss(predicted.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
    weight = torch.clamp(snr[t], max=gamma) / snr[t]
    return (per_sample * weight).mean()


def fixed_batch_loss(unet, text_encoder, latents: torch.Tensor, tokens: torch.Tensor, seed: int = 123) -> float:
    """The denoising loss on a fixed draw of noise and timesteps: comparable before and after training steps."""
    from diffusers import DDPMScheduler

    noise_schedule = DDPMScheduler.from_config(_scheduler_config())
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator)
    t = torch.randint(50, 950, (len(latents),), generator=generator)
    snr = noise_schedule.alphas_cumprod / (1 - noise_schedule.alphas_cumprod)
    with torch.no_grad():
        return float(_denoising_loss(unet, text_encoder, noise_schedule, latents, noise, t, tokens, snr, 5.0))


def assemble(vae, text_encoder, unet, tokenizer, scaling: float):
    """The trained parts as one StableDiffusionPipeline (SD 1.5's PNDM scheduler config, no safety checker)."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    vae.register_to_config(scaling_factor=float(scaling))
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=PNDMScheduler.from_config(_scheduler_config()), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def train(recipe: Recipe, out: Path, device: str = "cpu", log: Callable[[str], None] = print) -> dict:
    """The whole recipe; writes the fp16 diffusers folder and training.json to `out`. Returns the report."""
    from ..tokenizers import load_clip_tokenizer, write_clip_tokenizer

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    target = torch.device(device)
    report: dict = {"recipe": asdict(recipe), "device": device, "torch_threads": torch.get_num_threads(), "seconds": {}}
    clock = time.perf_counter()
    pictures, captions = pictures_and_captions(recipe)
    report["seconds"]["data"] = round(time.perf_counter() - clock, 1)
    log(f"{len(captions)} scenes in {report['seconds']['data']} s, e.g. {captions[0]!r}")

    clock = time.perf_counter()
    vae, vae_losses = train_vae(pictures, recipe, target, log)
    decoder_losses = train_decoder(vae, pictures, recipe, target, log)
    report["seconds"]["vae"] = round(time.perf_counter() - clock, 1)
    report.update(decoder_loss_first=_mean(decoder_losses[:20]), decoder_loss_last=_mean(decoder_losses[-20:]))
    mean, std = encode_all(vae, pictures, target)
    sample = mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(recipe.seed + 4))
    scaling = 1.0 / float(sample.std())
    factors, bias = preview_factors(sample * scaling, pictures)
    report.update(scaling_factor=round(scaling, 5), latent_rgb_factors=factors, latent_rgb_bias=bias,
                  vae_loss_first=_mean(vae_losses[:20]), vae_loss_last=_mean(vae_losses[-20:]))

    with _tokenizer_folder(out) as folder:
        tokenizer = load_clip_tokenizer(write_clip_tokenizer(folder))
    clock = time.perf_counter()
    unet, text_encoder, losses = train_denoiser(mean, std, captions, tokenizer, scaling, recipe, target, log)
    report["seconds"]["unet"] = round(time.perf_counter() - clock, 1)
    report.update(unet_loss_first=_mean(losses[:50]), unet_loss_last=_mean(losses[-50:]))

    pipe = assemble(vae.cpu(), text_encoder.cpu(), unet.cpu(), tokenizer, scaling)
    pipe.to(dtype=torch.float16)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    report["weights_bytes"] = sum(p.stat().st_size for p in out.rglob("*.safetensors"))
    (out / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"saved to {out}: {report['weights_bytes'] / 1e6:.1f} MB of weights; times {report['seconds']}")
    return report


def retrain_decoder(recipe: Recipe, out: Path, device: str = "cpu", log: Callable[[str], None] = print) -> dict:
    """Only the decoder stage, on a folder trained without it (the encoder, and so the latents the denoiser learned,
    are untouched: the result equals a whole run of the recipe)."""
    from diffusers import AutoencoderKL

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    pictures, _ = pictures_and_captions(recipe)
    vae = AutoencoderKL.from_pretrained(str(out / "vae"), torch_dtype=torch.float32).to(device)
    clock = time.perf_counter()
    losses = train_decoder(vae, pictures, recipe, torch.device(device), log)
    vae.cpu().to(dtype=torch.float16).save_pretrained(out / "vae", safe_serialization=True)
    report = json.loads((out / "training.json").read_text())
    report["recipe"] = asdict(recipe)
    report["seconds"]["vae"] = round(report["seconds"]["vae"] + time.perf_counter() - clock, 1)
    report.update(decoder_loss_first=_mean(losses[:20]), decoder_loss_last=_mean(losses[-20:]))
    report["weights_bytes"] = sum(p.stat().st_size for p in out.rglob("*.safetensors"))
    (out / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


class _tokenizer_folder:
    """A scratch folder for the CLIP tokenizer files (save_pretrained writes the shipped copy)."""

    def __init__(self, out: Path):
        self.path = Path(out).parent / f".{Path(out).name}-tokenizer"

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)


def _token_ids(tokenizer, texts: list[str]) -> torch.Tensor:
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def _scheduler_config() -> dict:
    return {k: v for k, v in json.loads(SD15_SCHEDULER.read_text()).items() if not k.startswith("_")}


def _crops(pictures: torch.Tensor, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    index = torch.randint(0, len(pictures), (count,), generator=generator)
    limit = pictures.shape[-1] - size
    xs = torch.randint(0, limit + 1, (count,), generator=generator)
    ys = torch.randint(0, limit + 1, (count,), generator=generator)
    return torch.stack([as_unit(pictures[i, :, y : y + size, x : x + size]) for i, x, y in zip(index, xs, ys)])


def _window(latents: torch.Tensor, pictures: torch.Tensor, cells: int, generator: torch.Generator):
    """One random `cells`-square window of the latents (the same for the whole batch) and the pixels it covers."""
    scale = pictures.shape[-1] // latents.shape[-1]
    y, x = (int(v) for v in torch.randint(0, latents.shape[-1] - cells + 1, (2,), generator=generator))
    window = latents[:, :, y : y + cells, x : x + cells]
    return window, pictures[:, :, y * scale : (y + cells) * scale, x * scale : (x + cells) * scale]


def _cosine(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then a cosine down to a tenth."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _mean(values: list[float]) -> Optional[float]:
    return round(float(np.mean(values)), 5) if values else None


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m studio.demo.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where the model goes (default: {DEFAULT_OUT})")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="a few steps only (to check the script, not a model)")
    parser.add_argument("--unet-steps", type=int, help="override the recipe's denoiser steps")
    parser.add_argument("--vae-steps", type=int, help="override the recipe's VAE steps")
    parser.add_argument("--images", type=int, help="override the recipe's number of scenes")
    parser.add_argument("--local-vae", action="store_true",
                        help="the VAE whose latent cells each say their own colour (LOCAL_VAE; not the shipped model's)")
    parser.add_argument("--decoder-only", action="store_true", help="redo only the decoder stage of the model in --out")
    args = parser.parse_args(argv)
    recipe = QUICK if args.quick else Recipe()
    changes = {k: v for k, v in (("unet_steps", args.unet_steps), ("vae_steps", args.vae_steps), ("images", args.images)) if v}
    recipe = replace(recipe, **changes, **(LOCAL_VAE if args.local_vae else {}))
    if args.decoder_only:
        retrain_decoder(recipe, args.out, args.device)
    else:
        train(recipe, args.out, args.device)


if __name__ == "__main__":
    main()
