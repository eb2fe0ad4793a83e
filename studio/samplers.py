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
    alias: str = ""  # A1111's k-diffusion alias; the Karras variant's is alias + "_ka"


_BASE = (
    SamplerSpec("Euler", "EulerDiscreteScheduler", alias="k_euler"),
    SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler", karras=False, alias="k_euler_a"),
    SamplerSpec("LMS", "LMSDiscreteScheduler", alias="k_lms"),
    SamplerSpec("Heun", "HeunDiscreteScheduler", alias="k_heun"),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler", alias="k_dpm_2"),
    SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", alias="k_dpm_2_a"),
    SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", alias="k_dpmpp_2m"),
    SamplerSpec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, alias="k_dpmpp_2m_sde"),
    SamplerSpec("DPM++ SDE", "DPMSolverSinglestepScheduler", alias="k_dpmpp_sde"),
    SamplerSpec("DDIM", "DDIMScheduler", karras=False, alias="ddim"),
    SamplerSpec("UniPC", "UniPCMultistepScheduler", alias="unipc"),
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


def sampler_aliases(name: str) -> list[str]:
    """A1111's other names for a sampler (what /sdapi/v1/samplers lists), e.g. "k_dpmpp_2m_ka"."""
    sampler = find_sampler(name)
    if not sampler.spec.alias:
        return []
    return [sampler.spec.alias + ("_ka" if sampler.karras else "")]


def find_sampler(name: str, schedule_type: str | None = None) -> Sampler:
    """Look a sampler up by its A1111 name ("DPM++ 2M Karras", or "DPM++ 2M" with schedule_type "Karras") or
    A1111 alias ("k_dpmpp_2m_ka"). Raises ValueError naming the known samplers."""
    wanted = (name or "").strip()
    karras = bool(schedule_type and schedule_type.strip().lower() == "karras")
    if wanted.endswith(KARRAS_SUFFIX):
        wanted, karras = wanted[: -len(KARRAS_SUFFIX)], True
    for spec in _BASE:
        if spec.alias and wanted.lower() in (spec.alias, spec.alias + "_ka"):
            wanted, karras = spec.name, karras or wanted.lower().endswith("_ka")
            break
    for spec in _BASE:
        if spec.name.lower() == wanted.lower():
            if karras and not spec.karras:
                raise ValueError(f"Sampler '{spec.name}' has no Karras schedule in diffusers; use '{spec.name}'.")
            return Sampler(spec, karras)
    raise ValueError(f"Unknown sampler '{name}'. Known samplers: {', '.join(sampler_names())}.")
