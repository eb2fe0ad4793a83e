"""The engine: owns the device, keeps pipelines warm, and runs jobs from a fair queue on one worker thread.

Data path: submit(request) → FairQueue → worker → diffusers pipeline with a step callback → previews → job events.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Optional

import torch
from PIL import Image

from . import __version__
from .checkpoints import LoadedModel, ModelCache, ModelError, default_model_name, list_checkpoints
from .config import DEFAULT_MODEL, Settings
from .jobs import Job
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
    task_pipeline,
    make_scheduler,
    quiet_library_logs,
)
from .previews import FrameSink, PreviewDecoder, capture, load_taesd
from .queueing import FairQueue
from .requests import (
    Cancelled,
    Failed,
    Finished,
    GenerationRequest,
    Preview,
    Queued,
    RequestError,
    SavedImage,
    Started,
    Step,
    Task,
)
from .samplers import find_sampler
from .validation import validate

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    pass


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
        self.queue = FairQueue(settings.max_queue_per_user)
        self.frames = FrameSink()
        self.current_model: Optional[str] = None
        self.notice: Optional[str] = None
        self.running: Optional[Job] = None
        self._decoders: dict[str, PreviewDecoder] = {}
        self._worker: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._step_seconds = 0.0  # moving average, for queue ETAs

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
            self.notice = (
                f"The default model {DEFAULT_MODEL} is not available ({exc}). Running on the random-weight 'tiny' "
                f"model, which draws noise. For real images, connect to the internet once (it downloads into the "
                f"Hugging Face cache), or start with --model PATH_TO.safetensors or --models-dir FOLDER."
            )
            log.warning(self.notice)
            self.models.get("tiny")
            self.current_model = "tiny"
        if self.settings.warmup:
            self._warm_up()
        self._worker = threading.Thread(target=self._work, name="engine-worker", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.queue.close()
        if self.running:
            self.running.cancel()
        if self._worker:
            self._worker.join(timeout=30)

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

    def submit(self, request: GenerationRequest, owner: str = "local") -> Job:
        """Queue a request. Raises RequestError (with the user's message) for a bad request or a full queue."""
        validate(request, self.settings)
        job = Job(request, owner)
        self.queue.put(job)
        job.emit(Queued(self.queue.position(job) or 0))
        return job

    def cancel(self, job: Job) -> None:
        job.cancel()
        if self.queue.remove(job):
            job.emit(Cancelled())

    def generate(self, request: GenerationRequest, owner: str = "local"):
        """Submit and wait: the terminal event (Finished, Failed or Cancelled)."""
        return self.submit(request, owner).wait()

    def _work(self) -> None:
        while not self._stop.is_set():
            job = self.queue.get(timeout=0.5)
            if job is None:
                continue
            self._announce_positions()
            if job.cancel_requested.is_set():
                job.emit(Cancelled())
                continue
            self.running = job
            try:
                job.emit(self._run(job))
            except JobCancelled:
                job.emit(Cancelled())
            except torch.cuda.OutOfMemoryError:
                log.warning("%s ran out of GPU memory", job.id)
                job.emit(Failed("Out of GPU memory: try a smaller size or batch, or fewer models kept loaded."))
            except (RequestError, ModelError) as exc:
                job.emit(Failed(str(exc)))
            except Exception as exc:  # one job's failure must not take the worker down
                log.exception("%s failed", job.id)
                job.emit(Failed(f"Generation failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")))
            finally:
                self.running = None
                self.frames.flush()
                if job.status != "finished":
                    free_device_memory(self.device)

    def _announce_positions(self) -> None:
        for job in self.queue.snapshot():
            position = self.queue.position(job)
            if position is not None:
                job.emit(Queued(position))

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
        request = job.request
        model = self.models.get(request.model or self.current_model)
        prepared = self._prepare(request, model)
        sampler = find_sampler(request.sampler_name)
        job.emit(Started(model.name, prepared.seeds, prepared.notes + model.notes))
        decoder = self._decoder(model)
        saved: list[SavedImage] = []
        clock = _StepClock()
        skipped = False
        for batch_index in range(request.batch_count):
            seeds = prepared.seeds[batch_index * request.batch_size : (batch_index + 1) * request.batch_size]
            pipe = task_pipeline(model.pipe, model.family, prepared.task, make_scheduler(sampler, model.scheduler_config), self.dtype)
            callback = self._step_callback(job, decoder, clock, batch_index, request.batch_count)
            images = pipe(**self._pipeline_arguments(request, prepared, seeds), callback_on_step_end=callback).images
            if job.cancel_requested.is_set():
                raise JobCancelled()
            for image, seed in zip(images, seeds):
                if prepared.task is Task.INPAINT:
                    image = paste_unmasked(pipe, prepared.mask, prepared.init_image, image)
                infotext = self._infotext(request, prepared, model, sampler, seed)
                saved.append(SavedImage(str(self.outputs.save_png(image, infotext, seed, owner=job.owner)), seed, infotext))
            if job.skip_requested.is_set():
                skipped = True
                break
        self._step_seconds = clock.seconds_per_step or self._step_seconds
        return Finished(saved, skipped)

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

    def _step_callback(self, job: Job, decoder: Optional[PreviewDecoder], clock: "_StepClock", batch_index: int, batch_count: int):
        every = self.settings.preview_interval()

        def on_step_end(pipe, i, t, tensors):
            if job.cancel_requested.is_set() or job.skip_requested.is_set():
                pipe._interrupt = True  # diffusers' own flag: the remaining steps are skipped
                return {}
            per_batch = pipe.num_timesteps
            step, total = batch_index * per_batch + i + 1, batch_count * per_batch
            job.emit(Step(step, total, clock.tick(step, total)))
            if decoder is not None and ((i + 1) % every == 0 or i + 1 == per_batch):
                latents = tensors["latents"]
                x0 = getattr(pipe.scheduler, "last_x0", None)
                pictures, ready = capture(decoder, latents, x0)

                def deliver(frames, image):
                    if batch_index == 0:
                        job.step_frames.append(frames)
                    job.emit(Preview(step, total, image))

                self.frames.submit(step, total, pictures, ready, deliver)
            return {}

        return on_step_end

    def _warm_up(self) -> None:
        if self.device.type == "cpu" and self.current_model != "tiny":
            return  # minutes on a CPU for a real model; the first job pays instead
        started = time.perf_counter()
        model = self.models.get(self.current_model)
        size = min(model.default_size, 512)
        request = GenerationRequest("warm-up", steps=2, width=size, height=size, seed=0)
        prepared = self._prepare(request, model)
        pipe = task_pipeline(model.pipe, model.family, Task.TXT2IMG, make_scheduler(find_sampler("Euler"), model.scheduler_config), self.dtype)
        pipe(**self._pipeline_arguments(request, prepared, [0]), output_type="pil")
        log.info("Warm-up done in %.1f s", time.perf_counter() - started)


class _StepClock:
    """ETA from the steps done so far in this job."""

    def __init__(self):
        self.first: Optional[float] = None
        self.first_step = 0
        self.seconds_per_step: float = 0.0

    def tick(self, step: int, total: int) -> float:
        now = time.perf_counter()
        if self.first is None:
            self.first, self.first_step = now, step
            return 0.0
        self.seconds_per_step = (now - self.first) / max(1, step - self.first_step)
        return self.seconds_per_step * (total - step)
