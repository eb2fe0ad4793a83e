"""The bounded job store behind the job service: each owner's recent jobs (listed, found and latest only by their
owner), the per-owner limit, and the memory budget for step frames (the oldest finished jobs' frames dropped
first, never a running job's or an owner's newest finished job's). No engine: fake frames of known size."""

from __future__ import annotations

import numpy as np

from studio.contract import Finished, GenerationRequest, Started
from studio.jobs import Job, JobRegistry, JobStore, frames_dropped
from studio.previews import StepFrames

MB = 1024 * 1024


class FakeFrame:
    def __init__(self, nbytes: int):
        self.nbytes = nbytes


def make_job(owner: str, frames_mb: int = 0, status: str = "finished", created: float | None = None) -> Job:
    """A job of `owner` in `status` (queued, running or finished) holding `frames_mb` fake 1 MB frames."""
    job = Job(GenerationRequest(prompt="a cat"), owner)
    if created is not None:
        job.created = created
    if status in ("running", "finished"):
        assert job.emit(Started(model="m", seeds=[1]))
    if status == "finished":
        assert job.finish(Finished(images=[]))
    job.step_frames = [FakeFrame(MB) for _ in range(frames_mb)]
    return job


def test_the_old_name_is_the_store():
    assert JobRegistry is JobStore


def test_a_job_is_listed_found_and_latest_only_for_its_owner():
    store = JobStore()
    a1, b1, a2 = make_job("alice"), make_job("bob"), make_job("alice", status="queued")
    for job in (a1, b1, a2):
        store.add(job)
    assert store.of("alice") == [a2, a1]  # newest first
    assert store.of("bob") == [b1]
    assert store.of("carol") == []
    assert store.get("alice", a1.id) is a1
    assert store.get("bob", a1.id) is None and store.get("carol", a1.id) is None
    assert store.latest("alice") is a2 and store.latest("bob") is b1 and store.latest("carol") is None


def test_each_owner_keeps_their_last_finished_jobs_and_every_active_one():
    store = JobStore(per_owner=3)
    running = make_job("alice", status="running")
    store.add(running)
    finished = [make_job("alice") for _ in range(5)]
    for job in finished:
        store.add(job)
    bobs = make_job("bob")
    store.add(bobs)
    assert store.of("alice") == [*reversed(finished[2:]), running]  # the 3 newest finished, and the running one
    assert store.get("alice", finished[0].id) is None
    assert store.of("bob") == [bobs]  # another owner's limit is their own


def test_under_budget_nothing_is_dropped():
    store = JobStore(max_frames_bytes=10 * MB)
    jobs = [make_job("alice", 3) for _ in range(3)]
    for job in jobs:
        store.add(job)
    assert store.frames_nbytes() == 9 * MB
    assert all(len(job.step_frames) == 3 and not frames_dropped(job) for job in jobs)


def test_over_budget_the_oldest_finished_jobs_lose_their_frames_first():
    store = JobStore(max_frames_bytes=10 * MB)
    old, middle, newer = (make_job("alice", 4, created=t) for t in (1.0, 2.0, 3.0))
    for job in (old, middle, newer):
        store.add(job)  # 12 MB > 10: the oldest goes
    assert old.step_frames == [] and frames_dropped(old) and old.frames_dropped is True
    assert len(middle.step_frames) == 4 and not frames_dropped(middle)
    assert len(newer.step_frames) == 4 and not frames_dropped(newer)
    assert store.frames_nbytes() == 8 * MB
    assert store.get("alice", old.id) is old  # the job itself is still kept: only its frames went


def test_the_budget_spans_owners_and_takes_the_oldest_across_them():
    store = JobStore(max_frames_bytes=10 * MB)
    a_old, b_old, a_new, b_new = (make_job(o, 3, created=t) for o, t in
                                  (("alice", 1.0), ("bob", 2.0), ("alice", 3.0), ("bob", 4.0)))
    for job in (a_old, b_old, a_new, b_new):
        store.add(job)  # 12 MB: alice's oldest is dropped, then 9 MB fits
    assert frames_dropped(a_old)
    assert not any(frames_dropped(j) for j in (b_old, a_new, b_new))


def test_running_jobs_and_each_owners_newest_finished_job_keep_their_frames():
    store = JobStore(max_frames_bytes=5 * MB)
    a_old = make_job("alice", 4, created=1.0)
    a_new = make_job("alice", 4, created=2.0)  # alice's newest finished
    b_only = make_job("bob", 4, created=0.5)  # bob's newest (only) finished, and the oldest of all
    running = make_job("carol", 8, status="running", created=0.1)
    queued = make_job("carol", 2, status="queued", created=0.2)
    for job in (running, queued, b_only, a_old, a_new):
        store.add(job)
    assert frames_dropped(a_old) and a_old.step_frames == []
    for kept in (a_new, b_only, running, queued):  # over budget still: nothing else may be dropped
        assert kept.step_frames and not frames_dropped(kept)
    assert store.frames_nbytes() == 18 * MB


def test_trim_enforces_the_budget_after_frames_grew():
    store = JobStore(max_frames_bytes=6 * MB)
    first = make_job("alice", 0, status="running", created=1.0)
    store.add(first)
    second = make_job("alice", 0, created=2.0)
    store.add(second)
    first.step_frames.extend(FakeFrame(MB) for _ in range(4))  # grew while running, finished later
    assert first.finish(Finished(images=[]))
    second.step_frames = [FakeFrame(MB) for _ in range(4)]
    assert store.frames_nbytes() == 8 * MB
    assert store.trim() == 4 * MB  # first is the oldest finished, and not alice's newest
    assert frames_dropped(first) and not frames_dropped(second)
    assert store.trim() == 0


def test_no_budget_keeps_every_frame():
    store = JobStore(max_frames_bytes=None)
    jobs = [make_job("alice", 50) for _ in range(3)]
    for job in jobs:
        store.add(job)
    assert not any(frames_dropped(job) for job in jobs)


def test_step_frames_nbytes_counts_raw_arrays_and_encoded_jpegs():
    x0 = np.zeros((64, 64, 3), np.uint8)
    noisy = np.zeros((64, 64, 3), np.uint8)
    channels = np.zeros((4, 64, 64), np.uint8)
    frame = StepFrames(3, 10, x0, noisy, channels)
    raw = x0.nbytes + noisy.nbytes + channels.nbytes
    assert frame.nbytes == raw
    jpeg = frame.x0
    assert frame.nbytes == raw + len(jpeg)
    big = np.zeros((256, 256, 3), np.uint8)  # past the lazy size: encoded at once, no raw x0 kept
    encoded = StepFrames(1, 10, big, noisy, channels)
    assert encoded.nbytes == len(encoded.x0) + noisy.nbytes + channels.nbytes
    encoded.live  # the same JPEG as x0: counted once
    assert encoded.nbytes == len(encoded.x0) + noisy.nbytes + channels.nbytes


def test_the_store_counts_real_step_frames():
    store = JobStore(max_frames_bytes=10 * 1024)
    x = np.zeros((32, 32, 3), np.uint8)
    c = np.zeros((4, 32, 32), np.uint8)
    old = make_job("alice", created=1.0)
    old.step_frames = [StepFrames(i, 4, x, x, c) for i in range(1, 5)]  # 4 × 10 KiB
    new = make_job("alice", created=2.0)
    store.add(old)
    store.add(new)
    assert frames_dropped(old) and not frames_dropped(new)
