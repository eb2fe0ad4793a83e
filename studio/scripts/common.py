"""What every script shares: its plan (the generations it needs, checked before any runs, and how their pictures
are put together), what it hands back, its arguments as A1111's API sends them, and the checks on a planned
request. Plain data and PIL; no torch, no web."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

from PIL import Image

from ..contract import GenerationRequest, RequestError, SavedImage
from ..faces import NONE_INSTALLED
from ..validation import validate

MAX_SCRIPT_IMAGES = 100  # the most pictures one script call may generate (grids not counted)
MAX_SEED_DRAW = 4294967294  # A1111's fix_seed: random.randrange(4294967294)


@dataclass
class Output:
    """One picture a script hands back: a generated image (its saved PNG) or one the script made (a grid, SD
    upscale's result), which the runner saves before answering."""

    infotext: str
    seed: int
    prompt: str
    negative_prompt: str
    path: Optional[str] = None
    image: Optional[Image.Image] = None
    grid: bool = False


@dataclass
class Plan:
    """A script call, expanded: the generations to run (in order) and how to put their results together.

    assemble(results) gets, for each request, the SavedImages of its job ([] when it did not run: interrupted) and
    returns the Outputs in A1111's order. before_run(service, requests), if set, gives the requests their final
    inputs just before they are submitted (SD upscale's tiles, cut from the upscaled picture)."""

    title: str
    requests: list[GenerationRequest]
    assemble: Callable[[list[list[SavedImage]]], list[Output]]
    before_run: Optional[Callable[[Any, list[GenerationRequest]], list[GenerationRequest]]] = None
    notes: list[str] = field(default_factory=list)
    cells_are_intermediate: bool = False  # the jobs' own pictures are parts (SD upscale's tiles): not kept once assembled

    @property
    def image_count(self) -> int:
        return sum(r.batch_size * r.batch_count for r in self.requests)


@dataclass
class ScriptResult:
    title: str
    outputs: list[Output]
    first_request: GenerationRequest
    first_job: Any = None  # the first job that ran (studio.jobs.Job), for its id and model
    interrupted: bool = False
    failed: Any = None  # the Failed event of a job that failed, or None
    notes: list[str] = field(default_factory=list)


class PlanContext:
    """What a script may look at while planning, on behalf of one caller: the service's public names only."""

    def __init__(self, service, user: str, client_host: Optional[str], img2img: bool, limit: int = MAX_SCRIPT_IMAGES):
        self.service = service
        self.user = user
        self.client_host = client_host
        self.img2img = img2img
        self.limit = limit

    def check(self, request: GenerationRequest, where: str = "") -> GenerationRequest:
        """Raise RequestError (prefixed with `where`) for anything the engine would refuse in this request."""
        try:
            validate(request, self.service.settings)
            if request.enable_hr:
                self.hires_upscaler(request.hr_upscaler)
            if request.restore_faces and not self.service.face_restorers():
                raise RequestError(NONE_INSTALLED)
        except RequestError as exc:
            raise RequestError(f"{where}{exc}" if where else str(exc)) from None
        return request

    def check_count(self, count: int, what: str) -> None:
        if count > self.limit:
            raise RequestError(f"{what} would generate {count} images; at most {self.limit} per script call.")

    def model(self, name: str) -> str:
        """A checkpoint name under the server's model rule (ModelRefused, a RequestError, when it may not be used)."""
        return self.service.model_for_request(self.user, self.client_host, name) or name

    def hires_upscaler(self, name: str) -> str:
        return _one_of(name, self.service.hires_upscalers(), "hires upscaler")

    def vae(self, name: str) -> Optional[str]:
        if name.strip().lower() in ("", "automatic", "none", "auto"):
            return None
        return _one_of(name, [v["model_name"] for v in self.service.vaes()], "VAE")

    def upscaler_names(self) -> list[str]:
        return [entry["name"] for entry in self.service.upscalers()]


def _one_of(name: str, known: Sequence[str], what: str) -> str:
    for candidate in known:
        if candidate.lower() == str(name).strip().lower():
            return candidate
    raise RequestError(f"Unknown {what} '{name}'. Known: {', '.join(known) or 'none'}.")


def fixed_seeds(request: GenerationRequest) -> GenerationRequest:
    """A1111's fix_seed: a random (-1) seed and variation seed made concrete once, for every generation to share."""
    seed = random.randrange(MAX_SEED_DRAW) if request.seed == -1 else request.seed
    subseed = random.randrange(MAX_SEED_DRAW) if request.subseed == -1 else request.subseed
    return replace(request, seed=seed, subseed=subseed)


# ---- arguments, as A1111's API sends them (a list in the UI's order; here a dict by name works too)


class Arguments:
    """A script's script_args by name: a list in A1111's order (missing ones take the UI's defaults) or a dict."""

    def __init__(self, title: str, values, names: Sequence[str], defaults: Sequence[Any]):
        self.title = title
        if values is None:
            values = []
        if isinstance(values, dict):
            unknown = sorted(set(values) - set(names))
            if unknown:
                raise RequestError(f"{title}: unknown argument(s) {', '.join(unknown)}; it takes {', '.join(names)}.")
            self.values = {name: values.get(name, default) for name, default in zip(names, defaults)}
        elif isinstance(values, (list, tuple)):
            if len(values) > len(names):
                raise RequestError(f"{title} takes at most {len(names)} script_args ({', '.join(names)}), got {len(values)}.")
            given = list(values) + list(defaults[len(values):])
            self.values = dict(zip(names, given))
        else:
            raise RequestError(f"{title}: script_args must be a list (A1111's order: {', '.join(names)}).")

    def raw(self, name: str):
        return self.values[name]

    def flag(self, name: str) -> bool:
        value = self.values[name]
        if isinstance(value, bool) or value is None:
            return bool(value)
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no", ""):
            return value.strip().lower() in ("true", "1", "yes")
        raise RequestError(f"{self.title}: {name} must be true or false, got {value!r}.")

    def number(self, name: str, low: float, high: float, whole: bool = False) -> float:
        value = self.values[name]
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or not low <= number <= high or (whole and number != int(number)):
            kind = "a whole number" if whole else "a number"
            raise RequestError(f"{self.title}: {name} must be {kind} from {low:g} to {high:g}, got {value!r}.")
        return int(number) if whole else number

    def text(self, name: str, max_chars: int = 100_000) -> str:
        value = self.values[name]
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise RequestError(f"{self.title}: {name} must be text, got {type(value).__name__}.")
        text = str(value)
        if len(text) > max_chars:
            raise RequestError(f"{self.title}: {name} is too long (over {max_chars} characters).")
        return text

    def choice(self, name: str, choices: Sequence[str]) -> str:
        value = self.text(name).strip().lower()
        if value not in choices:
            raise RequestError(f"{self.title}: {name} must be one of {', '.join(choices)}, got {self.values[name]!r}.")
        return value


def arg_info(label, value, minimum=None, maximum=None, step=None, choices=None) -> dict:
    """One of A1111's script-info args (its ScriptArg: a UI component's label, default and range or choices)."""
    return {"label": label, "value": value, "minimum": minimum, "maximum": maximum, "step": step, "choices": choices}


# ---- infotexts


def _quoted(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if ("," in text or "\n" in text or ":" in text) else text


def with_params(infotext: str, params: dict[str, Any]) -> str:
    """`infotext` with more `Key: value` pairs at the end of its parameters line (A1111's extra_generation_params)."""
    pairs = ", ".join(f"{key}: {_quoted(value)}" for key, value in params.items() if value is not None)
    if not pairs:
        return infotext
    return f"{infotext}, {pairs}" if infotext else pairs


def first_image(saved: list[SavedImage]) -> Optional[Image.Image]:
    """The first picture of a job's saved PNGs, as RGB (None when the job made none)."""
    if not saved:
        return None
    with Image.open(saved[0].path) as image:
        return image.convert("RGB")


def cell_output(request: GenerationRequest, saved: SavedImage) -> Output:
    return Output(saved.infotext, saved.seed, request.prompt, request.negative_prompt, path=saved.path)
