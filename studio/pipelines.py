"""Everything that depends on how diffusers works, in one place.

Pipelines per task built on one set of weights (`from_pipe` with the model's dtype), a fresh scheduler per job that
also reports its x0 estimate, seeds → generators, device/dtype choice, and the attention backend (xformers or SDPA).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass

import torch

from .contract import Task
from .families import TEXT_TO_IMAGE, ModelKind
from .samplers import Sampler

log = logging.getLogger(__name__)


def pipeline_class(family: str, task: Task, kind: ModelKind = TEXT_TO_IMAGE):
    """The diffusers class for `task` on a model of `family` and `kind`; imported only here, so the registry stays
    plain data."""
    import diffusers

    return getattr(diffusers, kind.pipeline(family, task))


def task_pipeline(base, family: str, task: Task, scheduler, dtype: torch.dtype, kind: ModelKind = TEXT_TO_IMAGE):
    """A pipeline for `task` sharing `base`'s modules. Passing the model's dtype matters: without it from_pipe
    moves the shared modules to fp32 (diffusers' default), silently upcasting every pipeline built on them."""
    cls = pipeline_class(family, task, kind)
    pipe = cls.from_pipe(base, scheduler=scheduler, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def job_pipeline(built: dict, base, family: str, task: Task, scheduler, dtype: torch.dtype, kind: ModelKind = TEXT_TO_IMAGE):
    """The pipeline for one job: each task's pipeline is built once per model (from_pipe costs ~30 ms on a GPU
    host) and kept in `built`; every job gets its own fresh scheduler, since a scheduler holds per-run state.
    (The interrupt flag needs no reset: each pipeline call clears it.)"""
    pipe = built.get(task)
    if pipe is None:
        pipe = built[task] = task_pipeline(base, family, task, scheduler, dtype, kind)
    else:
        pipe.scheduler = scheduler
    return pipe


# ---- schedulers


@functools.cache
def _recording_class(base_cls: type) -> type:
    """A subclass of a diffusers scheduler that keeps the x0 estimate of its last step.

    Most schedulers return it as `pred_original_sample`; the multistep DPM-Solver/UniPC family keeps it as its last
    converted model output. The pipelines throw it away, and previews want exactly it ("what the image is becoming").
    """

    # wraps() keeps step's signature visible: pipelines inspect it to decide whether to pass `generator` and `eta`.
    @functools.wraps(base_cls.step)
    def step(self, model_output, timestep, sample, *args, return_dict: bool = True, **kwargs):
        output = base_cls.step(self, model_output, timestep, sample, *args, return_dict=True, **kwargs)
        x0 = getattr(output, "pred_original_sample", None)
        if x0 is None:
            outputs = getattr(self, "model_outputs", None)
            if outputs and outputs[-1] is not None and getattr(self.config, "algorithm_type", "dpmsolver++") in (
                "dpmsolver++",
                "sde-dpmsolver++",
            ):
                x0 = outputs[-1]
            elif outputs and outputs[-1] is not None and getattr(self.config, "predict_x0", False):
                x0 = outputs[-1]
        self.last_x0 = x0
        return output if return_dict else (output.prev_sample,)

    return type(base_cls.__name__, (base_cls,), {"step": step, "last_x0": None})


def callback_tensor_inputs(pipe) -> tuple[str, ...]:
    """The tensors this pipeline class lets a step callback read and replace (diffusers' class attribute)."""
    return tuple(type(pipe)._callback_tensor_inputs)


def interrupt(pipe) -> None:
    """Skip the remaining steps of the running call: diffusers' own flag, which its loops check every step."""
    pipe._interrupt = True


def execution_device(pipe) -> torch.device:
    """Where the pipeline runs its modules: right under CPU offload too, where a module's .device says "cpu"."""
    try:
        return pipe._execution_device
    except Exception:  # a pipeline without the property (older diffusers): its modules' device
        return pipe.device


def decoded(pipe, output) -> list:
    """A call's output as PIL images: latents (output_type="latent") decoded by the pipeline's VAE as diffusers
    decodes them at the end of a call; PIL images as they are."""
    if not isinstance(output, torch.Tensor):
        return list(output)
    vae = pipe.vae
    with torch.no_grad():
        pixels = vae.decode(output.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(pixels, output_type="pil")


def scheduler_class(name: str) -> type:
    """A sampler's scheduler class by name: the studio's own (for what diffusers lacks) first, then diffusers'."""
    import diffusers

    from .dpmpp_2s_ancestral import DPMPP2SAncestralDiscreteScheduler

    own = {cls.__name__: cls for cls in (DPMPP2SAncestralDiscreteScheduler,)}
    return own.get(name) or getattr(diffusers, name)


def make_scheduler(sampler: Sampler, base_config: dict):
    base_cls = scheduler_class(sampler.spec.scheduler_class)
    return _recording_class(base_cls).from_config(base_config, **sampler.scheduler_options())


def plain_scheduler(sampler: Sampler, base_config: dict):
    """The scheduler exactly as a diffusers user would build it (tests and benchmarks compare against it)."""
    return scheduler_class(sampler.spec.scheduler_class).from_config(base_config, **sampler.scheduler_options())


def generators(seeds: list[int]) -> list[torch.Generator]:
    # CPU generators: the same seed draws the same noise on every machine, GPU or not.
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


def quiet_library_logs() -> None:
    """diffusers warns on every from_pipe(dtype=...) about fp32-kept modules, even when there are none, and
    transformers at import that its image processors fall back from torchvision (which we do not use)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()


# ---- device, dtype


def resolve_device(wanted: str) -> torch.device:
    if wanted != "auto":
        device = torch.device(wanted)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"--device {wanted}: CUDA is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(wanted: str, device: torch.device) -> torch.dtype:
    table = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if wanted != "auto":
        return table[wanted]
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


# ---- attention


@dataclass(frozen=True)
class AttentionChoice:
    backend: str  # "xformers" | "sdpa"
    reason: str


def xformers_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    """None when xformers imports and runs a small attention on this device; else why not."""
    if device.type != "cuda":
        return f"xformers needs CUDA (device is {device.type})"
    try:
        import xformers
        import xformers.ops
    except Exception as exc:  # ImportError, or a broken binary raising anything at import
        return f"xformers is not usable: {type(exc).__name__}: {exc}".split("\n")[0]
    try:
        q = torch.randn(1, 64, 8, 40, device=device, dtype=dtype)
        xformers.ops.memory_efficient_attention(q, q, q)
        torch.cuda.synchronize(device)
    except Exception as exc:
        return f"xformers {getattr(xformers, '__version__', '?')} failed a test attention: {type(exc).__name__}: {exc}".split("\n")[0]
    return None


def choose_attention(wanted: str, device: torch.device, dtype: torch.dtype) -> AttentionChoice:
    if wanted == "sdpa":
        return AttentionChoice("sdpa", "asked for (--attention sdpa)")
    problem = xformers_problem(device, dtype)
    if problem is None:
        return AttentionChoice("xformers", "xformers imports and runs on this device")
    # The reason is shown to every user (the footer): the library's own words, which may hold paths, go to the log.
    public = problem if problem.startswith("xformers needs CUDA") else "xformers is not usable here; the server log says why"
    if wanted == "xformers":
        log.warning("--attention xformers: %s; using PyTorch SDPA instead", problem)
        return AttentionChoice("sdpa", f"xformers was asked for but {public}")
    log.info("xformers not used: %s", problem)
    return AttentionChoice("sdpa", f"PyTorch scaled_dot_product_attention ({public})")


def apply_attention(pipe, choice: AttentionChoice) -> None:
    # Nothing to do for SDPA: diffusers' default attention processors call torch's scaled_dot_product_attention.
    if choice.backend == "xformers":
        pipe.enable_xformers_memory_efficient_attention()


def free_device_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


# ---- inpainting


def blur_mask(mask, radius: int):
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor.blur(mask, blur_factor=radius) if radius > 0 else mask


def paste_unmasked(pipe, mask, init_image, image):
    """Put the untouched pixels back (as artists expect): only the painted area may change."""
    return pipe.image_processor.apply_overlay(mask, init_image, image)


def encode_pixels(pipe, pixels, generator, device):
    """Pixels in -1..1 → scaled latents (float32), as diffusers' inpaint pipelines encode (a VAE that asks for it
    runs in float32 meanwhile, as diffusers' SDXL pipeline does). Inpainting's latent noise / latent nothing."""
    import torch
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

    vae = pipe.vae
    dtype = vae.dtype
    upcast = dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        with torch.no_grad():
            encoded = retrieve_latents(vae.encode(pixels.to(device=device, dtype=vae.dtype)), generator=generator)
    finally:
        if upcast:
            vae.to(dtype=dtype)
    return encoded.float() * vae.config.scaling_factor


# ---- VAE tiling


def tiles_vae(mode: str, size: tuple[int, int], native: int) -> bool:
    """Whether a picture of `size` is encoded and decoded in tiles: always ("on"), never ("off"), or ("auto") when it
    has more than 4x the model's own area — where the VAE's memory, not the UNet's, runs out first."""
    return mode == "on" or (mode == "auto" and size[0] * size[1] > 4 * native * native)


@contextlib.contextmanager
def vae_tiled(pipe, tiled: bool):
    """The pipeline's VAE in diffusers' tiled mode (overlapping tiles, blended) for the duration, as it was after."""
    vae = pipe.vae
    was = bool(getattr(vae, "use_tiling", False))
    if tiled != was:
        vae.enable_tiling() if tiled else vae.disable_tiling()
    try:
        yield
    finally:
        if tiled != was:
            vae.enable_tiling() if was else vae.disable_tiling()


# ---- depth-to-image


def depth_tensor(picture, size: tuple[int, int]):
    """A user's depth picture (white = near, as the model's own estimator sees depth) as the depth pipeline takes it:
    [1, height, width] floats at the job's size; the pipeline shrinks it to the latents and normalizes it itself."""
    import numpy as np
    from PIL import Image

    gray = picture.convert("L").resize(size, Image.BICUBIC)
    return torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255.0)[None]


def depth_picture(depth_mask, size: tuple[int, int]):
    """What the depth pipeline kept of a depth map (its callback tensor `depth_mask`: latent-sized, -1..1, one row
    per image — twice over under CFG) as a grayscale picture of `size` (white = near): the map the artist sees."""
    import numpy as np
    from PIL import Image

    first = depth_mask[:1].float()
    grown = torch.nn.functional.interpolate(first, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    return Image.fromarray(((grown[0, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy(), "L")
