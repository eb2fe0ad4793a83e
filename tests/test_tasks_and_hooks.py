"""The task registry (studio/tasks.py) and the step hooks (studio/hooks.py), on their own: no GPU, no pipeline
except where one is named (the session `engine` fixture)."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image

from studio.contract import Cancelled, GenerationRequest, Preview, Started, Step, Task
from studio.dispatch import BatchPolicy
from studio.hooks import CancelHook, HookChain, PreviewHook, ProgressHook, StepClock, StepHook
from studio.jobs import Job
from studio.tasks import TASKS, TaskSpec, batchable, pipeline_arguments, prepare, task_spec
from tests.helpers import gradient_image, square_mask


def _image(width: int, height: int, mode: str = "RGB") -> Image.Image:
    return Image.new(mode, (width, height), 128 if mode == "L" else (10, 20, 30))


# ---- the task registry


def test_every_task_has_one_entry():
    assert set(TASKS) == set(Task)
    for task, spec in TASKS.items():
        assert isinstance(spec, TaskSpec) and spec.task is task and task_spec(task) is spec


def test_each_task_declares_its_fields():
    txt2img, img2img, inpaint = (TASKS[t] for t in (Task.TXT2IMG, Task.IMG2IMG, Task.INPAINT))
    assert txt2img.shares_batches and not img2img.shares_batches and not inpaint.shares_batches
    assert txt2img.infotext_fields == ()
    assert [label for label, _ in img2img.infotext_fields] == ["Denoising strength"]
    assert [label for label, _ in inpaint.infotext_fields] == ["Denoising strength", "Mask blur"]
    request = GenerationRequest("x", denoising_strength=0.4, mask_blur=7)
    assert inpaint.infotext(request) == {"Denoising strength": 0.4, "Mask blur": 7}
    assert txt2img.infotext(request) == {}
    image = object()
    assert txt2img.post_process(None, None, image) is image and img2img.post_process(None, None, image) is image
    assert inpaint.post_process is not txt2img.post_process  # the paste-back of the unmasked pixels


def test_txt2img_prepare_uses_the_model_size_unless_asked():
    prepared = prepare(GenerationRequest("x", seed=5, batch_size=2, batch_count=3), default_size=512, max_size=1024)
    assert (prepared.task, prepared.width, prepared.height) == (Task.TXT2IMG, 512, 512)
    assert prepared.seeds == [5, 6, 7, 8, 9, 10]
    assert prepared.init_image is None and prepared.mask is None and prepared.notes == []
    sized = prepare(GenerationRequest("x", seed=0, width=640, height=384), default_size=512, max_size=1024)
    assert (sized.width, sized.height) == (640, 384)


def test_random_seed_is_drawn_once_and_counted_from():
    prepared = prepare(GenerationRequest("x", seed=-1, batch_size=3), default_size=64, max_size=1024)
    first = prepared.seeds[0]
    assert 0 <= first < 2**32 and prepared.seeds == [first, first + 1, first + 2]


def test_img2img_prepare_takes_the_image_size_in_multiples_of_8_within_limits():
    prepared = prepare(GenerationRequest("x", seed=1, init_image=_image(203, 130)), default_size=512, max_size=1024)
    assert (prepared.task, prepared.width, prepared.height) == (Task.IMG2IMG, 200, 128)
    assert prepared.init_image.size == (200, 128) and prepared.init_image.mode == "RGB"
    small = prepare(GenerationRequest("x", seed=1, init_image=_image(40, 3000)), default_size=512, max_size=1024)
    assert (small.width, small.height) == (64, 1024)
    asked = prepare(GenerationRequest("x", seed=1, init_image=_image(200, 128), width=96, height=64), default_size=512, max_size=1024)
    assert asked.init_image.size == (96, 64)
    assert asked.notes == []


def test_inpaint_prepare_resizes_and_blurs_the_mask_with_a_note():
    same = prepare(GenerationRequest("x", seed=1, init_image=gradient_image(), mask=square_mask(), mask_blur=0), 512, 1024)
    assert same.task is Task.INPAINT and same.mask.mode == "L" and same.mask.size == same.init_image.size
    assert same.notes == []
    assert same.mask.tobytes() == square_mask().tobytes(), "mask_blur 0 and the image's size: the mask as drawn"
    odd = prepare(GenerationRequest("x", seed=1, init_image=_image(128, 96), mask=_image(64, 48, "L")), 512, 1024)
    assert odd.mask.size == (128, 96)
    assert odd.notes == ["The mask (64×48) was resized to the image (128×96)."]
    sharp = _image(128, 96, "L")
    sharp.paste(255, (32, 32, 96, 64))
    unblurred = prepare(GenerationRequest("x", seed=1, init_image=_image(128, 96), mask=sharp, mask_blur=0), 512, 1024)
    blurred = prepare(GenerationRequest("x", seed=1, init_image=_image(128, 96), mask=sharp, mask_blur=4), 512, 1024)
    assert unblurred.mask.tobytes() == sharp.tobytes() and blurred.mask.tobytes() != sharp.tobytes()


def test_pipeline_arguments_per_task():
    common = {"prompt", "negative_prompt", "num_inference_steps", "guidance_scale", "num_images_per_prompt", "generator"}
    requests = {
        Task.TXT2IMG: GenerationRequest("x", seed=1, cfg_scale=5),
        Task.IMG2IMG: GenerationRequest("x", seed=1, init_image=_image(64, 64), denoising_strength=0.3),
        Task.INPAINT: GenerationRequest("x", seed=1, init_image=_image(64, 64), mask=_image(64, 64, "L")),
    }
    extra = {
        Task.TXT2IMG: {"width", "height"},
        Task.IMG2IMG: {"image", "strength"},
        Task.INPAINT: {"image", "mask_image", "strength", "width", "height"},
    }
    for task, request in requests.items():
        prepared = prepare(request, 64, 1024)
        arguments = pipeline_arguments(request, prepared, [1, 2])
        assert set(arguments) == common | extra[task], task
        assert arguments["num_images_per_prompt"] == 2 and len(arguments["generator"]) == 2
        assert arguments["negative_prompt"] is None and isinstance(arguments["guidance_scale"], float)
    assert pipeline_arguments(requests[Task.IMG2IMG], prepare(requests[Task.IMG2IMG], 64, 1024), [1])["strength"] == 0.3


def test_only_single_batch_txt2img_is_batchable_and_the_dispatcher_asks_the_registry():
    policy = BatchPolicy(enabled=True, max_batch=4, default_model="tiny")
    plain = GenerationRequest("x")
    for request, expected in [
        (plain, True),
        (GenerationRequest("x", batch_count=2), False),
        (GenerationRequest("x", init_image=_image(64, 64)), False),
        (GenerationRequest("x", init_image=_image(64, 64), mask=_image(64, 64, "L")), False),
    ]:
        assert batchable(request) is expected
        assert (policy.key(request) is not None) is expected


def test_a_new_task_entry_changes_the_batching_rule(monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(TASKS, Task.IMG2IMG, replace(TASKS[Task.IMG2IMG], shares_batches=True))
    assert batchable(GenerationRequest("x", init_image=_image(64, 64)))


def test_registry_and_hooks_import_without_torch():
    code = "import sys, studio.tasks, studio.hooks, studio.dispatch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


# ---- hooks


class FakeScheduler:
    last_x0 = None


class FakePipe:
    def __init__(self, steps: int):
        self.num_timesteps = steps
        self._interrupt = False
        self.scheduler = FakeScheduler()


def _running_job(prompt: str = "x", **fields) -> Job:
    job = Job(GenerationRequest(prompt, **fields), "alice")
    job.emit(Started("tiny", [1]))
    return job


def _steps(chain: HookChain, pipe: FakePipe, steps: int):
    for i in range(steps):
        chain(pipe, i, None, {"latents": [0, 1, 2, 3]})
        if pipe._interrupt:
            return i + 1
    return steps


def test_chain_calls_each_hook_in_order_and_merges_their_tensors():
    calls = []

    class Recorder(StepHook):
        def __init__(self, name, out=None):
            self.name, self.out = name, out

        def __call__(self, state):
            calls.append((self.name, state.step, state.total))
            return self.out

    job = _running_job()
    chain = HookChain([Recorder("a"), Recorder("b", {"latents": "new"})], {job: [1]}, batch_index=1, batch_count=3)
    assert chain(FakePipe(4), 0, None, {}) == {"latents": "new"}
    assert calls == [("a", 5, 12), ("b", 5, 12)]


def test_chain_stops_on_cancel_and_ends_the_cancelled_job():
    seen = []

    class After(StepHook):
        def __call__(self, state):
            seen.append(state.step)

    job = _running_job()
    chain = HookChain([CancelHook(), After()], {job: [1]})
    pipe = FakePipe(10)
    chain(pipe, 0, None, {})
    assert not pipe._interrupt and seen == [1]
    job.cancel()
    assert chain(pipe, 1, None, {}) == {}
    assert pipe._interrupt and seen == [1], "no hook runs after the stop"
    assert isinstance(job.wait(timeout=1), Cancelled)


def test_a_batch_goes_on_while_one_of_its_jobs_is_live():
    alice, bob = _running_job("a"), _running_job("b")
    pipe = FakePipe(6)
    chain = HookChain([CancelHook(), ProgressHook(StepClock())], {alice: [1], bob: [2]})
    chain(pipe, 0, None, {})
    alice.cancel()
    chain(pipe, 1, None, {})
    assert not pipe._interrupt and isinstance(alice.wait(timeout=1), Cancelled)
    assert bob.last_step.step == 2
    bob.skip_requested.set()
    chain(pipe, 2, None, {})
    assert pipe._interrupt, "the call stops once every job was cancelled or asked to skip"


def test_progress_hook_emits_step_events_with_an_eta_and_reports_the_rate():
    job = _running_job()
    rates = []
    chain = HookChain([CancelHook(), ProgressHook(StepClock(), rates.append)], {job: [1]}, batch_index=1, batch_count=2)
    events = []
    job.emit = lambda event, _emit=job.emit: (events.append(event), _emit(event))
    _steps(chain, FakePipe(3), 3)
    steps = [e for e in events if isinstance(e, Step)]
    assert [(e.step, e.total) for e in steps] == [(4, 6), (5, 6), (6, 6)]
    assert all(e.eta_seconds >= 0 for e in steps) and steps[-1].eta_seconds == 0
    assert len(rates) == 3 and all(rate >= 0 for rate in rates)


class FakeStepFrames(str):
    """Stands for a previews.StepFrames: named by its step, with a live JPEG."""

    live = b"jpeg"


class FakeFrames:
    def __init__(self):
        self.submitted = []

    def submit(self, step, total, tensors, ready, deliver):
        self.submitted.append((step, total, tensors))
        deliver(FakeStepFrames(f"frames{step}"), Image.new("RGB", (8, 8)))


def test_preview_hook_captures_at_the_interval_and_at_the_last_step():
    alice, bob = _running_job("a", batch_size=2), _running_job("b")
    frames = FakeFrames()
    captured = []

    def capture(decoder, latents, x0):
        captured.append(list(latents))
        return ("pictures",), None

    preview = PreviewHook("decoder", every=3, frames=frames, capture=capture)
    chain = HookChain([CancelHook(), preview], {alice: [1, 2], bob: [3]})
    _steps(chain, FakePipe(7), 7)
    assert [s for s, _, _ in frames.submitted] == [3, 3, 6, 6, 7, 7]
    assert captured[:2] == [[0], [2]], "each job's own first image: bob's starts after alice's two"
    assert [f for f in alice.step_frames] == ["frames3", "frames6", "frames7"]
    assert isinstance(bob.channel.get(timeout=1), Started)
    previews = []
    while (event := bob.channel.get(timeout=0.1)) is not None:
        previews.append(event)
    assert [e.step for e in previews if isinstance(e, Preview)][-1] == 7


def test_preview_frames_of_later_batches_are_not_kept_for_the_step_tab():
    job = _running_job(batch_count=2)
    frames = FakeFrames()
    preview = PreviewHook("decoder", every=1, frames=frames, capture=lambda d, l, x: ((), None))
    _steps(HookChain([preview], {job: [1]}, batch_index=1, batch_count=2), FakePipe(2), 2)
    assert len(frames.submitted) == 2 and job.step_frames == []


def test_graph_safe_flags():
    assert CancelHook.graph_safe and ProgressHook.graph_safe and PreviewHook.graph_safe
    job = _running_job()
    assert HookChain([CancelHook(), ProgressHook(StepClock())], {job: [1]}).graph_safe

    class Capturing(StepHook):
        graph_safe = False

        def __call__(self, state):
            return None

    assert not HookChain([CancelHook(), Capturing()], {job: [1]}).graph_safe


def test_the_engine_composes_its_hooks_from_the_settings(engine):
    from studio.engine import Engine

    assert not hasattr(Engine, "_step_callback")
    job = _running_job()
    chain = engine.runner.step_hooks({job: [1]}, decoder="decoder", clock=StepClock(), batch_index=0, batch_count=1)
    assert [type(h) for h in chain.hooks] == [CancelHook, ProgressHook, PreviewHook]
    assert chain.hooks[-1].every == engine.settings.preview_interval() and chain.graph_safe
    off = engine.runner.step_hooks({job: [1]}, decoder=None, clock=StepClock(), batch_index=0, batch_count=1)
    assert [type(h) for h in off.hooks] == [CancelHook, ProgressHook]
