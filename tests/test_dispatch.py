"""The dispatcher and the job state machine on their own: no engine, no torch, no model."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from studio.contract import Cancelled, Failed, Finished, GenerationRequest, Preview, QueueFullError, Queued, Started, Step
from studio.dispatch import BatchPolicy, Dispatcher, steps_of
from studio.jobs import Job


def _job(owner: str, **request) -> Job:
    return Job(GenerationRequest("p", **{"width": 64, "height": 64, **request}), owner)


def _filled(*owners: str, **kwargs) -> tuple[Dispatcher, list[Job]]:
    dispatcher = Dispatcher(**kwargs)
    jobs = [_job(owner) for owner in owners]
    for job in jobs:
        dispatcher.put(job)
    return dispatcher, jobs


BATCHING = BatchPolicy(enabled=True, max_batch=4, default_model="tiny")


# ---- the queue


def test_round_robin_across_owners():
    dispatcher, (a1, a2, a3, b1, c1, b2) = _filled("a", "a", "a", "b", "c", "b")
    order = [dispatcher.next_group(timeout=0)[0] for _ in range(6)]
    assert order == [a1, b1, c1, a2, b2, a3]
    assert dispatcher.next_group(timeout=0) is None


def test_positions_follow_the_rotation():
    dispatcher, (a1, a2, a3, b1) = _filled("a", "a", "a", "b")
    assert [dispatcher.position(j) for j in (a1, b1, a2, a3)] == [0, 1, 2, 3]
    assert dispatcher.position(_job("z")) is None


def test_a_queued_job_is_told_its_place_and_told_again_when_the_queue_moves():
    dispatcher, (a1, a2, b1) = _filled("a", "a", "b")
    assert b1.last_queued == Queued(1)
    dispatcher.next_group(timeout=0)  # a1 leaves
    assert [b1.last_queued, a2.last_queued] == [Queued(0), Queued(1)]


def test_cap_per_owner():
    dispatcher = Dispatcher(max_per_owner=2)
    dispatcher.put(_job("a"))
    dispatcher.put(_job("a"))
    with pytest.raises(QueueFullError, match="the limit is 2"):
        dispatcher.put(_job("a"))
    dispatcher.put(_job("b"))  # another owner is not affected
    dispatcher.max_per_owner = 3  # front ends and tests change it at run time
    dispatcher.put(_job("a"))
    assert len(dispatcher.snapshot()) == 4


def test_remove_takes_a_job_out_and_the_rotation_goes_on():
    dispatcher, (a1, b1, a2) = _filled("a", "b", "a")
    assert dispatcher.remove(a1) and not dispatcher.remove(a1)
    assert dispatcher.snapshot() == [a2, b1]
    assert [dispatcher.next_group(timeout=0)[0] for _ in range(2)] == [a2, b1]


def test_cancel_of_a_queued_job_ends_it_at_once():
    dispatcher, (a1, b1) = _filled("a", "b")
    dispatcher.cancel(a1)
    assert isinstance(a1.result, Cancelled) and a1.status == "cancelled"
    assert dispatcher.snapshot() == [b1]


def test_a_job_cancelled_after_it_was_taken_out_never_starts():
    dispatcher, (a1,) = _filled("a")
    a1.cancel()  # too late for the queue: the worker is about to take it
    assert dispatcher.next_group(timeout=0) == []
    assert isinstance(a1.result, Cancelled) and a1.started is None


def test_close_wakes_a_waiting_worker():
    dispatcher = Dispatcher()
    got = []
    waiter = threading.Thread(target=lambda: got.append(dispatcher.next_group()))
    waiter.start()
    time.sleep(0.05)
    dispatcher.close()
    waiter.join(timeout=5)
    assert not waiter.is_alive() and got == [None]
    dispatcher.put(_job("a"))
    assert dispatcher.next_group(timeout=0) is None, "a closed dispatcher hands out nothing more"


def test_a_waiting_worker_wakes_for_a_new_job():
    dispatcher = Dispatcher()
    got = []
    waiter = threading.Thread(target=lambda: got.append(dispatcher.next_group()))
    waiter.start()
    job = _job("a")
    dispatcher.put(job)
    waiter.join(timeout=5)
    assert got == [[job]]


# ---- dynamic batching


def _batching(policy: BatchPolicy = BATCHING) -> Dispatcher:
    return Dispatcher(policy=lambda: policy)


def test_batch_takes_compatible_jobs_of_other_owners_only():
    dispatcher = _batching()
    lead, same_owner, other, other_size = _job("a"), _job("a"), _job("b"), _job("c", width=128)
    for job in (lead, same_owner, other, other_size):
        dispatcher.put(job)
    assert dispatcher.next_group(timeout=0) == [lead, other]
    assert dispatcher.snapshot() == [other_size, same_owner]  # b and a served: c is next in the rotation


def test_batch_respects_max_batch_in_images():
    dispatcher = _batching(BatchPolicy(enabled=True, max_batch=3))
    lead, big, small, late = _job("a", batch_size=2), _job("b", batch_size=2), _job("c"), _job("d")
    for job in (lead, big, small, late):
        dispatcher.put(job)
    assert dispatcher.next_group(timeout=0) == [lead, small]  # big does not fit; one image of room left
    assert dispatcher.snapshot() == [big, late]


def test_batch_skips_cancelled_candidates_and_unbatchable_leads():
    dispatcher = _batching()
    lead, cancelled, alone = _job("a"), _job("b"), _job("c", batch_count=2)
    cancelled.cancel()
    for job in (lead, cancelled, alone):
        dispatcher.put(job)
    assert dispatcher.next_group(timeout=0) == [lead]
    assert dispatcher.companions(alone, BATCHING) == []  # several batches: never shared


def test_batching_off_runs_jobs_alone():
    dispatcher = _batching(BatchPolicy(enabled=False, max_batch=8))
    dispatcher.put(_job("a"))
    dispatcher.put(_job("b"))
    assert len(dispatcher.next_group(timeout=0)) == 1


def test_batch_key_uses_the_default_model_for_requests_without_one():
    policy = BatchPolicy(enabled=True, max_batch=4, default_model="tiny")
    assert policy.key(GenerationRequest("x", model="tiny")) == policy.key(GenerationRequest("y"))
    assert policy.key(GenerationRequest("x", model="other")) != policy.key(GenerationRequest("y"))


def test_batch_key_holds_the_lora_set_clip_skip_vae_and_styles():
    key = BATCHING.key
    assert key(GenerationRequest("a <lora:x:1> b <lora:y:0.5>")) == key(GenerationRequest("<lora:y:0.5> other words <lora:x:1>"))
    assert key(GenerationRequest("a <lora:x:1>")) != key(GenerationRequest("a <lora:x:0.5>"))
    assert key(GenerationRequest("a <lora:x:1>")) != key(GenerationRequest("a"))
    assert key(GenerationRequest("a", negative_prompt="<lora:x:1>")) == key(GenerationRequest("b"))  # ignored there, as in A1111
    assert key(GenerationRequest("a", clip_skip=2)) != key(GenerationRequest("a"))
    assert key(GenerationRequest("a", vae="v.safetensors")) != key(GenerationRequest("a"))
    assert key(GenerationRequest("a", vae="Automatic")) == key(GenerationRequest("a"))
    assert key(GenerationRequest("a", styles=("s",))) != key(GenerationRequest("a"))


def test_take_matching_keeps_the_rotation_and_the_limit():
    dispatcher, (a1, b1, c1, d1) = _filled("a", "b", "c", "d")
    queue = dispatcher._queue
    assert queue.take_matching(lambda job: job is not c1, {"a"}, limit=2) == [b1, d1]
    assert queue.snapshot() == [a1, c1]


def test_batch_waits_for_companions_up_to_the_wait():
    dispatcher = _batching(BatchPolicy(enabled=True, max_batch=2, wait_seconds=5))
    lead, late = _job("a"), _job("b")
    dispatcher.put(lead)
    threading.Timer(0.05, dispatcher.put, args=(late,)).start()
    started = time.monotonic()
    assert dispatcher.next_group(timeout=0) == [lead, late]
    assert time.monotonic() - started < 4, "a full batch stops waiting"


# ---- ETAs


def test_eta_of_a_queued_job_counts_the_running_one_and_those_ahead():
    dispatcher = Dispatcher()
    running = _job("r", steps=10)
    running.emit(Started("tiny", [1]))
    running.emit(Step(4, 10, 3.0))
    ahead, mine = _job("a", steps=20), _job("b", steps=10, batch_count=2)
    dispatcher.put(ahead)
    dispatcher.put(mine)
    # 3 s left on the running job, then one job ahead at the mean queued length (20 steps), then 20 steps of mine.
    assert dispatcher.eta_seconds(mine, 0.5, [running]) == pytest.approx(3.0 + 0.5 * (1 * 20 + 20))
    assert dispatcher.eta_seconds(ahead, 0.5, []) == pytest.approx(0.5 * 20)


def test_eta_of_running_and_finished_jobs():
    dispatcher = Dispatcher()
    job = _job("a", steps=8)
    job.emit(Started("tiny", [1]))
    assert dispatcher.eta_seconds(job, 0.25, [job]) == pytest.approx(2.0)  # no step yet: all steps at the rate
    job.emit(Step(6, 8, 0.7))
    assert dispatcher.eta_seconds(job, 0.25, [job]) == pytest.approx(0.7)
    job.finish(Finished([]))
    assert dispatcher.eta_seconds(job, 0.25, []) == 0.0
    assert steps_of(_job("x", steps=7, batch_count=3)) == 21


# ---- the job state machine


def test_exactly_one_terminal_event_however_many_threads_race():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(50):
            job = _job("a")
            job.emit(Started("tiny", [1]))
            watcher = job.watch()
            barrier = threading.Barrier(8)
            wins = []
            candidates = [Finished([]), Failed("x"), Cancelled(), Failed("y"), Finished([]), Cancelled(), Failed("z"), Cancelled()]

            def end(event):
                barrier.wait()
                wins.append(job.finish(event))

            threads = [threading.Thread(target=end, args=(event,)) for event in candidates]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert wins.count(True) == 1
            ends = [e for e in _drain(job.channel) if isinstance(e, (Finished, Failed, Cancelled))]
            assert ends == [job.result] and job.done
            assert [e for e in _drain(watcher) if isinstance(e, (Finished, Failed, Cancelled))] == [job.result]
    finally:
        sys.setswitchinterval(old)


def test_invalid_transitions_are_refused():
    job = _job("a")
    assert not job.emit(Step(1, 2, 0.0)), "no step before the start"
    assert not job.finish(Finished([])), "a job that never started has no images"
    assert job.status == "queued"
    assert job.emit(Started("tiny", [1])) and job.status == "running"
    assert not job.emit(Started("tiny", [1])) and not job.emit(Queued(0))
    assert job.finish(Cancelled()) and job.status == "cancelled"
    assert not job.emit(Preview(1, 2, None)), "a late preview after the end is dropped"
    assert not job.finish(Failed("late")) and isinstance(job.result, Cancelled)
    with pytest.raises(TypeError):
        job.finish(Step(1, 2, 0.0))


def test_a_queued_job_may_fail_or_be_cancelled_without_starting():
    failing, cancelled = _job("a"), _job("b")
    assert failing.finish(Failed("no such model")) and failing.status == "failed"
    assert cancelled.finish(Cancelled()) and cancelled.status == "cancelled"


def test_watchers_see_the_end():
    job = _job("a")
    early = job.watch()
    job.emit(Started("tiny", [1]))
    job.emit(Step(1, 1, 0.0))
    job.finish(Finished([]))
    late = job.watch()
    assert [type(e) for e in _drain(early)] == [Started, Step, Finished]
    assert isinstance(_drain(late)[-1], Finished)
    assert [type(e) for e in job.events()] == [Started, Step, Finished]
    assert isinstance(job.wait(timeout=0), Finished)


def test_events_wait_for_the_end_without_polling():
    job = _job("a")
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(job.events()))
    reader.start()
    job.emit(Started("tiny", [1]))
    job.finish(Cancelled())
    reader.join(timeout=5)
    assert not reader.is_alive() and [type(e) for e in seen] == [Started, Cancelled]


def _drain(channel) -> list:
    events = []
    while (event := channel.get(timeout=0)) is not None:
        events.append(event)
    return events
