"""Fast mode (studio/fast.py): images equal default mode's.

On a CPU, inductor needs many minutes to compile even the tiny UNet (measured: not done after 9 minutes on 2 cores),
so the compiled comparison runs only where CUDA is available (it ran on an H100: see bench/RESULTS.md); the CPU tests
cover the parts that change numerics without a compiler (fused QKV, channels-last), the graph wrapper's bookkeeping
and the settings flag.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from studio.config import Settings, add_engine_arguments, settings_from_args
from studio.fast import GraphedForward, _flatten, _rebuild, apply_fast, graphs_paused, is_fast


def _tiny(studio_cache):
    from studio import tiny
    from studio.checkpoints import materialize_config

    return tiny.build_tiny_pipeline(materialize_config("tiny", studio_cache) / "tokenizer")


def _image(pipe, seed, steps=4, size=64, device="cpu"):
    image = pipe(
        "a red cube", num_inference_steps=steps, guidance_scale=7.0, width=size, height=size,
        generator=torch.Generator("cpu").manual_seed(seed),
    ).images[0]
    return np.asarray(image).astype(np.int16)


def test_fast_flag_parses():
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    assert settings_from_args(parser.parse_args(["--fast"])).fast is True
    assert settings_from_args(parser.parse_args([])).fast is False
    assert Settings().fast is False


def test_fused_qkv_and_channels_last_keep_images(studio_cache):
    default, fast = _tiny(studio_cache), _tiny(studio_cache)
    report = apply_fast(fast, torch.device("cpu"), compile_modules=False)
    assert report.fused_qkv == ["unet", "vae"] and report.channels_last
    assert not is_fast(fast)  # nothing compiled
    for seed in (3, 4):
        assert np.abs(_image(default, seed) - _image(fast, seed)).max() <= 1


def test_graphed_forward_without_graphs_is_the_function():
    calls = []

    def fn(x, t, extra=None):
        calls.append(x.shape)
        return (x * 2 + t,)

    wrapped = GraphedForward(fn, use_graphs=False)
    with torch.no_grad():
        out = wrapped(torch.ones(2, 3), torch.tensor(1.0), extra={"a": torch.zeros(1)})
    assert torch.equal(out[0], torch.full((2, 3), 3.0)) and calls == [(2, 3)]


def test_hooks_that_are_not_graph_safe_pause_graph_replay():
    """While a job's hooks need Python inside the UNet, its calls go to the compiled forward and count toward no
    graph; afterwards graph bookkeeping resumes (the capture itself needs CUDA: bench/ measures it)."""
    calls = []
    forward = GraphedForward(lambda x: calls.append(x) or x * 2, use_graphs=True)
    pipe = SimpleNamespace(unet=SimpleNamespace(forward=forward))
    x = torch.ones(2)
    with graphs_paused(pipe, pause=True), torch.no_grad():
        for _ in range(5):
            assert torch.equal(forward(x), x * 2)
        assert forward.calls == {} and forward.graphs == {}
    assert forward.paused == 0
    with graphs_paused(pipe, pause=False), torch.no_grad():  # graph-safe hooks: bookkeeping as usual (pipelines run without grad)
        forward(x)
    assert list(forward.calls.values()) == [1] and len(calls) == 6
    with graphs_paused(SimpleNamespace(unet=SimpleNamespace(forward=lambda x: x)), pause=True):
        pass  # a pipeline not in fast mode: nothing to pause


def test_flatten_keys_and_rebuilds():
    tensors: list = []
    value = ((torch.zeros(2, 4, 8, 8), 3), {"b": torch.ones(1), "a": None})
    key = _flatten(value, tensors)
    assert len(tensors) == 2 and hash(key) is not None
    other: list = []
    assert _flatten(((torch.zeros(1, 4, 8, 8), 3), {"b": torch.ones(1), "a": None}), other) != key
    rebuilt = _rebuild(value, [t + 1 for t in tensors])
    assert torch.equal(rebuilt[0][0], torch.ones(2, 4, 8, 8)) and rebuilt[0][1] == 3 and rebuilt[1]["a"] is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="inductor compiles the tiny UNet far too slowly on a CPU; runs on CUDA")
def test_compiled_fast_mode_equals_default_on_cuda(studio_cache):
    device = torch.device("cuda")
    default = _tiny(studio_cache).to(device, torch.float16)
    fast = _tiny(studio_cache).to(device, torch.float16)
    report = apply_fast(fast, device)
    assert report.cuda_graphs and is_fast(fast)
    for seed in (5, 5, 6):  # the second call of a shape replays a captured graph
        for steps in (4,):
            a, b = _image(default, seed, steps, 128), _image(fast, seed, steps, 128)
            assert np.abs(a - b).max() <= 4, f"seed {seed}: max abs diff {np.abs(a - b).max()}"
    assert fast.unet.forward.graphs, "no CUDA graph was captured"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need CUDA")
def test_engine_fast_setting_on_cuda(tmp_path, studio_cache):
    from studio.engine import Engine
    from studio.outputs import OutputStore
    from studio.contract import Finished, GenerationRequest

    settings = Settings(model="tiny", outputs=tmp_path, cache_dir=studio_cache, warmup=False, fast=True, device="cuda")
    engine = Engine(settings, OutputStore(tmp_path)).start()
    try:
        assert is_fast(engine.models.get("tiny").pipe)
        result = engine.generate(GenerationRequest("x", seed=1, steps=4, width=128, height=128))
        assert isinstance(result, Finished)
    finally:
        engine.stop()
