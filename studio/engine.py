"""The engine: owns the device, keeps pipelines warm, and runs jobs from a fair queue on one worker thread.

Data path: submit(request) → Dispatcher (fair queue, dynamic batching) → worker → Runner (studio/runner.py: the task
registry's inputs and arguments, a diffusers pipeline with the step hooks of studio/hooks.py) → previews → job
events. EngineThreads starts and stops the threads all this runs on.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Optional

import torch

from .access import match_offered, offered_models, refusal
from .checkpoints import DEMO, ModelCache, ModelError, default_model_name, demo_available, list_checkpoints, peek_kind, resolve_model
from .config import DEFAULT_MODEL, PREVIEW_MODES, Settings
from .demo.scenes import EXAMPLE_PROMPTS
from .contract import Cancelled, Failed, GenerationRequest, RequestError
from .conditioning import PromptLibrary, encoder_dims
from .extras import ExtrasGate
from .families import ModelKind
from .interrogate import Captioner
from .faces import CODEFORMER, GFPGAN, FaceRestorers
from .upscalers import UpscalerLibrary
from .dispatch import BatchPolicy, Dispatcher
from .jobs import Job, JobRegistry
from .outputs import OutputStore
from .pipelines import AttentionChoice, choose_attention, free_device_memory, quiet_library_logs, resolve_device, resolve_dtype
from .previews import PreviewService
from .results import ResultWriter
from .runner import Runner
from .tasks import refuse_unless_runs
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
    notice: Optional[str]  # e.g. "started on demo because ..."
    default_size: Optional[int] = None  # the loaded model's width and height when a request leaves them out


class EngineThreads:
    """The engine's threads, owned in one place so that stop() leaves none behind: the worker (torch runs on it
    only), the preview service's frame thread, and the result writer's saver (a job's PNGs, then its event)."""

    def __init__(self, previews: PreviewService, results: ResultWriter):
        self.previews = previews
        self.results = results
        self._worker: Optional[threading.Thread] = None

    def start(self, work) -> None:
        """Start the frame thread, then the worker running work()."""
        self.previews.start()
        self._worker = threading.Thread(target=work, name="engine-worker", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 30) -> None:
        """Join in the order work flows: the worker (it still queues frames and saves), then frames, then the
        saver, so images already made are written before the engine stops."""
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=timeout)
        self.previews.stop(timeout)
        self.results.stop()


class Engine:
    def __init__(self, settings: Settings, outputs: OutputStore, taesd_loader=None):
        """taesd_loader: family → AutoencoderTiny for taesd previews (default: load_taesd from the hub cache); the
        benchmark passes random-weight ones."""
        quiet_library_logs()
        self.settings = settings
        self.outputs = outputs
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.attention: AttentionChoice = choose_attention(settings.attention, self.device, self.dtype)
        log.info("Device %s, dtype %s, attention %s (%s)", self.device, self.dtype, self.attention.backend, self.attention.reason)
        self.models = ModelCache(settings, self.device, self.dtype, self.attention)
        self.prompt_library = PromptLibrary.from_settings(settings, hashes=self.models.hashes)  # styles, LoRAs, embeddings, VAEs
        folders = [settings.upscaler_dir, settings.upscaler_dir.parent / "RealESRGAN"] if settings.upscaler_dir else None
        self.upscalers = UpscalerLibrary(folders, allow_pickle=settings.allow_pickle)  # hires fix, Extras (A1111's two folders)
        self.faces = FaceRestorers({GFPGAN: settings.gfpgan_dir, CODEFORMER: settings.codeformer_dir}, settings.allow_pickle)
        self.extras_gate = ExtrasGate()  # one Extras job (upscale, caption) at a time on this engine's device
        self.captioner = Captioner(settings.caption_model, self.device, self.dtype)  # interrogate; loads on first use
        self.dispatcher = Dispatcher(settings.max_queue_per_user, self._batch_policy)
        self.jobs = JobRegistry(max_frames_bytes=settings.max_frames_mb * 1024 * 1024)  # each owner's recent jobs, found by id
        self.threads = EngineThreads(
            PreviewService(self.device, self.dtype, taesd_loader),
            ResultWriter(outputs, on_finished=lambda job: self.jobs.trim()),  # a finished job's frames count against the budget
        )
        self.current_model: Optional[str] = None
        self.notice: Optional[str] = None
        self.running_jobs: list[Job] = []  # several when jobs of different users share one batch
        self.runner = Runner(self)  # prepares and runs each group on the device
        self.seconds_per_step = 0.0  # of the last job that ran: queue ETAs use it

    # ---- life cycle

    def start(self) -> "Engine":
        """Load the first model (the default falls back to `demo`, or `tiny` without it, when it cannot be had), warm up,
        start the worker."""
        wanted = default_model_name(self.settings)
        try:
            self.models.get(wanted)
            self.current_model = self.models.loaded_names()[-1]
        except ModelError as exc:
            if self.settings.model is not None:
                raise
            log.warning("The default model is not available: %s", exc)
            fallback = DEMO if demo_available() else "tiny"
            drawn = (f"the small built-in '{DEMO}' model, which draws simple coloured shapes — try "
                     f"“{EXAMPLE_PROMPTS[0]}”" if fallback == DEMO else "the random-weight 'tiny' model, which draws noise")
            self.notice = (  # shown to every user: the public words only
                f"The default model {DEFAULT_MODEL} is not available ({exc.public_message.rstrip('.')}). Running on {drawn}. "
                f"For real images, connect to the internet once (it downloads into the Hugging Face cache), or start "
                f"with --model PATH_TO.safetensors or --models-dir FOLDER."
            )
            log.warning(self.notice)
            self.models.get(fallback)
            self.current_model = fallback
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
                self.runner.warm_up()
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
        self.models.stop()  # a fast-mode compile in progress is waited for, queued ones dropped

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
            default_size=next((m.default_size for m in self.models.loaded_models() if m.name == self.current_model), None),
        )

    def model_kind(self, name: str) -> Optional[ModelKind]:
        """What model `name` does: the loaded model's kind, else as its files tell without loading it (None when
        they do not: a hub model, a pickle)."""
        loaded = {model.name: model for model in self.models.loaded_models()}.get(name)
        if loaded is not None:
            return loaded.kind
        try:
            return peek_kind(resolve_model(name, self.settings))
        except ModelError:
            return None

    def available_models(self) -> list[str]:
        names = [source.name for source in list_checkpoints(self.settings.models_dir)]
        if demo_available() and DEMO not in names:
            names.append(DEMO)  # shipped with the studio: always offered
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
        if request.enable_hr:
            self.upscalers.check(request.hr_upscaler)  # an unknown upscaler: refused now, not after the first pass
        if request.restore_faces:  # refused now when no restorer is installed; the job records which one it used
            request = replace(request, face_restorer=self.faces.choose(request.face_restorer))
        request = self._checked_model(request, may_name_any_model)
        name = request.model or self.current_model
        kind = self.model_kind(name)
        if kind is not None:  # a task its model cannot run is refused now (else when the model is loaded for the job)
            refuse_unless_runs(kind, name, request)
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
            results = self.runner.run_group(group)
            self.threads.previews.flush()  # every preview reaches its job before the job's final images
            for member, (images, skipped) in results.items():
                # Saving (PNG encoding, fsync) happens on the saver thread while the next job samples.
                self.threads.results.write(member, images, skipped)
            failed = False
        except torch.cuda.OutOfMemoryError:
            log.warning("%s ran out of GPU memory", ", ".join(j.id for j in group))
            self._fail(group, "Out of GPU memory: try a smaller size or batch, or fewer models kept loaded.")
        except RequestError as exc:
            self._fail(group, str(exc), bad_request=True)
        except ModelError as exc:  # the detail (paths, the library's words) is for the operator's log only
            log.warning("%s: %s", ", ".join(j.id for j in group), exc)
            self._fail(group, exc.public_message)
        except Exception:  # one job's failure must not take the worker down
            log.exception("%s failed", ", ".join(j.id for j in group))
            self._fail(group, "Generation failed because of an error on the server (it is in the server's log); "
                              "try again, and tell the operator if it happens again.")
        finally:
            self.running_jobs = []
            self.threads.previews.flush()
            if failed or any(j.cancel_requested.is_set() for j in group):
                free_device_memory(self.device)

    @property
    def running(self) -> Optional[Job]:
        """The job running now (the first of a dynamic batch), or None."""
        jobs = self.running_jobs
        return jobs[0] if jobs else None

    def _fail(self, jobs: list[Job], message: str, bad_request: bool = False) -> None:
        for job in jobs:
            job.finish(Cancelled() if job.cancel_requested.is_set() else Failed(message, bad_request))

    def _batch_policy(self) -> BatchPolicy:
        """Dynamic batching as the settings say now: compatible txt2img jobs of different users share one UNet
        batch; a request without a model runs on the current one."""
        settings = self.settings
        return BatchPolicy(settings.dynamic_batching, settings.max_batch, settings.batch_wait_ms / 1000, self.current_model,
                           settings=settings)

    # ---- settings an admin may change while the engine runs

    LIVE_SETTINGS = ("preview", "preview_every", "dynamic_batching")

    def configure(self, **changes) -> Settings:
        """Replace live settings (LIVE_SETTINGS) for the jobs that start from now on; the others need a restart.
        Raises RequestError for an unknown name or a bad value. Returns the settings now in force."""
        unknown = sorted(set(changes) - set(self.LIVE_SETTINGS))
        if unknown:
            raise RequestError(f"These settings cannot change while the studio runs: {', '.join(unknown)}.")
        if "preview" in changes and changes["preview"] not in PREVIEW_MODES:
            raise RequestError(f"preview must be one of {', '.join(PREVIEW_MODES)}.")
        every = changes.get("preview_every")
        if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
            raise RequestError("preview_every must be a whole number of steps, 1 or more (or None: every step).")
        if "dynamic_batching" in changes and not isinstance(changes["dynamic_batching"], bool):
            raise RequestError("dynamic_batching must be true or false.")
        # One assignment: the worker reads self.settings once per group, so a group never sees half a change.
        self.settings = replace(self.settings, **changes)
        return self.settings

    # ---- read-only views for the job service

    def embeddings_listing(self) -> dict:
        """The embeddings folder split into those that fit the current model and those that do not."""
        model = next((m for m in self.models.loaded_models() if m.name == self.current_model), None)
        dims = encoder_dims(model.pipe) if model is not None and model.pipe is not None else ()
        return self.prompt_library.embeddings.listing(dims)

    def model_hashes(self) -> dict[str, Optional[str]]:
        """Name → A1111 short hash of each model loaded now (a snapshot; safe from any thread)."""
        return self.models.loaded_hashes()

