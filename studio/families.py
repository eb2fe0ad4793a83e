"""The model families the studio runs (SD 1.x, SD 2.x, SDXL), each as one entry of facts.

Everything else asks this registry instead of naming a family, so adding a family is one `Family` entry here plus its
config folders under models/configs. Plain data: diffusers classes are named, not imported, so the UI and the API can
read the registry without importing torch or diffusers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

from .contract import Task

UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"  # a single-file checkpoint's first UNet layer


@dataclass(frozen=True)
class TaskPipelines:
    """diffusers pipeline class names per task, resolved only when a pipeline is built."""

    txt2img: str
    img2img: str
    inpaint: str

    def for_task(self, task: Task) -> str:
        return getattr(self, Task(task).value)


# The tasks with a pipeline class of their own in every family (hires fix runs the txt2img and img2img ones).
PIPELINE_TASKS = (Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT)


@dataclass(frozen=True)
class PredictionOverride:
    """Checkpoints whose file name says they predict something other than their config does. A1111 reads a .yaml
    beside the file for this; the file name is what users have."""

    file_name: str  # regex, searched case-insensitively
    prediction_type: str
    note: str  # told to the operator when it applies
    default_size: int | None = None  # the checkpoint's own size, when not the family's


@dataclass(frozen=True)
class ConfigFolder:
    """One kind of single-file checkpoint and the config folder that loads it offline (`from_single_file`)."""

    name: str  # folder under models/configs ("tiny": built from studio/tiny.py instead)
    checkpoint_type: str  # what diffusers' infer_diffusers_model_type answers for this kind's keys
    openclip_tokenizers: frozenset[str] = frozenset()  # tokenizers padding with "!" (OpenCLIP), not <|endoftext|>
    prediction_override: PredictionOverride | None = None
    shapes_match: Callable[[Mapping], bool] | None = None  # a further test of the key shapes, when the type is not enough


@dataclass(frozen=True)
class PromptEncoding:
    """How A1111 turns this family's prompts into conditioning (studio/prompts/encode.py follows it)."""

    second_encoder: bool = False  # a second tokenizer/text encoder pair, side by side on the feature axis, pooled output
    penultimate_layer: bool = False  # the next-to-last hidden state, without the final layer norm
    honours_clip_skip: bool = True  # A1111 ignores CLIP skip for SD 2.x (its encoder is already cut) and SDXL
    zeros_for_empty_negative: bool = False  # an empty negative prompt is all zeros, not the empty prompt's encoding


# kohya's ss_base_model_version for LoRAs trained on a two-encoder (SDXL) model starts with this
KOHYA_TWO_ENCODER_BASE = "sdxl"


@dataclass(frozen=True)
class FileFamily:
    """What a single-file checkpoint was detected as."""

    family: str  # a FAMILIES key
    config: str  # folder under models/configs, or "tiny"
    prediction_type: str | None = None  # an override of the config's
    note: str | None = None  # why the override, for the operator
    default_size: int | None = None  # the checkpoint's own size, when not the family's


@dataclass(frozen=True)
class Family:
    """Everything the studio needs to know about one model family."""

    name: str
    label: str  # how users and messages name it
    pipelines: TaskPipelines
    default_size: int  # width and height when a request leaves them out
    latent_rgb_factors: tuple[tuple[float, float, float], ...]  # rows: latent channels; columns: R, G, B
    latent_rgb_bias: tuple[float, float, float]
    taesd_id: str  # hub id of the tiny autoencoder for taesd previews
    configs: tuple[ConfigFolder, ...]  # the single-file checkpoint kinds, the plain text-to-image one first
    is_pipeline: Callable[[str, int | None], bool]  # (pipeline class name, UNet cross_attention_dim) → a loaded folder is this family
    prompt_encoding: PromptEncoding = PromptEncoding()

    @property
    def base_config(self) -> str:
        return self.configs[0].name


def _is_sd1(class_name: str, cross_attention_dim: int | None) -> bool:
    return "XL" not in class_name and cross_attention_dim == 768


def _is_sd2(class_name: str, cross_attention_dim: int | None) -> bool:
    return "XL" not in class_name and cross_attention_dim == 1024


def _is_sdxl(class_name: str, cross_attention_dim: int | None) -> bool:
    return "XL" in class_name


DEMO = "demo"  # the family of the model shipped in models/demo, and that model's name (studio/demo)
DEMO_CROSS_ATTENTION_DIM = 64  # the demo model's text width (studio/demo/train.py): no other family has it


def _is_demo(class_name: str, cross_attention_dim: int | None) -> bool:
    return "XL" not in class_name and cross_attention_dim == DEMO_CROSS_ATTENTION_DIM


def _narrow_unet(shapes: Mapping) -> bool:
    """The tiny model's checkpoints: an SD 1.x layout, but a UNet far narrower than the real one's 320 channels."""
    conv_in = shapes.get(UNET_CONV_IN)
    return conv_in is not None and conv_in.shape[0] != 320


# The demo model's latent -> RGB map, fitted by least squares on its own VAE (models/demo/training.json).
DEMO_LATENT_RGB = ((-0.4334, -0.143, -0.0369), (0.5213, 0.4885, 0.3409), (0.0593, -0.0465, -0.5326), (-0.5525, -0.4444, -0.166))
DEMO_LATENT_RGB_BIAS = (0.1366, -0.1373, 0.0057)
_SD_PIPELINES = TaskPipelines("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline")
# ComfyUI's latent_formats.py; applied to scaled latents.
_SD_LATENT_RGB = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177))

FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        family.name: family
        for family in (
            Family(
                name="sd1",
                label="SD 1.x",
                pipelines=_SD_PIPELINES,
                default_size=512,
                latent_rgb_factors=_SD_LATENT_RGB,
                latent_rgb_bias=(0.0, 0.0, 0.0),
                taesd_id="madebyollin/taesd",
                configs=(ConfigFolder("sd15", "v1"), ConfigFolder("sd15-inpainting", "inpainting")),
                is_pipeline=_is_sd1,
            ),
            Family(
                name="sd2",
                label="SD 2.x",
                pipelines=_SD_PIPELINES,
                default_size=768,
                latent_rgb_factors=_SD_LATENT_RGB,
                latent_rgb_bias=(0.0, 0.0, 0.0),
                taesd_id="madebyollin/taesd",
                # 768-v is the common SD 2.x checkpoint (the config); the 512 "base" ones predict epsilon.
                configs=(
                    ConfigFolder(
                        "sd21",
                        "v2",
                        openclip_tokenizers=frozenset({"tokenizer"}),
                        prediction_override=PredictionOverride(r"(base|512)", "epsilon", "SD 2.x 'base' checkpoint, epsilon prediction",
                                                               default_size=512),
                    ),
                ),
                is_pipeline=_is_sd2,
                prompt_encoding=PromptEncoding(honours_clip_skip=False),
            ),
            Family(
                name="sdxl",
                label="SDXL",
                pipelines=TaskPipelines("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline"),
                default_size=1024,
                latent_rgb_factors=((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188)),
                latent_rgb_bias=(0.1084, -0.0175, -0.0011),
                taesd_id="madebyollin/taesdxl",
                configs=(ConfigFolder("sdxl", "xl_base", openclip_tokenizers=frozenset({"tokenizer_2"})),),
                is_pipeline=_is_sdxl,
                prompt_encoding=PromptEncoding(second_encoder=True, penultimate_layer=True, honours_clip_skip=False,
                                               zeros_for_empty_negative=True),
            ),
            Family(
                name=DEMO,
                label="Demo (simple shapes)",
                pipelines=_SD_PIPELINES,
                default_size=128,
                latent_rgb_factors=DEMO_LATENT_RGB,
                latent_rgb_bias=DEMO_LATENT_RGB_BIAS,
                taesd_id="",  # none: its own VAE is small enough for full previews (--preview vae)
                configs=(),  # shipped as a diffusers folder only
                is_pipeline=_is_demo,
            ),
        )
    }
)

@dataclass(frozen=True)
class ModelKind:
    """What a model's UNet was trained to do, told by its input channels: the tasks it runs, and the diffusers
    pipeline class of each where it is not its family's (a depth model's image-to-image is depth-to-image)."""

    name: str
    label: str  # "a depth-to-image model": how messages name it
    unet_in_channels: int
    tasks: Mapping[Task, str | None]  # task → pipeline class name, None for the family's own
    takes_depth_map: bool = False  # its image-to-image keeps a depth map (estimated, or the user's)

    def pipeline(self, family_name: str, task: Task) -> str:
        own = self.tasks.get(Task(task))
        return own or family(family_name).pipelines.for_task(task)


TEXT_TO_IMAGE = ModelKind("text-to-image", "a text-to-image model", 4, MappingProxyType({task: None for task in Task}))
MODEL_KINDS: tuple[ModelKind, ...] = (
    TEXT_TO_IMAGE,
    # The inpainting models' UNet also takes the mask and the masked picture's latents.
    ModelKind("inpainting", "an inpainting model", 9, MappingProxyType({Task.INPAINT: None})),
    # Stable Diffusion 2's depth model: the UNet takes a depth map beside the latents; its pipeline estimates one.
    ModelKind("depth", "a depth-to-image model", 5, MappingProxyType({Task.IMG2IMG: "StableDiffusionDepth2ImgPipeline"}),
              takes_depth_map=True),
    # The x4 upscaler's UNet takes the low-resolution picture: it makes no pictures of its own.
    ModelKind("upscaler", "an x4 upscaler", 7, MappingProxyType({})),
)


def model_kind(unet_in_channels: int) -> ModelKind:
    """The kind of a model whose UNet takes `unet_in_channels`; a kind that runs nothing when no kind has them."""
    for kind in MODEL_KINDS:
        if kind.unet_in_channels == unet_in_channels:
            return kind
    return ModelKind("unknown", f"a model whose UNet takes {unet_in_channels} channels", unet_in_channels, MappingProxyType({}))


FALLBACK_FAMILY = "sd1"  # what a loaded pipeline no family claims is run as (as before the registry)
TINY_FAMILY = "sd1"  # the built-in tiny model is a (very small) SD 1.x
TINY_CONFIG = ConfigFolder("tiny", "v1", shapes_match=_narrow_unet)


def family(name: str) -> Family:
    """The family called `name`; KeyError names the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r} (known: {', '.join(FAMILIES)})") from None


def config_folder(name: str) -> ConfigFolder:
    """A config folder by name, whichever family it belongs to."""
    for candidate in all_configs():
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown config folder {name!r}")


def all_configs() -> tuple[ConfigFolder, ...]:
    return (TINY_CONFIG,) + tuple(config for fam in FAMILIES.values() for config in fam.configs)


def detect_checkpoint(checkpoint_type: str, shapes: Mapping, file_name: str) -> FileFamily | None:
    """The family and config folder of a single-file checkpoint, from diffusers' reading of its keys (the checkpoint
    type) and the key shapes; None when no family runs it. The tiny model's narrow UNet is tested first."""
    candidates = [(TINY_FAMILY, TINY_CONFIG)] + [(fam.name, config) for fam in FAMILIES.values() for config in fam.configs]
    for family_name, config in candidates:
        if config.checkpoint_type != checkpoint_type or (config.shapes_match and not config.shapes_match(shapes)):
            continue
        override = config.prediction_override
        if override and re.search(override.file_name, file_name, re.IGNORECASE):
            return FileFamily(family_name, config.name, override.prediction_type, override.note, override.default_size)
        return FileFamily(family_name, config.name)
    return None


def family_of_pipeline(class_name: str, cross_attention_dim: int | None) -> Family:
    """The family of a pipeline loaded from a diffusers folder or the hub, from its class and its UNet."""
    for fam in FAMILIES.values():
        if fam.is_pipeline(class_name, cross_attention_dim):
            return fam
    return FAMILIES[FALLBACK_FAMILY]


def supported_labels() -> str:
    """'SD 1.x, SD 2.x and SDXL': for messages about what the studio runs."""
    labels = [fam.label for fam in FAMILIES.values() if fam.configs]  # the demo model is no checkpoint kind
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"
