"""Latents → small pictures while sampling: the family's linear latent→RGB projection (families.py), TAESD, or the
full VAE; plus the 4 latent channels as grayscale images for the Step previews tab.

The sampling thread only queues GPU work and an asynchronous copy to the CPU (no synchronisation); a separate
thread waits for the copy, builds the pictures and encodes them, so previews never stall the denoising loop.
"""

from __future__ import annotations

import functools
import io
import logging
import queue
import threading
from typing import Callable

import torch
from PIL import Image

from .families import family as family_named

log = logging.getLogger(__name__)

FRAME_MAX_SIDE = 512  # ComfyUI's cap: frames are for watching, not keeping
CHANNEL_MAX_SIDE = 128
LAZY_MAX_SIDE = 128  # pictures up to this size are kept raw and encoded when first looked at


class StepFrames:
    """One sampling step as pictures (JPEG bytes): what the image is becoming, the noisy latent, its 4 channels.

    Latent-sized pictures are kept as small arrays and encoded on first use (the Step previews tab, an export):
    most steps' frames are never looked at, and encoding six JPEGs a step would compete with the sampler for the
    CPU. A decoded picture (TAESD / VAE, up to 512 px) is encoded at once, which keeps it small in memory.
    """

    def __init__(self, step: int, total: int, x0, noisy, channels):
        self.step = step
        self.total = total
        self._x0 = x0
        if max(x0.shape[:2]) > LAZY_MAX_SIDE:
            self.__dict__["x0"] = encode_jpeg(_upscaled(Image.fromarray(x0)))  # fills the cached property
            self._x0 = None
        self._noisy = noisy
        self._channels = channels

    @functools.cached_property
    def x0(self) -> bytes:
        return encode_jpeg(_upscaled(Image.fromarray(self._x0)))

    @functools.cached_property
    def live(self) -> bytes:
        """The x0 picture for the live stream: a latent-sized one as it is (the browser scales it), so streaming
        every step costs one tiny JPEG."""
        if self._x0 is None:
            return self.x0
        return encode_jpeg(Image.fromarray(self._x0))

    @functools.cached_property
    def noisy(self) -> bytes:
        return encode_jpeg(_upscaled(Image.fromarray(self._noisy)))

    @functools.cached_property
    def channels(self) -> tuple[bytes, bytes, bytes, bytes]:
        return tuple(encode_jpeg(_upscaled(Image.fromarray(c), CHANNEL_MAX_SIDE)) for c in self._channels)

    @property
    def nbytes(self) -> int:
        """About the memory this step's pictures hold: the arrays kept raw plus the JPEGs encoded so far (the job
        store's frame budget counts it)."""

        def size(value) -> int:
            if value is None:
                return 0
            if isinstance(value, (bytes, bytearray)):
                return len(value)
            if hasattr(value, "nbytes"):
                return int(value.nbytes)
            if isinstance(value, (tuple, list)):
                return sum(size(v) for v in value)
            return 0

        encoded = [self.__dict__.get(name) for name in ("x0", "noisy", "channels")]
        live = self.__dict__.get("live")
        if live is not None and live is not encoded[0]:
            encoded.append(live)
        return size(self._x0) + size(self._noisy) + size(self._channels) + size(encoded)


def encode_jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class PreviewDecoder:
    """Turns the sampler's latents into uint8 pictures on the device. Mode: latent | taesd | vae | off."""

    def __init__(self, mode: str, family: str, vae, device: torch.device, dtype: torch.dtype, taesd_loader: Callable | None = None):
        self.family = family
        self.vae = vae
        self.mode = mode
        self.note = None
        self.taesd = None
        facts = family_named(family)
        self._weights = torch.tensor(facts.latent_rgb_factors, device=device, dtype=torch.float32)
        self._bias = torch.tensor(facts.latent_rgb_bias, device=device, dtype=torch.float32)
        if mode == "taesd":
            try:
                self.taesd = taesd_loader(family).to(device=device, dtype=dtype) if taesd_loader else None
            except Exception as exc:
                self.note = f"TAESD previews unavailable ({str(exc).splitlines()[0]}); using latent previews"
            if self.taesd is None:
                self.mode = "latent"
                self.note = self.note or "TAESD previews unavailable; using latent previews"
                log.warning(self.note)

    def _project(self, latents: torch.Tensor) -> torch.Tensor:
        # (4, h, w) → (h, w, 3) uint8
        rgb = torch.einsum("chw,cr->hwr", latents.float(), self._weights) + self._bias
        return ((rgb.clamp(-1, 1) + 1) * 127.5).to(torch.uint8)

    @torch.no_grad()
    def picture(self, latents: torch.Tensor) -> torch.Tensor:
        """The first image of a batch of scaled latents as (h, w, 3) uint8, on the device."""
        first = latents[:1]
        if self.mode == "taesd":
            image = self.taesd.decode(first.to(self.taesd.dtype) / self.taesd.config.scaling_factor).sample[0]
        elif self.mode == "vae":
            image = self.vae.decode(first.to(self.vae.dtype) / self.vae.config.scaling_factor).sample[0]
        else:
            return self._project(first[0])
        image = image.float()
        side = max(image.shape[-2:])
        if side > FRAME_MAX_SIDE:
            image = torch.nn.functional.interpolate(image[None], scale_factor=FRAME_MAX_SIDE / side, mode="area")[0]
        return ((image.clamp(-1, 1) + 1) * 127.5).to(torch.uint8).permute(1, 2, 0)

    @torch.no_grad()
    def noisy_and_channels(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = latents[0].float()
        low = first.amin(dim=(1, 2), keepdim=True)
        high = first.amax(dim=(1, 2), keepdim=True)
        channels = ((first - low) / (high - low).clamp_min(1e-6) * 255).to(torch.uint8)
        return self._project(first), channels


class FrameSink:
    """The thread that finishes preview frames off the sampling path: waits for the device→CPU copy, makes PIL
    images and JPEGs, and hands them to the job. `flush()` returns once every queued frame is delivered.
    start() and stop() belong to the engine's lifecycle owner, so no frame thread outlives its engine."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="preview-frames", daemon=True)
        self._lock = threading.Lock()  # a frame is never queued behind the stop marker, where flush() would hang
        self._stopped = False

    def start(self) -> "FrameSink":
        with self._lock:
            if not self._stopped and not self._thread.is_alive():
                self._thread.start()
        return self

    def submit(self, step: int, total: int, tensors: tuple, ready, deliver: Callable) -> None:
        with self._lock:
            if self._stopped:
                return  # the engine is stopping: nobody is left to watch
            self._queue.put((step, total, tensors, ready, deliver))

    def flush(self) -> None:
        self._queue.join()

    def stop(self, timeout: float | None = None) -> None:
        """Deliver the frames already queued, then end the thread and join it."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self._thread.is_alive():
                self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
            return
        while not self._queue.empty():  # never started: nothing will take these, and flush() must not hang
            self._queue.get_nowait()
            self._queue.task_done()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._finish(*item)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _finish(self, step: int, total: int, tensors: tuple, ready, deliver: Callable) -> None:
        try:
            if ready is not None:
                ready.synchronize()
            # Copied out of the (pinned) transfer buffers, which go back to torch's cache.
            x0, noisy, channels = (t.numpy().copy() for t in tensors)
            x0_image = _upscaled(Image.fromarray(x0))
            deliver(StepFrames(step, total, x0, noisy, channels), x0_image)
        except Exception:  # a broken frame must never take the job down
            log.exception("preview frame %s failed", step)


def _upscaled(image: Image.Image, target: int = 256) -> Image.Image:
    # Latent previews are 1/8 of the image size; scale small ones up so they are watchable.
    side = max(image.size)
    if side >= target:
        return image
    factor = target / side
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.BILINEAR)


def capture(decoder: PreviewDecoder, latents: torch.Tensor, x0: torch.Tensor | None):
    """Queue the device work for one step's pictures and an async copy to the CPU. Returns (tensors, ready event)."""
    picture = decoder.picture(x0 if x0 is not None else latents)
    noisy, channels = decoder.noisy_and_channels(latents)
    if latents.device.type == "cuda":
        out = []
        for t in (picture, noisy, channels):
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            host.copy_(t, non_blocking=True)
            out.append(host)
        event = torch.cuda.Event()
        event.record()
        return tuple(out), event
    return (picture.cpu(), noisy.cpu(), channels.cpu()), None


def load_taesd(family: str):
    """TAESD from the Hugging Face cache, downloading it once when allowed."""
    import os

    from diffusers import AutoencoderTiny

    taesd_id = family_named(family).taesd_id
    if not taesd_id:
        raise RuntimeError(f"no tiny autoencoder exists for the {family_named(family).label} family")
    try:
        return AutoencoderTiny.from_pretrained(taesd_id, local_files_only=True)
    except Exception:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
            raise RuntimeError(f"{taesd_id} is not in the Hugging Face cache and HF_HUB_OFFLINE is set") from None
        return AutoencoderTiny.from_pretrained(taesd_id)


class PreviewService:
    """Previews of running jobs: one decoder per (model, preview mode), kept while its model stays loaded, and the
    frame thread (FrameSink) that turns each step's tensors into pictures for the job."""

    def __init__(self, device: torch.device, dtype: torch.dtype, taesd_loader=None):
        self.device, self.dtype = device, dtype
        self.frames = FrameSink()
        self._taesd_loader = taesd_loader or load_taesd
        self._decoders: dict[tuple[str, str], PreviewDecoder] = {}

    def start(self) -> None:
        self.frames.start()

    def stop(self, timeout: float | None = None) -> None:
        """Deliver the frames already queued, then end the frame thread."""
        self.frames.stop(timeout)

    def flush(self) -> None:
        """Return once every queued frame has reached its job (before a job's final images)."""
        self.frames.flush()

    def decoder(self, mode: str, model, loaded_names: list[str]) -> PreviewDecoder | None:
        """The decoder for `model` (a checkpoints.LoadedModel) in preview `mode` (None when previews are off).
        Decoders of models no longer in `loaded_names` are dropped when a new one is built. Worker thread only."""
        if mode == "off":
            return None
        key = (model.name, mode)
        if key not in self._decoders:
            self._decoders = {k: v for k, v in self._decoders.items() if k[0] in loaded_names}
            self._decoders[key] = PreviewDecoder(mode, model.family, model.pipe.vae, self.device, self.dtype, taesd_loader=self._taesd_loader)
        return self._decoders[key]
