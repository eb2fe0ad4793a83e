"""What the HTTP side keeps per server: the users, each user's settings (their model) and recent jobs.

No torch: the engine is reached only through its public methods and Job objects."""

from __future__ import annotations

import threading
from typing import Optional

from ..access import Access, ModelRefused
from .auth import Users
from ..history import History
from ..jobs import Job

ModelChoiceError = ModelRefused  # the routes' old name for a refused model choice


class OperatorOnly(PermissionError):
    pass


class ServerState:
    def __init__(self, engine, users: Optional[Users], access: Optional[Access] = None):
        self.engine = engine
        self.users = users
        self.access = access or Access(engine, users)  # the one rule on admins and models, shared with the UI
        self.history = History(engine.outputs)
        self._lock = threading.Lock()
        self._models: dict[str, str] = {}  # user -> chosen model (absent: the engine's current model)
        self.server_options: dict = {}  # set by admins through POST /sdapi/v1/options

    # ---- who may do what

    def is_admin(self, user: str, client_host: Optional[str]) -> bool:
        return self.access.is_admin(user, client_host)

    def submit(self, request, user: str, client_host: Optional[str]) -> Job:
        """Queue a request for this caller under Access's model rule. Raises RequestError."""
        return self.access.submit(request, user, client_host)

    # ---- per-user model

    def model_for(self, user: str) -> str:
        with self._lock:
            chosen = self._models.get(user)
        return chosen or self.engine.info().model

    def resolve_model_choice(self, name: str, admin: bool) -> str:
        """A model name a user may run (Access.resolve_model). Raises ModelChoiceError (a RequestError)."""
        return self.access.resolve_model(name, admin)

    def set_model(self, user: str, model: str) -> None:
        with self._lock:
            self._models[user] = model

    # ---- jobs

    def active_jobs(self, user: str) -> list[Job]:
        """The user's running job (if any) then their queued jobs, UI and API alike."""
        jobs = []
        jobs.extend(job for job in self.engine.running_jobs if job.owner == user and not job.done)
        jobs.extend(job for job in self.engine.queue.snapshot() if job.owner == user)
        return jobs

    def job(self, user: str, job_id: str) -> Optional[Job]:
        """The user's job with this id, or None (also when it is someone else's)."""
        job = self.engine.jobs.get(user, job_id)
        return job if job is not None and job.owner == user else None

    def current_job(self, user: str) -> Optional[Job]:
        active = self.active_jobs(user)
        if active:
            return active[0]
        return self.engine.jobs.latest(user)

    def position(self, job: Job) -> Optional[int]:
        return self.engine.queue.position(job)

    def eta_seconds(self, job: Job) -> float:
        """Seconds until `job` finishes: the running job's remaining steps plus the queued jobs ahead, at the
        engine's recent seconds per step."""
        per_step = self.engine.seconds_per_step
        if job.done:
            return 0.0
        if job.status == "running":
            return job.last_step.eta_seconds if job.last_step else per_step * _steps(job)
        position = self.position(job) or 0
        running = self.engine.running
        left = 0.0
        if running is not None and not running.done:
            step = running.last_step
            left = step.eta_seconds if step else per_step * _steps(running)
        queued = self.engine.queue.snapshot()
        mean = sum(_steps(j) for j in queued) / len(queued) if queued else _steps(job)
        return left + per_step * (position * mean + _steps(job))


def _steps(job: Job) -> int:
    r = job.request
    try:
        return int(r.steps) * int(r.batch_count)
    except (TypeError, ValueError):
        return 0
