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
VAE_TILING_MODES = ("auto", "on", "off")


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
    vae_tiling: str = "auto"  # auto (pictures over 4× the model's own area) | on | off: the VAE works in tiles
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
    gfpgan_dir: Optional[Path] = Path("models/GFPGAN")  # face restorer weights (restore faces, Extras): A1111's folders
    codeformer_dir: Optional[Path] = Path("models/Codeformer")
    caption_model: Optional[str] = None  # BLIP captioning model for interrogate (None: the hub's, from the local cache)

    def preview_interval(self) -> int:
        if self.preview_every:
            return self.preview_every
        return 5 if self.preview == "vae" else 1


class StudioHelpFormatter(argparse.HelpFormatter):
    """--help with every default said once: a help line that names its default (has "default" in it) is printed as
    written; a flag that takes a value and has a real default gets " (default: X)" added; an on/off flag (it takes no
    value) gets nothing added: its help says what it turns on or off."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 32, width: Optional[int] = None):
        super().__init__(prog, indent_increment, max_help_position, width)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.nargs == 0 or action.required
                or action.default in (None, "", [], argparse.SUPPRESS)):
            return text
        return text + " (default: %(default)s)"


class StudioParser(argparse.ArgumentParser):
    """The studio's parsers (app.py, python -m studio): StudioHelpFormatter, and one heading per group title, so
    flags that several modules add under the same title (e.g. "server") share it."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", StudioHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument_group(self, title=None, description=None, **kwargs):
        groups = self.__dict__.setdefault("_groups_by_title", {})
        if title is not None and title in groups:
            if description and not groups[title].description:
                groups[title].description = description
            return groups[title]
        group = super().add_argument_group(title, description, **kwargs)
        if title is not None:
            groups[title] = group
        return group

    def fill_in(self, option: str, *, help: Optional[str] = None, metavar: Optional[str] = None) -> None:
        """Give a flag another module added the help line or metavar it lacks; what it has is kept."""
        action = self._option_string_actions[option]
        if help is not None and not action.help:
            action.help = help
        if metavar is not None and action.metavar is None:
            action.metavar = metavar


# The engine's headings, in --help's order. "server" also holds studio/web/app.py's flags (--listen, --port, ...).
MODEL = "model"
ENGINE = "engine and device"
SERVER = "server"
LIMITS = "limits"
FOLDERS = "folders and files (A1111's folders work as they are)"
SERVER_ONLY = "for app.py's web server: accepted here, but of no use to one command"


def argument_groups(parser: argparse.ArgumentParser, *, server: bool = True) -> dict:
    """The engine's argument groups by title, created in --help's order (with a StudioParser, again: the same ones).
    server=False (python -m studio generate): the server's group comes last, and says it is of no use there."""
    if server:
        titles = (MODEL, ENGINE, SERVER, LIMITS, FOLDERS)
    else:
        titles = (MODEL, ENGINE, LIMITS, FOLDERS, SERVER)
    return {t: parser.add_argument_group(t, None if server or t != SERVER else SERVER_ONLY) for t in titles}


def add_engine_arguments(parser: argparse.ArgumentParser, *, server: bool = True) -> None:
    """The engine's flags (what settings_from_args reads), by heading. server=False: for a command without the web
    server (python -m studio generate); the same flags, its server-only ones under a heading that says so."""
    groups = argument_groups(parser, server=server)

    g = groups[MODEL]
    g.add_argument("--model", default=None, metavar="NAME",
                   help=f"hub repo id, diffusers folder, .safetensors file, or 'tiny' (no download) "
                        f"(default: {DEFAULT_MODEL}; tiny if that cannot be had)")
    g.add_argument("--models-dir", type=Path, default=None, metavar="DIR",
                   help="a folder of checkpoints to offer, e.g. A1111's models/Stable-diffusion (default: only --model)")
    g.add_argument("--max-models", type=int, default=1, metavar="N",
                   help="models kept loaded at once; the least recently used is unloaded first")
    g.add_argument("--allow-pickle", action="store_true",
                   help="also load .ckpt/.pt/.bin pickle checkpoints (they can run code)")
    g.add_argument("--caption-model", default=None, metavar="DIR_OR_HUB_ID",
                   help="BLIP captioner for Interrogate, local files only (default: Salesforce/blip-image-captioning-base if cached)")

    g = groups[ENGINE]
    g.add_argument("--device", default="auto", help="auto (cuda, else mps, else cpu), cuda, cuda:N, mps or cpu")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"],
                   help="auto: fp16 on CUDA and MPS, fp32 on the CPU")
    g.add_argument("--attention", default="auto", choices=["auto", "xformers", "sdpa"],
                   help="auto: xformers if it works here, else PyTorch SDPA")
    g.add_argument("--fast", action="store_true",
                   help="turn on fast mode: compile the UNet and VAE (+ CUDA graphs on a GPU); minutes of start-up")
    g.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the warm-up generation at the server's start")
    g.add_argument("--preview", default="latent", choices=list(PREVIEW_MODES),
                   help="live previews: latent (rough), taesd (tiny VAE), vae (exact, slow) or off")
    g.add_argument("--preview-every", type=int, default=None, metavar="N",
                   help="a preview every N steps (default: 1; 5 with --preview vae)")
    g.add_argument("--vae-tiling", default="auto", choices=list(VAE_TILING_MODES),
                   help="encode and decode in overlapping tiles, for large pictures in less memory "
                        "(auto: pictures over 4x the model's own area)")

    g = groups[SERVER]
    g.add_argument("--max-queue-per-user", type=int, default=0, metavar="N",
                   help="queued jobs one user may have (default: 0, no cap)")
    g.add_argument("--no-dynamic-batching", dest="dynamic_batching", action="store_false",
                   help="turn off dynamic batching (compatible jobs of different users run as one batch)")
    g.add_argument("--batch-wait-ms", type=int, default=0, metavar="MS",
                   help="how long a job waits for others to batch with (default: 0, only those already queued)")

    g = groups[LIMITS]
    g.add_argument("--max-size", type=int, default=2048, metavar="PX", help="the largest width or height a request may ask for")
    g.add_argument("--max-steps", type=int, default=150, metavar="N", help="the most sampling steps a request may ask for")
    g.add_argument("--max-batch", type=int, default=8, metavar="N", help="the largest batch size a request may ask for")
    g.add_argument("--max-image-pixels", type=int, default=Settings.max_image_pixels, metavar="N",
                   help="the largest input image; bigger ones are refused from their header")
    g.add_argument("--max-frames-mb", type=int, default=Settings.max_frames_mb, metavar="MB",
                   help="memory for kept jobs' step-preview frames; the oldest finished jobs' go first")

    g = groups[FOLDERS]
    g.add_argument("--outputs", type=Path, default=Path("outputs"), metavar="DIR", help="where images are saved, one folder per day")
    g.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="the studio's cache: configs, Gradio's uploads, login sessions (default: ~/.cache/sd-studio)")
    g.add_argument("--lora-dir", type=Path, default=Settings.lora_dir, metavar="DIR",
                   help="LoRA / LyCORIS .safetensors files for <lora:name:weight> in prompts")
    g.add_argument("--embeddings-dir", type=Path, default=Settings.embeddings_dir, metavar="DIR",
                   help="textual-inversion embeddings, used in prompts by file name")
    g.add_argument("--styles-file", type=Path, default=Settings.styles_file, metavar="CSV",
                   help="A1111's styles.csv (name, prompt, negative_prompt)")
    g.add_argument("--vae-dir", type=Path, default=Settings.vae_dir, metavar="DIR", help="VAE files to choose from")
    g.add_argument("--upscaler-dir", type=Path, default=Settings.upscaler_dir, metavar="DIR",
                   help="ESRGAN-family upscaler models (hires fix, Extras)")
    g.add_argument("--gfpgan-models-path", type=Path, default=Settings.gfpgan_dir, metavar="DIR",
                   help="GFPGAN weights for restore faces")
    g.add_argument("--codeformer-models-path", type=Path, default=Settings.codeformer_dir, metavar="DIR",
                   help="CodeFormer weights for restore faces")


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
        vae_tiling=getattr(args, "vae_tiling", "auto"),
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
        gfpgan_dir=getattr(args, "gfpgan_models_path", Settings.gfpgan_dir),
        codeformer_dir=getattr(args, "codeformer_models_path", Settings.codeformer_dir),
        caption_model=getattr(args, "caption_model", None),
        **({"cache_dir": args.cache_dir} if args.cache_dir else {}),
    )
