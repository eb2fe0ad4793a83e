"""A1111 sampler names and schedule types → diffusers schedulers. Plain data: the UI and the API list names without
importing torch.

A1111 (since 1.9) names a sampler ("DPM++ 2M") and, apart from it, a *Schedule type* ("Karras"; its API field
`scheduler`, key "karras"). Its older names carried the schedule in the name ("DPM++ 2M Karras", alias
"k_dpmpp_2m_ka"); both are understood, and mean the same sampler. What each becomes in diffusers follows diffusers'
own mapping table (docs: api/schedulers/overview, "A1111/k-diffusion"):

- a sampler is a scheduler class and its options (`SamplerSpec`);
- a schedule type is options of that class (`_SCHEDULES`): Karras, Exponential and Beta are diffusers' sigma
  schedules (`use_karras_sigmas`, ...) over the model's whole sigma range (`timestep_spacing="linspace"`: with a
  "leading" config, SD 1.5's, the sigma-interpolating schedulers would start Karras at the sigma of step 951, not
  A1111's sigma_max); Uniform is the plain linear spacing of timesteps (`linspace`), SGM Uniform `trailing`;
  Automatic leaves the model's scheduler config as it is.

A sampler accepts the schedule types whose options its class has (`schedule_types_for`); tests check both ways
against diffusers' classes. DPM++ 2S a is our own class (studio/dpmpp_2s_ancestral.py, a subclass of DPM2 a's
KDPM2AncestralDiscreteScheduler): diffusers has none ("N/A, very similar to DPMSolverSinglestepScheduler", which is
neither ancestral nor 2S). Samplers A1111 lists that diffusers cannot run faithfully are not here: DPM fast,
DPM adaptive, Restart, DDIM CFG++, HeunPP2, IPNDM, IPNDM_V.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KARRAS_SUFFIX = " Karras"

# A1111's schedule types (its `scheduler` API field and infotext "Schedule type"), in A1111's order: (key, label).
# The ones diffusers has; A1111 also lists Polyexponential, KL Optimal, Align Your Steps, Simple, Normal and DDIM.
SCHEDULE_TYPES = (
    ("automatic", "Automatic"),
    ("uniform", "Uniform"),
    ("karras", "Karras"),
    ("exponential", "Exponential"),
    ("sgm_uniform", "SGM Uniform"),
    ("beta", "Beta"),
)
AUTOMATIC = "automatic"
_LABELS = dict(SCHEDULE_TYPES)
_SCHEDULE_ALIASES = {"sgm_uniform": ("SGMUniform",)}  # A1111's own aliases
_ALIAS_SUFFIXES = {"karras": "_ka", "exponential": "_exp"}  # A1111's pre-1.9 aliases: "k_dpmpp_2m_ka", "..._exp"

# diffusers' sigma schedules: one of them on, the others off (a model config may have one on already, and diffusers
# refuses two).
_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
_SIGMA_SCHEDULES = {"karras": "use_karras_sigmas", "exponential": "use_exponential_sigmas", "beta": "use_beta_sigmas"}
_SPACINGS = {"uniform": "linspace", "sgm_uniform": "trailing"}


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    scheduler_class: str
    options: dict = field(default_factory=dict)
    alias: str = ""  # A1111's k-diffusion alias; its Karras variant's is alias + "_ka", Exponential's alias + "_exp"
    # What the diffusers class has: use_karras_sigmas / use_exponential_sigmas / use_beta_sigmas, timestep_spacing.
    sigmas: bool = True
    spacing: bool = True
    more_aliases: tuple[str, ...] = ()  # other A1111 aliases, understood but not listed

    @property
    def schedules(self) -> tuple[str, ...]:
        """The schedule type keys this sampler accepts, in A1111's order (Automatic always)."""
        return tuple(key for key, _ in SCHEDULE_TYPES if key == AUTOMATIC
                     or (key in _SIGMA_SCHEDULES and self.sigmas) or (key in _SPACINGS and self.spacing))

    @property
    def karras(self) -> bool:
        """Whether a Karras schedule (and so a " Karras" name) exists for this sampler."""
        return "karras" in self.schedules


_DPM_SDE = {"algorithm_type": "sde-dpmsolver++"}

_BASE = (
    SamplerSpec("Euler", "EulerDiscreteScheduler", alias="k_euler"),
    SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler", alias="k_euler_a", sigmas=False, more_aliases=("k_euler_ancestral",)),
    SamplerSpec("LMS", "LMSDiscreteScheduler", alias="k_lms"),
    SamplerSpec("Heun", "HeunDiscreteScheduler", alias="k_heun"),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler", alias="k_dpm_2"),
    SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", alias="k_dpm_2_a"),
    # Our own class (studio.dpmpp_2s_ancestral): DPM2 a's schedule and noise with DPM-Solver++(2S)'s second stage.
    SamplerSpec("DPM++ 2S a", "DPMPP2SAncestralDiscreteScheduler", alias="k_dpmpp_2s_a"),
    SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", alias="k_dpmpp_2m"),
    SamplerSpec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", _DPM_SDE, alias="k_dpmpp_2m_sde"),
    # k-diffusion's sample_dpmpp_2m_sde(solver_type="heun"): diffusers' SDE update with solver_type "heun" is the same.
    SamplerSpec("DPM++ 2M SDE Heun", "DPMSolverMultistepScheduler", {**_DPM_SDE, "solver_type": "heun"}, alias="k_dpmpp_2m_sde_heun"),
    SamplerSpec("DPM++ 3M SDE", "DPMSolverMultistepScheduler", {**_DPM_SDE, "solver_order": 3}, alias="k_dpmpp_3m_sde"),
    # diffusers' table maps DPM++ SDE to DPMSolverSinglestepScheduler (its DPMSolverSDEScheduler needs torchsde).
    # That class has no timestep_spacing: no Uniform, no SGM Uniform.
    SamplerSpec("DPM++ SDE", "DPMSolverSinglestepScheduler", alias="k_dpmpp_sde", spacing=False),
    SamplerSpec("DDIM", "DDIMScheduler", alias="ddim", sigmas=False),
    SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, alias="plms", sigmas=False),
    SamplerSpec("UniPC", "UniPCMultistepScheduler", alias="unipc"),
    # LCMScheduler picks its own timesteps (from original_inference_steps): no schedule type applies.
    SamplerSpec("LCM", "LCMScheduler", alias="k_lcm", sigmas=False, spacing=False),
    # k-diffusion's sample_deis runs with max_order=3.
    SamplerSpec("DEIS", "DEISMultistepScheduler", {"solver_order": 3}, alias="deis"),
)

DEFAULT_SAMPLER = "Euler a"


@dataclass(frozen=True)
class Sampler:
    """A sampler as the user names it: a base sampler and a schedule type (A1111's 'Schedule type', by key)."""

    spec: SamplerSpec
    schedule: str = AUTOMATIC

    @property
    def karras(self) -> bool:
        return self.schedule == "karras"

    @property
    def name(self) -> str:
        """The single name A1111 used before 1.9: "DPM++ 2M", "DPM++ 2M Karras", "DPM++ 3M SDE Exponential"."""
        return self.spec.name if self.schedule == AUTOMATIC else f"{self.spec.name} {_LABELS[self.schedule]}"

    @property
    def schedule_type(self) -> str:
        """A1111's label: "Automatic", "Karras", "SGM Uniform", ..."""
        return _LABELS[self.schedule]

    def scheduler_options(self) -> dict:
        """Keyword arguments for the diffusers class's from_config, over the model's scheduler config."""
        options = dict(self.spec.options)
        if self.schedule == AUTOMATIC:
            return options
        if self.spec.sigmas:
            options.update({flag: flag == _SIGMA_SCHEDULES.get(self.schedule) for flag in _SIGMA_FLAGS})
        if self.spec.spacing:
            options["timestep_spacing"] = _SPACINGS.get(self.schedule, "linspace")
        return options


def sampler_names(legacy_variants: bool = True) -> list[str]:
    """The samplers' names. With legacy_variants (the old single list, before a separate schedule type): each
    followed by its " Karras" name where it has one; without: the base names only, as A1111 lists them now."""
    names = []
    for spec in _BASE:
        names.append(spec.name)
        if legacy_variants and spec.karras:
            names.append(spec.name + KARRAS_SUFFIX)
    return names


def sampler_aliases(name: str) -> list[str]:
    """A1111's other names for a sampler (what /sdapi/v1/samplers lists), e.g. "k_dpmpp_2m_ka"."""
    sampler = find_sampler(name)
    if not sampler.spec.alias:
        return []
    if sampler.schedule == AUTOMATIC:
        return [sampler.spec.alias]
    suffix = _ALIAS_SUFFIXES.get(sampler.schedule)
    return [sampler.spec.alias + suffix] if suffix else []


def schedule_types_for(name: str) -> list[str]:
    """The schedule type labels a sampler accepts, in A1111's order ("Automatic" first). Raises ValueError for an
    unknown sampler."""
    return [_LABELS[key] for key in find_sampler(name).spec.schedules]


def schedule_key(schedule_type: str | None) -> str | None:
    """A1111's key for a schedule type given by label, key or alias ("Karras", "karras", "SGMUniform"); None for
    None or blank. Raises ValueError naming the known ones."""
    wanted = (schedule_type or "").strip().lower()
    if not wanted:
        return None
    for key, label in SCHEDULE_TYPES:
        if wanted in (key, label.lower(), *(a.lower() for a in _SCHEDULE_ALIASES.get(key, ()))):
            return key
    raise ValueError(f"Unknown schedule type '{schedule_type}'. Known schedule types: {', '.join(_LABELS.values())}.")


def _base(wanted: str) -> tuple[SamplerSpec, str | None] | None:
    """The spec a name (or alias) names exactly, and the schedule an old alias carries ("_ka", "_exp")."""
    lowered = wanted.lower()
    for spec in _BASE:
        if lowered == spec.name.lower() or lowered in (a.lower() for a in (spec.alias, *spec.more_aliases) if a):
            return spec, None
        for key, suffix in _ALIAS_SUFFIXES.items():
            if spec.alias and lowered == spec.alias + suffix:
                return spec, key
    return None


def _split(wanted: str) -> tuple[SamplerSpec, str | None] | None:
    """A name as it is, or an old one ending in a schedule type ("DPM++ 2M Karras", "DPM++ 2M SDE Exponential")."""
    found = _base(wanted)
    if found:
        return found
    for key, label in SCHEDULE_TYPES:
        for ending in (label, key, *_SCHEDULE_ALIASES.get(key, ())):
            if wanted.lower().endswith(" " + ending.lower()):
                found = _base(wanted[: -len(ending) - 1].strip())
                if found and found[1] is None:
                    return found[0], key
    return None


def find_sampler(name: str, schedule_type: str | None = None) -> Sampler:
    """Look a sampler up by its A1111 name and schedule type ("DPM++ 2M", "Karras" — label, key "karras", or
    None/"Automatic"), by its old name ("DPM++ 2M Karras") or by an A1111 alias ("k_dpmpp_2m_ka"). The old name and
    the pair are the same Sampler. Raises ValueError naming the known samplers, the known schedule types, or the
    schedule types this sampler has."""
    wanted = (name or "").strip()
    explicit = schedule_key(schedule_type)
    found = _split(wanted)
    if found is None:
        raise ValueError(f"Unknown sampler '{name}'. Known samplers: {', '.join(sampler_names())}.")
    spec, in_name = found
    if in_name and explicit not in (None, AUTOMATIC, in_name):
        raise ValueError(f"Sampler '{wanted}' already names the {_LABELS[in_name]} schedule, but the schedule type "
                         f"asked is {_LABELS[explicit]}: use '{spec.name}' with the schedule type.")
    schedule = in_name or explicit or AUTOMATIC
    if schedule not in spec.schedules:
        raise ValueError(f"Sampler '{spec.name}' has no {_LABELS[schedule]} schedule in diffusers; its schedule types: "
                         f"{', '.join(_LABELS[key] for key in spec.schedules)}.")
    return Sampler(spec, schedule)
