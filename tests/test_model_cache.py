"""The model cache (studio/checkpoints.py ModelCache): thread-safe views while loads run, the hashes view, a failed
load keeping the loaded model, and fast mode's background compile (injected, cheap compile functions: inductor is far
too slow on a CPU; the real compile's equality is tests/test_fast.py's and bench/'s)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from studio import checkpoints
from studio.checkpoints import FAST_EAGER, FAST_FAILED, FAST_ON, FAST_READY, LoadedModel, ModelCache, ModelError, ModelSource
from studio.config import Settings
from studio.pipelines import AttentionChoice

WAIT = 10  # seconds: generous for 2 busy cores; a blocked reader would hit it


def _attention():
    return AttentionChoice("sdpa", "test")


class FakeLoads:
    """Stands in for load_model: instant, or held on an event, or failing, per model name."""

    def __init__(self):
        self.hold: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.fail: set[str] = set()
        self.count: dict[str, int] = {}

    def __call__(self, source, settings, device, dtype, hashes):
        self.count[source.name] = self.count.get(source.name, 0) + 1
        self.started.setdefault(source.name, threading.Event()).set()
        if source.name in self.hold:
            assert self.hold[source.name].wait(WAIT)
        if source.name in self.fail:
            raise ModelError(f"Model '{source.name}' could not be loaded (test)")
        pipe = SimpleNamespace(name=f"eager-{source.name}")
        return LoadedModel(source, "sd1", pipe, {}, f"{abs(hash(source.name)) % 10**10:010d}", 64)


@pytest.fixture
def fake(monkeypatch):
    loads = FakeLoads()
    monkeypatch.setattr(checkpoints, "load_model", loads)
    monkeypatch.setattr(checkpoints, "resolve_model", lambda name, settings: ModelSource("tiny", name, name))
    monkeypatch.setattr("studio.pipelines.apply_attention", lambda pipe, choice: None)
    return loads


def _cache(tmp_path, **settings_kwargs) -> ModelCache:
    settings = Settings(cache_dir=tmp_path, outputs=tmp_path, warmup=False, **settings_kwargs)
    return ModelCache(settings, torch.device("cpu"), torch.float32, _attention())


def _in_thread(fn, *args):
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _wait_for(predicate, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---- thread safety and views


def test_readers_are_not_blocked_by_a_load(fake, tmp_path):
    cache = _cache(tmp_path, max_models=2)
    cache.get("a")
    fake.hold["b"] = threading.Event()
    loader, box = _in_thread(cache.get, "b")
    assert fake.started.setdefault("b", threading.Event()).wait(WAIT)
    started = time.monotonic()
    assert cache.loaded_names() == ["a"]
    assert [m.name for m in cache.loaded_models()] == ["a"]
    assert list(cache.loaded_hashes()) == ["a"]
    assert cache.get("a").name == "a"  # a job on the loaded model does not wait for the load either
    assert time.monotonic() - started < 2, "a reader waited for the load"
    fake.hold["b"].set()
    loader.join(WAIT)
    assert "error" not in box and box["value"].name == "b"
    assert cache.loaded_names() == ["a", "b"]


def test_concurrent_readers_see_consistent_lists_while_models_load_and_evict(fake, tmp_path):
    cache = _cache(tmp_path, max_models=2)
    names = ["a", "b", "c", "d"]
    stop = threading.Event()
    problems: list = []

    def read():
        while not stop.is_set():
            try:
                listed = cache.loaded_names()
                models = cache.loaded_models()
                hashes = cache.loaded_hashes()
                for seen in (listed, [m.name for m in models], list(hashes)):
                    assert len(seen) <= 2 and len(set(seen)) == len(seen) and set(seen) <= set(names), seen
                assert all(len(h) == 10 for h in hashes.values())
                time.sleep(0.001)  # readers keep coming without starving the loader of the interpreter
            except Exception as exc:  # noqa: BLE001 - collected for the assertion below
                problems.append(exc)
                return

    readers = [threading.Thread(target=read, daemon=True) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for round_ in range(8):  # each name loaded twice; every load past the second evicts one
            cache.get(names[round_ % len(names)])
    finally:
        stop.set()
        for reader in readers:
            reader.join(WAIT)
    assert not problems, problems[0]
    assert cache.loaded_names() == ["c", "d"]


def test_two_threads_asking_for_the_same_model_load_it_once(fake, tmp_path):
    cache = _cache(tmp_path, max_models=2)
    fake.hold["a"] = threading.Event()
    first, box1 = _in_thread(cache.get, "a")
    assert fake.started.setdefault("a", threading.Event()).wait(WAIT)
    second, box2 = _in_thread(cache.get, "a")
    time.sleep(0.1)
    fake.hold["a"].set()
    first.join(WAIT), second.join(WAIT)
    assert box1["value"] is box2["value"] and fake.count["a"] == 1


def test_hashes_view(fake, tmp_path):
    cache = _cache(tmp_path, max_models=2)
    a, b = cache.get("a"), cache.get("b")
    assert cache.loaded_hashes() == {"a": a.model_hash, "b": b.model_hash}
    cache.get("c")  # evicts a
    assert list(cache.loaded_hashes()) == ["b", "c"]


def test_engine_model_hashes_uses_the_public_view(engine):
    from studio import tiny

    assert engine.model_hashes() == engine.models.loaded_hashes()
    assert engine.model_hashes()["tiny"] == tiny.recipe_hash()[:10]


def test_a_failed_load_keeps_the_loaded_model(fake, tmp_path):
    cache = _cache(tmp_path, max_models=1)
    cache.get("a")
    fake.fail.add("bad")
    with pytest.raises(ModelError):
        cache.get("bad")
    assert cache.loaded_names() == ["a"] and fake.count["a"] == 2  # evicted for the load, then loaded again


# ---- fast mode: the background compile


class FakeCompile:
    """compile_model for tests: records its calls; holds named models' compiles on an event."""

    def __init__(self):
        self.calls: list = []
        self.hold: dict[str, threading.Event] = {}
        self.fail: set[str] = set()

    def __call__(self, model, in_place):
        self.calls.append((model.name, in_place, threading.current_thread().name))
        if model.name in self.hold:
            assert self.hold[model.name].wait(WAIT)
        if model.name in self.fail:
            raise RuntimeError("compiler crashed (test)")
        return SimpleNamespace(name=f"compiled-{model.name}")


def _fast_cache(tmp_path, compile_model, max_models=2):
    settings = Settings(cache_dir=tmp_path, outputs=tmp_path, warmup=False, fast=True, max_models=max_models)
    return ModelCache(settings, torch.device("cpu"), torch.float32, _attention(), compile_model=compile_model)


def test_the_start_model_compiles_in_place_and_a_later_one_in_the_background(fake, tmp_path):
    compile_ = FakeCompile()
    cache = _fast_cache(tmp_path, compile_)
    try:
        start = cache.get("a")
        assert start.pipe.name == "compiled-a" and cache.fast_state("a") == FAST_ON
        assert compile_.calls == [("a", True, threading.current_thread().name)]

        compile_.hold["b"] = threading.Event()
        b = cache.get("b")  # returns at once, in default mode
        assert b.pipe.name == "eager-b" and cache.fast_state("b") == FAST_EAGER
        assert _wait_for(lambda: len(compile_.calls) == 2)
        assert compile_.calls[1][:2] == ("b", False) and compile_.calls[1][2] == "studio-compile"

        # Another user's job on `a` while b compiles: not blocked, and b's own jobs run eager meanwhile.
        started = time.monotonic()
        assert cache.get("a").pipe.name == "compiled-a"
        b.task_pipelines["txt2img"] = "built on the eager modules"
        assert cache.get("b").pipe.name == "eager-b"
        assert time.monotonic() - started < 2

        compile_.hold["b"].set()
        assert _wait_for(lambda: cache.fast_state("b") == FAST_READY)
        assert b.pipe.name == "eager-b"  # swapped only by the next get (between jobs), never under a running job
        again = cache.get("b")
        assert again is b and b.pipe.name == "compiled-b" and cache.fast_state("b") == FAST_ON
        assert b.task_pipelines == {}, "task pipelines on the eager modules must be rebuilt"
    finally:
        cache.stop()


def test_a_failed_background_compile_leaves_the_model_in_default_mode(fake, tmp_path):
    compile_ = FakeCompile()
    cache = _fast_cache(tmp_path, compile_)
    try:
        cache.get("a")
        compile_.fail.add("b")
        b = cache.get("b")
        assert _wait_for(lambda: cache.fast_state("b") == FAST_FAILED)
        assert cache.get("b").pipe.name == "eager-b" and b.pipe.name == "eager-b"
    finally:
        cache.stop()


def test_a_model_unloaded_while_it_compiles_drops_its_compiled_form(fake, tmp_path):
    compile_ = FakeCompile()
    cache = _fast_cache(tmp_path, compile_, max_models=1)
    try:
        cache.get("a")
        compile_.hold["b"] = threading.Event()
        cache.get("b")  # evicts a
        assert _wait_for(lambda: len(compile_.calls) == 2)
        cache.get("a")  # evicts b while it compiles; a compiles again, in the background this time
        compile_.hold["b"].set()
        assert _wait_for(lambda: cache.fast_state("a") == FAST_READY)
        assert cache.loaded_names() == ["a"] and cache.fast_state("b") is None
        assert cache.get("a").pipe.name == "compiled-a"
    finally:
        cache.stop()


def test_stop_ends_the_compile_thread_and_drops_queued_compiles(fake, tmp_path):
    compile_ = FakeCompile()
    cache = _fast_cache(tmp_path, compile_, max_models=3)
    cache.get("a")
    compile_.hold["b"] = threading.Event()
    cache.get("b")
    cache.get("c")  # queued behind b
    assert _wait_for(lambda: len(compile_.calls) == 2)
    thread = cache._compiler._thread
    compile_.hold["b"].set()
    cache.stop(timeout=WAIT)
    assert not thread.is_alive()
    assert [call[0] for call in compile_.calls] == ["a", "b"], "a queued compile ran after stop()"
    cache.stop()  # twice is fine


def test_stop_without_fast_mode_is_a_no_op(fake, tmp_path):
    cache = _cache(tmp_path)
    cache.get("a")
    cache.stop()
    assert cache.fast_state("a") is None


# ---- the real fast_pipeline on the tiny model, with torch.compile replaced by the identity (inductor takes many
# minutes on a CPU): copies, fused QKV, channels-last, the graph wrapper, the background warm-up and the swap.


def _image(pipe, seed):
    image = pipe(
        "a red cube", num_inference_steps=3, guidance_scale=7.0, width=64, height=64,
        generator=torch.Generator("cpu").manual_seed(seed),
    ).images[0]
    return np.asarray(image).astype(np.int16)


def test_background_compile_of_a_real_model_keeps_images_and_leaves_the_eager_one_alone(tmp_path, studio_cache, monkeypatch):
    from studio import fast

    monkeypatch.setattr(fast, "_compile", lambda fn, backend: fn)
    settings = Settings(model="tiny", cache_dir=studio_cache, outputs=tmp_path, warmup=False, fast=True, max_models=2)
    cache = ModelCache(settings, torch.device("cpu"), torch.float32, _attention())
    cache._loaded_once = True  # as if the start model were loaded: tiny is "a later model" and compiles in the background
    try:
        model = cache.get("tiny")
        eager = model.pipe
        assert not fast.is_fast(eager)
        before = _image(eager, 7)
        assert _wait_for(lambda: cache.fast_state("tiny") in (FAST_READY, FAST_FAILED), timeout=120)
        assert cache.fast_state("tiny") == FAST_READY
        compiled = cache.get("tiny").pipe
        assert compiled is not eager and fast.is_fast(compiled) and not fast.is_fast(eager)
        assert compiled.unet is not eager.unet and compiled.text_encoder is eager.text_encoder
        after = _image(compiled, 7)
        assert np.abs(before - after).max() <= 1
        assert np.abs(_image(eager, 7) - before).max() == 0, "the compile changed the eager pipeline"
    finally:
        cache.stop()
