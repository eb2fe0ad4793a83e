"""A1111's "Prompt matrix": the prompt (or the negative prompt) split at "|" into a fixed first part and optional
parts; one image per combination of the optional parts (2^n), and a grid labelled with the parts (struck through
where a combination leaves one out).

script_args, in A1111's order: put_at_start (the optional parts before the fixed one), different_seeds (seed + i for
image i, else one seed for all), prompt_type ("positive" / "negative"), variations_delimiter ("comma" / "space"),
margin_size. Answer: the grid, then every image."""

from __future__ import annotations

from dataclasses import dataclass, replace

from PIL import Image

from ..contract import GenerationRequest, SavedImage
from .common import Arguments, Output, Plan, PlanContext, arg_info, cell_output, first_image, fixed_seeds
from .grids import annotate, image_grid, prompt_matrix_labels

TITLE = "Prompt matrix"
ARG_NAMES = ("put_at_start", "different_seeds", "prompt_type", "variations_delimiter", "margin_size")
DEFAULTS = (False, False, "positive", "comma", 0)
MAX_MARGIN = 500


def combinations(text: str, put_at_start: bool, delimiter: str) -> list[str]:
    """A1111's prompts: combination i holds optional part k when bit k of i is set."""
    parts = text.split("|")
    prompts = []
    for number in range(2 ** (len(parts) - 1)):
        chosen = [part.strip().strip(",") for k, part in enumerate(parts[1:]) if number & (1 << k)]
        ordered = chosen + [parts[0]] if put_at_start else [parts[0]] + chosen
        prompts.append(delimiter.join(ordered))
    return prompts


def plan(context: PlanContext, request: GenerationRequest, script_args) -> Plan:
    args = Arguments(TITLE, script_args, ARG_NAMES, DEFAULTS)
    prompt_type = args.choice("prompt_type", ("positive", "negative"))
    delimiter = {"comma": ", ", "space": " "}[args.choice("variations_delimiter", ("comma", "space"))]
    margin = args.number("margin_size", 0, MAX_MARGIN, whole=True)
    text = request.prompt if prompt_type == "positive" else request.negative_prompt
    parts = text.split("|")
    context.check_count(2 ** min(len(parts) - 1, 62), f"{TITLE} ({len(parts) - 1} optional parts)")
    notes = []
    if request.batch_size != 1 or request.batch_count != 1:
        notes.append(f"{TITLE} makes one image per combination: batch size and batch count are not used.")
    base = replace(fixed_seeds(request), batch_size=1, batch_count=1)
    different = args.flag("different_seeds")
    requests = []
    for i, prompt in enumerate(combinations(text, args.flag("put_at_start"), delimiter)):
        field = "prompt" if prompt_type == "positive" else "negative_prompt"
        cell = replace(base, seed=base.seed + (i if different else 0), **{field: prompt})
        requests.append(context.check(cell, f"{TITLE}, image {i + 1}: "))
    return Plan(TITLE, requests, MatrixGrid(requests, parts, margin).assemble, notes=notes)


@dataclass
class MatrixGrid:
    requests: list[GenerationRequest]
    parts: list[str]
    margin: int

    def assemble(self, results: list[list[SavedImage]]) -> list[Output]:
        pictures = [first_image(saved) for saved in results]
        size = next((p.size for p in pictures if p is not None), None)
        if size is None:
            return []  # interrupted before the first image
        pictures = [p if p is not None else Image.new("RGB", size) for p in pictures]
        rows = 1 << ((len(self.parts) - 1) // 2)
        top, left = prompt_matrix_labels(self.parts)
        width, height = (max(sizes) for sizes in zip(*(p.size for p in pictures)))
        grid = annotate(image_grid(pictures, rows), width, height, top, left, self.margin)
        first = next(saved[0] for saved in results if saved)
        outputs = [Output(first.infotext, first.seed, self.requests[0].prompt, self.requests[0].negative_prompt,
                          image=grid, grid=True)]
        return outputs + [cell_output(request, saved) for request, cell in zip(self.requests, results) for saved in cell]


def script_args_info(img2img: bool) -> list[dict]:
    return [
        arg_info("Put variable parts at start of prompt", False),
        arg_info("Use different seed for each picture", False),
        arg_info("Select prompt", "positive", choices=["positive", "negative"]),
        arg_info("Select joining char", "comma", choices=["comma", "space"]),
        arg_info("Grid margins (px)", 0, 0, MAX_MARGIN, 2),
    ]
