"""A job: one request, its owner, its event stream (latest frame wins), its state for polling, and its step frames.
Plain Python: the UI and API read jobs without importing torch."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import OrderedDict, deque
from typing import Iterator, Optional

from .contract import TERMINAL_EVENTS, Cancelled, Failed, Finished, GenerationRequest, Preview, Queued, Started, Step

RECENT_JOBS_PER_OWNER = 20  # finished jobs kept findable (status, frames, stream) per owner
DEFAULT_MAX_FRAMES_BYTES = 512 * 1024 * 1024  # step frames of all stored jobs together (JobStore drops the oldest)


class EventChannel:
    """Events from the worker to one consumer. Step and Preview events are replaced by newer ones while unread,
    so a slow consumer (a far-away browser) costs the sampler nothing and still sees the newest frame."""

    _COALESCED = (Step, Preview, Queued)

    def __init__(self, ignore: tuple = ()):
        self.ignore = ignore  # event types this consumer does not want (never queued, never a wake-up)
        self._cond = threading.Condition()
        self._pending: deque = deque()
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []  # async consumers waiting

    def put(self, event) -> None:
        if isinstance(event, self.ignore):
            return
        with self._cond:
            if isinstance(event, self._COALESCED):
                for old in [e for e in self._pending if type(e) is type(event)]:
                    self._pending.remove(old)
            self._pending.append(event)
            self._cond.notify_all()
            wakers = list(self._wakers)
        for loop, waker in wakers:
            try:
                loop.call_soon_threadsafe(waker.set)
            except RuntimeError:  # that loop has closed: its consumer is gone
                pass

    def get(self, timeout: Optional[float] = None):
        """The next event, or None after `timeout` seconds without one (None: wait for one)."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending, timeout)
            return self._pending.popleft() if self._pending else None

    async def get_async(self, timeout: Optional[float] = None):
        """The next event, or None after `timeout` seconds: for consumers on an event loop (the web side), which
        must not hold a thread per watcher."""
        waker = asyncio.Event()
        entry = (asyncio.get_running_loop(), waker)
        with self._cond:
            if self._pending:
                return self._pending.popleft()
            self._wakers.append(entry)
        try:
            await asyncio.wait_for(waker.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._cond:
                self._wakers.remove(entry)
        with self._cond:
            return self._pending.popleft() if self._pending else None


# The job's state machine, in one place: for each event, the statuses it may arrive in and the status after it
# (None: unchanged). Anything else is refused, e.g. a late preview after the job was cancelled, or a second end.
TRANSITIONS = {
    Queued: ({"queued"}, None),
    Started: ({"queued"}, "running"),
    Step: ({"running"}, None),
    Preview: ({"running"}, None),
    Finished: ({"running"}, "finished"),
    Failed: ({"queued", "running"}, "failed"),
    Cancelled: ({"queued", "running"}, "cancelled"),
}
FINAL_STATUSES = ("finished", "failed", "cancelled")


class Job:
    def __init__(self, request: GenerationRequest, owner: str = "local"):
        self.id = uuid.uuid4().hex  # random: ids say nothing about other users' jobs and cannot be guessed
        self.request = request
        self.owner = owner
        self.created = time.time()
        self._status = "queued"  # queued | running | finished | failed | cancelled: see TRANSITIONS
        self.channel = EventChannel()  # the submitter's: every event from the start
        self._watchers: list[EventChannel] = []  # later subscribers (a browser's live stream)
        self._lock = threading.Lock()  # status, state and channels change together: watch() never misses an event
        self.cancel_requested = threading.Event()
        self.skip_requested = threading.Event()
        self.skip_batch_requested = threading.Event()  # A1111's skip: this batch ends now, the next ones still run
        self.step_frames: list = []  # previews.StepFrames, one per previewed step, for the Step previews tab
        self.inspection = None  # inspection.Inspected, when the request asked to see inside its sampling
        self.depth_map = None  # a depth model's image to image: the depth it kept (PIL, grayscale, white = near)
        self.event_times: dict[str, float] = {}  # event type name → perf_counter() when first emitted (benchmarks)
        self.last_queued: Optional[Queued] = None
        self.last_step: Optional[Step] = None
        self.last_preview: Optional[Preview] = None
        self.started: Optional[Started] = None
        self.result = None  # the terminal event
        self._done = threading.Event()

    @property
    def status(self) -> str:
        return self._status

    # ---- worker side

    def emit(self, event) -> bool:
        """Record and deliver one event if the state machine allows it now; returns whether it did. Safe from
        any thread: of several terminal events, exactly one is delivered."""
        with self._lock:
            after = _status_after(self._status, event)
            if after is False:
                return False
            self.event_times.setdefault(type(event).__name__, time.perf_counter())
            self._record(event)
            if after is not None:
                self._status = after
            for channel in [self.channel, *self._watchers]:
                channel.put(event)
            if self._status in FINAL_STATUSES:
                self._watchers.clear()
                self._done.set()
        return True

    def finish(self, event) -> bool:
        """End the job with a terminal event (Finished, Failed or Cancelled). Returns whether this call ended it:
        False when it had already ended, so callers racing to end it need no `if not job.done` of their own.
        Each caller passes its own event object: that object becoming `result` is how a caller knows it won."""
        if not isinstance(event, TERMINAL_EVENTS):
            raise TypeError(f"{type(event).__name__} does not end a job")
        if self._done.is_set():
            return False
        self.emit(event)  # through emit, which subclasses may wrap (the benchmarks time events there)
        return self.result is event

    def _record(self, event) -> None:
        if isinstance(event, Queued):
            self.last_queued = event
        elif isinstance(event, Step):
            self.last_step = event
        elif isinstance(event, Preview):
            self.last_preview = event
        elif isinstance(event, Started):
            self.started = event
        elif isinstance(event, TERMINAL_EVENTS):
            self.result = event

    # ---- consumer side

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Stop this job: a queued job never starts; a running one stops within one step, its images discarded."""
        self.cancel_requested.set()

    def skip(self) -> None:
        """Finish early (A1111's "skip"): the current image is finished from where it is, the rest not started."""
        self.skip_requested.set()

    def skip_batch(self) -> None:
        """End the batch being sampled now (its images finished from where they are), then go on with the next
        batch of the job (A1111's "skip"; with batch count 1 it is the same as skip())."""
        self.skip_batch_requested.set()

    def stopping_call(self) -> bool:
        """Whether this job wants the pipeline call that runs it to end now (cancel, skip or skip of the batch)."""
        return self.cancel_requested.is_set() or self.skip_requested.is_set() or self.skip_batch_requested.is_set()

    def watch(self, ignore: tuple = ()) -> EventChannel:
        """A new channel of this job's events for another consumer, starting from where the job is now (its
        start, last step and newest preview, or its end), without the event types in `ignore`. Pass it to
        unwatch() when done."""
        channel = EventChannel(ignore)
        with self._lock:
            waiting = self.last_queued if self.started is None and self.result is None else None
            for event in (waiting, self.started, self.last_step, self.last_preview, self.result):
                if event is not None:
                    channel.put(event)
            if self.result is None:
                self._watchers.append(channel)
        return channel

    def unwatch(self, channel: EventChannel) -> None:
        with self._lock:
            if channel in self._watchers:
                self._watchers.remove(channel)

    def events(self, poll: Optional[float] = None) -> Iterator:
        """Every event until the terminal one (inclusive), each waited for, not polled (`poll` is ignored: kept
        for old callers)."""
        while True:
            event = self.channel.get()
            if event is None:
                continue
            yield event
            if isinstance(event, TERMINAL_EVENTS):
                return

    async def events_async(self, channel: Optional[EventChannel] = None, poll: float = 5.0):
        """Every event until the terminal one (inclusive), awaited on the event loop."""
        channel = channel or self.channel
        while True:
            event = await channel.get_async(timeout=poll)
            if event is None:
                continue
            yield event
            if isinstance(event, TERMINAL_EVENTS):
                return

    def wait(self, timeout: Optional[float] = None):
        self._done.wait(timeout)
        return self.result

    def __repr__(self) -> str:
        return f"<Job {self.id[:8]} of {self.owner}: {self.status}>"


def _status_after(status: str, event):
    """The status after `event` arrives in `status`: None for unchanged, False when it may not arrive now."""
    allowed = next((rule for kind, rule in TRANSITIONS.items() if isinstance(event, kind)), None)
    if allowed is None:  # an event the machine does not know: delivered while the job lives, never after
        return False if status in FINAL_STATUSES else None
    arrives_in, after = allowed
    return after if status in arrives_in else False


class JobStore:
    """Each owner's recent jobs by id — queued, running and the last `per_owner` finished ones — for every front
    end: a job is found and listed only by its owner.

    Step frames are bounded too: when the frames of all stored jobs together pass `max_frames_bytes`, the frames of
    the oldest finished jobs are dropped first (never a queued or running job's, never an owner's newest finished
    job's), and such a job says so: `job.frames_dropped` is True (read it with frames_dropped(job)). The budget is
    checked whenever a job is added, and by trim(); frames only grow while a job runs, when none may be dropped."""

    def __init__(self, per_owner: int = RECENT_JOBS_PER_OWNER, max_frames_bytes: Optional[int] = DEFAULT_MAX_FRAMES_BYTES):
        self.per_owner = per_owner
        self.max_frames_bytes = max_frames_bytes  # None: no budget
        self._lock = threading.Lock()
        self._by_owner: dict[str, OrderedDict] = {}  # owner -> job id -> job, oldest first

    def add(self, job: Job) -> None:
        with self._lock:
            jobs = self._by_owner.setdefault(job.owner, OrderedDict())
            jobs[job.id] = job
            finished = [j for j in jobs.values() if j.done]
            for old in finished[: max(0, len(finished) - self.per_owner)]:
                del jobs[old.id]
            while len(jobs) > 4 * self.per_owner + 200:  # a bound even if nothing finishes
                jobs.popitem(last=False)
            self._trim_locked()

    def get(self, owner: str, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._by_owner.get(owner, {}).get(job_id)

    def latest(self, owner: str) -> Optional[Job]:
        """The owner's newest job (by submission), or None."""
        with self._lock:
            jobs = self._by_owner.get(owner)
            return next(reversed(jobs.values())) if jobs else None

    def of(self, owner: str) -> list[Job]:
        """The owner's stored jobs, newest first (by submission)."""
        with self._lock:
            return list(reversed(self._by_owner.get(owner, {}).values()))

    def frames_nbytes(self) -> int:
        """An estimate of the memory the step frames of all stored jobs hold."""
        with self._lock:
            return sum(_frames_nbytes(job) for jobs in self._by_owner.values() for job in jobs.values())

    def trim(self) -> int:
        """Drop the frames of the oldest finished jobs until the frames fit the budget; returns the bytes freed."""
        with self._lock:
            return self._trim_locked()

    def _trim_locked(self) -> int:
        if self.max_frames_bytes is None:
            return 0
        sizes = {job.id: _frames_nbytes(job) for jobs in self._by_owner.values() for job in jobs.values()}
        over = sum(sizes.values()) - self.max_frames_bytes
        if over <= 0:
            return 0
        droppable = []
        for jobs in self._by_owner.values():
            finished = [job for job in jobs.values() if job.done and sizes[job.id]]
            newest = next((job for job in reversed(jobs.values()) if job.done), None)
            droppable.extend(job for job in finished if job is not newest)
        droppable.sort(key=lambda job: job.created)  # oldest first, across owners
        freed = 0
        for job in droppable:
            if freed >= over:
                break
            job.step_frames = []  # a new list: a reader's snapshot of the old one stays whole
            job.inspection = None
            job.depth_map = None
            job.frames_dropped = True
            freed += sizes[job.id]
        return freed


JobRegistry = JobStore  # the old name


def frames_dropped(job) -> bool:
    """Whether the store dropped this job's step frames to stay within its memory budget."""
    return bool(getattr(job, "frames_dropped", False))


def _frames_nbytes(job) -> int:
    inspected = getattr(job, "inspection", None)
    depth = getattr(job, "depth_map", None)
    return (sum(getattr(frame, "nbytes", 0) for frame in list(job.step_frames)) + (inspected.nbytes if inspected else 0)
            + (depth.width * depth.height if depth is not None else 0))
