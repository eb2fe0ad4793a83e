"""The dispatcher: which job runs next, which others share its batch, and when each waiting job should be done.

Plain Python (no torch, no device): the engine's worker asks it for the next group of jobs, front ends ask it for
positions and ETAs, and it is tested on its own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from .config import Settings
from .contract import Cancelled, GenerationRequest, QueueFullError, Queued
from .jobs import Job
from .prompts.syntax import extract_network_tags
from .tasks import batchable
from .validation import job_preview


class FairQueue:
    """Round-robin between owners, so one user's long batch does not lock out the others."""

    def __init__(self, max_per_owner: int = 0):
        self.max_per_owner = max_per_owner
        self._cond = threading.Condition()
        self._by_owner: OrderedDict[str, deque] = OrderedDict()  # rotation order: next owner to serve first
        self._closed = False

    def put(self, job: Job) -> None:
        with self._cond:
            jobs = self._by_owner.setdefault(job.owner, deque())
            if self.max_per_owner and len(jobs) >= self.max_per_owner:
                if not jobs:
                    del self._by_owner[job.owner]
                raise QueueFullError(
                    f"You already have {len(jobs)} jobs waiting (the limit is {self.max_per_owner}); "
                    "wait for one to finish or cancel one."
                )
            jobs.append(job)
            self._cond.notify_all()

    def get(self, timeout: Optional[float] = None) -> Optional[Job]:
        """The next job in round-robin order; None after `timeout`, or once closed (its consumer is going away)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._by_owner or self._closed, timeout) or self._closed:
                return None
            owner, jobs = next(iter(self._by_owner.items()))
            job = jobs.popleft()
            self._rotate(owner, jobs)
            return job

    def take_matching(self, matches: Callable[[Job], bool], exclude_owners: set, limit: int) -> list[Job]:
        """Pop up to `limit` jobs for which matches(job) holds, each the next job of an owner not in
        `exclude_owners` (dynamic batching: jobs of other users that can share one UNet batch). Owners are
        visited in rotation order, and one served this way goes to the back of the rotation, as with get()."""
        taken: list[Job] = []
        with self._cond:
            for owner, jobs in list(self._by_owner.items()):
                if len(taken) >= limit:
                    break
                if owner in exclude_owners or not matches(jobs[0]):
                    continue
                taken.append(jobs.popleft())
                exclude_owners = exclude_owners | {owner}
                self._rotate(owner, jobs)
        return taken

    def _rotate(self, owner: str, jobs: deque) -> None:
        del self._by_owner[owner]
        if jobs:
            self._by_owner[owner] = jobs  # back of the rotation

    def wait_for_put(self, timeout: float) -> None:
        """Sleep until a job is queued, the queue closes, or `timeout` passes."""
        with self._cond:
            if not self._closed:
                self._cond.wait(timeout)

    def remove(self, job: Job) -> bool:
        with self._cond:
            jobs = self._by_owner.get(job.owner)
            if not jobs or job not in jobs:
                return False
            jobs.remove(job)
            if not jobs:
                del self._by_owner[job.owner]
            return True

    def position(self, job: Job) -> Optional[int]:
        """How many jobs will start before this one, in the current rotation (None if not queued)."""
        with self._cond:
            jobs = self._by_owner.get(job.owner)
            if not jobs or job not in jobs:
                return None
            mine = list(jobs).index(job)
            my_turn = list(self._by_owner).index(job.owner)
            # Each full round serves one job per owner; owners before ours in the rotation get one more.
            return sum(min(len(queued), mine + (index < my_turn)) for index, queued in enumerate(self._by_owner.values()))

    def snapshot(self) -> list[Job]:
        with self._cond:
            return [job for jobs in self._by_owner.values() for job in jobs]

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass(frozen=True)
class BatchPolicy:
    """Which queued jobs may share one UNet batch (dynamic batching). Read anew for every group, because the
    settings it comes from may be replaced while the engine runs (the batching benchmark does)."""

    enabled: bool = False
    max_batch: int = 1
    wait_seconds: float = 0.0  # how long a job waits for companions (0: only those already queued)
    default_model: Optional[str] = None  # the model a request without one runs on
    settings: Optional[Settings] = None  # the server's, for each job's live preview mode and interval

    def key(self, request: GenerationRequest):
        """Requests with equal keys can run as one pipeline call; None: this one runs alone."""
        if not batchable(request):  # the task registry's rule (studio/tasks.py)
            return None
        model = request.model or self.default_model
        return (model, request.width, request.height, request.steps, request.sampler_name, request.scheduler,
                float(request.cfg_scale), prompt_setup(request), self.previews(request))

    def previews(self, request: GenerationRequest) -> tuple:
        """The live previews a job gets (the runner makes them for a whole call): its effective mode and interval;
        without the server's settings, what the request asks (None: the server's), which can only split more."""
        if self.settings is None:
            return request.preview, request.preview_every
        return job_preview(request, self.settings)


def prompt_setup(request: GenerationRequest) -> tuple:
    """What jobs sharing one call must agree on beyond the sampling settings: the LoRAs written in the prompt (they
    change the model for the whole call), styles (they may add LoRAs), CLIP skip and the VAE."""
    _text, tags, _warnings = extract_network_tags(request.prompt)
    loras = tuple(sorted((tag.name, tag.te_multiplier, tag.unet_multiplier) for tag in tags))
    vae = (request.vae or "").strip().lower() or "automatic"
    return (loras, tuple(request.styles), request.clip_skip, vae)


class Dispatcher:
    """The fair queue plus the decisions made on it: the next group to run, and positions and ETAs."""

    def __init__(self, max_per_owner: int = 0, policy: Callable[[], BatchPolicy] = BatchPolicy):
        self._queue = FairQueue(max_per_owner)
        self._policy = policy

    # ---- the queue, as front ends see it

    @property
    def max_per_owner(self) -> int:
        return self._queue.max_per_owner

    @max_per_owner.setter
    def max_per_owner(self, value: int) -> None:
        self._queue.max_per_owner = value

    def put(self, job: Job) -> None:
        """Queue a job and tell it its place. Raises QueueFullError at the owner's cap."""
        self._queue.put(job)
        job.emit(Queued(self._queue.position(job) or 0))

    def cancel(self, job: Job) -> None:
        """Ask the job to stop; a queued one leaves the queue and ends now, a running one at its next step."""
        job.cancel()
        if self._queue.remove(job):
            job.finish(Cancelled())

    def remove(self, job: Job) -> bool:
        return self._queue.remove(job)

    def position(self, job: Job) -> Optional[int]:
        return self._queue.position(job)

    def snapshot(self) -> list[Job]:
        return self._queue.snapshot()

    def close(self) -> None:
        """Hand out nothing more: a waiting next_group() returns None."""
        self._queue.close()

    @property
    def closed(self) -> bool:
        return self._queue.closed

    # ---- the worker's side

    def next_group(self, timeout: Optional[float] = None) -> Optional[list[Job]]:
        """Wait for a job, then take it and the queued jobs that can share its batch. Jobs cancelled meanwhile
        end here, never started, so the list may be empty. None once closed (or after `timeout`)."""
        job = self._queue.get(timeout)
        if job is None:
            return None
        group = [job] + self.companions(job, self._policy())
        self.announce_positions()
        for member in [j for j in group if j.cancel_requested.is_set()]:
            member.finish(Cancelled())
            group.remove(member)
        return group

    def companions(self, job: Job, policy: BatchPolicy) -> list[Job]:
        """Queued jobs of other owners that can run in one batch with `job`: the same key, room left in
        max_batch, one job per owner, taken in rotation order; waits up to policy.wait_seconds for more."""
        key = policy.key(job.request)
        if not policy.enabled or key is None:
            return []
        room = policy.max_batch - job.request.batch_size

        def fits(other: Job) -> bool:
            nonlocal room
            if policy.key(other.request) != key or other.request.batch_size > room or other.cancel_requested.is_set():
                return False
            room -= other.request.batch_size
            return True

        owners = {job.owner}
        taken = self._queue.take_matching(fits, owners, policy.max_batch)
        deadline = time.monotonic() + policy.wait_seconds
        while room > 0 and time.monotonic() < deadline and not self._queue.closed:
            self._queue.wait_for_put(max(0.0, deadline - time.monotonic()))
            taken += self._queue.take_matching(fits, owners | {j.owner for j in taken}, policy.max_batch)
        return taken

    def announce_positions(self) -> None:
        """Every waiting job's new place, after the queue moved."""
        for job in self._queue.snapshot():
            position = self._queue.position(job)
            if position is not None:
                job.emit(Queued(position))

    # ---- how long

    def eta_seconds(self, job: Job, seconds_per_step: float, running_jobs: Sequence[Job]) -> float:
        """Seconds until `job` finishes: the running job's remaining steps plus the queued jobs ahead (at the
        mean length of those waiting), at `seconds_per_step`."""
        if job.done:
            return 0.0
        if job.status == "running":
            return job.last_step.eta_seconds if job.last_step else seconds_per_step * steps_of(job)
        position = self.position(job) or 0
        running = running_jobs[0] if running_jobs else None
        left = 0.0
        if running is not None and not running.done:
            step = running.last_step
            left = step.eta_seconds if step else seconds_per_step * steps_of(running)
        queued = self.snapshot()
        mean = sum(steps_of(j) for j in queued) / len(queued) if queued else steps_of(job)
        return left + seconds_per_step * (position * mean + steps_of(job))


def steps_of(job: Job) -> int:
    """The sampling steps a job runs, all its batches together (0 for a malformed request)."""
    request = job.request
    try:
        return int(request.steps) * int(request.batch_count)
    except (TypeError, ValueError):
        return 0
