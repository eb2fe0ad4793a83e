"""Hires fix, as A1111 runs it: a first text-to-image pass at width × height, its result upscaled (the latents
themselves for the "Latent" modes; else the decoded picture, through studio/upscalers.py), then an image-to-image
second pass at the final size with `denoising_strength`, for `hr_second_pass_steps` (0: the first pass's steps),
optionally with its own sampler and prompts. Both passes are diffusers' own pipeline calls; the step hooks see both
(one step count over the two), so previews go on through the second pass.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .contract import GenerationRequest


def second_pass_steps(request: GenerationRequest) -> int:
    """The steps the second pass runs: diffusers' image-to-image runs int(steps × strength) of its schedule."""
    steps = request.hr_second_pass_steps or request.steps
    return max(1, min(steps, int(steps * request.hr_denoising_strength)))


def hires_request(request: GenerationRequest) -> GenerationRequest:
    """The request as the second pass sees it: its prompts, sampler and schedule type."""
    return replace(
        request,
        prompt=request.prompt if request.hr_prompt is None else request.hr_prompt,
        negative_prompt=request.negative_prompt if request.hr_negative_prompt is None else request.hr_negative_prompt,
        sampler_name=request.hr_sampler_name or request.sampler_name,
        scheduler=request.hr_scheduler or request.scheduler,
        steps=request.hr_second_pass_steps or request.steps,
    )


@dataclass
class SecondPass:
    """What the runner hands over for the second pass of one call."""

    pipe: object  # the image-to-image pipeline, on the same weights
    arguments: dict  # prompt embeds, CFG, generators (the first pass's seeds)
    width: int
    height: int
    upscaler: str
    strength: float
    steps: int  # its num_inference_steps (it runs int(steps × strength) of them)
    hooks: object  # its HookChain: the first pass's hooks, counting on from the first pass's steps


def upscale_first_pass(first_output, second: SecondPass, upscalers, device, dtype):
    """The first pass's images at the final size: latents interpolated for the Latent modes (the second pass takes
    latents as its image), else decoded pictures through the named upscaler."""
    from .upscalers import is_latent, latent_upscale

    if is_latent(second.upscaler):
        return latent_upscale(first_output, second.width, second.height, second.upscaler)
    return [upscalers.upscale(image, None, second.width, second.height, second.upscaler, device, dtype) for image in first_output]


def first_pass_output_type(upscaler: str) -> str:
    from .upscalers import is_latent

    return "latent" if is_latent(upscaler) else "pil"


def run_second_pass(second: SecondPass, image, hooks):
    """The image-to-image pass; returns its PIL images."""
    arguments = dict(second.arguments)
    arguments.update(image=image, strength=second.strength, num_inference_steps=second.steps)
    return second.pipe(**arguments, callback_on_step_end=hooks).images

