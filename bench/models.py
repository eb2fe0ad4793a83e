"""Benchmark models: real architectures (models/configs) with seeded random weights, saved once as diffusers folders so
the engine and diffusers load the very same files the way users' models load (from disk, through from_pretrained)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    name: str  # tiny | sd15 | sdxl
    config: str  # folder under models/configs, or "tiny"
    size: int  # the architecture's native size
    family: str


SPECS = {
    "tiny": ModelSpec("tiny", "tiny", 128, "sd1"),
    "sd15": ModelSpec("sd15", "sd15", 512, "sd1"),
    "sdxl": ModelSpec("sdxl", "sdxl", 1024, "sdxl"),
}


def build_pipeline(spec: ModelSpec, cache_dir: Path, init_device: str = "cpu", seed: int = 0):
    """The pipeline with random weights (seeded), fp32, on `init_device` (a GPU initialises multi-GB models in seconds)."""
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from studio import tiny
    from studio.checkpoints import materialize_config

    folder = materialize_config(spec.config, cache_dir)
    if spec.config == "tiny":
        return tiny.build_tiny_pipeline(folder / "tokenizer")
    index = json.loads((folder / "model_index.json").read_text())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if init_device != "cpu":
            torch.cuda.manual_seed_all(seed)
        with torch.device(init_device):
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
            text_encoder = CLIPTextModel(CLIPTextConfig(**json.loads((folder / "text_encoder" / "config.json").read_text())))
            text_encoder_2 = None
            if "text_encoder_2" in index:
                text_encoder_2 = CLIPTextModelWithProjection(
                    CLIPTextConfig(**json.loads((folder / "text_encoder_2" / "config.json").read_text()))
                )
    scheduler_cls = getattr(diffusers, index["scheduler"][1])
    scheduler = scheduler_cls.from_config(scheduler_cls.load_config(folder / "scheduler"))
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    if text_encoder_2 is not None:
        return diffusers.StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=CLIPTokenizer.from_pretrained(str(folder / "tokenizer_2")),
            unet=unet,
            scheduler=scheduler,
        )
    return diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def model_folder(spec: ModelSpec, work_dir: Path, dtype: torch.dtype, init_device: str = "cpu") -> tuple[Path, float]:
    """The random-weight model saved as a diffusers folder (built once per work_dir). Returns (folder, build seconds)."""
    tag = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]
    target = work_dir / "models" / f"{spec.name}-random-{tag}"  # the engine's --models-dir: nothing else in it
    if (target / "model_index.json").is_file():
        return target, 0.0
    started = time.perf_counter()
    pipe = build_pipeline(spec, work_dir / "studio-cache", init_device)
    pipe.to(dtype=dtype)
    staging = work_dir / "staging" / target.name
    shutil.rmtree(staging, ignore_errors=True)
    pipe.save_pretrained(str(staging), safe_serialization=True)
    del pipe
    if init_device != "cpu":
        torch.cuda.empty_cache()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    return target, time.perf_counter() - started


def random_taesd(family: str):
    """diffusers.AutoencoderTiny with its default config and seeded random weights: TAESD's compute without its
    weights (which cannot be downloaded here). Used as the engine's taesd_loader."""
    from diffusers import AutoencoderTiny

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return AutoencoderTiny()
