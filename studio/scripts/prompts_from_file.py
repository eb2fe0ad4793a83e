"""A1111's "Prompts from file or textbox": one job per non-empty line of prompt_txt. A line is a prompt, or — when
it starts with "--" — A1111's option syntax, e.g. `--prompt "a red fox" --steps 10 --cfg_scale 5`: --prompt and
--negative_prompt take every word up to the next option; the others one value each. A line's prompt goes before
(prompt_position "start") or after ("end") the request's own prompt, with a space.

Options: a safe subset of A1111's (SAFE_OPTIONS); those that name server paths or change what is saved are refused,
as is anything else. script_args, in A1111's order: checkbox_iterate (the seed moves on by batch size × count after
each line), checkbox_iterate_batch (one random seed for all lines), prompt_position, prompt_txt. Answer: every
image, line by line (no grid)."""

from __future__ import annotations

import random
import shlex
from dataclasses import replace
from typing import Any, Callable

from ..contract import GenerationRequest, RequestError, SavedImage
from .common import MAX_SEED_DRAW, Arguments, Output, Plan, PlanContext, arg_info, cell_output

TITLE = "Prompts from file or textbox"
ARG_NAMES = ("checkbox_iterate", "checkbox_iterate_batch", "prompt_position", "prompt_txt")
DEFAULTS = (False, False, "start", "")
MAX_LINES = 100
MAX_TEXT_CHARS = 1_000_000


def _flag(text: str) -> bool:
    return text == "true"  # A1111's process_boolean_tag


def _styles(text: str) -> tuple:
    return tuple(name.strip() for name in text.split(",") if name.strip())


# option → (GenerationRequest field, converter); A1111's names
SAFE_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "negative_prompt": ("negative_prompt", str),
    "prompt": ("prompt", str),
    "styles": ("styles", _styles),
    "seed": ("seed", int),
    "subseed": ("subseed", int),
    "subseed_strength": ("subseed_strength", float),
    "seed_resize_from_h": ("seed_resize_from_h", int),
    "seed_resize_from_w": ("seed_resize_from_w", int),
    "sampler_name": ("sampler_name", str),
    "batch_size": ("batch_size", int),
    "n_iter": ("batch_count", int),
    "steps": ("steps", int),
    "cfg_scale": ("cfg_scale", float),
    "width": ("width", int),
    "height": ("height", int),
    "tiling": ("tiling", _flag),
    "restore_faces": ("restore_faces", _flag),
    "sd_model": ("model", str),
}


def parse_line(line: str) -> dict[str, Any]:
    """A line's fields (SAFE_OPTIONS' field names): {"prompt": line} for a plain prompt. Raises RequestError."""
    if not line.lstrip().startswith("--"):
        return {"prompt": line}
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise RequestError(f"cannot read the options ({exc}).") from None
    fields: dict[str, Any] = {}
    pos = 0
    while pos < len(tokens):
        option = tokens[pos]
        if not option.startswith("--"):
            raise RequestError(f"'{option}' must start with \"--\".")
        if pos + 1 >= len(tokens):
            raise RequestError(f"{option} needs a value.")
        name = option[2:]
        if name not in SAFE_OPTIONS:
            raise RequestError(f"option {option} is not allowed here; allowed: "
                               f"{', '.join('--' + o for o in SAFE_OPTIONS)}.")
        field, convert = SAFE_OPTIONS[name]
        if name in ("prompt", "negative_prompt"):
            end = pos + 2
            while end < len(tokens) and not tokens[end].startswith("--"):
                end += 1
            fields[field] = " ".join(tokens[pos + 1:end])
            pos = end
            continue
        try:
            fields[field] = convert(tokens[pos + 1])
        except ValueError:
            raise RequestError(f"{option} {tokens[pos + 1]!r} is not a valid value.") from None
        pos += 2
    return fields


def _line_request(context: PlanContext, base: GenerationRequest, fields: dict, position: str) -> GenerationRequest:
    fields = dict(fields)
    resize = (fields.pop("seed_resize_from_w", -1), fields.pop("seed_resize_from_h", -1))
    if resize[0] > 0 and resize[1] > 0:
        fields["seed_resize_from"] = resize
    if "model" in fields:
        fields["model"] = context.model(fields["model"])
    for name in ("prompt", "negative_prompt"):
        own, given = getattr(base, name), fields.get(name)
        if given and own:
            fields[name] = f"{given} {own}" if position == "start" else f"{own} {given}"
    return replace(base, **fields)


def plan(context: PlanContext, request: GenerationRequest, script_args) -> Plan:
    args = Arguments(TITLE, script_args, ARG_NAMES, DEFAULTS)
    iterate, same_seed = args.flag("checkbox_iterate"), args.flag("checkbox_iterate_batch")
    position = args.choice("prompt_position", ("start", "end"))
    lines = [line.strip() for line in args.text("prompt_txt", MAX_TEXT_CHARS).splitlines() if line.strip()]
    if not lines:
        raise RequestError(f"{TITLE}: prompt_txt holds no prompts (one per line).")
    if len(lines) > MAX_LINES:
        raise RequestError(f"{TITLE}: {len(lines)} lines; at most {MAX_LINES} per call.")
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append(parse_line(line))
        except RequestError as exc:
            raise RequestError(f"{TITLE}, line {number}: {exc}") from None
    count = sum(f.get("batch_size", request.batch_size) * f.get("batch_count", request.batch_count) for f in parsed)
    context.check_count(count, f"{TITLE} ({len(lines)} lines)")
    seed = random.randrange(MAX_SEED_DRAW) if (iterate or same_seed) and request.seed == -1 else request.seed
    requests = []
    for number, fields in enumerate(parsed, 1):
        where = f"{TITLE}, line {number}: "
        try:
            line_request = _line_request(context, replace(request, seed=seed), fields, position)
        except RequestError as exc:
            raise RequestError(f"{where}{exc}") from None
        requests.append(context.check(line_request, where))
        if iterate:
            seed += request.batch_size * request.batch_count
    return Plan(TITLE, requests, lambda results: _outputs(requests, results))


def _outputs(requests: list[GenerationRequest], results: list[list[SavedImage]]) -> list[Output]:
    return [cell_output(request, saved) for request, cell in zip(requests, results) for saved in cell]


def script_args_info(img2img: bool) -> list[dict]:
    return [
        arg_info("Iterate seed every line", False),
        arg_info("Use same random seed for all lines", False),
        arg_info("Insert prompts at the", "start", choices=["start", "end"]),
        arg_info("List of prompt inputs", ""),
    ]
