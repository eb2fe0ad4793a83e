"""The runner: prepares and runs one group of jobs on the engine's device, with its model cache.

A group shares a model and settings; several jobs in one group are a dynamic batch (one txt2img pipeline call whose
batch holds every job's images, each with its own seed). What differs per task comes from the task registry
(studio/tasks.py); what runs after each step, from the step hooks (studio/hooks.py).
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from . import __version__
from .checkpoints import LoadedModel
from .contract import GenerationRequest, Started, Task
from .fast import graphs_paused
from .hooks import CancelHook, HookChain, PreviewHook, ProgressHook, StepClock
from .jobs import Job
from .metadata import build_infotext
from .pipelines import generators, job_pipeline, make_scheduler
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

    def run_group(self, jobs: list[Job]) -> dict:
        """Run jobs that share a model and settings. Returns, per job, (images, skipped): its (PIL image,
        infotext, seed) triples for the result writer, and whether it was skipped part-way."""
        engine = self.engine
        first = jobs[0].request
        model = engine.models.get(first.model or engine.current_model)
        sampler = find_sampler(first.sampler_name)
        decoder = self.decoder(model)
        prepared = {job: prepare(job.request, model.default_size, engine.settings.max_size) for job in jobs}
        for job in jobs:
            job.emit(Started(model.name, prepared[job].seeds, prepared[job].notes + model.notes))
        results: dict = {job: [] for job in jobs}  # (image, infotext, seed), saved by the result writer
        clock = StepClock()
        skipped: set = set()
        for batch_index in range(first.batch_count):  # several jobs only ever have batch_count 1
            slices = {
                job: prepared[job].seeds[batch_index * job.request.batch_size : (batch_index + 1) * job.request.batch_size]
                for job in jobs
                if job not in skipped and not job.cancel_requested.is_set()
            }
            if not slices:
                break
            hooks = self.step_hooks(slices, decoder, clock, batch_index, first.batch_count)
            pipe_task = prepared[jobs[0]].task
            self._run_call(model, sampler, pipe_task, prepared, slices, hooks, results, skipped)
        engine.seconds_per_step = clock.seconds_per_step or engine.seconds_per_step
        return {job: (results[job], job in skipped) for job in jobs}

    def _run_call(self, model: LoadedModel, sampler, task: Task, prepared: dict, slices: dict, hooks: HookChain, results: dict, skipped: set) -> None:
        """One pipeline call for `slices` (job → its seeds in this call); each job's images, post-processed by
        its task, with their infotexts, go to results[job]; a job that asked to skip joins `skipped`."""
        scheduler = make_scheduler(sampler, model.scheduler_config)
        pipe = job_pipeline(model.task_pipelines, model.pipe, model.family, task, scheduler, self.engine.dtype)
        lead = next(iter(slices))
        arguments = pipeline_arguments(lead.request, prepared[lead], slices[lead])
        if len(slices) > 1:
            arguments.update(group_arguments(slices))
        with graphs_paused(pipe, not hooks.graph_safe):
            images = iter(pipe(**arguments, callback_on_step_end=hooks).images)
        for job, seeds in slices.items():
            mine = [next(images) for _ in seeds]
            if job.cancel_requested.is_set():
                continue
            job_prepared = prepared[job]
            spec = task_spec(job_prepared.task)
            for image, seed in zip(mine, seeds):
                image = spec.post_process(pipe, job_prepared, image)
                results[job].append((image, infotext(job.request, job_prepared, model, sampler, seed), seed))
            if job.skip_requested.is_set():
                skipped.add(job)

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


def group_arguments(slices: dict) -> dict:
    """Prompts, negative prompts and generators for a dynamic batch: one entry per image, so image i is drawn
    from its own seed's generator exactly as when its job runs alone."""
    prompts, negatives, seeds = [], [], []
    for job, job_seeds in slices.items():
        prompts += [job.request.prompt] * len(job_seeds)
        negatives += [job.request.negative_prompt] * len(job_seeds)
        seeds += job_seeds
    return dict(prompt=prompts, negative_prompt=negatives, num_images_per_prompt=1, generator=generators(seeds))


def infotext(request: GenerationRequest, prepared: PreparedJob, model: LoadedModel, sampler, seed: int) -> str:
    """A1111's parameters text for one image: the common fields, then the task's own, then the version."""
    params = {
        "Steps": request.steps,
        "Sampler": sampler.spec.name,
        "Schedule type": "Karras" if sampler.karras else None,
        "CFG scale": float(request.cfg_scale),
        "Seed": seed,
        "Size": f"{prepared.width}x{prepared.height}",
        "Model hash": model.model_hash,
        "Model": model.name.rsplit("/", 1)[-1].rsplit(".", 1)[0] if model.source.kind == "file" else model.name,
        **task_spec(prepared.task).infotext(request),
        "Version": f"sd-studio {__version__}",
    }
    return build_infotext(request.prompt, request.negative_prompt, params)
