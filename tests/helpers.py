"""Small helpers shared by tests: diffusers' own pipelines on the tiny model's weights, images, event collection."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from studio.contract import TERMINAL_EVENTS


def reference_pipeline(cache_dir, task: str = "txt2img", sampler: str = "Euler a"):
    """diffusers' own pipeline class for `task`, on a freshly built tiny model (same recipe → same weights),
    with the scheduler a diffusers user would make for `sampler`."""
    import diffusers

    from studio.pipelines import plain_scheduler
    from studio.samplers import find_sampler

    base = _tiny_base(str(cache_dir))
    cls = {
        "txt2img": diffusers.StableDiffusionPipeline,
        "img2img": diffusers.StableDiffusionImg2ImgPipeline,
        "inpaint": diffusers.StableDiffusionInpaintPipeline,
    }[task]
    components = dict(base.components)
    components["scheduler"] = plain_scheduler(find_sampler(sampler), dict(base.scheduler.config))
    pipe = cls(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def _tiny_base(cache_dir: str):
    # Built once per test session: the reference pipelines only read these modules.
    from studio.checkpoints import materialize_config
    from studio.tiny import build_tiny_pipeline

    return build_tiny_pipeline(materialize_config("tiny", Path(cache_dir)) / "tokenizer")


def pixels(image) -> np.ndarray:
    if not isinstance(image, Image.Image):
        image = Image.open(image)
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def gradient_image(width: int = 64, height: int = 64) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    rgb = np.stack([np.tile(x, (height, 1)), np.tile(y[:, None], (1, width)), np.full((height, width), 128, np.uint8)], axis=-1)
    return Image.fromarray(rgb)


def square_mask(width: int = 64, height: int = 64, box=(16, 16, 48, 48)) -> Image.Image:
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def collect(job, timeout: float = 120.0) -> list:
    """Every event of a job until the terminal one."""
    import time

    events, deadline = [], time.time() + timeout
    while time.time() < deadline:
        event = job.channel.get(timeout=0.5)
        if event is None:
            continue
        events.append(event)
        if isinstance(event, TERMINAL_EVENTS):
            return events
    raise AssertionError(f"job did not finish in {timeout} s; events so far: {events}")


@contextlib.contextmanager
def engine_on(model: str, outputs: Path, cache_dir, warmup: bool = False):
    """A started engine of its own on `model` (a folder built by the test, say), stopped afterwards."""
    from studio.config import Settings
    from studio.engine import Engine
    from studio.outputs import OutputStore

    settings = Settings(model=model, outputs=outputs, cache_dir=cache_dir, warmup=warmup)
    engine = Engine(settings, OutputStore(settings.outputs)).start()
    try:
        yield engine
    finally:
        engine.stop()
