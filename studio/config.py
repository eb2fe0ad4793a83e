"""The studio's settings: parsed once from the command line, then frozen and passed to whoever needs them."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sd-studio"


PREVIEW_MODES = ("latent", "taesd", "vae", "off")


@dataclass(frozen=True)
class Settings:
    model: Optional[str] = None  # None: DEFAULT_MODEL, falling back to `tiny` when it cannot be had
    models_dir: Optional[Path] = None
    outputs: Path = Path("outputs")
    device: str = "auto"  # auto | cuda | mps | cpu (or cuda:N)
    dtype: str = "auto"  # auto | fp16 | bf16 | fp32
    attention: str = "auto"  # auto | xformers | sdpa
    preview: str = "latent"  # latent | taesd | vae | off
    preview_every: Optional[int] = None  # None: every step (every 5th for the full VAE)
    max_models: int = 1
    max_size: int = 2048
    max_steps: int = 150
    max_batch: int = 8
    max_batch_count: int = 100
    max_image_pixels: int = 4096 * 4096
    max_queue_per_user: int = 0  # 0: no cap
    max_frames_mb: int = 512  # step frames kept in memory across all stored jobs; the oldest finished jobs' go first
    dynamic_batching: bool = True  # compatible txt2img jobs of different users share one UNet batch
    batch_wait_ms: int = 0  # how long a job waits for batch companions (0: only those already queued)
    allow_pickle: bool = False
    warmup: bool = True
    fast: bool = False  # torch.compile + CUDA graphs + channels-last + fused QKV (studio/fast.py); slower start
    cache_dir: Path = field(default_factory=_default_cache_dir)
    lora_dir: Optional[Path] = Path("models/Lora")  # A1111's folders, read where the studio starts
    embeddings_dir: Optional[Path] = Path("embeddings")
    vae_dir: Optional[Path] = Path("models/VAE")
    styles_file: Optional[Path] = Path("styles.csv")
    upscaler_dir: Optional[Path] = Path("models/ESRGAN")  # ESRGAN-family upscaler models (hires fix, Extras)
    caption_model: Optional[str] = None  # BLIP captioning model for interrogate (None: the hub's, from the local cache)

    def preview_interval(self) -> int:
        if self.preview_every:
            return self.preview_every
        return 5 if self.preview == "vae" else 1


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model and device")
    g.add_argument("--model", default=None, help=f"hub repo id, diffusers folder, .safetensors file or 'tiny' (default: {DEFAULT_MODEL})")
    g.add_argument("--models-dir", type=Path, default=None, help="folder of checkpoints to offer (A1111's models/Stable-diffusion works as is)")
    g.add_argument("--outputs", type=Path, default=Path("outputs"), help="where images are saved, one folder per day")
    g.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cuda, cuda:N, mps or cpu")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"], help="auto: fp16 on CUDA, fp32 elsewhere")
    g.add_argument("--attention", default="auto", choices=["auto", "xformers", "sdpa"])
    g.add_argument("--preview", default="latent", choices=list(PREVIEW_MODES))
    g.add_argument("--preview-every", type=int, default=None, metavar="N", help="preview every N steps (default 1; 5 for vae)")
    g.add_argument("--max-models", type=int, default=1, help="models kept loaded at once (least recently used goes first)")
    g.add_argument("--max-size", type=int, default=2048)
    g.add_argument("--max-steps", type=int, default=150)
    g.add_argument("--max-batch", type=int, default=8)
    g.add_argument("--max-image-pixels", type=int, default=Settings.max_image_pixels, metavar="N",
                   help="largest input image in pixels; bigger ones are refused from their header, before decoding")
    g.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="the studio's cache: configs, Gradio's uploads, login sessions (default: ~/.cache/sd-studio)")
    g.add_argument("--max-queue-per-user", type=int, default=0, help="queued jobs a user may have (0: no cap)")
    g.add_argument("--max-frames-mb", type=int, default=Settings.max_frames_mb, metavar="MB",
                   help="memory for the Step previews' frames of all kept jobs; past it the oldest finished jobs' frames are dropped")
    g.add_argument("--no-dynamic-batching", dest="dynamic_batching", action="store_false",
                   help="never run jobs of different users as one batch")
    g.add_argument("--batch-wait-ms", type=int, default=0, metavar="MS",
                   help="how long a job waits for compatible jobs of other users to batch with (default 0: only those already queued)")
    g.add_argument("--allow-pickle", action="store_true", help="allow .ckpt/.pt/.bin pickle checkpoints (they can run code)")
    g.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the warm-up generation at start")
    g.add_argument("--fast", action="store_true", help="fast mode: compile the UNet and VAE (and CUDA graphs on a GPU) at start; minutes of start-up")

    g = parser.add_argument_group("prompts: LoRA, embeddings, styles, VAE (A1111's folders work as they are)")
    g.add_argument("--lora-dir", type=Path, default=Settings.lora_dir, metavar="DIR", help="LoRA / LyCORIS .safetensors files for <lora:name:weight> (default: models/Lora)")
    g.add_argument("--embeddings-dir", type=Path, default=Settings.embeddings_dir, metavar="DIR", help="textual-inversion embeddings, used by file name in prompts (default: embeddings)")
    g.add_argument("--vae-dir", type=Path, default=Settings.vae_dir, metavar="DIR", help="VAE files to choose from (default: models/VAE)")
    g.add_argument("--upscaler-dir", type=Path, default=Settings.upscaler_dir, metavar="DIR", help="ESRGAN-family upscaler models for hires fix (default: models/ESRGAN)")
    g.add_argument("--caption-model", default=None, metavar="DIR_OR_HUB_ID",
                   help="BLIP captioning model for interrogate, from local files only (default: Salesforce/blip-image-captioning-base if in the local Hugging Face cache)")
    g.add_argument("--styles-file", type=Path, default=Settings.styles_file, metavar="CSV", help="A1111's styles.csv: name, prompt, negative_prompt (default: styles.csv)")

def settings_from_args(args: argparse.Namespace) -> Settings:
    if args.preview_every is not None and args.preview_every < 1:
        raise SystemExit("--preview-every must be 1 or more")
    return Settings(
        model=args.model,
        models_dir=args.models_dir,
        outputs=args.outputs,
        device=args.device,
        dtype=args.dtype,
        attention=args.attention,
        preview=args.preview,
        preview_every=args.preview_every,
        max_models=max(1, args.max_models),
        max_size=args.max_size,
        max_steps=args.max_steps,
        max_batch=args.max_batch,
        max_queue_per_user=args.max_queue_per_user,
        max_frames_mb=max(0, getattr(args, "max_frames_mb", Settings.max_frames_mb)),
        allow_pickle=args.allow_pickle,
        dynamic_batching=args.dynamic_batching,
        batch_wait_ms=max(0, args.batch_wait_ms),
        warmup=args.warmup,
        fast=getattr(args, "fast", False),
        max_image_pixels=max(64 * 64, args.max_image_pixels),
        lora_dir=args.lora_dir,
        embeddings_dir=args.embeddings_dir,
        vae_dir=args.vae_dir,
        styles_file=args.styles_file,
        upscaler_dir=args.upscaler_dir,
        caption_model=getattr(args, "caption_model", None),
        **({"cache_dir": args.cache_dir} if args.cache_dir else {}),
    )
