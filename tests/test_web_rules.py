"""The server's rules on every path: only an admin names a model outside the operator's list (and a refusal never
says whether a path exists); error bodies carry no server paths, exception names or library text; memory figures are
for admins; an /sdapi client that goes away has its job cancelled, and nothing is saved for it."""

import time
from types import SimpleNamespace

import httpx
import pytest
from server_support import SMALL, live_server

from studio.contract import Cancelled, Failed, Finished, GenerationRequest, RequestError

TINY = dict(steps=2, width=64, height=64, sampler_name="Euler")


@pytest.fixture(scope="module")
def server(engine):
    with live_server(engine) as server:  # alice, bob, carol; root is the admin
        yield server


@pytest.fixture()
def secret_file(tmp_path):
    """A file that exists on the server, as a path a user might probe for."""
    path = tmp_path / "secret-weights.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    return path


def _same_words(message_a: str, name_a: str, message_b: str, name_b: str) -> bool:
    return message_a.replace(name_a, "NAME") == message_b.replace(name_b, "NAME")


# ---- one rule for models


class _Logins:
    def is_admin(self, user):
        return user == "root"


def test_access_rule_names_for_everyone_paths_for_admins():
    from studio.access import Access, ModelRefused

    engine = SimpleNamespace(available_models=lambda: ["tiny", "sub/dream.safetensors"], current_model="base-model")
    access = Access(engine, _Logins())
    assert access.model_for_request("bob", "10.0.0.9", None) is None  # nothing asked: the engine's model
    assert access.model_for_request("bob", "10.0.0.9", "dream") == "sub/dream.safetensors"
    assert access.model_for_request("bob", "10.0.0.9", "dream.safetensors [0123456789]") == "sub/dream.safetensors"
    assert access.model_for_request("bob", "10.0.0.9", "base-model") == "base-model"  # the operator's model, even unloaded
    with pytest.raises(ModelRefused) as refused:
        access.model_for_request("bob", "127.0.0.1", "/models/other.ckpt")
    assert isinstance(refused.value, RequestError)
    assert "tiny, sub/dream.safetensors, base-model" in str(refused.value) and "admin" in str(refused.value)
    assert access.model_for_request("root", "10.0.0.9", "/models/other.ckpt") == "/models/other.ckpt"
    assert access.model_for_request("root", None, "owner/hub-model") == "owner/hub-model"

    no_logins = Access(engine, None)  # one local user: only a client on this machine is an admin
    assert no_logins.is_admin("local", "127.0.0.1") and no_logins.is_admin("local", "::1")
    assert not no_logins.is_admin("local", "192.168.1.20") and not no_logins.is_admin("local", None)
    with pytest.raises(ModelRefused):
        no_logins.model_for_request("local", "192.168.1.20", "/models/other.ckpt")
    assert no_logins.model_for_request("local", "127.0.0.1", "/models/other.ckpt") == "/models/other.ckpt"


def test_the_engine_refuses_a_model_path_unless_the_caller_vouches(engine, secret_file, tmp_path):
    """The UI hands its dropdown's value to engine.submit: the engine itself must not load a path for a user."""
    missing = tmp_path / "no-such-file.safetensors"
    loaded = engine.models.loaded_names()
    with pytest.raises(RequestError) as existing_refused:
        engine.submit(GenerationRequest("probe", model=str(secret_file), **TINY), owner="bob")
    with pytest.raises(RequestError) as missing_refused:
        engine.submit(GenerationRequest("probe", model=str(missing), **TINY), owner="bob")
    assert _same_words(str(existing_refused.value), str(secret_file), str(missing_refused.value), str(missing))
    assert "Available: " in str(existing_refused.value) and "tiny" in str(existing_refused.value)
    assert engine.models.loaded_names() == loaded
    job = engine.submit(GenerationRequest("by its name", model="tiny [0123456789]", **TINY), owner="bob")
    assert job.request.model == "tiny" and isinstance(job.wait(timeout=120), Finished)


def test_a_non_admin_cannot_name_a_path_on_any_route(server, engine, secret_file, tmp_path):
    missing = str(tmp_path / "no-such-file.safetensors")
    loaded = engine.models.loaded_names()
    with server.client("bob") as bob:
        answers = {}
        for name in (str(secret_file), missing):
            override = {"override_settings": {"sd_model_checkpoint": name}}
            for route in ("/sdapi/v1/txt2img", "/studio/api/jobs"):
                response = bob.post(route, json=dict(SMALL, **override))
                assert response.status_code == 422, (route, response.text)
                answers[(route, name)] = response.json()["detail"]
            options = bob.post("/sdapi/v1/options", json={"sd_model_checkpoint": name})
            assert options.status_code == 422
        for route in ("/sdapi/v1/txt2img", "/studio/api/jobs"):
            assert _same_words(answers[(route, str(secret_file))], str(secret_file), answers[(route, missing)], missing)
            assert "Available: " in answers[(route, missing)]
        assert bob.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == engine.info().model
    assert engine.models.loaded_names() == loaded


# ---- quiet errors


def test_a_generation_failure_tells_the_user_nothing_of_the_server(server, engine):
    unet = engine.models.get("tiny").pipe.unet
    calls = {"n": 0}

    def fail_on_second_step(module, args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyError("/srv/studio/secret/unet-weights.bin")

    handle = unet.register_forward_pre_hook(fail_on_second_step)
    try:
        with server.client("alice") as alice:
            failed = alice.post("/sdapi/v1/txt2img", json=dict(SMALL, steps=4))
            progress = alice.get("/sdapi/v1/progress").json()
    finally:
        handle.remove()
    assert failed.status_code == 500
    detail = failed.json()["detail"]
    for leak in ("KeyError", "/srv/studio", "unet-weights", "Traceback"):
        assert leak not in failed.text and leak not in str(progress), leak
    assert "log" in detail and "try again" in detail


def test_a_save_failure_tells_the_user_nothing_of_the_server(engine, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", "/srv/studio/outputs/bob/2024-01-01/00001.png")

    monkeypatch.setattr(engine.outputs, "save_png", disk_full)
    result = engine.generate(GenerationRequest("full disk", **TINY), owner="bob")
    assert isinstance(result, Failed)
    for leak in ("OSError", "/srv/studio", "Errno", "No space left"):
        assert leak not in result.message, leak
    assert "could not be saved" in result.message and "operator" in result.message


def test_an_admins_model_failure_names_no_server_path(server, engine, secret_file):
    """The admin may name a path; what comes back is still the studio's words, not the library's or the disk's."""
    loaded = engine.models.loaded_names()
    with server.client("root") as root:
        response = root.post("/sdapi/v1/txt2img", json=dict(SMALL, override_settings={"sd_model_checkpoint": str(secret_file)}))
    assert response.status_code == 500
    assert response.json()["detail"] == "Model 'secret-weights.safetensors' is not a readable .safetensors checkpoint."
    assert str(secret_file.parent) not in response.text
    assert engine.models.loaded_names() == loaded


def test_model_errors_keep_paths_for_the_log_only(tmp_path, studio_cache):
    import torch

    from studio.checkpoints import HashCache, ModelError, ModelSource, load_model, resolve_model
    from studio.config import Settings

    settings = Settings(models_dir=tmp_path / "operator-models", cache_dir=studio_cache)
    with pytest.raises(ModelError) as not_found:
        resolve_model("nothing-here.safetensors", settings)
    assert str(settings.models_dir) in str(not_found.value)  # the operator's CLI and log keep the detail
    assert str(tmp_path) not in not_found.value.public_message and "nothing-here" in not_found.value.public_message

    folder = tmp_path / "broken-diffusers"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}')
    with pytest.raises(ModelError) as broken:
        load_model(ModelSource("folder", str(folder), folder.name), settings, torch.device("cpu"), torch.float32, HashCache(tmp_path / "h.json"))
    assert str(folder) in str(broken.value)
    assert broken.value.public_message == "Model 'broken-diffusers' could not be loaded; the reason is in the server's log."


# ---- memory


def test_memory_figures_are_for_admins(server):
    with server.client("bob") as bob, server.client("root") as root:
        refused = bob.get("/sdapi/v1/memory")
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]
        assert "ram" not in refused.text
        assert root.get("/sdapi/v1/memory").json()["ram"]["total"] > 0


# ---- a client that goes away


def test_a_client_that_disconnects_has_its_job_cancelled_within_a_step(server, engine):
    owner_root = engine.outputs.owner_root("carol")
    before = set(owner_root.rglob("*.png")) if owner_root.exists() else set()
    prompt = f"nobody waits for this {time.time()}"
    body = dict(prompt=prompt, steps=150, width=128, height=128, sampler_name="Euler", seed=5)
    with server.client("carol", timeout=httpx.Timeout(5.0, read=3.0)) as carol:
        with pytest.raises(httpx.ReadTimeout):
            carol.post("/sdapi/v1/txt2img", json=body)
    gone = time.monotonic()
    job = engine.jobs.latest("carol")
    try:
        assert job is not None and job.request.prompt == prompt
        result = job.wait(timeout=20)
        assert isinstance(result, Cancelled), result
        assert time.monotonic() - gone < 15
        assert job.last_step is None or job.last_step.step < job.last_step.total
    finally:
        engine.cancel(job)
        job.wait(timeout=120)
    deadline = time.monotonic() + 15  # the worker is free soon: the remaining steps are skipped, not run
    while job in engine.running_jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job not in engine.running_jobs
    time.sleep(0.5)  # the saver thread would have written by now
    after = set(owner_root.rglob("*.png")) if owner_root.exists() else set()
    assert after == before

    from studio.web.a1111 import DISCONNECT_POLL_SECONDS

    assert 0.02 < DISCONNECT_POLL_SECONDS <= 0.1  # the handler looks a few times a second, without spinning
