"""The task registry: for each task (txt2img, img2img, inpaint), how a request becomes a pipeline call.

One `TaskSpec` per task says how to prepare its inputs (sizes, the init image and mask, notes for the user), its own
pipeline arguments, its post-processing of each image, its own infotext fields, and whether its jobs may share a
dynamic batch. A new task (hires fix, upscale, depth) is one entry in TASKS (and, where diffusers has a pipeline for
it, one name in each family's TaskPipelines).

Plain Python, PIL and numpy at import (no torch): the dispatcher asks `batchable` here. The few diffusers helpers a
task needs (mask blur, paste-back, generators) are imported from studio.pipelines when called; inpainting's options
(only masked, masked content) are studio/inpainting.py's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Optional

from PIL import Image

from .contract import GenerationRequest, RequestError, Task
from .families import ModelKind
from .inpainting import LATENT_NOISE, LATENT_NOTHING, MASKED_CONTENT, ORIGINAL, PasteBack, fill_masked, latent_start, only_masked, paste_into


@dataclass
class Inputs:
    """What a task's preparation gives: the size to draw at and the images the pipeline takes."""

    width: int
    height: int
    init_image: Optional[Image.Image] = None
    mask: Optional[Image.Image] = None  # blurred by mask_blur, as the pipeline and the paste-back use it
    notes: list[str] = field(default_factory=list)  # things adjusted for the user, e.g. a resized mask
    final_size: Optional[tuple[int, int]] = None  # hires fix: the second pass's (width, height)
    paste_back: Optional[PasteBack] = None  # inpaint: the picture as given, its mask, the crop drawn ("Only masked")


@dataclass
class PreparedJob:
    task: Task
    width: int
    height: int
    seeds: list[int]
    init_image: Optional[Image.Image]
    mask: Optional[Image.Image]  # blurred by mask_blur, as the pipeline and the paste-back use it
    notes: list[str]
    subseeds: list[int] = field(default_factory=list)  # variation seeds, one per image (with subseed_strength > 0)
    final_size: Optional[tuple[int, int]] = None  # hires fix: the second pass's (width, height)
    paste_back: Optional[PasteBack] = None  # inpaint: what each image is pasted back into (the unmasked pixels)

    @property
    def varies_noise(self) -> bool:
        """Whether the start noise is not simply each seed's (variation seeds, seed resize)."""
        return bool(self.subseeds)


def _keep(pipe, prepared: PreparedJob, image):
    return image


def _no_arguments(request: GenerationRequest, prepared: PreparedJob) -> dict:
    return {}


def _no_description(request: GenerationRequest) -> dict:
    return {}


def _no_pipe_arguments(pipe, request: GenerationRequest, prepared: PreparedJob, seeds: list[int]) -> dict:
    return {}


@dataclass(frozen=True)
class TaskSpec:
    """One task. prepare(request, default_size, max_size) → Inputs; arguments(request, prepared) → the pipeline
    arguments beyond the common ones (prompts, steps, CFG, images per prompt, generators); post_process(pipe,
    prepared, image) → the image to save; infotext_fields: (infotext label, request attribute) pairs written for
    this task, in order, then describe(request)'s; shares_batches: its jobs may run as one dynamic batch (when
    batch_count is 1); pipeline: the family pipeline its (first) call runs (None: the task's own); passes: 2 for a
    task whose images go through a second, image-to-image call (studio/hires.py); pipe_arguments(pipe, request,
    prepared, seeds) → arguments that need the pipeline itself as the call runs it (its VAE swapped in: made inside
    the call's VAE context), replacing arguments(...)'s of the same name."""

    task: Task
    prepare: Callable[[GenerationRequest, int, int], Inputs]
    arguments: Callable[[GenerationRequest, PreparedJob], dict] = _no_arguments
    post_process: Callable = _keep
    infotext_fields: tuple[tuple[str, str], ...] = ()
    shares_batches: bool = False
    describe: Callable[[GenerationRequest], dict] = _no_description
    pipeline: Optional[Task] = None
    passes: int = 1
    pipe_arguments: Callable = _no_pipe_arguments
    label: str = ""  # how the UI names it

    @property
    def pipeline_task(self) -> Task:
        return self.pipeline or self.task

    def infotext(self, request: GenerationRequest) -> dict:
        return {**{label: getattr(request, attribute) for label, attribute in self.infotext_fields}, **self.describe(request)}


# ---- preparation


def _model_size(request: GenerationRequest, default_size: int, max_size: int) -> Inputs:
    return Inputs(request.width or default_size, request.height or default_size)


def _drawing_size(request: GenerationRequest, init: Image.Image, max_size: int) -> tuple[int, int]:
    """The size asked for, else the init image's (multiples of 8, within 64..max_size)."""
    width = request.width or max(64, min(max_size, init.width // 8 * 8))
    height = request.height or max(64, min(max_size, init.height // 8 * 8))
    return width, height


def _from_init_image(request: GenerationRequest, default_size: int, max_size: int) -> Inputs:
    """The drawing size (_drawing_size); the init image resized to it."""
    init = request.init_image.convert("RGB")
    width, height = _drawing_size(request, init, max_size)
    if init.size != (width, height):
        init = init.resize((width, height), Image.LANCZOS)
    return Inputs(width, height, init)


def _mask_resize_note(request: GenerationRequest) -> list[str]:
    mask, init = request.mask, request.init_image
    if mask.size == init.size:
        return []
    return [f"The mask ({mask.width}×{mask.height}) was resized to the image ({init.width}×{init.height})."]


def _with_mask(request: GenerationRequest, default_size: int, max_size: int) -> Inputs:
    """Inpainting's inputs: the whole picture (_whole_picture) or, with inpaint_full_res, the mask's surroundings
    only (_only_masked); then the masked content as inpainting_fill asks — A1111 fills the masked area (masking.fill)
    for every choice but original, the latent ones also replacing it in the latents (pipe_arguments)."""
    inputs = _only_masked(request, max_size) if request.inpaint_full_res else None
    if inputs is None:
        inputs = _whole_picture(request, default_size, max_size)
        if request.inpaint_full_res:
            inputs.notes.append('"Only masked" found nothing masked once the mask was blurred: the whole picture was drawn.')
    if request.inpainting_fill != ORIGINAL:
        inputs.init_image = fill_masked(inputs.init_image, inputs.mask)
    return inputs


def _whole_picture(request: GenerationRequest, default_size: int, max_size: int) -> Inputs:
    """As img2img, plus the mask: resized to the drawing size (noted when it differed from the image), blurred."""
    from .pipelines import blur_mask

    inputs = _from_init_image(request, default_size, max_size)
    mask = request.mask.convert("L")
    inputs.notes += _mask_resize_note(request)
    if mask.size != (inputs.width, inputs.height):
        mask = mask.resize((inputs.width, inputs.height), Image.LANCZOS)
    inputs.mask = blur_mask(mask, request.mask_blur)
    inputs.paste_back = PasteBack(inputs.init_image, inputs.mask)
    return inputs


def _only_masked(request: GenerationRequest, max_size: int) -> Optional[Inputs]:
    """A1111's "Inpaint area: Only masked": the mask blurred at the picture's own size, the box around it (widened by
    inpaint_full_res_padding, grown to the drawing size's aspect) drawn at the drawing size, to be pasted back into
    the picture as given. None when the blurred mask is all black."""
    from .pipelines import blur_mask

    init = request.init_image.convert("RGB")
    width, height = _drawing_size(request, init, max_size)
    notes = _mask_resize_note(request)
    mask = request.mask.convert("L")
    if mask.size != init.size:
        mask = mask.resize(init.size, Image.LANCZOS)
    mask = blur_mask(mask, request.mask_blur)
    crop = only_masked(init, mask, width, height, int(request.inpaint_full_res_padding))
    if crop is None:
        return None
    return Inputs(width, height, crop.image, crop.mask, notes, paste_back=PasteBack(init, mask, crop.box))


# ---- pipeline arguments and post-processing


def _hires_sizes(request: GenerationRequest, default_size: int, max_size: int) -> Inputs:
    """The first pass at width × height; the second at hr_resize or × hr_scale (checked against max_size here,
    where the model's default size is known)."""
    from .contract import RequestError
    from .validation import hires_size

    inputs = _model_size(request, default_size, max_size)
    final = hires_size(request, default_size)
    if max(final) > max_size:
        raise RequestError(f"The hires fix size {final[0]}×{final[1]} is over the server's limit of {max_size}: lower hr_scale.")
    inputs.final_size = final
    return inputs


def _hires_description(request: GenerationRequest) -> dict:
    """A1111's hires fields, in its order."""
    described = {"Denoising strength": request.hr_denoising_strength}
    if request.hr_resize is not None:
        described["Hires resize"] = f"{request.hr_resize[0]}x{request.hr_resize[1]}"
    else:
        described["Hires upscale"] = request.hr_scale
    described["Hires steps"] = request.hr_second_pass_steps or None
    described["Hires upscaler"] = request.hr_upscaler
    if request.hr_sampler_name and request.hr_sampler_name != request.sampler_name:
        described["Hires sampler"] = request.hr_sampler_name
    if request.hr_scheduler and request.hr_scheduler != request.scheduler:
        described["Hires schedule type"] = request.hr_scheduler
    if request.hr_prompt is not None and request.hr_prompt != request.prompt:
        described["Hires prompt"] = request.hr_prompt
    if request.hr_negative_prompt is not None and request.hr_negative_prompt != request.negative_prompt:
        described["Hires negative prompt"] = request.hr_negative_prompt
    return described


def _size_arguments(request: GenerationRequest, prepared: PreparedJob) -> dict:
    return dict(width=prepared.width, height=prepared.height)


def _img2img_arguments(request: GenerationRequest, prepared: PreparedJob) -> dict:
    return dict(image=prepared.init_image, strength=request.denoising_strength)


def _depth_map(pipe, request: GenerationRequest, prepared: PreparedJob, seeds: list[int]) -> dict:
    """A depth model's image to image with the user's own depth map (else the pipeline estimates one)."""
    if request.depth_map is None:
        return {}
    from .pipelines import depth_tensor

    return dict(depth_map=depth_tensor(request.depth_map, (prepared.width, prepared.height)))


def _inpaint_arguments(request: GenerationRequest, prepared: PreparedJob) -> dict:
    return dict(
        image=prepared.init_image,
        mask_image=prepared.mask,
        strength=request.denoising_strength,
        width=prepared.width,
        height=prepared.height,
    )


def _inpaint_latents(pipe, request: GenerationRequest, prepared: PreparedJob, seeds: list[int]) -> dict:
    """Latent noise / latent nothing: the init latents with their masked area replaced (studio/inpainting.py)."""
    if request.inpainting_fill not in (LATENT_NOISE, LATENT_NOTHING):
        return {}
    return latent_start(pipe, prepared.init_image, prepared.mask, seeds, noise=request.inpainting_fill == LATENT_NOISE)


def _paste_back(pipe, prepared: PreparedJob, image):
    """Put the untouched pixels back: into the picture as the job drew it, or, for "Only masked", the crop scaled
    back into the picture as given (which is then the result's size)."""
    from .pipelines import paste_unmasked

    paste = prepared.paste_back or PasteBack(prepared.init_image, prepared.mask)
    if paste.crop is None:
        return paste_unmasked(pipe, paste.mask, paste.image, image)
    return paste_into(paste.image, paste.mask, image, paste.crop)


def _inpaint_description(request: GenerationRequest) -> dict:
    """A1111's inpainting fields beyond Denoising strength: Mask blur only when the mask is blurred; Inpaint area and
    Masked area padding for "Only masked"; Masked content for all but original (its default in the UI)."""
    described = {}
    if not request.mask_blur:
        described["Mask blur"] = None
    if request.inpaint_full_res:
        described["Inpaint area"] = "Only masked"
        described["Masked area padding"] = int(request.inpaint_full_res_padding)
    if request.inpainting_fill != ORIGINAL:
        described["Masked content"] = MASKED_CONTENT[request.inpainting_fill]
    return described


# ---- the registry

_DENOISING = ("Denoising strength", "denoising_strength")

TASKS: dict[Task, TaskSpec] = {
    spec.task: spec
    for spec in (
        TaskSpec(Task.TXT2IMG, _model_size, _size_arguments, shares_batches=True, label="Text to image"),
        TaskSpec(Task.IMG2IMG, _from_init_image, _img2img_arguments, infotext_fields=(_DENOISING,), label="Image to image",
                 pipe_arguments=_depth_map),
        TaskSpec(Task.INPAINT, _with_mask, _inpaint_arguments, _paste_back, (_DENOISING, ("Mask blur", "mask_blur")),
                 describe=_inpaint_description, pipe_arguments=_inpaint_latents, label="Inpainting"),
        TaskSpec(Task.HIRES_FIX, _hires_sizes, _size_arguments, describe=_hires_description, pipeline=Task.TXT2IMG, passes=2,
                 label="Text to image with hires fix"),
    )
}


def task_spec(task: Task) -> TaskSpec:
    return TASKS[task]


def refuse_unless_runs(kind: ModelKind, model_name: str, request: GenerationRequest) -> None:
    """RequestError, saying what the model can do, when a model of `kind` cannot run the request's task (a depth
    model asked for text to image) or was given a depth map it does not take: the user's choice to change."""
    task = request.task
    if request.depth_map is not None and not kind.takes_depth_map:
        raise RequestError(f"depth_map is for depth-to-image models; model '{model_name}' is {kind.label}. "
                           "Leave it out, or choose a depth model.")
    if task in kind.tasks:
        return
    raise RequestError(f"Model '{model_name}' is {kind.label} and cannot run {TASKS[task].label}: {abilities(kind)}. "
                       f"Choose another model for {TASKS[task].label}.")


def abilities(kind: ModelKind) -> str:
    """What a model of `kind` runs, in the tabs' words: "it runs Image to image only"."""
    runs = [TASKS[task].label for task in (Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT) if task in kind.tasks]
    if not runs:
        return "the studio makes no pictures with it"
    if len(runs) == 1:
        return f"it runs {runs[0]} only"
    return f"it runs {', '.join(runs[:-1])} and {runs[-1]}"


def batchable(request: GenerationRequest) -> bool:
    """Whether this request may share one pipeline call with other users' jobs (dynamic batching): not when its
    start noise or its model's padding is its own (variation seeds, seed resize, tiling), nor when it inspects its
    sampling (the capture follows one job's image)."""
    own_noise = request.subseed_strength > 0 or request.seed_resize_from is not None
    return (task_spec(request.task).shares_batches and request.batch_count == 1 and not own_noise and not request.tiling
            and not request.inspect)


def prepare(request: GenerationRequest, default_size: int, max_size: int) -> PreparedJob:
    """The request's inputs as its task prepares them, and its seeds (a random first seed for seed -1)."""
    task = request.task
    inputs = task_spec(task).prepare(request, default_size, max_size)
    count = request.batch_size * request.batch_count
    first_seed = request.seed if request.seed >= 0 else random.randrange(2**32)
    seeds = [first_seed + i for i in range(count)]
    subseeds = []
    if request.subseed_strength > 0 or request.seed_resize_from is not None:
        first_subseed = request.subseed if request.subseed >= 0 else random.randrange(2**32)
        subseeds = [first_subseed + i for i in range(count)]  # A1111: image i uses subseed + i
    return PreparedJob(task, inputs.width, inputs.height, seeds, inputs.init_image, inputs.mask, inputs.notes, subseeds,
                       inputs.final_size, inputs.paste_back)


def pipeline_arguments(request: GenerationRequest, prepared: PreparedJob, seeds: list[int]) -> dict:
    """The arguments of one pipeline call for `seeds` of this job: the common ones, then its task's."""
    from .pipelines import generators

    arguments = dict(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt or None,
        num_inference_steps=request.steps,
        guidance_scale=float(request.cfg_scale),
        num_images_per_prompt=len(seeds),
        generator=generators(seeds),
    )
    arguments.update(task_spec(prepared.task).arguments(request, prepared))
    return arguments


def pipe_arguments(pipe, request: GenerationRequest, prepared: PreparedJob, seeds: list[int]) -> dict:
    """The arguments of one pipeline call for `seeds` that need the pipeline as the call will run it (its VAE swapped
    in): made inside the call's VAE context, they replace pipeline_arguments(...)'s of the same name. Only
    inpainting's latent noise / latent nothing has any (the init latents)."""
    return task_spec(prepared.task).pipe_arguments(pipe, request, prepared, seeds)
