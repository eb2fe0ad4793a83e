"""Running a script's plan: its generations go through the job service as the caller's own jobs (so the fair queue
keeps serving everyone else between them), a few at a time — WINDOW in flight, so the device never waits between
two cells and the caller never holds more than that of the queue. Then the script puts the pictures together and the
pictures it made (grids, SD upscale's result) are saved in the caller's outputs folder like any other image.

It stops early when one job fails (the failure is handed back), when a job is interrupted or cancelled (A1111's
interrupt: the pictures so far, with blanks for the rest), or when `stop` is set (the client went away: every job
still queued or running is cancelled and ScriptStopped is raised)."""

from __future__ import annotations

import threading
from collections import deque
from typing import Optional

from ..contract import Cancelled, Failed, Finished, GenerationRequest, QueueFullError
from .common import Plan, ScriptResult

WINDOW = 2
POLL_SECONDS = 0.05


class ScriptStopped(Exception):
    """The caller went away: the script's jobs were cancelled."""


class _Run:
    def __init__(self, service, requests: list[GenerationRequest], user: str, client_host: Optional[str],
                 stop: threading.Event, on_job=None):
        self.service, self.requests, self.user, self.client_host, self.stop = service, requests, user, client_host, stop
        self.on_job = on_job  # told of each job as it is queued (a front end's progress, previews, Cancel)
        self.jobs: list = [None] * len(requests)
        self.results: list[list] = [[] for _ in requests]
        self.pending: deque[int] = deque()
        self.submitted = 0
        self.interrupted = False
        self.failed: Optional[Failed] = None

    def all(self) -> None:
        try:
            while True:
                self._fill()
                if not self.pending:
                    return
                self._finish(self.pending[0])  # left in pending while it runs: a stop cancels it too
        except BaseException:
            self._cancel_pending()
            raise

    def _fill(self) -> None:
        while self.submitted < len(self.requests) and len(self.pending) < WINDOW and not (self.interrupted or self.failed):
            try:
                job = self.service.submit(self.requests[self.submitted], self.user, self.client_host)
            except QueueFullError:
                if self.pending:
                    return  # the caller's own queue is full: go on once one of ours ends
                if self.submitted == 0:
                    raise  # nothing has run yet: the caller hears so (429)
                self._pause()  # the caller's other jobs fill the queue: wait for room
                continue
            self.jobs[self.submitted] = job
            if self.on_job is not None:
                self.on_job(job)
            self.pending.append(self.submitted)
            self.submitted += 1

    def _pause(self) -> None:
        if self.stop.wait(POLL_SECONDS * 4):
            raise ScriptStopped()

    def _finish(self, index: int) -> None:
        job = self.jobs[index]
        while not job.done:
            if self.stop.is_set():
                raise ScriptStopped()
            job.wait(POLL_SECONDS)
        self.pending.remove(index)
        result = job.result
        if isinstance(result, Finished):
            self.results[index] = list(result.images)
            self.interrupted = self.interrupted or result.skipped
        elif isinstance(result, Cancelled):
            self.interrupted = True
        elif isinstance(result, Failed):
            self.failed = result
        if self.interrupted or self.failed:
            self._cancel_pending()

    def _cancel_pending(self) -> None:
        while self.pending:
            self.service.cancel(self.user, self.jobs[self.pending.popleft()])


def run_plan(service, plan: Plan, user: str, client_host: Optional[str] = None,
             stop: Optional[threading.Event] = None, on_job=None) -> ScriptResult:
    """Run `plan` for `user` and assemble its pictures. Raises ScriptStopped once `stop` is set, QueueFullError when
    the caller's queue is full before anything ran."""
    stop = stop or threading.Event()
    requests = plan.before_run(service, list(plan.requests)) if plan.before_run else list(plan.requests)
    run = _Run(service, requests, user, client_host, stop, on_job)
    run.all()
    first_job = run.jobs[0]
    result = ScriptResult(plan.title, [], requests[0], first_job, run.interrupted, run.failed, list(plan.notes))
    if run.failed is not None:
        return result
    result.outputs = plan.assemble(run.results)
    for output in result.outputs:
        if output.path is None and output.image is not None:
            output.path = str(service.outputs.save_png(output.image, output.infotext, output.seed, owner=user,
                                                       pattern=requests[0].filename_pattern))
            output.image = None
    if plan.cells_are_intermediate:  # the tiles are in the assembled picture: the user's history keeps that only
        service.discard_results(user, [image.path for cell in run.results for image in cell])
    return result
