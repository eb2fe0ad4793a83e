"""The job service: the one interface every front end (the UI, the HTTP APIs, the CLI, the benchmarks) uses for
jobs — submit, cancel, skip, find and list a user's jobs, their queue position and ETA — and for what the engine
offers (its info, the model list, model hashes, where results are). Plain Python: no torch, no web framework.

Why one place: every front end then applies the same rules (Access's model rule, a job is found and touched only by
its owner), and none depends on how the engine keeps its queue, its running jobs or its models."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from .access import Access, match_offered
from .contract import GenerationRequest, RequestError
from .history import safe_output_file
from .jobs import Job
from .tasks import abilities
from .links import result_relative, result_url


class OperatorLogins:
    """The operator at their own shell (the CLI, the benchmarks): every caller is an admin, so any model — a path,
    a hub id — may be named, as the operator could load it anyway."""

    def is_admin(self, user: str) -> bool:
        return True


class JobService:
    """Jobs and engine facts for front ends, each call on behalf of one user. engine: a started
    studio.engine.Engine (only its public names are used); access: the server's model rule."""

    def __init__(self, engine, access: Access):
        self.engine = engine
        self.access = access

    @classmethod
    def for_operator(cls, engine) -> "JobService":
        """For the CLI and the benchmarks: the operator may name any model."""
        return cls(engine, Access(engine, OperatorLogins()))

    # ---- who may do what (Access's rule, so front ends need only the service)

    def is_admin(self, user: str, client_host: Optional[str] = None) -> bool:
        return self.access.is_admin(user, client_host)

    def resolve_model(self, wanted: str, admin: bool) -> str:
        """The model `wanted` names for this caller (Access.resolve_model). Raises ModelRefused."""
        return self.access.resolve_model(wanted, admin)

    def model_for_request(self, user: str, client_host: Optional[str], wanted: Optional[str]) -> Optional[str]:
        """What a request's model should be for this caller (Access.model_for_request). Raises ModelRefused."""
        return self.access.model_for_request(user, client_host, wanted)

    # ---- jobs

    def submit(self, request: GenerationRequest, user: str, client_host: Optional[str] = None) -> Job:
        """Queue a request for `user` under the model rule. Raises RequestError (ModelRefused, QueueFullError, ...)."""
        return self.access.submit(request, user, client_host)

    def generate(self, request: GenerationRequest, user: str, client_host: Optional[str] = None):
        """Submit and wait: the terminal event (Finished, Failed or Cancelled). For callers without a UI."""
        return self.submit(request, user, client_host).wait()

    def job(self, user: str, job_id: str) -> Optional[Job]:
        """The user's job with this id, or None (also when it is someone else's)."""
        job = self.engine.jobs.get(user, job_id)
        return job if job is not None and job.owner == user else None

    def cancel(self, user: str, job: Union[Job, str, None]) -> Optional[Job]:
        """Cancel the user's job (the Job or its id): a queued job never starts, a running one stops within a step.
        Someone else's job (or None) is left alone. Returns the job cancelled, or None."""
        own = self._own(user, job)
        if own is not None:
            self.engine.cancel(own)
        return own

    def skip(self, user: str, job: Union[Job, str, None]) -> Optional[Job]:
        """Finish the user's job early (A1111's skip). Someone else's job is left alone. Returns it, or None."""
        own = self._own(user, job)
        if own is not None:
            own.skip()
        return own

    def skip_batch(self, user: str, job: Union[Job, str, None]) -> Optional[Job]:
        """End the user's current batch early and go on with the next (A1111's /sdapi/v1/skip). Returns the job, or
        None when it is not theirs."""
        own = self._own(user, job)
        if own is not None:
            own.skip_batch()
        return own

    def active_jobs(self, user: str) -> list[Job]:
        """The user's running job (if any) then their queued jobs, in queue order, UI and API alike."""
        jobs = [job for job in self.engine.running_jobs if job.owner == user and not job.done]
        jobs.extend(job for job in self.engine.queue.snapshot() if job.owner == user)
        return jobs

    def jobs(self, user: str) -> list[Job]:
        """The user's active jobs (running, then queued in queue order), then the others the engine's job store
        still keeps, newest first: each is found by job()."""
        active = self.active_jobs(user)
        return active + [job for job in self.engine.jobs.of(user) if job not in active]

    def current_job(self, user: str) -> Optional[Job]:
        """What a progress poll reports: the user's first active job, else their latest."""
        active = self.active_jobs(user)
        if active:
            return active[0]
        return self.engine.jobs.latest(user)  # the newest of the store's of(user)

    def position(self, job: Job) -> Optional[int]:
        """How many jobs start before this one (None when it is not queued)."""
        return self.engine.queue.position(job)

    def eta_seconds(self, job: Job) -> float:
        """Seconds until `job` finishes (the dispatcher's estimate at the engine's recent seconds per step)."""
        return self.engine.dispatcher.eta_seconds(job, self.engine.seconds_per_step, self.engine.running_jobs)

    # ---- the engine's settings

    def configure(self, user: str, client_host: Optional[str] = None, **changes):
        """An admin changes live settings (previews, dynamic batching: Engine.LIVE_SETTINGS) for the jobs that start
        from now on. Raises RequestError for anyone else, an unknown name or a bad value. Returns the settings."""
        if not self.is_admin(user, client_host):
            raise RequestError("Only an admin can change the studio's settings.")
        return self.engine.configure(**changes)

    # ---- the engine, read only

    def info(self):
        """studio.engine.EngineInfo: the model, device, dtype, attention, previews and any notice."""
        return self.engine.info()

    @property
    def settings(self):
        """The engine's settings (limits, previews): read each time, as configure() may replace them."""
        return self.engine.settings

    def models(self) -> list[str]:
        """The models users may pick: the operator's list and the engine's default model (even once unloaded)."""
        return self.access.offered_models()

    def available_models(self) -> list[str]:
        """The models found in the models folder and those loaded now (A1111's checkpoint list)."""
        return self.engine.available_models()

    def model_hashes(self) -> dict[str, Optional[str]]:
        """Model name → A1111 short hash, for the models loaded now (others have not been hashed)."""
        return self.engine.model_hashes()

    # ---- what prompts may use (the operator's folders; names only, never server paths)

    def loras(self) -> list[dict]:
        """A1111's /sdapi/v1/loras entries: name, alias, path (the name: server paths stay private), metadata."""
        return self.engine.prompt_library.loras.listing()

    def refresh_loras(self) -> None:
        self.engine.prompt_library.loras.refresh()

    def lora_preview(self, name: str):
        """(bytes, media type) of the preview picture beside the LoRA file called `name`, or None."""
        return self.engine.prompt_library.loras.preview_picture(name)

    def upscalers(self) -> list[dict]:
        """A1111's /sdapi/v1/upscalers entries (names; never server paths)."""
        return self.engine.upscalers.listing()

    def hires_upscalers(self) -> list[str]:
        """The names hires fix takes, as A1111's menu lists them: the latent modes, then None, Lanczos, Nearest and
        the installed models."""
        from .upscalers import LATENT_NAMES

        return list(LATENT_NAMES) + self.engine.upscalers.names()

    def face_restorers(self) -> list[dict]:  # A1111's /sdapi/v1/face-restorers: the installed ones, names only
        return self.engine.faces.listing()

    def realesrgan_models(self) -> list[dict]:
        return self.engine.upscalers.realesrgan_listing()

    def embeddings(self) -> dict:
        """A1111's /sdapi/v1/embeddings: those that fit the current model ("loaded") and the others ("skipped")."""
        return self.engine.embeddings_listing()

    def refresh_embeddings(self) -> None:
        self.engine.prompt_library.embeddings.refresh()

    def styles(self) -> list:
        """The styles file's styles (prompts.styles.Style: name, prompt, negative_prompt)."""
        library = self.engine.prompt_library.styles
        return library.styles() if library is not None else []

    def vaes(self) -> list[dict]:
        """A1111's /sdapi/v1/sd-vae entries: model_name, filename (both the file's name in the VAE folder)."""
        return self.engine.prompt_library.vaes.listing()

    # ---- Extras and interrogate (studio/extras.py): on the caller's thread, one Extras job at a time in the process

    def extras(self, user: str, request) -> tuple:
        """A1111's Extras on one picture (a studio.extras.ExtrasRequest, its image a PIL image): (the picture, the info
        text). Checked before any work; then it waits for the one Extras slot (Engine.extras_gate) and runs here with
        the engine's upscalers, device and dtype. Raises RequestError; ExtrasBusyError when the slot stays taken."""
        return self.extras_batch(user, [request])[0]

    def extras_batch(self, user: str, requests) -> list:
        """extras() for each request (at most studio.extras.MAX_BATCH_IMAGES), all checked before any work and run
        under one hold of the slot: a list of (picture, info text)."""
        from .extras import check_batch, run_plan

        engine = self.engine
        plans = check_batch(engine.upscalers, list(requests), engine.settings, engine.faces)
        with self.engine.extras_gate.hold():
            return [run_plan(engine.upscalers, plan, engine.device, engine.dtype, engine.faces) for plan in plans]

    def interrogate(self, user: str, image=None, model: str = "clip") -> str:
        """A1111's interrogate: a caption for the picture (a PIL image) from the BLIP captioning model (studio/
        interrogate.py) on the engine's device, under the one Extras slot. Raises RequestError when no captioning model
        can be had (always for "deepdanbooru"); ExtrasBusyError when the slot stays taken."""
        from .extras import interrogate

        engine = self.engine
        if model != "clip" or image is None:  # refused at once, without waiting for the slot
            return interrogate(image, model)
        with engine.extras_gate.hold():
            return interrogate(image, model, engine.settings, engine.device, engine.dtype, engine.captioner)

    # ---- scripts (A1111's script_name / script_args: studio/scripts)

    def plan_script(self, name: str, request: GenerationRequest, script_args, user: str,
                    client_host: Optional[str] = None, img2img: bool = False):
        """Check a script call and expand it into its generations (studio.scripts.Plan), all checked and the image
        count capped before anything runs. Raises RequestError (an unknown script names the known ones)."""
        from .scripts import plan_script

        return plan_script(self, name, request, script_args, user, client_host, img2img)

    def run_script(self, plan, user: str, client_host: Optional[str] = None, stop=None, on_job=None):
        """Run a plan's generations as `user`'s jobs through the fair queue (a few at a time), then its grids, saved
        in the user's outputs. Returns studio.scripts.ScriptResult; raises ScriptStopped once `stop` (a
        threading.Event) is set — every job of the script is then cancelled — and QueueFullError. on_job(job), if
        given, is told of each job as it is queued, in the plan's order (a front end's "Cell 3/9", previews, Cancel)."""
        from .scripts import run_plan

        return run_plan(self, plan, user, client_host, stop, on_job)

    def discard_results(self, user: str, paths: list[str]) -> int:
        """Delete pictures of `user`'s that a script only used as parts (SD upscale's tiles); others are left alone."""
        return sum(self.engine.outputs.discard(path, owner=user) for path in paths)

    def upscale_image(self, image, scale: float, upscaler: str):
        """`image` upscaled by `scale` with the named picture upscaler (SD upscale), on the engine's device."""
        return self.engine.upscalers.upscale(image, scale=scale, name=upscaler, device=self.engine.device,
                                             dtype=self.engine.dtype)

    # ---- results

    @property
    def outputs(self):
        """The studio's OutputStore (history and file routes read users' folders through it)."""
        return self.engine.outputs

    def result_url(self, user: str, path: str) -> str:
        """The /studio/files URL of one of the user's saved PNGs."""
        return result_url(self.outputs, user, path)

    def result_relative(self, user: str, path: str) -> str:
        """A saved PNG's "<day>/<file>.png", as /studio/files takes it."""
        return result_relative(self.outputs, user, path)

    def output_file(self, user: str, relative: str) -> Optional[Path]:
        """The user's own saved PNG named by "<day>/<file>.png", or None (never another user's, never a link)."""
        return safe_output_file(self.outputs, user, relative)

    def _own(self, user: str, job: Union[Job, str, None]) -> Optional[Job]:
        if isinstance(job, str):
            return self.job(user, job)
        return job if job is not None and job.owner == user else None


def model_about(service: JobService, name: Optional[str] = None) -> str:
    """One line on what model `name` (None: the running one) does — "tiny-depth is a depth-to-image model: it runs
    Image to image only" — or "" when its files do not say before it is loaded. Only a name this user may pick is
    looked up: what a client sends is never taken for a path."""
    wanted = name or service.info().model
    name = match_offered(wanted, service.models()) if isinstance(wanted, str) else None
    kind = service.engine.model_kind(name) if name else None
    return f"{name} is {kind.label}: {abilities(kind)}." if kind is not None else ""
