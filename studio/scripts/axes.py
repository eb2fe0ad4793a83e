"""The X/Y/Z plot's axis types: A1111's list (scripts/xyz_grid.py, v1.10), in its order — the API names an axis
type by its index in the list the txt2img or img2img tab shows, which leaves out the other tab's types — and
what each of those the studio supports changes in a GenerationRequest. Plain data; no torch."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from ..contract import GenerationRequest, RequestError
from ..samplers import SCHEDULE_TYPES, schedule_key
from .values import format_number

T2I, I2I = "txt2img", "img2img"

# A1111's axis_options: (label, the only tab it is shown on or None for both). Indices into the per-tab lists
# (what the API sends) come from this order.
A1111_AXES: tuple[tuple[str, Optional[str]], ...] = (
    ("Nothing", None), ("Seed", None), ("Var. seed", None), ("Var. strength", None), ("Steps", None),
    ("Hires steps", T2I), ("CFG Scale", None), ("Image CFG Scale", I2I), ("Prompt S/R", None),
    ("Prompt order", None), ("Sampler", T2I), ("Hires sampler", T2I), ("Sampler", I2I), ("Checkpoint name", None),
    ("Negative Guidance minimum sigma", None), ("Sigma Churn", None), ("Sigma min", None), ("Sigma max", None),
    ("Sigma noise", None), ("Schedule type", None), ("Schedule min sigma", None), ("Schedule max sigma", None),
    ("Schedule rho", None), ("Skip Early CFG", None), ("Beta schedule alpha", None), ("Beta schedule beta", None),
    ("Eta", None), ("Clip skip", None), ("Denoising", None), ("Initial noise multiplier", None), ("Extra noise", None),
    ("Hires upscaler", T2I), ("Cond. Image Mask Weight", I2I), ("VAE", None), ("Styles", None), ("UniPC Order", None),
    ("Face restore", None), ("Token merging ratio", None), ("Token merging ratio high-res", None),
    ("Always discard next-to-last sigma", None), ("SGM noise multiplier", None), ("Refiner checkpoint", None),
    ("Refiner switch at", None), ("RNG source", None), ("FP8 mode", None), ("Size", None),
)


def tab_labels(img2img: bool) -> list[str]:
    """The axis type labels the tab lists, in order: the API's x_type / y_type / z_type index into this."""
    tab = I2I if img2img else T2I
    return [label for label, only in A1111_AXES if only in (None, tab)]


@dataclass(frozen=True)
class Axis:
    """kind: how values are read ("int", "float", "str", "permutations", "nothing"); label_style: how a value is
    shown on the grid ("label": "Steps: 20", "value": "Euler", "join": "a, b", "file": a checkpoint's base name,
    "nothing"); prepare(context, value): a value checked and made canonical before anything runs; apply(request,
    value, values, img2img): the request for one cell; choices: A1111 takes this axis's values from the dropdown
    list (x_values_dropdown) unless csv_mode; cost: axes that are slow to change are run outermost."""

    label: str
    kind: str
    apply: Callable[[GenerationRequest, Any, list, bool], GenerationRequest]
    label_style: str = "label"
    prepare: Optional[Callable[[Any, Any], Any]] = None
    choices: bool = False
    cost: float = 0.0

    def format(self, value) -> str:
        if self.label_style == "nothing":
            return ""
        if self.label_style == "join":
            return ", ".join(value)
        if self.label_style == "file":
            return os.path.basename(str(value))
        text = format_number(value)
        return text if self.label_style == "value" else f"{self.label}: {text}"


def _field(name: str):
    return lambda request, value, values, img2img: replace(request, **{name: value})


def _prompt_sr(request: GenerationRequest, value: str, values: list, img2img: bool) -> GenerationRequest:
    search = values[0]
    if search not in request.prompt and search not in request.negative_prompt:
        raise RequestError(f"Prompt S/R did not find '{search}' in the prompt or the negative prompt.")
    return replace(request, prompt=request.prompt.replace(search, value),
                   negative_prompt=request.negative_prompt.replace(search, value))


def _prompt_order(request: GenerationRequest, order: tuple, values: list, img2img: bool) -> GenerationRequest:
    """A1111's apply_order: the tokens, where they first stand in the prompt, put back in `order`."""
    prompt = request.prompt
    missing = [token for token in order if token not in prompt]
    if missing:
        raise RequestError(f"Prompt order did not find '{missing[0]}' in the prompt.")
    positions = sorted((prompt.find(token), token) for token in order)
    parts = []
    for _, token in positions:
        at = prompt.find(token)
        parts.append(prompt[:at])
        prompt = prompt[at + len(token):]
    return replace(request, prompt="".join(part + order[i] for i, part in enumerate(parts)) + prompt)


def _denoising(request: GenerationRequest, value: float, values: list, img2img: bool) -> GenerationRequest:
    # txt2img's denoising strength is hires fix's second pass (A1111's p.denoising_strength there)
    return replace(request, denoising_strength=value) if img2img else replace(request, hr_denoising_strength=value)


def _styles(request: GenerationRequest, value: str, values: list, img2img: bool) -> GenerationRequest:
    return replace(request, styles=tuple(request.styles) + tuple(s.strip() for s in value.split(",") if s.strip()))


def _size(request: GenerationRequest, value: tuple, values: list, img2img: bool) -> GenerationRequest:
    return replace(request, width=value[0], height=value[1])


def _parse_size(context, value: str):
    width, sep, height = str(value).lower().partition("x")
    try:
        return int(width.strip()), int(height.strip())
    except ValueError:
        raise RequestError(f"Size: '{value}' is not a size such as 512x768.") from None


def _schedule(context, value: str) -> Optional[str]:
    try:
        key = schedule_key(str(value))
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    return None if key in (None, "automatic") else dict(SCHEDULE_TYPES)[key]


def _face_restore(request: GenerationRequest, value: str, values: list, img2img: bool) -> GenerationRequest:
    """A1111's apply_face_restore: CodeFormer or GFPGAN restores with that one; true/yes/y/1 with the chosen one."""
    wanted = value.strip().lower()
    named = {"codeformer": "CodeFormer", "gfpgan": "GFPGAN"}.get(wanted)
    active = named is not None or wanted in ("true", "yes", "y", "1")
    return replace(request, restore_faces=active, face_restorer=named or request.face_restorer)


SUPPORTED: dict[str, Axis] = {axis.label: axis for axis in (
    Axis("Nothing", "nothing", lambda request, value, values, img2img: request, label_style="nothing"),
    Axis("Seed", "int", _field("seed")),
    Axis("Var. seed", "int", _field("subseed")),
    Axis("Var. strength", "float", _field("subseed_strength")),
    Axis("Steps", "int", _field("steps")),
    Axis("Hires steps", "int", _field("hr_second_pass_steps")),
    Axis("CFG Scale", "float", _field("cfg_scale")),
    Axis("Prompt S/R", "str", _prompt_sr, label_style="value"),
    Axis("Prompt order", "permutations", _prompt_order, label_style="join"),
    Axis("Sampler", "str", _field("sampler_name"), label_style="value", choices=True),
    Axis("Hires sampler", "str", _field("hr_sampler_name"), choices=True),
    Axis("Checkpoint name", "str", _field("model"), label_style="file", choices=True, cost=1.0,
         prepare=lambda context, value: context.model(value)),
    Axis("Schedule type", "str", _field("scheduler"), choices=True, prepare=_schedule),
    Axis("Clip skip", "int", _field("clip_skip")),
    Axis("Denoising", "float", _denoising),
    Axis("Hires upscaler", "str", _field("hr_upscaler"), choices=True,
         prepare=lambda context, value: context.hires_upscaler(value)),
    Axis("VAE", "str", _field("vae"), choices=True, cost=0.7, prepare=lambda context, value: context.vae(value)),
    Axis("Styles", "str", _styles, choices=True),
    Axis("Face restore", "str", _face_restore),
    Axis("Size", "str", _size, prepare=_parse_size),
)}


def find_axis(kind, img2img: bool, which: str) -> Axis:
    """The axis an API x_type / y_type / z_type names: its index in the tab's list (A1111's way) or its label.
    Raises RequestError for an index out of range, an unknown label, or a type the studio does not support."""
    labels = tab_labels(img2img)
    tab = "img2img" if img2img else "txt2img"
    if isinstance(kind, str) and kind.strip().lstrip("-").isdigit():
        kind = int(kind.strip())
    if isinstance(kind, bool) or not isinstance(kind, (int, str)):
        raise RequestError(f"{which} type must be an axis index or name, got {kind!r}.")
    if isinstance(kind, int):
        if not 0 <= kind < len(labels):
            raise RequestError(f"{which} type {kind} is not an axis type of {tab} (0 to {len(labels) - 1}).")
        label = labels[kind]
    else:
        label = next((name for name in labels if name.lower() == kind.strip().lower()), None)
        if label is None:
            raise RequestError(f"{which} type '{kind}' is not an axis type of {tab}. Supported: {', '.join(supported(img2img))}.")
    if label not in SUPPORTED:
        raise RequestError(f"{which} type '{label}' is not supported by this server's X/Y/Z plot. "
                           f"Supported: {', '.join(supported(img2img))}.")
    return SUPPORTED[label]


def supported(img2img: bool) -> list[str]:
    """The supported axis types of a tab, with their API indices: "Steps (4)"."""
    return [f"{label} ({index})" for index, label in enumerate(tab_labels(img2img)) if label in SUPPORTED]
