"""Step hooks: what runs after each sampling step, as separate hooks composed into one `callback_on_step_end`.

A hook is called with a `StepState` (the pipeline, the step, the jobs of the batch still live) and may set
`state.stop` to end the pipeline call (diffusers' interrupt flag: the remaining steps are skipped), or return a dict
of callback tensors to replace (diffusers' callback_kwargs). Each hook declares `graph_safe`: whether fast mode's
CUDA graphs of the UNet can run with it (a hook that must see or change what happens inside the UNet, such as
attention capture, cannot). A new per-step feature (prompt scheduling, attention or CFG capture) is one more hook.

No torch at import: the preview hook's capture is imported when it runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from .contract import Cancelled, Preview, Step


class StepClock:
    """ETA from the steps done so far in this job, counted from the job's start: the first step's time includes
    prompt encoding, so the first estimate is a little high, and there is one from the first step on."""

    def __init__(self):
        self.start = time.perf_counter()
        self.seconds_per_step: float = 0.0

    def tick(self, step: int, total: int) -> float:
        self.seconds_per_step = (time.perf_counter() - self.start) / max(1, step)
        return self.seconds_per_step * (total - step)


@dataclass
class StepState:
    """One step as the hooks see it. step and total count over all batches of the job (1-based step)."""

    pipe: object
    index: int  # the pipeline's own step index in this call (0-based)
    tensors: dict  # diffusers' callback_kwargs (latents, ...)
    slices: dict  # job → its seeds in this call, in batch order
    offsets: dict  # job → the index of its first image in the batch
    live: list  # the jobs not cancelled when this step ended
    batch_index: int
    per_batch: int  # steps in one pipeline call
    step: int
    total: int
    stop: bool = False  # set by a hook: skip the remaining steps
    eta: float = 0.0  # set by the progress hook
    timestep: object = None  # the step's timestep, as the pipeline passed it


class StepHook:
    """A per-step hook. graph_safe: fast mode's CUDA graphs may run with it. tensor_inputs: the callback tensors
    (beyond latents) it reads or returns."""

    graph_safe: bool = True
    tensor_inputs: tuple = ()

    def __call__(self, state: StepState) -> Optional[dict]:
        raise NotImplementedError


class CancelHook(StepHook):
    """Cancelled jobs end now (their images are dropped at the end); the call stops when every job in the batch
    was cancelled or asked to skip."""

    graph_safe = True

    def __call__(self, state: StepState) -> None:
        for job in state.slices:
            if job.cancel_requested.is_set():
                job.finish(Cancelled())  # the user sees it stop now
        if all(job.stopping_call() for job in state.live):
            state.stop = True


class ProgressHook(StepHook):
    """A Step event (with an ETA) for every live job; the rate goes to `on_rate` (queue ETAs use it live)."""

    graph_safe = True

    def __init__(self, clock: StepClock, on_rate: Callable[[float], None] = lambda seconds: None):
        self.clock = clock
        self.on_rate = on_rate

    def __call__(self, state: StepState) -> None:
        state.eta = self.clock.tick(state.step, state.total)
        self.on_rate(self.clock.seconds_per_step)
        for job in state.live:
            job.emit(Step(state.step, state.total, state.eta))


class DepthMapHook(StepHook):
    """A depth model's call: the depth map it keeps (its `depth_mask` callback tensor, the same every step) goes to
    the lead job once, as a picture of the job's size, for the artist to see."""

    graph_safe = True
    tensor_inputs = ("depth_mask",)

    def __init__(self, job, size: tuple[int, int]):
        self.job = job
        self.size = size

    def __call__(self, state: StepState) -> None:
        depth_mask = state.tensors.get("depth_mask")
        if self.job.depth_map is None and depth_mask is not None:
            from .pipelines import depth_picture

            self.job.depth_map = depth_picture(depth_mask, self.size)


class PreviewHook(StepHook):
    """Every `every` steps and at the last step of a call: each live job's picture is captured (device work and an
    async copy queued here) and finished on the frame sink's thread, which hands it to the job."""

    graph_safe = True

    def __init__(self, decoder, every: int, frames, capture: Optional[Callable] = None):
        self.decoder = decoder
        self.every = every
        self.frames = frames  # previews.FrameSink (submit(step, total, tensors, ready, deliver))
        self._capture = capture

    def due(self, state: StepState) -> bool:
        return (state.index + 1) % self.every == 0 or state.index + 1 == state.per_batch

    def __call__(self, state: StepState) -> None:
        if not self.due(state):
            return
        capture = self._capture
        if capture is None:
            from .previews import capture
        latents = state.tensors["latents"]
        x0 = getattr(state.pipe.scheduler, "last_x0", None)
        for job in state.live:
            at = state.offsets[job]
            pictures, ready = capture(self.decoder, latents[at : at + 1], None if x0 is None else x0[at : at + 1])
            self.frames.submit(state.step, state.total, pictures, ready, deliver(job, state.step, state.total, state.batch_index))


def deliver(job, step: int, total: int, batch_index: int):
    """The frame sink's hand-off of one finished frame to its job: the Step previews tab keeps the first batch's."""

    def hand_over(frames, image):
        if batch_index == 0:
            job.step_frames.append(frames)
        job.emit(Preview(step, total, image, frames.live))  # on the frame thread: a tiny JPEG, off the sampling path

    return hand_over


@dataclass
class HookChain:
    """The hooks of one pipeline call, composed into diffusers' callback_on_step_end (call the chain itself).
    Hooks run in order; the first to set `stop` ends the step (later hooks are not called) and the call."""

    hooks: Sequence[StepHook]
    slices: dict  # job → seeds in this call
    batch_index: int = 0
    batch_count: int = 1
    offsets: dict = field(init=False)
    # A job of two pipeline calls per batch (hires fix): the steps of both, and this call's first step among them.
    steps_per_batch: Optional[int] = None  # None: this call's own steps
    step_offset: int = 0

    def __post_init__(self):
        self.offsets, offset = {}, 0
        for job, seeds in self.slices.items():
            self.offsets[job] = offset
            offset += len(seeds)

    def tensor_inputs(self, allowed) -> list[str]:
        """The callback tensors the hooks read or replace (diffusers' callback_on_step_end_tensor_inputs), among
        those this pipeline class offers (`allowed`)."""
        wanted = ["latents"] + [name for hook in self.hooks for name in getattr(hook, "tensor_inputs", ())]
        return [name for name in dict.fromkeys(wanted) if name in allowed]

    @property
    def graph_safe(self) -> bool:
        """Whether fast mode's CUDA graphs can run with every hook of this chain."""
        return all(hook.graph_safe for hook in self.hooks)

    def __call__(self, pipe, i, t, tensors) -> dict:
        live = [job for job in self.slices if not job.cancel_requested.is_set()]
        per_batch = pipe.num_timesteps
        steps = self.steps_per_batch or per_batch
        total = self.batch_count * steps
        step = min(total, self.batch_index * steps + self.step_offset + i + 1)  # a second pass may run a step more than foreseen
        state = StepState(pipe, i, tensors, self.slices, self.offsets, live, self.batch_index, per_batch, step, total, timestep=t)
        changed: dict = {}
        for hook in self.hooks:
            out = hook(state)
            if state.stop:
                from .pipelines import interrupt  # here, not at import: this module stays torch-free

                interrupt(pipe)
                return {}
            if out:
                changed.update(out)
        return changed
