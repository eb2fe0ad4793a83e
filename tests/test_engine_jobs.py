"""What a user of the engine notices: previews before the final image, cancel stops, failures stay contained."""

from __future__ import annotations

import time

from PIL import Image

from studio.contract import Cancelled, Failed, Finished, GenerationRequest, Preview, Queued, Started, Step
from tests.helpers import collect


def test_previews_arrive_before_the_final_images(engine):
    job = engine.submit(GenerationRequest("a castle", seed=3, steps=6, width=64, height=64))
    events = collect(job)
    kinds = [type(e) for e in events]
    assert kinds[-1] is Finished
    assert Started in kinds and kinds.index(Started) < kinds.index(Preview)
    assert Preview in kinds[: kinds.index(Finished)]
    preview = next(e for e in events if isinstance(e, Preview))
    assert isinstance(preview.image, Image.Image) and max(preview.image.size) <= 512
    # The Step previews tab gets every step: a decoded frame, the noisy latent and the 4 channels.
    assert [f.step for f in job.step_frames] == [1, 2, 3, 4, 5, 6]
    frame = job.step_frames[-1]
    assert len(frame.channels) == 4
    assert Image.open(__import__("io").BytesIO(frame.x0)).format == "JPEG"
    assert Image.open(__import__("io").BytesIO(frame.channels[0])).mode == "L"


def test_x0_preview_differs_from_noisy_latent(engine):
    job = engine.submit(GenerationRequest("a tree", seed=4, steps=4, width=64, height=64))
    collect(job)
    first = job.step_frames[0]
    assert first.x0 != first.noisy


def test_cancel_stops_within_one_step(engine):
    job = engine.submit(GenerationRequest("a long job", seed=1, steps=150, width=128, height=128, batch_count=3))
    deadline = time.time() + 60
    while (job.last_step is None or job.last_step.step < 2) and time.time() < deadline:
        time.sleep(0.01)
    engine.cancel(job)
    step_at_cancel = job.last_step.step
    result = job.wait(timeout=60)
    assert isinstance(result, Cancelled)
    assert job.last_step.step <= step_at_cancel + 1
    assert job.last_step.total == 450
    # The engine goes on serving.
    assert isinstance(engine.generate(GenerationRequest("after cancel", seed=2, steps=2, width=64, height=64)), Finished)


def test_cancel_while_queued_never_starts(engine):
    blocker = engine.submit(GenerationRequest("blocker", seed=1, steps=30, width=128, height=128))
    waiting = engine.submit(GenerationRequest("waiting", seed=1, steps=2, width=64, height=64))
    assert isinstance(waiting.channel.get(timeout=5), Queued)
    engine.cancel(waiting)
    assert isinstance(waiting.wait(timeout=30), Cancelled)
    assert waiting.started is None
    engine.cancel(blocker)
    blocker.wait(timeout=60)


def test_a_failing_job_fails_alone(engine):
    bad = engine.submit(GenerationRequest("no such model", seed=1, steps=2, width=64, height=64, model="no/such-model-anywhere"), may_name_any_model=True)
    result = bad.wait(timeout=60)
    assert isinstance(result, Failed)
    assert "no/such-model-anywhere" in result.message and "Traceback" not in result.message
    assert engine.models.loaded_names() == ["tiny"], "a model that cannot be had must not unload the current one"
    good = engine.generate(GenerationRequest("still serving", seed=1, steps=2, width=64, height=64))
    assert isinstance(good, Finished)
    assert engine.current_model == "tiny"


def test_random_seed_is_reported_and_reproducible(engine):
    first = engine.generate(GenerationRequest("a seed", seed=-1, steps=2, width=64, height=64))
    seed = first.images[0].seed
    assert 0 <= seed < 2**32
    again = engine.generate(GenerationRequest("a seed", seed=seed, steps=2, width=64, height=64))
    assert Image.open(first.images[0].path).tobytes() == Image.open(again.images[0].path).tobytes()


def test_step_events_count_every_step_with_an_eta(engine):
    job = engine.submit(GenerationRequest("eta", seed=1, steps=5, width=64, height=64, batch_count=2))
    events = collect(job)
    steps = [e for e in events if isinstance(e, Step)]
    assert steps and steps[-1].step == steps[-1].total == 10
    assert all(e.eta_seconds >= 0 for e in steps)


def test_stop_joins_every_thread(tiny_settings):
    """stop() ends the worker, the preview-frame thread and the saver: none outlives the engine."""
    import threading

    from studio.engine import Engine
    from studio.outputs import OutputStore

    before = set(threading.enumerate())
    engine = Engine(tiny_settings, OutputStore(tiny_settings.outputs)).start()
    assert isinstance(engine.generate(GenerationRequest("one", seed=1, steps=2, width=64, height=64)), Finished)
    engine.stop()
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not [name for name in left if name.startswith(("engine-worker", "preview-frames", "saver"))], left
