"""Compatible jobs of different users run as one UNet batch, each image still its own seed's image."""

from __future__ import annotations

import threading
import time

import numpy as np

from studio.contract import Finished, GenerationRequest
from tests.helpers import pixels


def _watch_batches(engine, stop):
    sizes = []

    def poll():
        while not stop.is_set():
            sizes.append(len(engine.running_jobs))
            time.sleep(0.001)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return sizes, thread


def test_jobs_of_different_users_share_a_batch_and_keep_their_seeds(engine):
    blocker = engine.submit(GenerationRequest("blocker", seed=1, steps=12, width=128, height=128), owner="carol")
    common = dict(steps=4, width=64, height=64, sampler_name="Euler a", cfg_scale=7.0)
    alice = engine.submit(GenerationRequest("a red house", seed=10, batch_size=2, **common), owner="alice")
    bob = engine.submit(GenerationRequest("a blue boat", negative_prompt="fog", seed=20, **common), owner="bob")
    other_size = engine.submit(GenerationRequest("not compatible", seed=30, **{**common, "width": 128}), owner="dave")
    stop = threading.Event()
    sizes, thread = _watch_batches(engine, stop)
    results = [job.wait(timeout=120) for job in (blocker, alice, bob, other_size)]
    stop.set()
    thread.join()
    assert all(isinstance(r, Finished) for r in results), results
    assert max(sizes) == 2, "alice's and bob's jobs should have run as one batch (dave's has another size)"
    # Each user got their own previews, from their own images.
    assert len(alice.step_frames) == len(bob.step_frames) == 4
    assert alice.step_frames[-1].x0 != bob.step_frames[-1].x0
    # Each image is its own seed's image, as when the job runs alone (batched kernels may differ in the last bit).
    alone = {
        10: engine.generate(GenerationRequest("a red house", seed=10, batch_size=2, **common), owner="alice").images,
        20: engine.generate(GenerationRequest("a blue boat", negative_prompt="fog", seed=20, **common), owner="bob").images,
    }
    batched = {10: results[1].images, 20: results[2].images}
    assert [i.seed for i in batched[10]] == [10, 11] and [i.seed for i in batched[20]] == [20]
    for seed in (10, 20):
        for together, by_itself in zip(batched[seed], alone[seed]):
            assert np.abs(pixels(together.path) - pixels(by_itself.path)).max() <= 1
            assert together.infotext == by_itself.infotext


def test_cancelling_one_job_of_a_batch_keeps_the_other(engine):
    blocker = engine.submit(GenerationRequest("blocker", seed=1, steps=12, width=128, height=128), owner="carol")
    common = dict(steps=30, width=64, height=64)
    alice = engine.submit(GenerationRequest("alice", seed=1, **common), owner="alice")
    bob = engine.submit(GenerationRequest("bob", seed=2, **common), owner="bob")
    blocker.wait(timeout=120)
    deadline = time.time() + 60
    while (alice.last_step is None or alice.last_step.step < 3) and time.time() < deadline:
        time.sleep(0.005)
    engine.cancel(alice)
    assert type(bob.wait(timeout=120)).__name__ == "Finished"
    assert type(alice.wait(timeout=1)).__name__ == "Cancelled"
    assert alice.last_step.step < 30 and bob.last_step.step == 30


def test_one_users_jobs_are_not_merged(engine):
    blocker = engine.submit(GenerationRequest("blocker", seed=1, steps=8, width=128, height=128), owner="carol")
    jobs = [engine.submit(GenerationRequest("same user", seed=s, steps=2, width=64, height=64), owner="erin") for s in (1, 2)]
    stop = threading.Event()
    sizes, thread = _watch_batches(engine, stop)
    for job in [blocker, *jobs]:
        job.wait(timeout=120)
    stop.set()
    thread.join()
    assert max(sizes) == 1
