"""The `tiny` model: an SD1.5-shaped pipeline with random weights, built offline from models/tiny/recipe.json.

It draws noise-like pictures quickly; it exists so tests, CI and a newcomer without a download can run the whole
studio. Its weights depend only on the recipe (seeded), so every machine builds the same tiny model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

RECIPE_PATH = Path(__file__).resolve().parent.parent / "models" / "tiny" / "recipe.json"


def recipe() -> dict:
    return json.loads(RECIPE_PATH.read_text())


def recipe_hash() -> str:
    """Stands in for the checkpoint hash in metadata: same recipe, same weights, same hash."""
    return hashlib.sha256(RECIPE_PATH.read_bytes()).hexdigest()


def build_tiny_pipeline(tokenizer_folder: Path, dtype=None):
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .tokenizers import load_clip_tokenizer

    spec = recipe()
    # A private generator state: building the model must not disturb (or depend on) the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        unet = UNet2DConditionModel(**spec["unet"])
        vae = AutoencoderKL(**spec["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**spec["text_encoder"]))
        norm = spec["text_encoder_final_norm"]
        final_norm = text_encoder.final_layer_norm if hasattr(text_encoder, "final_layer_norm") else text_encoder.text_model.final_layer_norm
        with torch.no_grad():
            final_norm.weight.normal_(1.0, norm["weight_std"])
            final_norm.bias.normal_(0.0, norm["bias_std"])
    scheduler_config = {k: v for k, v in spec["scheduler"].items() if not k.startswith("_")}
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=load_clip_tokenizer(tokenizer_folder),
        unet=unet,
        scheduler=PNDMScheduler.from_config(scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    if dtype is not None and dtype != torch.float32:
        pipe.to(dtype=dtype)
    return pipe
