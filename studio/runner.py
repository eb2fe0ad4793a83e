"""The runner: prepares and runs one group of jobs on the engine's device, with its model cache.

A group shares a model and settings; several jobs in one group are a dynamic batch (one txt2img pipeline call whose
batch holds every job's images, each with its own seed). What differs per task comes from the task registry
(studio/tasks.py); what runs after each step, from the step hooks (studio/hooks.py).
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Optional

from . import __version__
from .checkpoints import LoadedModel
from .contract import GenerationRequest, Started, Task
from .conditioning import Applied, PromptConditioning, PromptTools, ScheduleHook, encode_job, lora_set, plan_prompts, shared_calls
from .fast import graphs_paused
from .hooks import CancelHook, DepthMapHook, HookChain, PreviewHook, ProgressHook, StepClock
from .inspected import Inspected, Token
from .inspection import Inspection
from .jobs import Job
from .metadata import build_infotext
from .hires import SecondPass, first_pass_output_type, hires_request, run_second_pass, second_pass_steps, upscale_first_pass
from .noise import batch_latents, generators_after_start
from .prompts.syntax import prompt_schedule
from .pipelines import callback_tensor_inputs, decoded, generators, job_pipeline, make_scheduler, tiles_vae, vae_tiled
from .tiling import seamless
from .previews import PreviewDecoder
from .samplers import find_sampler
from .tasks import PreparedJob, pipe_arguments, pipeline_arguments, prepare, refuse_unless_runs, task_spec
from .validation import job_preview

log = logging.getLogger(__name__)
INSPECT_VAE_MAX_LATENT = 32  # latents up to this side have their inspection pictures decoded by the full VAE


class Runner:
    """Runs groups for `engine`, whose names it reads anew each time (settings may be replaced while it runs):
    settings, models, current_model, device, dtype, threads.previews; it sets seconds_per_step and, when a
    preview decoder has a note, adds it to notice."""

    def __init__(self, engine):
        self.engine = engine
        self._tools: dict[str, PromptTools] = {}  # model name → its prompt tools (worker thread only)

    def run_group(self, jobs: list[Job]) -> dict:
        """Run jobs that share a model and settings (and LoRA set, CLIP skip, VAE). Returns, per job, (images,
        skipped): its (PIL image, infotext, seed) triples for the result writer, and whether it was skipped part-way."""
        engine = self.engine
        first = jobs[0].request
        model = engine.models.get(first.model or engine.current_model)
        for job in jobs:
            refuse_unless_runs(model.kind, model.name, job.request)
        sampler = find_sampler(first.sampler_name, first.scheduler)
        decoder = self.decoder(model, first)  # jobs share a group only with the same previews (BatchPolicy.key)
        prepared = {job: prepare(job.request, model.default_size, engine.settings.max_size) for job in jobs}
        plans = {job: plan_prompts(job.request, engine.prompt_library.styles) for job in jobs}
        tools = self.prompt_tools(model)
        results: dict = {job: [] for job in jobs}  # (image, infotext, seed), saved by the result writer
        clock = StepClock()
        skipped: set = set()
        with tools.applied(lora_set(plans[jobs[0]]), first.vae) as applied:
            for job in jobs:
                job.emit(Started(model.name, prepared[job].seeds, prepared[job].notes + model.notes + list(plans[job].notes) + applied.notes))
            conditioning = {job: encode_job(tools.encoder, plans[job], job.request.steps, job.request.clip_skip) for job in jobs}
            calls = CallPlan(model, sampler, tools, applied, prepared, plans, conditioning)
            for members in shared_calls(jobs, conditioning):
                for batch_index in range(members[0].request.batch_count):  # several jobs only ever have batch_count 1
                    slices = {
                        job: prepared[job].seeds[batch_index * job.request.batch_size : (batch_index + 1) * job.request.batch_size]
                        for job in members
                        if job not in skipped and not job.cancel_requested.is_set()
                    }
                    if not slices:
                        break
                    hooks = self.step_hooks(slices, decoder, clock, batch_index, members[0].request.batch_count)
                    self._run_call(calls, slices, hooks, results, skipped)
        engine.seconds_per_step = clock.seconds_per_step or engine.seconds_per_step
        return {job: (results[job], job in skipped) for job in jobs}

    def _run_call(self, calls: CallPlan, slices: dict, hooks: HookChain, results: dict, skipped: set) -> None:
        """One pipeline call for `slices` (job → its seeds in this call) — two for a hires fix job; each job's images,
        post-processed by its task, with their infotexts, go to results[job]; a job that asked to skip joins
        `skipped`."""
        model, prepared = calls.model, calls.prepared
        lead = next(iter(slices))
        spec = task_spec(prepared[lead].task)
        pipe = self._pipeline(model, spec.pipeline_task, calls.sampler)
        arguments = pipeline_arguments(lead.request, prepared[lead], slices[lead])
        arguments["generator"] = generators([seed for seeds in slices.values() for seed in seeds])
        if prepared[lead].varies_noise:  # such a job runs alone (tasks.batchable)
            arguments["latents"], arguments["generator"] = start_latents(pipe, lead.request, prepared[lead], slices[lead])
        arguments.update(self._conditioning(calls, slices, hooks, lead.request.clip_skip))
        if model.kind.takes_depth_map:
            hooks.hooks.append(DepthMapHook(lead, (prepared[lead].width, prepared[lead].height)))
        arguments["callback_on_step_end_tensor_inputs"] = hooks.tensor_inputs(callback_tensor_inputs(pipe))
        second = self._second_pass(calls, slices, lead, hooks) if spec.passes == 2 else None
        if second is not None:
            hooks.steps_per_batch = lead.request.steps + second_pass_steps(lead.request)
            arguments["output_type"] = first_pass_output_type(second.upscaler)
        inspection = self._inspection(pipe, lead, slices, hooks)  # the first pass only (its hook joins this chain)
        drawn = prepared[lead].final_size or (prepared[lead].width, prepared[lead].height)  # the largest picture of the call
        tiled = tiles_vae(self.engine.settings.vae_tiling, drawn, model.default_size)
        # A captured CUDA graph would replay the zero padding: tiling jobs run the UNet without graphs.
        with graphs_paused(pipe, not hooks.graph_safe or lead.request.tiling), calls.applied.vae_on(pipe), vae_tiled(pipe, tiled), \
                seamless(pipe) if lead.request.tiling else nullcontext():
            arguments.update(pipe_arguments(pipe, lead.request, prepared[lead], slices[lead]))  # with the job's VAE on
            with inspection.installed(pipe) if inspection is not None else nullcontext():
                output = pipe(**arguments, callback_on_step_end=hooks).images
            if inspection is not None:
                try:
                    lead.inspection = self._inspected(inspection, calls, lead)
                except Exception:  # what was captured is a view: the image goes on being made and saved
                    log.exception("inspection of job %s could not be collected", lead.id)
            if second is not None:
                pipe, output = self._finish_hires(pipe, output, second, hooks, calls)
        images = iter(output)
        for job, seeds in slices.items():
            mine = [next(images) for _ in seeds]
            if job.cancel_requested.is_set():
                continue
            job_prepared = prepared[job]
            for image, seed in zip(mine, seeds):
                image = task_spec(job_prepared.task).post_process(pipe, job_prepared, image)
                if job.request.restore_faces:
                    image = self.engine.faces.restore(image, job.request.face_restorer, job.request.codeformer_weight, self.engine.device)
                results[job].append((image, calls.infotext(job, seed), seed))
            if job.skip_requested.is_set():
                skipped.add(job)
            job.skip_batch_requested.clear()  # the next batch of the job runs

    def _inspection(self, pipe, lead: Job, slices: dict, hooks: HookChain) -> Optional[Inspection]:
        """The capture a job asked for (request.inspect), for its first batch; such a job runs alone."""
        if not lead.request.inspect or hooks.batch_index != 0:
            return None
        inspection = Inspection(lead.request.inspect, 0, len(slices[lead]), pipe.scheduler, float(lead.request.cfg_scale))
        hooks.hooks.append(inspection.hook)
        return inspection

    def _inspected(self, inspection: Inspection, calls: CallPlan, lead: Job) -> Inspected:
        """The capture on the CPU, its pictures decoded: by the VAE for small latents (the demo's 16×16), else as
        the job's live previews are (latent factors when those are off)."""
        engine, request = self.engine, lead.request
        small = max(inspection.recorder.latent_hw or (0,)) <= INSPECT_VAE_MAX_LATENT
        mode = "vae" if small else job_preview(request, engine.settings)[0]
        decoder = engine.threads.previews.decoder("latent" if mode == "off" else mode, calls.model, engine.models.loaded_names())
        plan = calls.plans[lead]
        text = prompt_schedule(plan.text, request.steps)[0][1]  # the prompt of the first step
        tokens = [Token(*fields) for fields in calls.tools.encoder.token_positions(text)]
        loras = [(tag.name, tag.unet_multiplier) for tag in plan.loras]
        prepared = calls.prepared[lead]
        return inspection.collect(decoder.picture, (prepared.width, prepared.height), tokens, loras)

    def _pipeline(self, model: LoadedModel, task: Task, sampler):
        scheduler = make_scheduler(sampler, model.scheduler_config)
        return job_pipeline(model.task_pipelines, model.pipe, model.family, task, scheduler, self.engine.dtype, model.kind)

    def _conditioning(self, calls: CallPlan, slices: dict, hooks: HookChain, clip_skip: int) -> dict:
        """The call's prompt embeds; a prompt-editing schedule adds its step hook to `hooks`."""
        conditioning = PromptConditioning(calls.tools.encoder, {job: (calls.conditioning[job], len(seeds)) for job, seeds in slices.items()}, clip_skip)
        schedule = conditioning.hook()
        if schedule is not None:
            hooks.hooks.append(schedule)
        return conditioning.arguments()

    def _second_pass(self, calls: CallPlan, slices: dict, lead: Job, first_hooks: HookChain) -> SecondPass:
        """The hires fix's image-to-image call, prepared: its pipeline, sampler, prompts (encoded for its own steps),
        hooks that count on from the first pass."""
        request = hires_request(lead.request)
        pipe = self._pipeline(calls.model, Task.IMG2IMG, find_sampler(request.sampler_name, request.scheduler))
        plan = plan_prompts(request, self.engine.prompt_library.styles)
        conditioning = {job: encode_job(calls.tools.encoder, plan, request.steps, request.clip_skip) for job in slices}
        hooks = HookChain([hook for hook in first_hooks.hooks if not isinstance(hook, ScheduleHook)], slices,
                          first_hooks.batch_index, first_hooks.batch_count,
                          steps_per_batch=lead.request.steps + second_pass_steps(lead.request), step_offset=lead.request.steps)
        arguments = dict(guidance_scale=float(request.cfg_scale), num_images_per_prompt=1,
                         generator=generators([seed for seeds in slices.values() for seed in seeds]))
        arguments.update(self._conditioning(replace(calls, conditioning=conditioning), slices, hooks, request.clip_skip))
        arguments["callback_on_step_end_tensor_inputs"] = hooks.tensor_inputs(callback_tensor_inputs(pipe))
        width, height = calls.prepared[lead].final_size
        return SecondPass(pipe, arguments, width, height, request.hr_upscaler, request.hr_denoising_strength, request.steps, hooks)

    def _finish_hires(self, first_pipe, first_output, second: SecondPass, first_hooks: HookChain, calls: CallPlan):
        """The upscale and the second pass — unless every job of the call stopped during the first (then its images
        as they stood are the result, as in A1111)."""
        if all(job.stopping_call() for job in first_hooks.slices):
            return first_pipe, decoded(first_pipe, first_output)
        image = upscale_first_pass(first_output, second, self.engine.upscalers, self.engine.device, self.engine.dtype)
        with calls.applied.vae_on(second.pipe):
            return second.pipe, run_second_pass(second, image, second.hooks)

    def prompt_tools(self, model: LoadedModel) -> PromptTools:
        """The prompt encoder, LoRA applier and VAE choice of `model`, kept while it stays loaded."""
        loaded = self.engine.models.loaded_names()
        self._tools = {name: tools for name, tools in self._tools.items() if name in loaded}
        tools = self._tools.get(model.name)
        if tools is None or tools.model is not model:
            tools = self._tools[model.name] = PromptTools(model, self.engine.prompt_library, self.engine.device, self.engine.dtype)
        return tools

    def step_hooks(self, slices: dict, decoder: Optional[PreviewDecoder], clock: StepClock, batch_index: int, batch_count: int) -> HookChain:
        """The per-step hooks of one call: cancel/skip, progress, previews (when on: every so many steps, as the
        call's lead job asks)."""
        engine = self.engine
        hooks = [CancelHook(), ProgressHook(clock, self._note_rate)]
        if decoder is not None:
            _mode, every = job_preview(next(iter(slices)).request, engine.settings)
            hooks.append(PreviewHook(decoder, every, engine.threads.previews.frames))
        return HookChain(hooks, slices, batch_index, batch_count)

    def _note_rate(self, seconds_per_step: float) -> None:
        self.engine.seconds_per_step = seconds_per_step or self.engine.seconds_per_step  # live, for queue ETAs

    def decoder(self, model: LoadedModel, request: GenerationRequest) -> Optional[PreviewDecoder]:
        """The preview decoder for `model` in the request's preview mode, else the server's (None when off)."""
        engine = self.engine
        mode, _every = job_preview(request, engine.settings)
        decoder = engine.threads.previews.decoder(mode, model, engine.models.loaded_names())
        if decoder is not None and decoder.note and decoder.note not in (engine.notice or ""):
            engine.notice = ((engine.notice + " ") if engine.notice else "") + decoder.note
        return decoder

    def warm_up(self) -> None:
        """A short txt2img on the current model, so the first job runs warm; its rate is a first queue ETA."""
        engine = self.engine
        if engine.device.type == "cpu" and engine.current_model != "tiny":
            return  # minutes on a CPU for a real model; the first job pays instead
        started = time.perf_counter()
        model = engine.models.get(engine.current_model)
        if Task.TXT2IMG not in model.kind.tasks:
            return  # a depth model or an upscaler: its first job pays
        size = min(model.default_size, 512)
        request = GenerationRequest("warm-up", steps=2, width=size, height=size, seed=0)
        prepared = prepare(request, model.default_size, engine.settings.max_size)
        scheduler = make_scheduler(find_sampler("Euler"), model.scheduler_config)
        pipe = job_pipeline(model.task_pipelines, model.pipe, model.family, Task.TXT2IMG, scheduler, engine.dtype)
        clock = StepClock()

        def time_steps(pipe, i, t, tensors):
            clock.tick(i + 1, request.steps)
            return {}

        pipe(**pipeline_arguments(request, prepared, [0]), output_type="pil", callback_on_step_end=time_steps)
        engine.seconds_per_step = clock.seconds_per_step  # a first estimate for queue ETAs
        log.info("Warm-up done in %.1f s", time.perf_counter() - started)


def start_latents(pipe, request: GenerationRequest, prepared: PreparedJob, seeds: list[int]):
    """(start latents, generators) for `seeds` (images of one job): the start noise with its variation seeds and
    seed resize, as A1111 draws it (diffusers scales it by the scheduler's init_noise_sigma itself)."""
    subseeds = [prepared.subseeds[prepared.seeds.index(seed)] for seed in seeds]
    shape = dict(latent_channels=pipe.unet.config.in_channels, vae_scale=pipe.vae_scale_factor, dtype=pipe.unet.dtype)
    latents = batch_latents(seeds, subseeds, float(request.subseed_strength), prepared.width, prepared.height,
                            seed_resize_from=request.seed_resize_from, **shape)
    # Given latents, diffusers draws no start noise: the generators must start where that draw leaves them, so an
    # ancestral sampler's step noise is what it would have been (as in A1111).
    return latents, generators_after_start(seeds, prepared.width, prepared.height, **shape)


@dataclass
class CallPlan:
    """What every pipeline call of one group shares: model, sampler, prompt tools, what is applied, and each
    job's prepared inputs, prompt plan and conditioning."""

    model: object
    sampler: object
    tools: PromptTools
    applied: Applied
    prepared: dict
    plans: dict
    conditioning: dict

    def infotext(self, job, seed: int) -> str:
        plan, request = self.plans[job], job.request
        after_model = {"VAE hash": self.applied.vae_hash, "VAE": self.applied.vae_name, **variation_fields(request, self.prepared[job], seed)}
        used = self.conditioning[job].embeddings_used
        after_task = {
            "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
            "Tiling": True if request.tiling else None,
            "Lora hashes": ", ".join(f"{name}: {h}" for name, h in self.applied.lora_hashes.items() if h) or None,
            "TI hashes": ", ".join(f"{name}: {self.tools.library.embeddings.short_hash(name)}" for name in used) or None,
        }
        return infotext(request, self.prepared[job], self.model, self.sampler, seed, (plan.prompt, plan.negative), after_model, after_task)


def variation_fields(request: GenerationRequest, prepared: PreparedJob, seed: int) -> dict:
    """A1111's "Variation seed", "Variation seed strength" and "Seed resize from" for the image of `seed`."""
    if not prepared.varies_noise:
        return {}
    fields = {}
    if request.subseed_strength > 0:
        fields["Variation seed"] = prepared.subseeds[prepared.seeds.index(seed)]
        fields["Variation seed strength"] = float(request.subseed_strength)
    if request.seed_resize_from is not None:
        fields["Seed resize from"] = f"{request.seed_resize_from[0]}x{request.seed_resize_from[1]}"
    return fields


def infotext(request: GenerationRequest, prepared: PreparedJob, model: LoadedModel, sampler, seed: int, prompts: tuple[str, str],
             after_model: dict, after_task: dict) -> str:
    """A1111's parameters text for one image, in A1111's order: the common fields, the VAE (after_model), the task's
    own, then prompt fields (Clip skip, Lora hashes, TI hashes: after_task), then the version. prompts: (prompt,
    negative prompt) as the job used them (styles applied)."""
    params = {
        "Steps": request.steps,
        "Sampler": sampler.spec.name,
        "Schedule type": sampler.schedule_type if sampler.schedule_type != "Automatic" else None,
        "CFG scale": float(request.cfg_scale),
        "Seed": seed,
        "Face restoration": request.face_restorer if request.restore_faces else None,
        "Size": f"{prepared.width}x{prepared.height}",
        "Model hash": model.model_hash,
        "Model": model.name.rsplit("/", 1)[-1].rsplit(".", 1)[0] if model.source.kind == "file" else model.name,
        **after_model,
        **task_spec(prepared.task).infotext(request),
        **after_task,
        "Version": f"sd-studio {__version__}",
    }
    return build_infotext(prompts[0], prompts[1], params)
