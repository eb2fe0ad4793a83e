"""A1111 sampler names → diffusers schedulers. Plain data: the UI and the API list names without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field

KARRAS_SUFFIX = " Karras"


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    scheduler_class: str
    options: dict = field(default_factory=dict)
    # Whether diffusers' scheduler accepts use_karras_sigmas (and so a " Karras" variant exists).
    karras: bool = True


_BASE = (
    SamplerSpec("Euler", "EulerDiscreteScheduler"),
    SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler", karras=False),
    SamplerSpec("LMS", "LMSDiscreteScheduler"),
    SamplerSpec("Heun", "HeunDiscreteScheduler"),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler"),
    SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler"),
    SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler"),
    SamplerSpec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    SamplerSpec("DPM++ SDE", "DPMSolverSinglestepScheduler"),
    SamplerSpec("DDIM", "DDIMScheduler", karras=False),
    SamplerSpec("UniPC", "UniPCMultistepScheduler"),
)

DEFAULT_SAMPLER = "Euler a"


@dataclass(frozen=True)
class Sampler:
    """A sampler as the user names it: a base sampler and a schedule type (A1111's 'Schedule type')."""

    spec: SamplerSpec
    karras: bool

    @property
    def name(self) -> str:
        return self.spec.name + (KARRAS_SUFFIX if self.karras else "")

    @property
    def schedule_type(self) -> str:
        return "Karras" if self.karras else "Automatic"

    def scheduler_options(self) -> dict:
        options = dict(self.spec.options)
        if self.karras:
            options["use_karras_sigmas"] = True
        return options


def sampler_names() -> list[str]:
    names = []
    for spec in _BASE:
        names.append(spec.name)
        if spec.karras:
            names.append(spec.name + KARRAS_SUFFIX)
    return names


def find_sampler(name: str, schedule_type: str | None = None) -> Sampler:
    """Look a sampler up by its A1111 name ("DPM++ 2M Karras", or "DPM++ 2M" with schedule_type "Karras").

    Raises ValueError naming the known samplers.
    """
    wanted = (name or "").strip()
    karras = False
    if wanted.endswith(KARRAS_SUFFIX):
        wanted, karras = wanted[: -len(KARRAS_SUFFIX)], True
    if schedule_type and schedule_type.strip().lower() == "karras":
        karras = True
    for spec in _BASE:
        if spec.name.lower() == wanted.lower():
            if karras and not spec.karras:
                raise ValueError(f"Sampler '{spec.name}' has no Karras schedule in diffusers; use '{spec.name}'.")
            return Sampler(spec, karras)
    raise ValueError(f"Unknown sampler '{name}'. Known samplers: {', '.join(sampler_names())}.")
