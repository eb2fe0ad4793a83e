"""The engine: owns the device, keeps pipelines warm, and runs jobs from a fair queue on one worker thread.

Data path: submit(request) → Dispatcher (fair queue, dynamic batching) → worker → diffusers pipeline with a step
callback → previews → job events. EngineThreads starts and stops the threads all this runs on.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Optional

import torch
from PIL import Image

from . import __version__
from .access import match_offered, offered_models, refusal
from .checkpoints import LoadedModel, ModelCache, ModelError, default_model_name, list_checkpoints
from .config import DEFAULT_MODEL, Settings
from .jobs import Job, JobRegistry
from .metadata import build_infotext
from .outputs import OutputStore
from .pipelines import (
    AttentionChoice,
    blur_mask,
    choose_attention,
    free_device_memory,
    generators,
    paste_unmasked,
    resolve_device,
    resolve_dtype,
    job_pipeline,
    make_scheduler,
    quiet_library_logs,
)
from .previews import FrameSink, PreviewDecoder, capture, load_taesd
from .dispatch import BatchPolicy, Dispatcher
from .contract import (
    Cancelled,
    Failed,
    Finished,
    GenerationRequest,
    Preview,
    RequestError,
    SavedImage,
    Started,
    Step,
    Task,
)
from .samplers import find_sampler
from .validation import validate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineInfo:
    """What the footer and the API show about the running engine."""

    model: str
    device: str
    dtype: str
    attention: str
    attention_reason: str
    preview: str
    notice: Optional[str]  # e.g. "started on tiny because ..."


@dataclass
class PreparedJob:
    task: Task
    width: int
    height: int
    seeds: list[int]
    init_image: Optional[Image.Image]
    mask: Optional[Image.Image]  # blurred by mask_blur, as the pipeline and the paste-back use it
    notes: list[str]


class EngineThreads:
    """The engine's threads, owned in one place so that stop() leaves none behind: the worker (torch runs on it
    only), the preview-frame thread, and the saver (FIFO: a job's saves, then its event)."""

    def __init__(self):
        self.frames = FrameSink()
        self.saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="saver")
        self._worker: Optional[threading.Thread] = None

    def start(self, work) -> None:
        """Start the frame thread, then the worker running work()."""
        self.frames.start()
        self._worker = threading.Thread(target=work, name="engine-worker", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 30) -> None:
        """Join in the order work flows: the worker (it still queues frames and saves), then frames, then the
        saver, so images already made are written before the engine stops."""
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=timeout)
        self.frames.stop(timeout)
        self.saver.shutdown(wait=True)


class Engine:
    def __init__(self, settings: Settings, outputs: OutputStore, taesd_loader=None):
        """taesd_loader: family → AutoencoderTiny for taesd previews (default: load_taesd from the hub cache); the
        benchmark passes random-weight ones."""
        quiet_library_logs()
        self._taesd_loader = taesd_loader
        self.settings = settings
        self.outputs = outputs
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.attention: AttentionChoice = choose_attention(settings.attention, self.device, self.dtype)
        log.info("Device %s, dtype %s, attention %s (%s)", self.device, self.dtype, self.attention.backend, self.attention.reason)
        self.models = ModelCache(settings, self.device, self.dtype, self.attention)
        self.dispatcher = Dispatcher(settings.max_queue_per_user, self._batch_policy)
        self.jobs = JobRegistry()  # each owner's recent jobs, found by id
        self.threads = EngineThreads()
        self.current_model: Optional[str] = None
        self.notice: Optional[str] = None
        self.running_jobs: list[Job] = []  # several when jobs of different users share one batch
        self._decoders: dict[str, PreviewDecoder] = {}
        self.seconds_per_step = 0.0  # of the last job that ran: queue ETAs use it

    # ---- life cycle

    def start(self) -> "Engine":
        """Load the first model (the default falls back to `tiny` when it cannot be had), warm up, start the worker."""
        wanted = default_model_name(self.settings)
        try:
            self.models.get(wanted)
            self.current_model = self.models.loaded_names()[-1]
        except ModelError as exc:
            if self.settings.model is not None:
                raise
            log.warning("The default model is not available: %s", exc)
            self.notice = (  # shown to every user: the public words only
                f"The default model {DEFAULT_MODEL} is not available ({exc.public_message.rstrip('.')}). Running on the random-weight 'tiny' "
                f"model, which draws noise. For real images, connect to the internet once (it downloads into the "
                f"Hugging Face cache), or start with --model PATH_TO.safetensors or --models-dir FOLDER."
            )
            log.warning(self.notice)
            self.models.get("tiny")
            self.current_model = "tiny"
        warmed: list = []  # the warm-up's exception, if any, once it is over
        ready = threading.Event()
        self.threads.start(lambda: self._serve(ready, warmed))
        ready.wait()
        if warmed and warmed[0] is not None:
            self.stop()
            raise warmed[0]
        return self

    def _serve(self, ready: threading.Event, warmed: list) -> None:
        """The worker thread: the warm-up, then jobs. Torch runs on this one thread only: a warm-up on the caller's
        thread left a second CPU thread team behind, and every later step on the CPU ran ~35% slower."""
        try:
            if self.settings.warmup:
                self._warm_up()
            warmed.append(None)
        except Exception as exc:
            warmed.append(exc)
            return
        finally:
            ready.set()
        self._work()

    def stop(self) -> None:
        """Take no more jobs, stop the running ones, and join every thread."""
        self.dispatcher.close()
        for job in self.running_jobs:
            job.cancel()
        self.threads.stop()

    @property
    def queue(self) -> Dispatcher:
        """The old name of the dispatcher: front ends read positions and snapshots, and set max_per_owner, here."""
        return self.dispatcher

    def info(self) -> EngineInfo:
        return EngineInfo(
            model=self.current_model or "",
            device=str(self.device),
            dtype=str(self.dtype).replace("torch.", ""),
            attention=self.attention.backend,
            attention_reason=self.attention.reason,
            preview=self.settings.preview,
            notice=self.notice,
        )

    def available_models(self) -> list[str]:
        names = [source.name for source in list_checkpoints(self.settings.models_dir)]
        for name in self.models.loaded_names():
            if name not in names:
                names.append(name)
        return names

    # ---- jobs

    def submit(self, request: GenerationRequest, owner: str = "local", *, may_name_any_model: bool = False) -> Job:
        """Queue a request. Raises RequestError (with the user's message) for a bad request, a full queue, or a model
        outside the operator's list. Safe by default: a front end's model field is a name to pick, not a path to
        load, unless the caller vouches that this user may load anything (an admin; the CLI and benchmarks, whose
        user is the operator) — see studio.access."""
        validate(request, self.settings)
        request = self._checked_model(request, may_name_any_model)
        job = Job(request, owner)
        self.dispatcher.put(job)
        self.jobs.add(job)
        return job

    def cancel(self, job: Job) -> None:
        self.dispatcher.cancel(job)

    def generate(self, request: GenerationRequest, owner: str = "local", *, may_name_any_model: bool = False):
        """Submit and wait: the terminal event (Finished, Failed or Cancelled)."""
        return self.submit(request, owner, may_name_any_model=may_name_any_model).wait()

    def _checked_model(self, request: GenerationRequest, may_name_any_model: bool) -> GenerationRequest:
        """The request with its model as the operator's list names it; a name outside the list only when allowed,
        and then untouched (a path or hub id, checked when it loads)."""
        if request.model is None:
            return request
        offered = offered_models(self)
        found = match_offered(request.model, offered) if isinstance(request.model, str) else None
        if found is not None:
            return replace(request, model=found)
        if may_name_any_model and isinstance(request.model, str) and request.model.strip():
            return request
        raise refusal(str(request.model), offered, may_name_any_model)

    def _work(self) -> None:
        """The worker's loop: one group of jobs at a time, until stop() closes the dispatcher."""
        while (group := self.dispatcher.next_group()) is not None:
            if group:
                self._run_to_the_end(group)

    def _run_to_the_end(self, group: list[Job]) -> None:
        """Run a group and end every job in it: its images go to the saver, or it fails alone with a message
        for its user (the worker goes on)."""
        self.running_jobs = group
        failed = True
        try:
            finishers = self._run_group(group)
            self.threads.frames.flush()  # every preview reaches its job before the job's final images
            for member, finish in finishers.items():
                # Saving (PNG encoding, fsync) happens on the saver thread while the next job samples.
                self.threads.saver.submit(self._finish, member, finish)
            failed = False
        except torch.cuda.OutOfMemoryError:
            log.warning("%s ran out of GPU memory", ", ".join(j.id for j in group))
            self._fail(group, "Out of GPU memory: try a smaller size or batch, or fewer models kept loaded.")
        except RequestError as exc:
            self._fail(group, str(exc))
        except ModelError as exc:  # the detail (paths, the library's words) is for the operator's log only
            log.warning("%s: %s", ", ".join(j.id for j in group), exc)
            self._fail(group, exc.public_message)
        except Exception:  # one job's failure must not take the worker down
            log.exception("%s failed", ", ".join(j.id for j in group))
            self._fail(group, "Generation failed because of an error on the server (it is in the server's log); "
                              "try again, and tell the operator if it happens again.")
        finally:
            self.running_jobs = []
            self.threads.frames.flush()
            if failed or any(j.cancel_requested.is_set() for j in group):
                free_device_memory(self.device)

    def _finish(self, job: Job, finish) -> None:
        try:
            event = finish()
        except Exception:  # e.g. a full disk: this job fails, the studio goes on
            log.exception("%s: saving failed", job.id)
            event = Failed("The images could not be saved on the server (the reason is in the server's log); "
                           "tell the operator.")
        job.finish(event)

    @property
    def running(self) -> Optional[Job]:
        """The job running now (the first of a dynamic batch), or None."""
        jobs = self.running_jobs
        return jobs[0] if jobs else None

    def _fail(self, jobs: list[Job], message: str) -> None:
        for job in jobs:
            job.finish(Cancelled() if job.cancel_requested.is_set() else Failed(message))

    def _batch_policy(self) -> BatchPolicy:
        """Dynamic batching as the settings say now: compatible txt2img jobs of different users share one UNet
        batch; a request without a model runs on the current one."""
        settings = self.settings
        return BatchPolicy(settings.dynamic_batching, settings.max_batch, settings.batch_wait_ms / 1000, self.current_model)

    # ---- running one job

    def _prepare(self, request: GenerationRequest, model: LoadedModel) -> PreparedJob:
        notes: list[str] = []
        task = request.task
        init = mask = None
        if task is Task.TXT2IMG:
            width = request.width or model.default_size
            height = request.height or model.default_size
        else:
            init = request.init_image.convert("RGB")
            width = request.width or max(64, min(self.settings.max_size, init.width // 8 * 8))
            height = request.height or max(64, min(self.settings.max_size, init.height // 8 * 8))
            if init.size != (width, height):
                init = init.resize((width, height), Image.LANCZOS)
            if task is Task.INPAINT:
                mask = request.mask.convert("L")
                if mask.size != request.init_image.size:
                    notes.append(f"The mask ({mask.width}×{mask.height}) was resized to the image ({request.init_image.width}×{request.init_image.height}).")
                if mask.size != (width, height):
                    mask = mask.resize((width, height), Image.LANCZOS)
                mask = blur_mask(mask, request.mask_blur)
        count = request.batch_size * request.batch_count
        first_seed = request.seed if request.seed >= 0 else random.randrange(2**32)
        seeds = [first_seed + i for i in range(count)]
        return PreparedJob(task, width, height, seeds, init, mask, notes)

    def _run(self, job: Job):
        """Run one job to its terminal event, saving included (benchmarks call this directly, on their thread)."""
        return self._run_group([job])[job]()

    def _run_group(self, jobs: list[Job]) -> dict:
        """Run jobs that share a model and settings. Returns, per job, a function that saves its images and gives
        its terminal event. A group of several is a dynamic batch: one txt2img pipeline call whose batch holds every
        job's images, each with its own seed."""
        first = jobs[0].request
        model = self.models.get(first.model or self.current_model)
        sampler = find_sampler(first.sampler_name)
        decoder = self._decoder(model)
        prepared = {job: self._prepare(job.request, model) for job in jobs}
        for job in jobs:
            job.emit(Started(model.name, prepared[job].seeds, prepared[job].notes + model.notes))
        results: dict = {job: [] for job in jobs}  # (image, infotext, seed), saved by the finisher
        clock = _StepClock()
        skipped = set()
        for batch_index in range(first.batch_count):  # several jobs only ever have batch_count 1
            slices = {
                job: prepared[job].seeds[batch_index * job.request.batch_size : (batch_index + 1) * job.request.batch_size]
                for job in jobs
                if job not in skipped and not job.cancel_requested.is_set()
            }
            if not slices:
                break
            scheduler = make_scheduler(sampler, model.scheduler_config)
            pipe = job_pipeline(model.task_pipelines, model.pipe, model.family, prepared[jobs[0]].task, scheduler, self.dtype)
            callback = self._step_callback(slices, decoder, clock, batch_index, first.batch_count)
            lead = next(iter(slices))
            arguments = self._pipeline_arguments(lead.request, prepared[lead], slices[lead])
            if len(slices) > 1:
                arguments.update(self._group_arguments(slices))
            images = iter(pipe(**arguments, callback_on_step_end=callback).images)
            for job, seeds in slices.items():
                mine = [next(images) for _ in seeds]
                if job.cancel_requested.is_set():
                    continue
                for image, seed in zip(mine, seeds):
                    job_prepared = prepared[job]
                    if job_prepared.task is Task.INPAINT:
                        image = paste_unmasked(pipe, job_prepared.mask, job_prepared.init_image, image)
                    results[job].append((image, self._infotext(job.request, job_prepared, model, sampler, seed), seed))
                if job.skip_requested.is_set():
                    skipped.add(job)
        self.seconds_per_step = clock.seconds_per_step or self.seconds_per_step
        return {job: self._finisher(job, results[job], job in skipped) for job in jobs}

    def _finisher(self, job: Job, results: list, skipped: bool):
        def finish():
            if job.cancel_requested.is_set():
                return Cancelled()
            saved = [
                SavedImage(str(self.outputs.save_png(image, infotext, seed, owner=job.owner)), seed, infotext)
                for image, infotext, seed in results
            ]
            return Finished(saved, skipped)

        return finish

    def _group_arguments(self, slices: dict) -> dict:
        """Prompts, negative prompts and generators for a dynamic batch: one entry per image, so image i is drawn
        from its own seed's generator exactly as when its job runs alone."""
        prompts, negatives, seeds = [], [], []
        for job, job_seeds in slices.items():
            prompts += [job.request.prompt] * len(job_seeds)
            negatives += [job.request.negative_prompt] * len(job_seeds)
            seeds += job_seeds
        return dict(prompt=prompts, negative_prompt=negatives, num_images_per_prompt=1, generator=generators(seeds))

    def _pipeline_arguments(self, request: GenerationRequest, prepared: PreparedJob, seeds: list[int]) -> dict:
        arguments = dict(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            num_inference_steps=request.steps,
            guidance_scale=float(request.cfg_scale),
            num_images_per_prompt=len(seeds),
            generator=generators(seeds),
        )
        if prepared.task is Task.TXT2IMG:
            arguments.update(width=prepared.width, height=prepared.height)
        elif prepared.task is Task.IMG2IMG:
            arguments.update(image=prepared.init_image, strength=request.denoising_strength)
        else:
            arguments.update(
                image=prepared.init_image,
                mask_image=prepared.mask,
                strength=request.denoising_strength,
                width=prepared.width,
                height=prepared.height,
            )
        return arguments

    def _infotext(self, request, prepared: PreparedJob, model: LoadedModel, sampler, seed: int) -> str:
        params = {
            "Steps": request.steps,
            "Sampler": sampler.spec.name,
            "Schedule type": "Karras" if sampler.karras else None,
            "CFG scale": float(request.cfg_scale),
            "Seed": seed,
            "Size": f"{prepared.width}x{prepared.height}",
            "Model hash": model.model_hash,
            "Model": model.name.rsplit("/", 1)[-1].rsplit(".", 1)[0] if model.source.kind == "file" else model.name,
            "Denoising strength": request.denoising_strength if prepared.task is not Task.TXT2IMG else None,
            "Mask blur": request.mask_blur if prepared.task is Task.INPAINT else None,
            "Version": f"sd-studio {__version__}",
        }
        return build_infotext(request.prompt, request.negative_prompt, params)

    def _decoder(self, model: LoadedModel) -> Optional[PreviewDecoder]:
        if self.settings.preview == "off":
            return None
        key = f"{model.name}|{self.settings.preview}"
        if key not in self._decoders:
            decoder = PreviewDecoder(
                self.settings.preview,
                model.family,
                model.pipe.vae,
                self.device,
                self.dtype,
                taesd_loader=self._taesd_loader or load_taesd,
            )
            if decoder.note:
                self.notice = ((self.notice + " ") if self.notice else "") + decoder.note
            self._decoders = {k: v for k, v in self._decoders.items() if k.split("|")[0] in self.models.loaded_names()}
            self._decoders[key] = decoder
        return self._decoders[key]

    def _step_callback(self, slices: dict, decoder: Optional[PreviewDecoder], clock: "_StepClock", batch_index: int, batch_count: int):
        """The per-step hook: progress and previews for every job in the batch; stops when they all asked to."""
        every = self.settings.preview_interval()
        offsets, offset = {}, 0
        for job, seeds in slices.items():
            offsets[job] = offset
            offset += len(seeds)

        def on_step_end(pipe, i, t, tensors):
            live = [job for job in slices if not job.cancel_requested.is_set()]
            for job in slices:
                if job.cancel_requested.is_set():
                    job.finish(Cancelled())  # the user sees it stop now; its images are dropped at the end
            if not [job for job in live if not job.skip_requested.is_set()]:
                pipe._interrupt = True  # diffusers' own flag: the remaining steps are skipped
                return {}
            per_batch = pipe.num_timesteps
            step, total = batch_index * per_batch + i + 1, batch_count * per_batch
            eta = clock.tick(step, total)
            self.seconds_per_step = clock.seconds_per_step or self.seconds_per_step  # live, for queue ETAs
            for job in live:
                job.emit(Step(step, total, eta))
            if decoder is not None and ((i + 1) % every == 0 or i + 1 == per_batch):
                latents = tensors["latents"]
                x0 = getattr(pipe.scheduler, "last_x0", None)
                for job in live:
                    at = offsets[job]
                    pictures, ready = capture(decoder, latents[at : at + 1], None if x0 is None else x0[at : at + 1])
                    self.threads.frames.submit(step, total, pictures, ready, self._deliver(job, step, total, batch_index))
            return {}

        return on_step_end

    def _deliver(self, job: Job, step: int, total: int, batch_index: int):
        def deliver(frames, image):
            if batch_index == 0:
                job.step_frames.append(frames)
            job.emit(Preview(step, total, image, lambda: frames.live))

        return deliver

    def _warm_up(self) -> None:
        if self.device.type == "cpu" and self.current_model != "tiny":
            return  # minutes on a CPU for a real model; the first job pays instead
        started = time.perf_counter()
        model = self.models.get(self.current_model)
        size = min(model.default_size, 512)
        request = GenerationRequest("warm-up", steps=2, width=size, height=size, seed=0)
        prepared = self._prepare(request, model)
        scheduler = make_scheduler(find_sampler("Euler"), model.scheduler_config)
        pipe = job_pipeline(model.task_pipelines, model.pipe, model.family, Task.TXT2IMG, scheduler, self.dtype)
        clock = _StepClock()

        def time_steps(pipe, i, t, tensors):
            clock.tick(i + 1, request.steps)
            return {}

        pipe(**self._pipeline_arguments(request, prepared, [0]), output_type="pil", callback_on_step_end=time_steps)
        self.seconds_per_step = clock.seconds_per_step  # a first estimate for queue ETAs
        log.info("Warm-up done in %.1f s", time.perf_counter() - started)

    # ---- read-only views for the job service

    def model_hashes(self) -> dict[str, Optional[str]]:
        """Name → A1111 short hash of each model loaded now (ModelCache has no public view of its models yet)."""
        loaded = dict(getattr(self.models, "_loaded", {}))
        return {name: getattr(model, "model_hash", None) for name, model in loaded.items()}


class _StepClock:
    """ETA from the steps done so far in this job, counted from the job's start: the first step's time includes
    prompt encoding, so the first estimate is a little high, and there is one from the first step on."""

    def __init__(self):
        self.start = time.perf_counter()
        self.seconds_per_step: float = 0.0

    def tick(self, step: int, total: int) -> float:
        self.seconds_per_step = (time.perf_counter() - self.start) / max(1, step)
        return self.seconds_per_step * (total - step)
