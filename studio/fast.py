"""Fast mode (`--fast`): everything that trades start-up time for sampling speed, applied to a loaded model in one place.

What it does to a loaded pipeline (its modules are shared by every task pipeline built with from_pipe, so the
changes reach txt2img, img2img and inpaint alike):

- fused QKV projections in the UNet and VAE attention (diffusers' `fuse_qkv_projections`; one matmul instead of three),
- channels-last memory format for the UNet and VAE (what cuDNN/inductor convolutions prefer),
- torch.compile (inductor, static shapes) of the UNet forward and of the VAE decoder,
- on CUDA, CUDA graphs of the compiled UNet per input shape (batch × size × task), captured by `GraphedForward`
  below rather than by inductor's "reduce-overhead" mode: a graph captured here can be replayed from any thread (the
  engine warms up on the main thread and samples on its worker thread), and the graphs share one memory pool.

`make_fast` compiles once for the model's common size (batch 1, CFG on) by running a short txt2img; other shapes
compile on first use. The model cache compiles the start model in place at start, and any later model on its
background compile thread (`fast_pipeline` on a copy of the UNet and VAE) while jobs run on the eager model. Images equal default mode's within fp16 tolerance (tests/test_fast.py; the GPU check
is in bench/).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

log = logging.getLogger(__name__)

MAX_GRAPHS = 8  # CUDA graphs kept per UNet (each holds its activations in the shared pool)
WARMUP_CALLS = 2  # compiled calls of a new shape before its graph is captured (compile, then one warm run)


@dataclass
class FastReport:
    """What make_fast did, for logs and the benchmark."""

    fused_qkv: list[str] = field(default_factory=list)
    channels_last: bool = False
    compiled: list[str] = field(default_factory=list)
    cuda_graphs: bool = False
    warmup_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _flatten(value, tensors: list, path: str = ""):
    """A hashable description of a call's arguments, collecting its tensors (in order) into `tensors`."""
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return ("T", tuple(value.shape), str(value.dtype), str(value.device), value.dim() == 4 and value.is_contiguous(memory_format=torch.channels_last))
    if isinstance(value, dict):
        return ("D", tuple((k, _flatten(v, tensors)) for k, v in sorted(value.items())))
    if isinstance(value, (list, tuple)):
        return ("L", tuple(_flatten(v, tensors) for v in value))
    return ("V", repr(value))


def _rebuild(value, tensors: list):
    """`value` with its tensors replaced, in `_flatten`'s order, by `tensors` (consumed from the front)."""
    if isinstance(value, torch.Tensor):
        return tensors.pop(0)
    if isinstance(value, dict):
        return {k: _rebuild(v, tensors) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return type(value)(_rebuild(v, tensors) for v in value)
    return value


def _clone_out(out):
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, tuple):
        return tuple(_clone_out(o) for o in out)
    if isinstance(out, list):
        return [_clone_out(o) for o in out]
    return out


class _Graph:
    def __init__(self, fn: Callable, args: tuple, kwargs: dict, pool):
        flat: list = []
        _flatten((args, kwargs), flat)
        self.static_inputs = [t.clone() for t in flat]
        static_args, static_kwargs = _rebuild((args, kwargs), list(self.static_inputs))
        self.graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            fn(*static_args, **static_kwargs)  # one run on the capture stream (allocator warm-up)
        torch.cuda.current_stream().wait_stream(stream)
        # thread_local: the preview thread may touch CUDA (event waits, pinned copies) while this one captures.
        with torch.cuda.graph(self.graph, pool=pool, capture_error_mode="thread_local"):
            self.static_output = fn(*static_args, **static_kwargs)

    def __call__(self, tensors: list):
        for static, new in zip(self.static_inputs, tensors):
            static.copy_(new, non_blocking=True)
        self.graph.replay()
        return _clone_out(self.static_output)  # the next replay overwrites the static output


class GraphedForward:
    """Replaces a module's forward: compiled calls for a new shape, then a CUDA graph replayed for it from then on.

    Keyed by the shapes, dtypes and devices of every tensor argument and the values of the others. Shapes beyond
    MAX_GRAPHS, or a capture that fails, run the compiled forward without a graph; so does every call while a job's
    step hooks need Python to run inside the UNet (graphs_paused), since a replayed graph skips it."""

    def __init__(self, compiled: Callable, use_graphs: bool):
        self.compiled = compiled
        self.use_graphs = use_graphs
        self.graphs: dict = {}
        self.calls: dict = {}
        self.failed: set = set()
        self.pool = None  # the graphs' shared memory pool, made at the first capture
        self.paused = 0  # > 0 while a job runs hooks that are not graph-safe (graphs_paused)
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        if not self.use_graphs or self.paused or torch.is_grad_enabled():
            return self.compiled(*args, **kwargs)
        flat: list = []
        key = _flatten((args, kwargs), flat)
        with self._lock:
            graph = self.graphs.get(key)
            if graph is None and key not in self.failed:
                seen = self.calls.get(key, 0)
                self.calls[key] = seen + 1
                if seen >= WARMUP_CALLS and len(self.graphs) < MAX_GRAPHS:
                    try:
                        if self.pool is None:
                            self.pool = torch.cuda.graph_pool_handle()
                        graph = self.graphs[key] = _Graph(self.compiled, args, kwargs, self.pool)
                    except Exception as exc:  # e.g. an op that synchronizes: keep running compiled, uncaptured
                        self.failed.add(key)
                        log.warning("CUDA graph capture failed (%s: %s); running compiled without a graph", type(exc).__name__, exc)
                        torch.cuda.synchronize()
            if graph is not None:
                return graph(flat)
        return self.compiled(*args, **kwargs)


@contextlib.contextmanager
def graphs_paused(pipe, pause: bool = True):
    """Run `pipe` without replaying CUDA graphs while `pause` (a job whose step hooks are not graph-safe: a graph
    replay skips Python inside the UNet, such as an attention processor that records maps). Compiled code still
    runs. No effect on a pipeline that is not in fast mode."""
    forward = getattr(getattr(pipe, "unet", None), "forward", None)
    if not pause or not isinstance(forward, GraphedForward):
        yield
        return
    forward.paused += 1
    try:
        yield
    finally:
        forward.paused -= 1


def _compile(fn: Callable, backend: str) -> Callable:
    return torch.compile(fn, backend=backend, dynamic=False, fullgraph=False)


def apply_fast(pipe, device: torch.device, compile_modules: bool = True, cuda_graphs: Optional[bool] = None, backend: Optional[str] = None) -> FastReport:
    """Make `pipe` (and every pipeline sharing its modules) fast, in place. Compilation itself is lazy: the first call
    of each shape pays for it (make_fast's warm-up does that for the common shape).

    backend: torch.compile's backend (default inductor, or $STUDIO_FAST_BACKEND; "eager" traces with dynamo only,
    for tests on machines where inductor compiles too slowly)."""
    import os

    import torch._inductor.config as inductor_config

    report = FastReport()
    inductor_config.conv_1x1_as_mm = True  # diffusers' own torch.compile advice
    unet, vae = pipe.unet, pipe.vae
    for name, module in (("unet", unet), ("vae", vae)):
        fuse = getattr(module, "fuse_qkv_projections", None)
        if fuse is None:
            continue
        try:
            fuse()  # also switches the attention processors to FusedAttnProcessor2_0 (SDPA)
            report.fused_qkv.append(name)
        except Exception as exc:  # e.g. added-KV attention, which diffusers refuses to fuse
            report.notes.append(f"{name}: fused QKV not applied ({exc})")
    unet.to(memory_format=torch.channels_last)
    vae.to(memory_format=torch.channels_last)
    report.channels_last = True
    if not compile_modules:
        return report
    backend = backend or os.environ.get("STUDIO_FAST_BACKEND", "inductor")
    use_graphs = device.type == "cuda" if cuda_graphs is None else cuda_graphs
    original_forward = unet.forward  # the bound method, before ours replaces it
    unet.forward = GraphedForward(_compile(original_forward, backend), use_graphs)
    report.compiled.append("unet")
    report.cuda_graphs = use_graphs
    vae.decoder.forward = _compile(vae.decoder.forward, backend)
    report.compiled.append("vae.decoder")
    return report


def is_fast(pipe) -> bool:
    return isinstance(getattr(pipe.unet, "forward", None), GraphedForward)


def make_fast(model, device: torch.device, dtype: torch.dtype, warm_up: bool = True, batch_sizes=(1,), capture_graphs: bool = True) -> FastReport:
    """Apply fast mode to a checkpoints.LoadedModel and compile it for its common size: a short txt2img per batch
    size at the model's default size, CFG on, so the first user job runs at full speed.

    capture_graphs=False: the warm-up compiles and runs each shape WARMUP_CALLS times but stops short of capturing
    its CUDA graph, which then happens on the first job's thread (the background compile uses this, so that no
    graph is captured on one thread while another thread samples)."""
    pipe = model.pipe
    if is_fast(pipe):
        return FastReport(notes=["already fast"])
    report = apply_fast(pipe, device)
    if warm_up:
        started = time.perf_counter()
        size = model.default_size
        for batch in batch_sizes:
            # No inference_mode here: graphs' static inputs must be ordinary tensors (pipelines run under no_grad).
            pipe(
                "warm-up",
                num_inference_steps=WARMUP_CALLS + 2 if capture_graphs else WARMUP_CALLS,  # compile, warm, [capture, replay]
                guidance_scale=7.0,
                width=size,
                height=size,
                num_images_per_prompt=batch,
                generator=torch.Generator("cpu").manual_seed(0),
                output_type="pil",
            )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        report.warmup_seconds = time.perf_counter() - started
    log.info(
        "Fast mode on %s: fused QKV %s, channels-last, compiled %s, CUDA graphs %s, warm-up %.1f s",
        model.name, report.fused_qkv or "none", report.compiled, "on" if report.cuda_graphs else "off", report.warmup_seconds,
    )
    for note in report.notes:
        log.info("Fast mode: %s", note)
    return report


def fast_pipeline(model, device: torch.device, dtype: torch.dtype, in_place: bool = False):
    """The fast form of a checkpoints.LoadedModel's pipeline, compiled and warmed up: ModelCache's default
    `compile_model`.

    in_place=True: `model.pipe` itself is made fast and returned (start-up: no job is running on it yet).
    in_place=False: the UNet and VAE are copied and the copy is made fast, leaving `model.pipe` untouched, so jobs
    keep running on it (eager) while this runs on another thread; the result shares the text encoders with
    `model.pipe`, and has its own scheduler and tokenizers. Costs a second UNet + VAE in device memory until the cache swaps the fast
    form in and the eager one is dropped."""
    import copy
    from dataclasses import replace

    if in_place:
        make_fast(model, device, dtype)
        return model.pipe
    pipe = model.pipe
    with torch.no_grad():
        unet, vae = copy.deepcopy(pipe.unet), copy.deepcopy(pipe.vae)
    # Its own scheduler (a scheduler holds per-run state) and tokenizers (a fast tokenizer may refuse concurrent
    # use): the warm-up below runs on this thread while jobs run on `pipe`. Weights are shared, read-only.
    own = {"scheduler": type(pipe.scheduler).from_config(pipe.scheduler.config)}
    for name in ("tokenizer", "tokenizer_2"):
        if getattr(pipe, name, None) is not None:
            own[name] = copy.deepcopy(getattr(pipe, name))
    fast = type(pipe).from_pipe(pipe, unet=unet, vae=vae, dtype=dtype, **own)
    fast.set_progress_bar_config(disable=True)
    make_fast(replace(model, pipe=fast, task_pipelines={}), device, dtype, capture_graphs=False)
    return fast
