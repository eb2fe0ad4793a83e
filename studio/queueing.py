"""The job queue: round-robin between owners, so one user's long batch does not lock out the others."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Optional

from .jobs import Job
from .contract import QueueFullError


class FairQueue:
    def __init__(self, max_per_owner: int = 0):
        self.max_per_owner = max_per_owner
        self._cond = threading.Condition()
        self._by_owner: OrderedDict[str, deque] = OrderedDict()  # rotation order: next owner to serve first
        self._closed = False

    def put(self, job: Job) -> None:
        with self._cond:
            jobs = self._by_owner.setdefault(job.owner, deque())
            if self.max_per_owner and len(jobs) >= self.max_per_owner:
                raise QueueFullError(
                    f"You already have {len(jobs)} jobs waiting (the limit is {self.max_per_owner}); "
                    "wait for one to finish or cancel one."
                )
            jobs.append(job)
            self._cond.notify_all()

    def get(self, timeout: Optional[float] = None) -> Optional[Job]:
        """The next job in round-robin order, or None after `timeout` / when closed."""
        with self._cond:
            while not self._by_owner and not self._closed:
                if not self._cond.wait(timeout):
                    return None
            if not self._by_owner:
                return None
            owner, jobs = next(iter(self._by_owner.items()))
            job = jobs.popleft()
            del self._by_owner[owner]
            if jobs:
                self._by_owner[owner] = jobs  # back of the rotation
            return job

    def take_matching(self, matches, exclude_owners: set, limit: int) -> list[Job]:
        """Pop up to `limit` jobs for which matches(job) holds, each the next job of an owner not in
        `exclude_owners` (dynamic batching: jobs of other users that can share one UNet batch). Owners are
        visited in rotation order, and one served this way goes to the back of the rotation, as with get()."""
        taken: list[Job] = []
        with self._cond:
            for owner, jobs in list(self._by_owner.items()):
                if len(taken) >= limit:
                    break
                if owner in exclude_owners or not matches(jobs[0]):
                    continue
                taken.append(jobs.popleft())
                exclude_owners = exclude_owners | {owner}
                del self._by_owner[owner]
                if jobs:
                    self._by_owner[owner] = jobs
        return taken

    def wait_for_put(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)

    def remove(self, job: Job) -> bool:
        with self._cond:
            jobs = self._by_owner.get(job.owner)
            if not jobs or job not in jobs:
                return False
            jobs.remove(job)
            if not jobs:
                del self._by_owner[job.owner]
            return True

    def position(self, job: Job) -> Optional[int]:
        """How many jobs will start before this one, in the current rotation (None if not queued)."""
        with self._cond:
            jobs = self._by_owner.get(job.owner)
            if not jobs or job not in jobs:
                return None
            mine = list(jobs).index(job)
            ahead = 0
            owners = list(self._by_owner)
            my_turn = owners.index(job.owner)
            for index, queued in enumerate(self._by_owner.values()):
                # Each full round serves one job per owner; owners before ours in the rotation get one more.
                ahead += min(len(queued), mine + (1 if index < my_turn else 0))
            return ahead

    def snapshot(self) -> list[Job]:
        with self._cond:
            return [job for jobs in self._by_owner.values() for job in jobs]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
