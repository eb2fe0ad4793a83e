"""Seeing inside a job's sampling, captured only when the job asks for it (GenerationRequest.inspect):

- "attention": where each prompt token meets the image. The cross-attention probabilities of the job's first image
  (its conditional pass), averaged over heads and summed over layers, each layer's map resized to one low-resolution
  grid, kept per step (the DAAM method: Tang et al., "What the DAAM").
- "cfg": classifier-free guidance taken apart. The unconditional, conditional and guided noise predictions of each
  step, each turned into the x0 estimate it implies.
- With either: the noise level of every step that ran (timestep and sigma) and the picture sampling started from
  (for img2img and inpainting, the input after forward diffusion to the start level).

Captured through the extension points diffusers and torch offer — an attention processor that wraps the model's own
on each cross-attention layer and leaves its output untouched (the image is the one the job makes without
inspection), and forward hooks on the UNet — and held on the device at low resolution until the pipeline call ends;
then copied to the CPU once, as an Inspected kept on the job.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .hooks import StepHook, StepState
from .inspected import Inspected, Token, words_of

MAP_MAX_SIDE = 32  # attention maps are summed on a grid of at most this many cells on the latent's long side
PICTURE_MAX_SIDE = 256  # the CFG view's and start pictures are kept at most this large


class NoiseLevels:
    """A model's training noise schedule, read at any (possibly fractional) timestep: log sigma interpolated
    between the training timesteps, as k-diffusion samplers place theirs."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        self._log_sigmas = 0.5 * torch.log((1 - alphas_cumprod) / alphas_cumprod).double()

    def sigma(self, timestep) -> float:
        t = float(timestep)
        low = min(max(int(math.floor(t)), 0), len(self._log_sigmas) - 1)
        high = min(low + 1, len(self._log_sigmas) - 1)
        fraction = t - low
        return float(torch.exp((1 - fraction) * self._log_sigmas[low] + fraction * self._log_sigmas[high]))

    def alpha_bar(self, timestep) -> float:
        return 1.0 / (1.0 + self.sigma(timestep) ** 2)


class Recorder:
    """The device side of one pipeline call's inspection. `row` is the job's first image in the call's batch of
    `images`; under CFG the UNet's batch is [unconditional × images, conditional × images] (diffusers' order)."""

    def __init__(self, inspect: tuple[str, ...], row: int, images: int, levels: NoiseLevels, prediction_type: str):
        self.inspect = inspect
        self.row = row
        self.images = images
        self.prediction_type = prediction_type
        self.levels = levels
        self.latent_hw: Optional[tuple[int, int]] = None
        self.grid: Optional[tuple[int, int]] = None
        self.step_maps: list[torch.Tensor] = []  # [tokens, gh, gw] per finished step
        self._maps: Optional[torch.Tensor] = None  # this step's sum so far
        self.predictions: list[tuple] = []  # per step: (x_t, eps uncond or None, eps cond, alpha-bar)
        self._predicted_this_step = False
        self.timesteps: list[float] = []
        self._step_timestep: Optional[float] = None
        self.start: Optional[torch.Tensor] = None  # the first step's x_t (DDPM-normalized latents)

    # ---- UNet forward hooks

    def before_unet(self, module, args, kwargs) -> None:
        sample = args[0] if args else kwargs["sample"]
        self.latent_hw = tuple(sample.shape[-2:])
        if self.grid is None:
            scale = min(1.0, MAP_MAX_SIDE / max(self.latent_hw))
            self.grid = tuple(max(1, round(side * scale)) for side in self.latent_hw)

    def after_unet(self, module, args, kwargs, output) -> None:
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        x_t = sample[self.row, :4].detach()
        if self.start is None:
            self.start = x_t.clone()
        if "cfg" not in self.inspect or self._predicted_this_step:
            return  # a second-order sampler's second call of the step: the first one is the step's
        predicted = (output[0] if isinstance(output, tuple) else output.sample).detach()
        guided = predicted.shape[0] == 2 * self.images
        uncond = predicted[self.row].clone() if guided else None
        cond = predicted[self.images + self.row if guided else self.row].clone()
        self.predictions.append((x_t.clone(), uncond, cond, self.levels.alpha_bar(timestep)))
        self._predicted_this_step = True

    # ---- the attention processor's record

    def conditional_row(self, batch: int) -> Optional[int]:
        if batch == 2 * self.images:
            return self.images + self.row
        return self.row if batch == self.images else None

    def add_attention(self, attn, hidden_states: torch.Tensor, context: torch.Tensor) -> None:
        row = self.conditional_row(hidden_states.shape[0])
        if row is None or self.latent_hw is None:
            return
        with torch.no_grad():
            states = hidden_states[row : row + 1]
            if states.ndim == 4:
                states = states.flatten(2).transpose(1, 2)
            if attn.group_norm is not None:
                states = attn.group_norm(states.transpose(1, 2)).transpose(1, 2)
            context = context[row : row + 1]
            if attn.norm_cross:
                context = attn.norm_encoder_hidden_states(context)
            query = attn.head_to_batch_dim(attn.to_q(states))
            key = attn.head_to_batch_dim(attn.to_k(context))
            probs = attn.get_attention_scores(query, key, None).float().mean(dim=0)  # [pixels, tokens]
            height, width = self._layer_size(probs.shape[0])
            maps = probs.T.reshape(1, probs.shape[1], height, width)
            maps = F.interpolate(maps, size=self.grid, mode="bilinear", align_corners=False)[0]
            if self._maps is None or self._maps.shape != maps.shape:
                self._maps = torch.zeros_like(maps)
            self._maps += maps

    def _layer_size(self, pixels: int) -> tuple[int, int]:
        """A layer's (h, w) from its pixel count: the latent's size downsampled by a power of two (rounded up)."""
        height, width = self.latent_hw
        factor = 1
        while factor <= max(height, width):
            h, w = math.ceil(height / factor), math.ceil(width / factor)
            if h * w == pixels:
                return h, w
            factor *= 2
        raise ValueError(f"no layer of a {height}×{width} latent has {pixels} pixels")

    # ---- the step hook's end of a step

    def end_step(self, timestep, complete: bool = True) -> None:
        """A callback after a UNet call. complete: the sampler's step is whole (a second-order sampler calls back
        after each half); the step is noted at the timestep it started from."""
        if self._step_timestep is None:
            self._step_timestep = float(timestep)
        if not complete:
            return
        self.timesteps.append(self._step_timestep)
        self._step_timestep = None
        if self._maps is not None:
            self.step_maps.append(self._maps)
            self._maps = None
        self._predicted_this_step = False

    def finish(self) -> None:
        """The call has ended: a step still open (a second-order sampler's last step is its first half alone) ends."""
        if self._step_timestep is not None:
            self.end_step(self._step_timestep)

    def x0(self, x_t: torch.Tensor, predicted: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """The clean latent a noise prediction implies at x_t (DDPM-normalized, as every diffusers scheduler hands
        the UNet its input)."""
        a, s = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
        if self.prediction_type == "v_prediction":
            return a * x_t - s * predicted
        if self.prediction_type == "sample":
            return predicted
        return (x_t - s * predicted) / a


class CaptureProcessor:
    """Wraps a cross-attention layer's own processor: the output is that processor's, unchanged; the recorder also
    gets the layer's attention probabilities for the job's image."""

    def __init__(self, original, recorder: Recorder):
        self.original = original
        self.recorder = recorder

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        if encoder_hidden_states is not None:
            self.recorder.add_attention(attn, hidden_states, encoder_hidden_states)
        return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


class InspectHook(StepHook):
    """Closes each step's capture (the maps summed so far become that step's) and notes its timestep. Not graph
    safe: the capture must see inside the UNet."""

    graph_safe = False

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def __call__(self, state: StepState) -> None:
        self.recorder.end_step(state.timestep, getattr(state.pipe.scheduler, "state_in_first_order", True))


class Inspection:
    """One pipeline call's capture: `with inspection.installed(pipe):` around the call puts the attention
    processors and UNet hooks in place and takes them away again (the model's own processors back)."""

    def __init__(self, inspect: tuple[str, ...], row: int, images: int, scheduler, guidance: float):
        alphas = getattr(scheduler, "alphas_cumprod", None)
        if alphas is None:  # a sampler that keeps no training schedule: the one its config describes
            from diffusers import DDPMScheduler

            alphas = DDPMScheduler.from_config(scheduler.config).alphas_cumprod
        self.recorder = Recorder(inspect, row, images, NoiseLevels(alphas.float().cpu()), scheduler.config.get("prediction_type", "epsilon"))
        self.guidance = guidance
        self.hook = InspectHook(self.recorder)

    def installed(self, pipe):
        return _Installed(pipe.unet, self.recorder)

    def collect(self, decode, size: tuple[int, int], tokens: list[Token], loras: list[tuple[str, float]]) -> Inspected:
        """The capture on the CPU (one copy of each tensor). decode: scaled latents [1, 4, h, w] → uint8 [h, w, 3]
        on the device (a previews.PreviewDecoder's picture)."""
        recorder = self.recorder
        recorder.finish()
        result = Inspected(recorder.inspect, size, self.guidance, tokens, words_of(tokens), loras)
        result.timesteps = recorder.timesteps
        result.sigmas = [recorder.levels.sigma(t) for t in recorder.timesteps]
        if recorder.step_maps:  # (a prompt edited to more chunks part-way has more tokens from then on: padded)
            context = max(maps.shape[0] for maps in recorder.step_maps)
            padded = [F.pad(maps, (0, 0, 0, 0, 0, context - maps.shape[0])) for maps in recorder.step_maps]
            result.attention = torch.stack(padded).cpu().numpy()
        pictures = []
        for x_t, uncond, cond, alpha_bar in recorder.predictions:
            guided = cond if uncond is None else uncond + self.guidance * (cond - uncond)
            pictures.append({name: None if eps is None else decode(recorder.x0(x_t, eps, alpha_bar)[None])
                             for name, eps in (("uncond", uncond), ("cond", cond), ("guided", guided))})
        result.cfg = [{name: None if p is None else _shrunk(p.cpu().numpy()) for name, p in step.items()} for step in pictures]
        if recorder.start is not None:
            result.start = _shrunk(decode(recorder.start[None]).cpu().numpy())
        return result


class _Installed:
    def __init__(self, unet, recorder: Recorder):
        self.unet = unet
        self.recorder = recorder
        self._handles: list = []
        self._processors: Optional[dict] = None

    def __enter__(self):
        recorder = self.recorder
        self._handles = [self.unet.register_forward_pre_hook(recorder.before_unet, with_kwargs=True),
                         self.unet.register_forward_hook(recorder.after_unet, with_kwargs=True)]
        if "attention" in recorder.inspect:
            self._processors = dict(self.unet.attn_processors)
            wrapped = {name: CaptureProcessor(processor, recorder) if name.endswith("attn2.processor") else processor
                       for name, processor in self._processors.items()}
            self.unet.set_attn_processor(wrapped)
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        if self._processors is not None:
            self.unet.set_attn_processor(self._processors)


def _shrunk(picture: np.ndarray) -> np.ndarray:
    side = max(picture.shape[:2])
    if side <= PICTURE_MAX_SIDE:
        return picture
    from PIL import Image

    image = Image.fromarray(picture)
    factor = PICTURE_MAX_SIDE / side
    return np.asarray(image.resize((round(image.width * factor), round(image.height * factor)), Image.LANCZOS))


def planned_schedule(scheduler, steps: int) -> dict:
    """The noise levels a sampler will visit in `steps` steps, before anything runs: {"timesteps", "sigmas"} (one
    per step), from the scheduler's own set_timesteps."""
    scheduler.set_timesteps(steps)
    timesteps = [float(t) for t in scheduler.timesteps]
    if len(timesteps) > steps:  # second-order samplers visit most timesteps twice; PLMS repeats its warm-up
        timesteps = list(dict.fromkeys(timesteps))[:steps]
    levels = NoiseLevels(scheduler.alphas_cumprod.float().cpu())
    return {"timesteps": timesteps, "sigmas": [levels.sigma(t) for t in timesteps]}


def forward_diffused(scheduler, latents: torch.Tensor, noise: torch.Tensor, strength: float, steps: int) -> tuple[torch.Tensor, int]:
    """What img2img sampling starts from at a denoising strength: (the input's latents noised to the first step's
    level, DDPM-normalized as the UNet sees them; the number of steps that run), the way diffusers' img2img picks its
    start (int(steps × strength) steps from the end of the sampler's schedule). Strength 0: the input, no steps."""
    scheduler.set_timesteps(steps)
    run = min(int(steps * strength), steps)
    if run == 0:
        return latents, 0
    order = getattr(scheduler, "order", 1)
    first = scheduler.timesteps[(steps - run) * order]
    alpha_bar = NoiseLevels(scheduler.alphas_cumprod.float().cpu()).alpha_bar(first)
    return math.sqrt(alpha_bar) * latents + math.sqrt(1 - alpha_bar) * noise, run
