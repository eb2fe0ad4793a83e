"""The fair queue on its own: round-robin between users, positions, the per-user cap."""

from __future__ import annotations

import pytest

from studio.jobs import Job
from studio.dispatch import FairQueue
from studio.contract import GenerationRequest, QueueFullError


def _job(owner: str) -> Job:
    return Job(GenerationRequest("p"), owner)


def test_round_robin_and_positions():
    queue = FairQueue()
    a = [_job("a") for _ in range(3)]
    for job in a:
        queue.put(job)
    b = _job("b")
    queue.put(b)
    assert [queue.position(j) for j in a] == [0, 2, 3]
    assert queue.position(b) == 1
    assert [queue.get(timeout=0) for _ in range(4)] == [a[0], b, a[1], a[2]]
    assert queue.get(timeout=0) is None


def test_cap_per_user_has_a_message():
    queue = FairQueue(max_per_owner=1)
    queue.put(_job("a"))
    with pytest.raises(QueueFullError, match="the limit is 1"):
        queue.put(_job("a"))
    queue.put(_job("b"))  # another user is not affected


def test_a_slow_consumer_gets_the_newest_frame_not_a_backlog():
    from PIL import Image

    from studio.jobs import EventChannel
    from studio.contract import Finished, Preview, Started, Step

    channel = EventChannel()
    channel.put(Started("tiny", [1]))
    for step in range(1, 101):  # the sampler runs on while nobody reads
        channel.put(Step(step, 100, 0.0))
        channel.put(Preview(step, 100, Image.new("RGB", (8, 8))))
    channel.put(Finished([]))
    events = []
    while (event := channel.get(timeout=0)) is not None:
        events.append(event)
    assert [type(e) for e in events] == [Started, Step, Preview, Finished]
    assert events[1].step == events[2].step == 100
