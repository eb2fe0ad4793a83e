"""The runner: prepares and runs one group of jobs on the engine's device, with its model cache.

A group shares a model and settings; several jobs in one group are a dynamic batch (one txt2img pipeline call whose
batch holds every job's images, each with its own seed). What differs per task comes from the task registry
(studio/tasks.py); what runs after each step, from the step hooks (studio/hooks.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
import time
from typing import Optional

from . import __version__
from .checkpoints import LoadedModel
from .contract import GenerationRequest, Started, Task
from .conditioning import Applied, PromptConditioning, PromptTools, encode_job, lora_set, plan_prompts, shared_calls
from .fast import graphs_paused
from .hooks import CancelHook, HookChain, PreviewHook, ProgressHook, StepClock
from .jobs import Job
from .metadata import build_infotext
from .pipelines import callback_tensor_inputs, generators, job_pipeline, make_scheduler
from .previews import PreviewDecoder
from .samplers import find_sampler
from .tasks import PreparedJob, pipeline_arguments, prepare, task_spec

log = logging.getLogger(__name__)


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
        sampler = find_sampler(first.sampler_name)
        decoder = self.decoder(model)
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
        """One pipeline call for `slices` (job → its seeds in this call); each job's images, post-processed by
        its task, with their infotexts, go to results[job]; a job that asked to skip joins `skipped`."""
        model, prepared = calls.model, calls.prepared
        lead = next(iter(slices))
        task = prepared[lead].task
        scheduler = make_scheduler(calls.sampler, model.scheduler_config)
        pipe = job_pipeline(model.task_pipelines, model.pipe, model.family, task, scheduler, self.engine.dtype)
        arguments = pipeline_arguments(lead.request, prepared[lead], slices[lead])
        arguments["generator"] = generators([seed for seeds in slices.values() for seed in seeds])
        conditioning = PromptConditioning(calls.tools.encoder, {job: (calls.conditioning[job], len(seeds)) for job, seeds in slices.items()}, lead.request.clip_skip)
        arguments.update(conditioning.arguments())
        schedule = conditioning.hook()
        if schedule is not None:
            hooks.hooks.append(schedule)
        arguments["callback_on_step_end_tensor_inputs"] = hooks.tensor_inputs(callback_tensor_inputs(pipe))
        with graphs_paused(pipe, not hooks.graph_safe), calls.applied.vae_on(pipe):
            images = iter(pipe(**arguments, callback_on_step_end=hooks).images)
        for job, seeds in slices.items():
            mine = [next(images) for _ in seeds]
            if job.cancel_requested.is_set():
                continue
            job_prepared = prepared[job]
            spec = task_spec(job_prepared.task)
            for image, seed in zip(mine, seeds):
                image = spec.post_process(pipe, job_prepared, image)
                results[job].append((image, calls.infotext(job, seed), seed))
            if job.skip_requested.is_set():
                skipped.add(job)

    def prompt_tools(self, model: LoadedModel) -> PromptTools:
        """The prompt encoder, LoRA applier and VAE choice of `model`, kept while it stays loaded."""
        loaded = self.engine.models.loaded_names()
        self._tools = {name: tools for name, tools in self._tools.items() if name in loaded}
        tools = self._tools.get(model.name)
        if tools is None or tools.model is not model:
            tools = self._tools[model.name] = PromptTools(model, self.engine.prompt_library, self.engine.device, self.engine.dtype)
        return tools

    def step_hooks(self, slices: dict, decoder: Optional[PreviewDecoder], clock: StepClock, batch_index: int, batch_count: int) -> HookChain:
        """The per-step hooks of one call: cancel/skip, progress, previews (when on)."""
        engine = self.engine
        every = engine.settings.preview_interval()
        hooks = [CancelHook(), ProgressHook(clock, self._note_rate)]
        if decoder is not None:
            hooks.append(PreviewHook(decoder, every, engine.threads.previews.frames))
        return HookChain(hooks, slices, batch_index, batch_count)

    def _note_rate(self, seconds_per_step: float) -> None:
        self.engine.seconds_per_step = seconds_per_step or self.engine.seconds_per_step  # live, for queue ETAs

    def decoder(self, model: LoadedModel) -> Optional[PreviewDecoder]:
        """The preview decoder for `model` in the current preview mode (None when previews are off)."""
        engine = self.engine
        decoder = engine.threads.previews.decoder(engine.settings.preview, model, engine.models.loaded_names())
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
        after_model = {"VAE hash": self.applied.vae_hash, "VAE": self.applied.vae_name}
        used = self.conditioning[job].embeddings_used
        after_task = {
            "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
            "Lora hashes": ", ".join(f"{name}: {h}" for name, h in self.applied.lora_hashes.items() if h) or None,
            "TI hashes": ", ".join(f"{name}: {self.tools.library.embeddings.short_hash(name)}" for name in used) or None,
        }
        return infotext(request, self.prepared[job], self.model, self.sampler, seed, (plan.prompt, plan.negative), after_model, after_task)


def infotext(request: GenerationRequest, prepared: PreparedJob, model: LoadedModel, sampler, seed: int, prompts: tuple[str, str],
             after_model: dict, after_task: dict) -> str:
    """A1111's parameters text for one image, in A1111's order: the common fields, the VAE (after_model), the task's
    own, then prompt fields (Clip skip, Lora hashes, TI hashes: after_task), then the version. prompts: (prompt,
    negative prompt) as the job used them (styles applied)."""
    params = {
        "Steps": request.steps,
        "Sampler": sampler.spec.name,
        "Schedule type": "Karras" if sampler.karras else None,
        "CFG scale": float(request.cfg_scale),
        "Seed": seed,
        "Size": f"{prepared.width}x{prepared.height}",
        "Model hash": model.model_hash,
        "Model": model.name.rsplit("/", 1)[-1].rsplit(".", 1)[0] if model.source.kind == "file" else model.name,
        **after_model,
        **task_spec(prepared.task).infotext(request),
        **after_task,
        "Version": f"sd-studio {__version__}",
    }
    return build_infotext(prompts[0], prompts[1], params)
