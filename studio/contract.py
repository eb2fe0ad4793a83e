"""The contract between front ends (CLI, web UI, HTTP API) and the engine: typed requests and job events.

Plain Python and PIL only — no torch — so a front end can import it without the machine-learning stack.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional

from PIL import Image

from .samplers import DEFAULT_SAMPLER


LOCAL_USER = "local"  # the owner of every job on a server without logins


INSPECTABLE = ("attention", "cfg")  # what a job may ask to capture from inside its sampling


class Task(str, enum.Enum):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    HIRES_FIX = "hires_fix"  # txt2img, upscaled, then img2img: studio/hires.py


class RequestError(ValueError):
    """A request the studio will not run, with a message meant for the user who sent it."""


class QueueFullError(RequestError):
    """The user already has as many jobs queued as the server allows."""


@dataclass(frozen=True)
class GenerationRequest:
    """One generate click / CLI call / API request. Field names follow A1111's API where one exists."""

    prompt: str
    negative_prompt: str = ""
    seed: int = -1
    steps: int = 20
    cfg_scale: float = 7.0
    sampler_name: str = DEFAULT_SAMPLER
    width: Optional[int] = None  # None: the model's default size (txt2img) or the input image's (img2img, inpaint)
    height: Optional[int] = None
    batch_size: int = 1
    batch_count: int = 1
    init_image: Optional[Image.Image] = None
    mask: Optional[Image.Image] = None  # white = repaint
    denoising_strength: float = 0.75
    mask_blur: int = 4
    depth_map: Optional[Image.Image] = None  # depth-to-image models: the depth to keep (white = near), not the model's estimate
    model: Optional[str] = None  # None: the model the engine has loaded
    clip_skip: int = 1  # A1111's CLIP_stop_at_last_layers: 1 = the text encoder's last layer
    styles: tuple[str, ...] = ()  # names in the styles file, applied in order before anything else
    vae: Optional[str] = None  # a file name in the VAE folder; None / "Automatic": the model's own VAE
    scheduler: Optional[str] = None  # A1111's "Schedule type" (Karras, Exponential, ...); None: the sampler's own
    # Variation seeds: image i starts from slerp(subseed_strength, noise(seed + i), noise(subseed + i)).
    subseed: int = -1  # -1: random
    subseed_strength: float = 0.0
    seed_resize_from: Optional[tuple[int, int]] = None  # (width, height): the noise as it was drawn at that size
    tiling: bool = False  # seamless: circular padding in the UNet and VAE for this job
    restore_faces: bool = False  # faces in each image restored (studio/faces.py) before it is saved
    face_restorer: Optional[str] = None  # GFPGAN or CodeFormer; None: A1111's choice (the first installed)
    codeformer_weight: float = 0.5  # CodeFormer's fidelity: 0 most restored, 1 closest to the picture
    # Hires fix (txt2img): a first pass at width × height, upscaled, then an image-to-image second pass.
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_resize: Optional[tuple[int, int]] = None  # (width, height) instead of hr_scale
    hr_upscaler: str = "Latent"
    hr_second_pass_steps: int = 0  # 0: the first pass's steps
    hr_sampler_name: Optional[str] = None  # None: the first pass's sampler
    hr_scheduler: Optional[str] = None
    hr_prompt: Optional[str] = None  # None: the prompt
    hr_negative_prompt: Optional[str] = None
    hr_denoising_strength: float = 0.7  # A1111's denoising_strength for the second pass
    # Inpainting (studio/inpainting.py). The defaults are A1111's UI defaults (its API's differ: fill, only masked, 0).
    inpainting_fill: int = 1  # "Masked content": 0 fill, 1 original, 2 latent noise, 3 latent nothing
    inpaint_full_res: bool = False  # "Inpaint area": False whole picture, True only masked (its box drawn at width × height)
    inpaint_full_res_padding: int = 32  # only masked: pixels added around the mask's box
    # Per-user studio settings. Live previews: None = the server's --preview / --preview-every.
    preview: Optional[str] = None  # latent | taesd | vae | off
    preview_every: Optional[int] = None  # a preview every N steps (None: the server's, else 1; 5 for vae)
    filename_pattern: str = ""  # A1111's samples_filename_pattern ("[seed]-[model_name]"); "": NNNNN-seed.png
    # What to capture from inside sampling for the Step previews tab (studio/inspection.py), of INSPECTABLE.
    inspect: tuple[str, ...] = ()

    @property
    def task(self) -> Task:
        if self.mask is not None:
            return Task.INPAINT
        if self.init_image is not None:
            return Task.IMG2IMG
        return Task.HIRES_FIX if self.enable_hr else Task.TXT2IMG


# ---- events a job emits, in order: Queued* → Started → (Step | Preview)* → Finished | Failed | Cancelled


@dataclass(frozen=True)
class Queued:
    position: int  # jobs ahead of this one (0 = next)


@dataclass(frozen=True)
class Started:
    model: str
    seeds: list[int]
    notes: list[str] = field(default_factory=list)  # things the engine adjusted, e.g. a resized mask


@dataclass(frozen=True)
class Step:
    step: int  # 1-based, over all images of the job
    total: int
    eta_seconds: float


@dataclass(frozen=True)
class Preview:
    step: int
    total: int
    image: Image.Image  # small; the x0 estimate by default
    jpeg: Optional[bytes] = None  # the same picture as JPEG bytes, for streams (plain data: it can cross a process)


@dataclass(frozen=True)
class SavedImage:
    path: str
    seed: int
    infotext: str


@dataclass(frozen=True)
class Finished:
    images: list[SavedImage]
    skipped: bool = False  # the user asked to finish early (A1111's "skip")


@dataclass(frozen=True)
class Failed:
    message: str
    bad_request: bool = False  # the request could not be run as asked (an unknown VAE, a prompt too long): not the server's fault


@dataclass(frozen=True)
class Cancelled:
    pass


TERMINAL_EVENTS = (Finished, Failed, Cancelled)
