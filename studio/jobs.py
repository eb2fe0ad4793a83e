"""A job: one request, its owner, its event stream (latest frame wins), its state for polling, and its step frames.
Plain Python: the UI and API read jobs without importing torch."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Iterator, Optional

from .requests import TERMINAL_EVENTS, Cancelled, Finished, GenerationRequest, Preview, Queued, Started, Step

_ids = itertools.count(1)


class EventChannel:
    """Events from the worker to one consumer. Step and Preview events are replaced by newer ones while unread,
    so a slow consumer (a far-away browser) costs the sampler nothing and still sees the newest frame."""

    _COALESCED = (Step, Preview, Queued)

    def __init__(self):
        self._cond = threading.Condition()
        self._pending: deque = deque()

    def put(self, event) -> None:
        with self._cond:
            if isinstance(event, self._COALESCED):
                for old in [e for e in self._pending if type(e) is type(event)]:
                    self._pending.remove(old)
            self._pending.append(event)
            self._cond.notify_all()

    def get(self, timeout: Optional[float] = None):
        """The next event, or None after `timeout` seconds without one."""
        with self._cond:
            if not self._pending:
                self._cond.wait(timeout)
            return self._pending.popleft() if self._pending else None


class Job:
    def __init__(self, request: GenerationRequest, owner: str = "local"):
        self.id = f"job-{next(_ids)}"
        self.request = request
        self.owner = owner
        self.created = time.time()
        self.status = "queued"  # queued | running | finished | failed | cancelled
        self.channel = EventChannel()
        self.cancel_requested = threading.Event()
        self.skip_requested = threading.Event()
        self.step_frames: list = []  # previews.StepFrames, one per previewed step, for the Step previews tab
        self.last_step: Optional[Step] = None
        self.last_preview: Optional[Preview] = None
        self.started: Optional[Started] = None
        self.result = None  # the terminal event
        self._done = threading.Event()

    # ---- worker side

    def emit(self, event) -> None:
        if isinstance(event, Step):
            self.last_step = event
        elif isinstance(event, Preview):
            self.last_preview = event
        elif isinstance(event, Started):
            self.started = event
            self.status = "running"
        elif isinstance(event, TERMINAL_EVENTS):
            self.result = event
            self.status = {Finished: "finished", Cancelled: "cancelled"}.get(type(event), "failed")
        self.channel.put(event)
        if isinstance(event, TERMINAL_EVENTS):
            self._done.set()

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

    def events(self, poll: float = 0.5) -> Iterator:
        """Every event until the terminal one (inclusive)."""
        while True:
            event = self.channel.get(timeout=poll)
            if event is None:
                continue
            yield event
            if isinstance(event, TERMINAL_EVENTS):
                return

    def wait(self, timeout: Optional[float] = None):
        self._done.wait(timeout)
        return self.result
