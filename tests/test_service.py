"""The job service, the one interface front ends use: the model rule on submit, a user's own jobs only (cancel, skip,
find, list), queue position and ETA, the model list and hashes, results by the user's own paths."""

from __future__ import annotations

import re
import time

import pytest

from studio.access import Access, ModelRefused
from studio.contract import LOCAL_USER, Cancelled, Failed, Finished, GenerationRequest
from studio.service import JobService

TINY = dict(steps=2, width=64, height=64, seed=1)
LONG = dict(steps=40, width=64, height=64, seed=2)  # other steps than TINY: never batched with it


class _Logins:
    """Accounts where only root is an admin."""

    def is_admin(self, user: str) -> bool:
        return user == "root"


@pytest.fixture(scope="module")
def service(engine):
    return JobService(engine, Access(engine, _Logins()))


def _until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_submit_applies_the_model_rule(service, tmp_path):
    path = str(tmp_path / "elsewhere.safetensors")
    with pytest.raises(ModelRefused) as refused:
        service.submit(GenerationRequest("probe", model=path, **TINY), "bob")
    assert "tiny" in str(refused.value)
    job = service.submit(GenerationRequest("by its listed name", model="tiny [0123456789]", **TINY), "bob")
    assert job.request.model == "tiny" and job.owner == "bob"
    assert isinstance(job.wait(60), Finished)


def test_an_admin_and_the_operator_may_name_any_model(engine, service, tmp_path):
    missing = str(tmp_path / "no-such-file.safetensors")
    assert isinstance(service.generate(GenerationRequest("root's path", model=missing, **TINY), "root"), Failed)
    operator = JobService.for_operator(engine)
    assert operator.is_admin(LOCAL_USER)
    assert isinstance(operator.generate(GenerationRequest("operator's path", model=missing, **TINY), LOCAL_USER), Failed)
    assert isinstance(operator.generate(GenerationRequest("still fine", **TINY), LOCAL_USER), Finished)


def test_cancel_skip_find_and_list_only_the_users_own_jobs(service):
    job = service.submit(GenerationRequest("alice's long job", **LONG), "alice")
    try:
        assert service.job("alice", job.id) is job
        assert service.job("bob", job.id) is None  # another user's id is no job of theirs
        assert service.cancel("bob", job.id) is None and service.cancel("bob", job) is None
        assert service.skip("bob", job.id) is None and service.skip("bob", job) is None
        assert not job.cancel_requested.is_set() and not job.skip_requested.is_set()
        assert job in service.jobs("alice") and job not in service.jobs("bob")
        assert job in service.active_jobs("alice") and job not in service.active_jobs("bob")
        assert service.current_job("alice") is job and service.current_job("bob") is not job
        assert service.cancel("alice", job.id) is job
        assert isinstance(job.wait(60), Cancelled)
    finally:
        job.cancel()
    assert service.jobs("alice")[0] is job  # finished jobs follow the active ones, newest first
    assert service.cancel("alice", "no-such-id") is None and service.job("alice", "no-such-id") is None


def test_skip_finishes_the_users_job_early(service):
    job = service.submit(GenerationRequest("skip me", **LONG), "alice")
    _until(lambda: job.last_step is not None)
    assert service.skip("alice", job) is job
    result = job.wait(60)
    assert isinstance(result, Finished) and result.skipped


def test_position_and_eta(service):
    service.generate(GenerationRequest("times a step", **TINY), "carol")  # the engine has timed a step
    running = service.submit(GenerationRequest("ahead of everyone", **LONG), "alice")
    try:
        _until(lambda: running.status == "running")
        first = service.submit(GenerationRequest("first", **TINY), "carol")
        second = service.submit(GenerationRequest("second", **TINY), "carol")
        assert service.position(running) is None  # running: not in the queue
        assert (service.position(first), service.position(second)) == (0, 1)
        assert 0 < service.eta_seconds(first) < service.eta_seconds(second)
        assert service.active_jobs("carol") == [first, second]
        service.cancel("alice", running)
        assert isinstance(second.wait(60), Finished) and isinstance(first.result, Finished)
        assert service.eta_seconds(second) == 0.0 and service.position(second) is None
    finally:
        running.cancel()


def test_model_list_hashes_and_info(service):
    info = service.info()
    assert info.model == "tiny"
    assert "tiny" in service.models() and set(service.available_models()) <= set(service.models())
    hashes = service.model_hashes()
    assert re.fullmatch(r"[0-9a-f]{10}", hashes["tiny"] or "")
    assert service.settings.max_steps > 0


def test_results_are_reached_by_the_users_own_paths(service):
    result = service.generate(GenerationRequest("dave's picture", **TINY), "dave")
    path = result.images[0].path
    relative = service.result_relative("dave", path)
    assert service.output_file("dave", relative) == service.outputs.owner_root("dave").resolve() / relative
    assert service.output_file("erin", relative) is None
    assert service.result_url("dave", path).endswith(relative)


def test_an_admin_changes_live_settings_for_the_next_jobs(service):
    from studio.contract import RequestError

    before = service.settings
    with pytest.raises(RequestError, match="Only an admin"):
        service.configure("bob", preview="off")
    for bad in (dict(preview="pixels"), dict(preview_every=0), dict(preview_every="2"), dict(dynamic_batching="yes"), dict(max_steps=1000)):
        with pytest.raises(RequestError):
            service.configure("root", **bad)
    assert service.settings == before  # nothing half-applied
    try:
        service.configure("root", preview="off")
        quiet = service.submit(GenerationRequest("no previews now", **TINY), "bob")
        assert isinstance(quiet.wait(60), Finished)
        assert quiet.step_frames == [] and quiet.last_preview is None
        service.configure("root", preview="latent", preview_every=2)
        job = service.submit(GenerationRequest("every second step", steps=4, width=64, height=64, seed=3), "bob")
        assert isinstance(job.wait(60), Finished)
        assert [frames.step for frames in job.step_frames] == [2, 4]
    finally:
        service.configure("root", preview=before.preview, preview_every=before.preview_every)
