"""A1111's samplers and schedule types → diffusers schedulers: every combination a sampler claims builds and runs,
its options reach diffusers, the claims are exactly what the diffusers class can do, old names and aliases still
resolve, bad names get clear messages, and new samplers' images equal diffusers' own pipeline's. DPM++ 2S a, our
own scheduler class, steps as k-diffusion's sample_dpmpp_2s_ancestral does."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.contract import Finished, GenerationRequest
from studio.samplers import (
    DEFAULT_SAMPLER,
    SCHEDULE_TYPES,
    find_sampler,
    sampler_aliases,
    sampler_names,
    schedule_key,
    schedule_types_for,
)
from tests.helpers import gradient_image, pixels, reference_pipeline

ROOT = Path(__file__).resolve().parents[1]
SD15_SCHEDULER = json.loads((ROOT / "models/configs/sd15/scheduler/scheduler_config.json").read_text())
BASE_NAMES = sampler_names(legacy_variants=False)
COMBINATIONS = [(name, label) for name in BASE_NAMES for label in schedule_types_for(name)]


def sd15_scheduler(name: str, schedule_type: str | None = None):
    from studio.pipelines import make_scheduler

    return make_scheduler(find_sampler(name, schedule_type), SD15_SCHEDULER)


def sd15_sigma_range() -> tuple[float, float]:
    import diffusers

    alphas = diffusers.EulerDiscreteScheduler.from_config(SD15_SCHEDULER).alphas_cumprod.double().numpy()
    sigmas = ((1 - alphas) / alphas) ** 0.5
    return float(sigmas[0]), float(sigmas[-1])


# ---- the lists


def test_schedule_types_are_a1111s_keys_and_labels_in_its_order():
    assert list(SCHEDULE_TYPES) == [("automatic", "Automatic"), ("uniform", "Uniform"), ("karras", "Karras"),
                                    ("exponential", "Exponential"), ("sgm_uniform", "SGM Uniform"), ("beta", "Beta")]


def test_sampler_lists_keep_the_old_names_and_add_a1111s_new_ones():
    old = ["Euler", "Euler a", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ SDE", "DDIM", "UniPC"]
    new = ["PLMS", "DPM++ 3M SDE", "DPM++ 2M SDE Heun", "LCM", "DEIS", "DPM++ 2S a"]
    assert set(old + new) <= set(BASE_NAMES)
    assert len(BASE_NAMES) == len(set(BASE_NAMES))
    legacy = sampler_names()
    assert legacy[:2] == ["Euler", "Euler Karras"]
    assert {"DPM++ 2M Karras", "DPM++ 3M SDE Karras", "DPM2 a Karras", "DPM++ 2S a Karras"} <= set(legacy)
    assert not {"Euler a Karras", "DDIM Karras", "PLMS Karras", "LCM Karras"} & set(legacy)
    assert [name for name in legacy if not name.endswith(" Karras")] == BASE_NAMES
    assert DEFAULT_SAMPLER in BASE_NAMES


def test_schedule_types_for_each_sampler():
    everything = [label for _, label in SCHEDULE_TYPES]
    assert schedule_types_for("Euler") == everything
    assert schedule_types_for("DPM++ 2M Karras") == everything  # the base sampler's
    assert schedule_types_for("DPM++ 3M SDE") == everything
    assert schedule_types_for("DPM++ 2S a") == everything  # DPM2 a's options, inherited
    assert schedule_types_for("Euler a") == ["Automatic", "Uniform", "SGM Uniform"]
    assert schedule_types_for("PLMS") == ["Automatic", "Uniform", "SGM Uniform"]
    assert schedule_types_for("DPM++ SDE") == ["Automatic", "Karras", "Exponential", "Beta"]
    assert schedule_types_for("LCM") == ["Automatic"]
    with pytest.raises(ValueError, match="Unknown sampler 'Nope'"):
        schedule_types_for("Nope")


def test_module_imports_no_torch():
    code = "import sys, studio.samplers; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---- every combination, built by the studio from SD 1.5's scheduler config


@pytest.mark.parametrize("name, schedule_type", COMBINATIONS, ids=[f"{n}-{s}" for n, s in COMBINATIONS])
def test_every_claimed_combination_builds_and_sets_20_timesteps(name, schedule_type):
    from studio.pipelines import scheduler_class

    sampler = find_sampler(name, schedule_type)
    assert sampler.spec.name == name and sampler.schedule_type == schedule_type
    scheduler = sd15_scheduler(name, schedule_type)
    assert isinstance(scheduler, scheduler_class(sampler.spec.scheduler_class))
    for key, value in sampler.scheduler_options().items():
        assert scheduler.config[key] == value, (key, scheduler.config[key], value)
    scheduler.set_timesteps(20)
    assert len(scheduler.timesteps) >= 20
    assert torch.isfinite(torch.as_tensor(scheduler.timesteps, dtype=torch.float64)).all()
    if schedule_type == "Automatic":
        assert sampler.scheduler_options() == sampler.spec.options  # the model's config as it is
    sigmas = getattr(scheduler, "sigmas", None)
    if schedule_type in ("Karras", "Exponential", "Beta"):
        # A1111's sigma schedules run from the model's sigma_max to its sigma_min (then 0).
        assert scheduler.config["use_" + schedule_type.lower() + "_sigmas"] is True
        sigma_min, sigma_max = sd15_sigma_range()
        nonzero = sigmas[sigmas > 0].double()
        assert float(nonzero.max()) == pytest.approx(sigma_max, rel=1e-4)
        assert float(nonzero.min()) == pytest.approx(sigma_min, rel=1e-4)
    if schedule_type in ("Uniform", "SGM Uniform"):
        assert scheduler.config["timestep_spacing"] == {"Uniform": "linspace", "SGM Uniform": "trailing"}[schedule_type]
        assert int(scheduler.timesteps[0]) == 999  # from the top, unlike SD 1.5's "leading" (951 for 20 steps)


def test_karras_is_a1111s_karras_schedule():
    """k-diffusion's get_sigmas_karras(20, sigma_min, sigma_max, rho=7): also for the schedulers that interpolate
    sigmas at their timesteps (Euler, LMS, Heun, DPM2), whose "leading" SD 1.5 config alone would start at 11.03."""
    sigma_min, sigma_max = sd15_sigma_range()
    ramp = np.linspace(0, 1, 20)
    expected = (sigma_max ** (1 / 7) + ramp * (sigma_min ** (1 / 7) - sigma_max ** (1 / 7))) ** 7
    for name in ("Euler", "LMS", "DPM++ 2M", "DPM++ 3M SDE", "UniPC", "DEIS"):
        scheduler = sd15_scheduler(name, "Karras")
        scheduler.set_timesteps(20)
        assert np.allclose(scheduler.sigmas.double().numpy()[:20], expected, rtol=1e-5), name


def test_the_new_samplers_options_reach_diffusers():
    plms = sd15_scheduler("PLMS")
    assert type(plms).__name__ == "PNDMScheduler" and plms.config.skip_prk_steps
    three = sd15_scheduler("DPM++ 3M SDE", "Exponential")
    assert (three.config.algorithm_type, three.config.solver_order, three.config.use_exponential_sigmas) == ("sde-dpmsolver++", 3, True)
    heun = sd15_scheduler("DPM++ 2M SDE Heun Karras")
    assert (heun.config.algorithm_type, heun.config.solver_type, heun.config.use_karras_sigmas) == ("sde-dpmsolver++", "heun", True)
    assert type(sd15_scheduler("LCM")).__name__ == "LCMScheduler"
    deis = sd15_scheduler("DEIS", "beta")
    assert (type(deis).__name__, deis.config.solver_order, deis.config.use_beta_sigmas) == ("DEISMultistepScheduler", 3, True)


def test_a_schedule_type_replaces_one_the_model_config_has():
    """A model whose scheduler config has Karras on (many SDXL fine-tunes) still gets Exponential when asked;
    diffusers refuses two sigma schedules at once."""
    from studio.pipelines import make_scheduler

    karras_config = {**SD15_SCHEDULER, "use_karras_sigmas": True}
    scheduler = make_scheduler(find_sampler("DPM++ 2M", "Exponential"), karras_config)
    assert scheduler.config.use_exponential_sigmas and not scheduler.config.use_karras_sigmas
    assert make_scheduler(find_sampler("DPM++ 2M"), karras_config).config.use_karras_sigmas  # Automatic: as configured


@pytest.mark.parametrize("name", BASE_NAMES)
def test_claims_are_exactly_what_the_diffusers_class_can_do(name):
    """A schedule type is claimed iff the class takes its option: use_*_sigmas, or timestep_spacing used by
    set_timesteps (LCMScheduler takes timestep_spacing but picks its own timesteps)."""
    from studio.pipelines import scheduler_class

    cls = scheduler_class(find_sampler(name).spec.scheduler_class)
    parameters = inspect.signature(cls.__init__).parameters
    spacing = "timestep_spacing" in parameters and "timestep_spacing" in inspect.getsource(cls.set_timesteps)
    wanted = {"Automatic"}
    wanted |= {label for label in ("Karras", "Exponential", "Beta") if f"use_{label.lower()}_sigmas" in parameters}
    wanted |= {"Uniform", "SGM Uniform"} if spacing else set()
    assert set(schedule_types_for(name)) == wanted
    for option in find_sampler(name).spec.options:
        assert option in parameters, option


# ---- names


@pytest.mark.parametrize("old, name, schedule_type", [
    ("DPM++ 2M Karras", "DPM++ 2M", "Karras"),
    ("k_dpmpp_2m_ka", "DPM++ 2M", "Karras"),
    ("k_dpmpp_2m", "DPM++ 2M", None),
    ("dpm++ 2m karras", "DPM++ 2M", "karras"),
    ("DPM++ 2M SDE Exponential", "DPM++ 2M SDE", "Exponential"),
    ("k_dpmpp_2m_sde_exp", "DPM++ 2M SDE", "exponential"),
    ("DPM++ 3M SDE Karras", "DPM++ 3M SDE", "Karras"),
    ("k_dpmpp_3m_sde_ka", "DPM++ 3M SDE", "Karras"),
    ("DPM++ 2M SDE Heun Karras", "DPM++ 2M SDE Heun", "Karras"),
    ("k_dpmpp_2m_sde_heun", "DPM++ 2M SDE Heun", "Automatic"),
    ("k_euler_a", "Euler a", None),
    ("k_euler_ancestral", "Euler a", None),
    ("Euler SGM Uniform", "Euler", "sgm_uniform"),
    ("Euler SGMUniform", "Euler", "SGM Uniform"),
    ("plms", "PLMS", None),
    ("k_lcm", "LCM", None),
    ("deis", "DEIS", None),
    ("ddim", "DDIM", ""),
    ("k_dpmpp_2s_a", "DPM++ 2S a", None),
    ("k_dpmpp_2s_a_ka", "DPM++ 2S a", "Karras"),
    ("DPM++ 2S a Karras", "DPM++ 2S a", "karras"),
])
def test_old_names_and_aliases_equal_name_plus_schedule_type(old, name, schedule_type):
    assert find_sampler(old) == find_sampler(name, schedule_type)
    assert find_sampler(old, "Automatic") == find_sampler(old)  # Automatic adds nothing to a name's schedule


def test_sampler_attributes():
    karras = find_sampler("DPM++ 2M", "Karras")
    assert (karras.name, karras.schedule_type, karras.karras, karras.spec.name) == ("DPM++ 2M Karras", "Karras", True, "DPM++ 2M")
    plain = find_sampler("DPM++ 2M")
    assert (plain.name, plain.schedule_type, plain.karras, plain.scheduler_options()) == ("DPM++ 2M", "Automatic", False, {})
    exponential = find_sampler("DPM++ 3M SDE", "exponential")
    assert (exponential.name, exponential.schedule_type, exponential.karras) == ("DPM++ 3M SDE Exponential", "Exponential", False)
    assert find_sampler(exponential.name) == exponential  # the name round-trips
    assert karras.scheduler_options()["use_karras_sigmas"] is True


def test_aliases_as_a1111_lists_them():
    assert sampler_aliases("Euler a") == ["k_euler_a"]
    assert sampler_aliases("DPM++ 2M Karras") == ["k_dpmpp_2m_ka"]
    assert sampler_aliases("DPM++ 3M SDE") == ["k_dpmpp_3m_sde"]
    assert sampler_aliases("DPM++ 2M SDE Exponential") == ["k_dpmpp_2m_sde_exp"]
    assert sampler_aliases("PLMS") == ["plms"]
    assert sampler_aliases("DPM++ 2S a") == ["k_dpmpp_2s_a"]
    assert sampler_aliases("DPM++ 2S a Karras") == ["k_dpmpp_2s_a_ka"]
    assert sampler_aliases("Euler SGM Uniform") == []  # A1111 never had one
    for name in sampler_names():
        for alias in sampler_aliases(name):
            assert find_sampler(alias) == find_sampler(name)


def test_schedule_keys():
    assert schedule_key("Karras") == schedule_key("karras") == "karras"
    assert schedule_key("SGMUniform") == schedule_key("SGM Uniform") == "sgm_uniform"
    assert schedule_key(None) is None and schedule_key(" ") is None


# ---- clear errors


@pytest.mark.parametrize("name, schedule_type, message", [
    ("Euler a Karras", None, "Sampler 'Euler a' has no Karras schedule in diffusers; its schedule types: Automatic, Uniform, SGM Uniform."),
    ("Euler a", "Karras", "Sampler 'Euler a' has no Karras schedule"),
    ("LCM", "Beta", "Sampler 'LCM' has no Beta schedule in diffusers; its schedule types: Automatic."),
    ("DPM++ SDE", "sgm_uniform", "Sampler 'DPM++ SDE' has no SGM Uniform schedule in diffusers; its schedule types: Automatic, Karras, Exponential, Beta."),
    ("PLMS Exponential", None, "Sampler 'PLMS' has no Exponential schedule"),
    ("Euler z", None, "Unknown sampler 'Euler z'. Known samplers: Euler, Euler Karras, Euler a,"),
    ("DPM fast", None, "Unknown sampler 'DPM fast'"),  # A1111 has it; diffusers cannot run it faithfully
    ("", None, "Unknown sampler ''"),
    ("Euler", "Polyexponential", "Unknown schedule type 'Polyexponential'. Known schedule types: Automatic, Uniform, Karras, Exponential, SGM Uniform, Beta."),
    ("DPM++ 2M Karras", "Exponential", "already names the Karras schedule, but the schedule type asked is Exponential"),
])
def test_bad_combinations_and_names_are_clear_value_errors(name, schedule_type, message):
    with pytest.raises(ValueError) as caught:
        find_sampler(name, schedule_type)
    assert message in str(caught.value)


# ---- the image equals diffusers' own pipeline with that scheduler


@pytest.mark.parametrize("sampler", ["PLMS", "DPM++ 3M SDE", "LCM", "DPM++ 2M SDE Heun Karras", "DEIS", "DPM++ 2S a", "DPM++ 2S a Karras"])
def test_new_samplers_image_equals_diffusers(engine, studio_cache, sampler):
    request = GenerationRequest("a red fox in snow", negative_prompt="blurry", seed=4321, steps=5, cfg_scale=6.5,
                                sampler_name=sampler, width=64, height=64)
    result = engine.generate(request)
    assert isinstance(result, Finished), result
    theirs = reference_pipeline(studio_cache, "txt2img", sampler)(
        "a red fox in snow", negative_prompt="blurry", num_inference_steps=5, guidance_scale=6.5, width=64, height=64,
        generator=torch.Generator("cpu").manual_seed(4321),
    ).images
    assert np.array_equal(pixels(result.images[0].path), pixels(theirs[0]))


# ---- DPM++ 2S a: our own scheduler (studio/dpmpp_2s_ancestral.py) against k-diffusion's sampler

TOY_SHAPE = (1, 4, 8, 8)


def _toy_model(scaled: torch.Tensor) -> torch.Tensor:
    """A fixed, non-linear stand-in for the UNet: its ε (or v) from the scaled input, in the input's dtype."""
    return 0.1 * scaled + 0.2 * torch.tanh(scaled) + 0.05


def _diffusers_loop(scheduler, start: torch.Tensor, steps: int, noise_seed: int) -> tuple[torch.Tensor, int]:
    """What a diffusers pipeline does with a scheduler: set_timesteps, scale_model_input, step with a generator."""
    scheduler.set_timesteps(steps)
    x, noise, calls = start * scheduler.init_noise_sigma, torch.Generator("cpu").manual_seed(noise_seed), 0
    for t in scheduler.timesteps:
        output = _toy_model(scheduler.scale_model_input(x, t))
        calls += 1
        x = scheduler.step(output, t, x, generator=noise).prev_sample
    return x, calls


def _k_diffusion_dpmpp_2s_ancestral(x, sigmas, prediction_type: str, noise_seed: int) -> tuple[torch.Tensor, int]:
    """k-diffusion's sample_dpmpp_2s_ancestral (eta=1, s_noise=1), written out in float64, with its CompVisDenoiser
    (ε) or CompVisVDenoiser (v) scalings around the toy model; noise drawn as diffusers draws it (float32, x's shape,
    one draw per step that ends above sigma 0)."""
    calls = 0

    def model(x, sigma):
        nonlocal calls
        calls += 1
        c_in = 1 / (sigma**2 + 1) ** 0.5
        out = _toy_model(x * c_in)
        return x - sigma * out if prediction_type == "epsilon" else x / (sigma**2 + 1) - out * sigma * c_in

    sigma_fn, t_fn = (lambda t: t.neg().exp()), (lambda sigma: sigma.log().neg())
    noise = torch.Generator("cpu").manual_seed(noise_seed)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        sigma_up = min(sigmas[i + 1], (sigmas[i + 1] ** 2 * (sigmas[i] ** 2 - sigmas[i + 1] ** 2) / sigmas[i] ** 2) ** 0.5)
        sigma_down = (sigmas[i + 1] ** 2 - sigma_up**2) ** 0.5
        if sigma_down == 0:  # Euler
            x = x + (x - denoised) / sigmas[i] * (sigma_down - sigmas[i])
        else:  # DPM-Solver++(2S)
            t, t_next = t_fn(sigmas[i]), t_fn(sigma_down)
            r, h = 1 / 2, t_fn(sigma_down) - t_fn(sigmas[i])
            s = t + r * h
            x_2 = (sigma_fn(s) / sigma_fn(t)) * x - (-h * r).expm1() * denoised
            denoised_2 = model(x_2, sigma_fn(s))
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + torch.randn(x.shape, generator=noise, dtype=torch.float32).double() * sigma_up
    return x, calls


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("schedule_type", ["Automatic", "Karras"])
def test_dpmpp_2s_a_steps_as_k_diffusion(schedule_type, prediction_type):
    """Through a plain diffusers loop, our scheduler ends where k-diffusion's loop ends from the same start, sigmas
    and noise draws, with as many model calls (2 per step, 1 for the last); DPM2 a's scheduler, in the same loop,
    does not (so the comparison can fail)."""
    import diffusers

    from studio.pipelines import plain_scheduler

    config = {**SD15_SCHEDULER, "prediction_type": prediction_type}
    ours = plain_scheduler(find_sampler("DPM++ 2S a", schedule_type), config)
    assert type(ours).__name__ == "DPMPP2SAncestralDiscreteScheduler"
    start = torch.randn(TOY_SHAPE, generator=torch.Generator("cpu").manual_seed(3))
    steps = 10
    x, calls = _diffusers_loop(ours, start, steps, noise_seed=4)
    sigmas = ours.sigmas[0::2].double()  # the step sigmas, ending at 0 (diffusers interleaves them)
    assert len(sigmas) == steps + 1 and float(sigmas[-1]) == 0
    if schedule_type == "Karras":
        assert float(sigmas[0]) == pytest.approx(sd15_sigma_range()[1], rel=1e-4)
    expected, k_calls = _k_diffusion_dpmpp_2s_ancestral(start.double() * float(ours.init_noise_sigma), sigmas, prediction_type, noise_seed=4)
    assert calls == k_calls == 2 * steps - 1
    assert torch.isfinite(x).all() and float(expected.abs().max()) > 0.1
    tolerance = 1e-4 * float(expected.abs().max())
    assert float((x.double() - expected).abs().max()) < tolerance

    dpm2_a = diffusers.KDPM2AncestralDiscreteScheduler.from_config(config, **find_sampler("DPM2 a", schedule_type).scheduler_options())
    theirs, _ = _diffusers_loop(dpm2_a, start, steps, noise_seed=4)
    assert float((theirs.double() - expected).abs().max()) > 100 * tolerance


def test_dpmpp_2s_a_draws_noise_as_dpm2_a_does():
    """One step from the same state with noise seeds 8, 8 and 9: the same seed gives the same result, and the
    step's noise part (seed 9's result minus seed 8's) equals DPM2 a's: the same draws times the same sigma_up."""
    import diffusers

    from studio.dpmpp_2s_ancestral import DPMPP2SAncestralDiscreteScheduler

    outputs = []
    for cls in (DPMPP2SAncestralDiscreteScheduler, diffusers.KDPM2AncestralDiscreteScheduler):
        scheduler = cls.from_config(SD15_SCHEDULER)
        scheduler.set_timesteps(4)
        x = torch.randn(TOY_SHAPE, generator=torch.Generator("cpu").manual_seed(1)) * scheduler.init_noise_sigma
        runs = []
        for seed in (8, 8, 9):  # a step (both stages) from the same state with noise seeds 8, 8, 9
            scheduler.set_timesteps(4)
            first, second = scheduler.timesteps[:2]
            x_2 = scheduler.step(_toy_model(scheduler.scale_model_input(x, first)), first, x).prev_sample
            noise = torch.Generator("cpu").manual_seed(seed)
            runs.append(scheduler.step(_toy_model(scheduler.scale_model_input(x_2, second)), second, x_2, generator=noise).prev_sample)
        assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
        outputs.append(runs[2] - runs[0])  # the noise part: (noise(9) - noise(8)) * sigma_up
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6)


def _finished(engine, request) -> Finished:
    result = engine.generate(request)
    assert isinstance(result, Finished), result
    return result


@pytest.mark.parametrize("sampler, schedule_type", [("DPM++ 2S a", None), ("DPM++ 2S a Karras", None), ("DPM++ 2S a", "karras")])
def test_dpmpp_2s_a_txt2img_and_img2img_on_the_studio(engine, studio_cache, sampler, schedule_type):
    """Both tasks run with it, say so in the infotext, give the same image for the same seed, and equal diffusers'
    own pipeline with our scheduler."""
    init = gradient_image()
    common = dict(seed=31, steps=4, cfg_scale=6.5, sampler_name=sampler, scheduler=schedule_type)
    for task, request, call in (
        ("txt2img", GenerationRequest("a red fox in snow", width=64, height=64, **common), dict(width=64, height=64)),
        ("img2img", GenerationRequest("a watercolor", init_image=init, denoising_strength=0.6, **common), dict(image=init, strength=0.6)),
    ):
        first, second = (_finished(engine, request).images[0] for _ in range(2))
        assert "Sampler: DPM++ 2S a," in first.infotext
        assert ("Schedule type: Karras" in first.infotext) == (sampler.endswith("Karras") or schedule_type == "karras")
        assert np.array_equal(pixels(first.path), pixels(second.path)), task
        theirs = reference_pipeline(studio_cache, task, find_sampler(sampler, schedule_type).name)(
            request.prompt, num_inference_steps=4, guidance_scale=6.5, generator=torch.Generator("cpu").manual_seed(31), **call
        ).images[0]
        assert np.array_equal(pixels(first.path), pixels(theirs)), task


def test_dpmpp_2s_a_is_not_dpm2_a_on_the_studio(engine):
    request = GenerationRequest("a red fox in snow", seed=31, steps=4, sampler_name="DPM++ 2S a", width=64, height=64)
    ours = _finished(engine, request).images[0]
    dpm2_a = _finished(engine, replace(request, sampler_name="DPM2 a")).images[0]
    assert not np.array_equal(pixels(ours.path), pixels(dpm2_a.path))


def test_the_api_lists_dpmpp_2s_a_with_its_aliases(engine):
    from server_support import live_server

    with live_server(engine, users=None) as server, server.client() as client:
        samplers = client.get("/sdapi/v1/samplers").json()
    assert {"name": "DPM++ 2S a", "aliases": ["k_dpmpp_2s_a"], "options": {}} in samplers
    assert {"name": "DPM++ 2S a Karras", "aliases": ["k_dpmpp_2s_a_ka"], "options": {"scheduler": "karras"}} in samplers
    names = [entry["name"] for entry in samplers]
    assert names.index("DPM2 a") < names.index("DPM++ 2S a") < names.index("DPM++ 2M")  # A1111's order
