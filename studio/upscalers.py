"""A1111's upscalers, engine side: the latent modes of hires fix, and the picture upscalers of hires fix and Extras —
"None", "Lanczos", "Nearest" and ESRGAN-family models dropped into a folder (A1111's models/ESRGAN, models/RealESRGAN),
loaded with spandrel. Plain and thread-safe: no web, no UI; front ends reach it through the engine.

Names and semantics follow A1111:
- `LATENT_MODES` is A1111's `shared.latent_upscale_modes`, in its order; `latent_upscale` interpolates latents to
  target // 8 as its hires fix does.
- `UpscalerLibrary.upscale(image, scale=s)` is A1111's `Upscaler.upscale`: the target is (w × s, h × s) rounded down
  to a multiple of 8; the upscaler runs up to 3 passes (a model at its own scale each time) until the picture is at
  least that big, then a Lanczos resize lands it on the target.
- `upscale(image, width=w, height=h)` is A1111's `images.resize_image` (hires fix, img2img resize): "None", a
  grayscale picture or a target no bigger than the picture → a plain Lanczos resize; else the upscaler at scale
  max(w / width, h / height), then Lanczos to exactly w × h.
- "None" here always means "resize with Lanczos" (what hires fix does with it); A1111's Extras tab instead leaves
  the picture alone when Upscaler 1 is "None" — a caller for Extras skips the call.

Model files: `.safetensors` always; `.pth` / `.pt` are pickles, loaded only with `allow_pickle` (the studio's
--allow-pickle) and otherwise listed by `refused()` with the reason. Messages name the upscaler and its file name,
never a server path. Models run in tiles (A1111's 192-pixel ESRGAN tiles, with 16 pixels of context around each
that are cut away again), so memory stays bounded by the output picture plus one tile.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import math
import numbers
import re
import sys
import threading
import time
import types
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

from PIL import Image

from .contract import RequestError

log = logging.getLogger(__name__)

# A1111's shared.latent_upscale_modes: (name, torch.nn.functional.interpolate mode, antialias)
LATENT_MODES: list[tuple[str, str, bool]] = [
    ("Latent", "bilinear", False),
    ("Latent (antialiased)", "bilinear", True),
    ("Latent (bicubic)", "bicubic", False),
    ("Latent (bicubic antialiased)", "bicubic", True),
    ("Latent (nearest)", "nearest", False),
    ("Latent (nearest-exact)", "nearest-exact", False),
]
LATENT_NAMES = tuple(name for name, _, _ in LATENT_MODES)
LATENT_FACTOR = 8  # pixels per latent cell (A1111's opt_f)

NONE, LANCZOS, NEAREST = "None", "Lanczos", "Nearest"
BUILT_IN = (NONE, LANCZOS, NEAREST)  # A1111 lists these first, in this order
MODEL_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt")  # pickles: only with allow_pickle
MAX_PASSES = 3  # A1111's Upscaler.upscale loop
KEEP_LOADED = 2  # models kept in memory, most recently used
TILE, TILE_PAD = 192, 16  # A1111's ESRGAN_tile; context around each tile, cut off again
MAX_PASS_PIXELS = 1 << 28  # no single model pass makes a picture bigger than 16384 × 16384
DEFAULT_SCALE = 4  # what A1111 lists for an upscaler whose scale it does not know
RESCAN_AFTER = 5.0  # seconds: an unknown name makes the folders be looked at again, at most this often
_SCALE_IN_NAME = re.compile(r"(\d)[xX]|[xX](\d)")  # A1111's guess from a name: "4x-UltraSharp", "RealESRGAN_x4plus"
_PURPOSES = ("SR", "Restoration")  # spandrel purposes that map a picture to a picture (not faces, not inpainting)


class UpscalerError(RequestError):  # the job fails with this message for its user
    """An upscaler that cannot be used; the message names it (and its file, never a server path)."""


def is_latent(name: Optional[str]) -> bool:
    """Whether `name` is one of A1111's latent modes (hires fix upscales the latents themselves)."""
    return isinstance(name, str) and name in LATENT_NAMES


def latent_upscale(latents, width: int, height: int, name: str):
    """`latents` (batch, channels, h, w) interpolated to the latent size of a width × height picture, as A1111's hires
    fix does for latent mode `name`. Computed in float32, returned in the latents' dtype."""
    import torch.nn.functional as F

    mode = next(((m, antialias) for n, m, antialias in LATENT_MODES if n == name), None)
    if mode is None:
        raise UpscalerError(f"'{name}' is not a latent upscale mode; choose one of: {', '.join(LATENT_NAMES)}.")
    if width < LATENT_FACTOR or height < LATENT_FACTOR:
        raise UpscalerError(f"A latent upscale needs a target of at least {LATENT_FACTOR}×{LATENT_FACTOR} pixels, got {width}×{height}.")
    if latents.dim() != 4:
        raise UpscalerError(f"A latent upscale takes latents of shape (batch, channels, height, width), got {tuple(latents.shape)}.")
    size = (height // LATENT_FACTOR, width // LATENT_FACTOR)
    upscaled = F.interpolate(latents.float(), size=size, mode=mode[0], antialias=mode[1])
    return upscaled.to(latents.dtype)


@dataclass(frozen=True)
class ModelFile:
    """One file in an upscaler folder."""

    name: str  # A1111's name for it: the file name without its extension
    file: str  # the file name relative to its folder: what listings show instead of the server's path
    path: Path
    kind: str  # "ESRGAN" or "RealESRGAN" (by its folder or its name), for the listings
    refused: Optional[str] = None  # why it cannot be used, or None


class UpscalerLibrary:
    """The picture upscalers: built-ins and the model files in `folder` (one folder, several, or None)."""

    def __init__(self, folder: Union[Path, str, Iterable[Union[Path, str]], None], allow_pickle: bool = False,
                 tile: int = TILE, tile_pad: int = TILE_PAD):
        if folder is None:
            folders: list[Path] = []
        elif isinstance(folder, (str, Path)):
            folders = [Path(folder)]
        else:
            folders = [Path(f) for f in folder]
        self.folders = folders
        self.allow_pickle = allow_pickle
        self.tile, self.tile_pad = tile, tile_pad  # tile <= 0: whole pictures at once
        self._scan_lock = threading.Lock()
        self._files: Optional[dict[str, ModelFile]] = None  # name → file, None until the first look
        self._scanned_at = 0.0  # time.monotonic() of the last look
        self._model_lock = threading.Lock()
        self._loaded: OrderedDict[tuple, object] = OrderedDict()  # (path, mtime, size, device, dtype) → descriptor
        self._scales: dict[str, int] = {}  # name → the scale its model reported once loaded

    # ---- what there is

    def refresh(self) -> None:
        """Look at the folders again (A1111's "refresh"); models whose file is gone are dropped from memory."""
        files = _scan(self.folders, self.allow_pickle)
        with self._scan_lock:
            self._files, self._scanned_at = files, time.monotonic()
            self._scales = {name: scale for name, scale in self._scales.items() if name in files}
        present = {entry.path for entry in files.values()}
        with self._model_lock:
            for key in [key for key in self._loaded if key[0] not in present]:
                del self._loaded[key]

    def _entries(self) -> dict[str, ModelFile]:
        with self._scan_lock:
            files = self._files
        if files is None:
            self.refresh()
            with self._scan_lock:
                files = self._files
        return files

    def _usable(self) -> list[ModelFile]:
        return sorted((e for e in self._entries().values() if e.refused is None), key=lambda e: e.name.lower())

    def names(self) -> list[str]:
        """A1111's order: "None", "Lanczos", "Nearest", then the usable model files by name."""
        return list(BUILT_IN) + [entry.name for entry in self._usable()]

    def refused(self) -> dict[str, str]:
        """Model files that are there but cannot be used: name → the reason (a pickle without --allow-pickle). A second
        file with a name already taken, or with a built-in's name, is left out (and logged)."""
        return {name: entry.refused for name, entry in sorted(self._entries().items()) if entry.refused}

    def scale_of(self, name: str) -> int:
        """The scale a listing shows: the model's own once it has been loaded, else A1111's guess from the name."""
        with self._scan_lock:
            known = self._scales.get(name)
        if known:
            return known
        match = _SCALE_IN_NAME.search(name)
        return int(match.group(1) or match.group(2)) if match and name not in BUILT_IN else DEFAULT_SCALE

    def listing(self) -> list[dict]:
        """A1111's GET /sdapi/v1/upscalers entries; the file's name stands in for the server's path."""
        built_in = [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": DEFAULT_SCALE}
                    for name in BUILT_IN]
        return built_in + [{"name": e.name, "model_name": e.kind, "model_path": e.file, "model_url": None,
                            "scale": self.scale_of(e.name)} for e in self._usable()]

    def realesrgan_listing(self) -> list[dict]:
        """A1111's GET /sdapi/v1/realesrgan-models entries: the Real-ESRGAN models among the files."""
        return [{"name": e.name, "path": e.file, "scale": self.scale_of(e.name)} for e in self._usable() if e.kind == "RealESRGAN"]

    def find(self, name: str) -> ModelFile:
        """The model file called `name` (or by its file name); raises UpscalerError when there is none or it is refused.
        Looks at the folders again before saying a name is unknown (a file added since), at most every RESCAN_AFTER s."""
        for attempt in range(2):
            entries = self._entries()
            entry = entries.get(name) or next((e for e in entries.values() if e.file == name), None)
            if entry is not None:
                if entry.refused:
                    raise UpscalerError(f"Upscaler '{entry.name}' ({entry.file}) cannot be used: {entry.refused}")
                return entry
            with self._scan_lock:
                stale = time.monotonic() - self._scanned_at >= RESCAN_AFTER
            if attempt > 0 or not stale:
                break
            self.refresh()
        hint = f"; choose one of: {', '.join(self.names())}" if len(name) <= 200 else ""
        shown = name if len(name) <= 200 else name[:200] + "…"
        raise UpscalerError(f"Upscaler '{shown}' is not there{hint} (or, for hires fix, a latent mode such as Latent).")

    def check(self, name: str, latent: bool = True) -> None:
        """Raises UpscalerError unless `name` can be used: a built-in, a usable model file, or (with `latent`, as for
        hires fix) a latent mode. For a request's checks, before any GPU work."""
        if not isinstance(name, str):
            raise UpscalerError("An upscaler is chosen by its name.")
        if is_latent(name):
            if not latent:
                raise UpscalerError(f"'{name}' upscales latents (hires fix only), not pictures: choose a picture upscaler such as Lanczos.")
            return
        if name not in BUILT_IN:
            self.find(name)

    # ---- upscaling

    def upscale(self, image: Image.Image, scale: Optional[float] = None, width: Optional[int] = None,
                height: Optional[int] = None, name: str = NONE, device="cpu", dtype=None) -> Image.Image:
        """`image` upscaled by `name`: by `scale` (A1111's Upscaler.upscale: target rounded down to a multiple of 8),
        or to exactly `width` × `height` (A1111's resize_image). Raises UpscalerError."""
        if is_latent(name):
            raise UpscalerError(f"'{name}' upscales latents (hires fix only), not pictures: choose a picture upscaler such as Lanczos.")
        step = self._step(name, device, dtype)
        if width is None and height is None:
            if not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale <= 0:
                raise UpscalerError(f"Upscaler '{name}' needs a scale above 0, or a width and a height.")
            return _by_scale(image, float(scale), step, name)
        if scale is not None or not all(isinstance(v, numbers.Integral) and v > 0 for v in (width, height)):
            raise UpscalerError(f"Upscaler '{name}' needs either a scale, or both a width and a height (whole numbers above 0).")
        width, height = int(width), int(height)
        if name == NONE or image.mode == "L" or max(width / image.width, height / image.height) <= 1.0:
            return image.resize((width, height), resample=Image.Resampling.LANCZOS)
        upscaled = _by_scale(image, max(width / image.width, height / image.height), step, name)
        if upscaled.size != (width, height):
            upscaled = upscaled.resize((width, height), resample=Image.Resampling.LANCZOS)
        return upscaled

    def _step(self, name: str, device, dtype) -> Callable[[Image.Image, float], Image.Image]:
        """One pass of upscaler `name`: picture, the requested scale → picture."""
        if name == NONE:
            return lambda image, scale: image
        if name in (LANCZOS, NEAREST):
            resample = Image.Resampling.LANCZOS if name == LANCZOS else Image.Resampling.NEAREST
            return lambda image, scale: image.resize((int(image.width * scale), int(image.height * scale)), resample=resample)
        entry = self.find(name)
        return lambda image, scale: self._model_pass(entry, image, device, dtype)

    def _model_pass(self, entry: ModelFile, image: Image.Image, device, dtype) -> Image.Image:
        descriptor, run_dtype = self._model(entry, device, dtype)
        if image.width * image.height * descriptor.scale ** 2 > MAX_PASS_PIXELS:
            raise UpscalerError(f"Upscaler '{entry.name}' would make a picture over {MAX_PASS_PIXELS:,} pixels; choose a smaller size.")
        try:
            return run_tiled(descriptor, image, run_dtype, self.tile, self.tile_pad)
        except UpscalerError:
            raise
        except Exception as exc:
            log.warning("Upscaler %s failed: %s", entry.path, exc)
            if "out of memory" in str(exc).lower():
                raise UpscalerError(f"Upscaler '{entry.name}' ran out of memory on this picture; try a smaller size.") from None
            raise UpscalerError(f"Upscaler '{entry.name}' ({entry.file}) failed on this picture ({type(exc).__name__}).") from None

    def _model(self, entry: ModelFile, device, dtype):
        """The loaded model for `entry` on `device` (kept: the last KEEP_LOADED used), and the dtype it runs in."""
        import torch

        device = torch.device(device)
        try:
            stat = entry.path.stat()
        except OSError:
            raise UpscalerError(f"Upscaler '{entry.name}' ({entry.file}) is no longer in the upscaler folder.") from None
        key = (entry.path, stat.st_mtime_ns, stat.st_size, str(device), str(dtype))
        with self._model_lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            descriptor = load_model(entry)
            run_dtype = _run_dtype(descriptor, device, dtype)
            descriptor.to(device).to(run_dtype)
            descriptor.model.eval()
            self._loaded[key] = (descriptor, run_dtype)
            while len(self._loaded) > KEEP_LOADED:
                self._loaded.popitem(last=False)
        with self._scan_lock:
            self._scales[entry.name] = int(descriptor.scale)
        return descriptor, run_dtype

    def loaded(self) -> list[str]:
        """Names of the models in memory, least recently used first (for a memory report)."""
        with self._model_lock:
            paths = [key[0] for key in self._loaded]
        by_path = {entry.path: entry.name for entry in self._entries().values()}
        return [by_path.get(path, path.name) for path in paths]


def _by_scale(image: Image.Image, scale: float, step, name: str) -> Image.Image:
    """A1111's Upscaler.upscale: passes until the picture reaches the target, then Lanczos onto it."""
    target = (int(image.width * scale // 8 * 8), int(image.height * scale // 8 * 8))
    if min(target) < 8:
        raise UpscalerError(f"Upscaler '{name}': {image.width}×{image.height} scaled by {scale:g} is under 8 pixels on a side.")
    for attempt in range(MAX_PASSES):
        if image.width >= target[0] and image.height >= target[1] and (attempt > 0 or scale != 1):
            break
        before = image.size
        image = step(image, scale)
        if image.size == before:
            break
    if image.size != target:
        image = image.resize(target, resample=Image.Resampling.LANCZOS)
    return image


def _scan(folders: list[Path], allow_pickle: bool) -> dict[str, ModelFile]:
    """name → file for the upscaler folders: .safetensors files before pickles, so a converted file wins its name."""
    found: list[tuple[Path, Path]] = []
    for folder in folders:
        if folder.is_dir():
            found += [(folder, p) for p in folder.rglob("*")
                      if p.suffix.lower() in MODEL_SUFFIXES + PICKLE_SUFFIXES and p.is_file() and not p.is_symlink()]
    found.sort(key=lambda item: (item[1].suffix.lower() not in MODEL_SUFFIXES, str(item[0]), item[1].relative_to(item[0]).as_posix()))
    files: dict[str, ModelFile] = {}
    for folder, path in found:
        relative = path.relative_to(folder).as_posix()
        name = path.stem
        kind = "RealESRGAN" if "realesrgan" in (folder.name + "/" + relative).lower().replace("-", "") else "ESRGAN"
        entry = ModelFile(name=name, file=relative, path=path, kind=kind)
        if name in BUILT_IN or is_latent(name):
            log.warning("Upscaler file %s has the name of a built-in upscaler; rename it to use it.", path)
            continue
        if name in files:
            log.info("Upscaler file %s ignored: %s has the same name.", path, files[name].path)
            continue
        if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
            entry = ModelFile(name, relative, path, kind, refused=f"{path.suffix} files are pickles, which can run code when "
                              "loaded: convert it to .safetensors, or start the studio with --allow-pickle.")
        files[name] = entry
    return files


def _run_dtype(descriptor, device, dtype):
    """float32 on the CPU, when no dtype is asked for, or when the model does not support the one asked for."""
    import torch

    if dtype is None or device.type == "cpu":
        return torch.float32
    if (dtype == torch.float16 and not descriptor.supports_half) or (dtype == torch.bfloat16 and not descriptor.supports_bfloat16):
        return torch.float32
    return dtype


def load_model(entry: ModelFile):
    """spandrel's model for `entry`, on the CPU; raises UpscalerError (naming the file) for anything that is not a
    picture-to-picture model spandrel knows."""
    spandrel = spandrel_module()
    try:
        descriptor = spandrel.ModelLoader().load_from_file(str(entry.path))
    except Exception as exc:
        log.warning("Upscaler %s could not be loaded: %s", entry.path, exc)
        raise UpscalerError(f"Upscaler '{entry.name}' could not be loaded: {entry.file} is not an upscaler model spandrel "
                            "knows (a damaged file, or another kind of model).") from None
    if (not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose not in _PURPOSES
            or descriptor.input_channels != 3 or descriptor.output_channels != 3):
        raise UpscalerError(f"Upscaler '{entry.name}' cannot be used: {entry.file} is a {descriptor.architecture.name} model "
                            f"for {descriptor.purpose} ({descriptor.input_channels}→{descriptor.output_channels} channels), "
                            "not a picture upscaler.")
    return descriptor


def run_tiled(descriptor, image: Image.Image, dtype, tile: int = TILE, pad: int = TILE_PAD) -> Image.Image:
    """The model applied to `image` (RGB) tile by tile: each tile is run with `pad` pixels of context around it, which
    are cut from the output, so tiles meet without seams and memory is the output plus one tile. tile <= 0: whole."""
    import numpy as np
    import torch

    pixels = np.array(image.convert("RGB"))  # writable: torch.from_numpy warns on read-only arrays
    height, width = pixels.shape[:2]
    scale = int(descriptor.scale)
    out = np.empty((height * scale, width * scale, 3), dtype=np.uint8)
    device = descriptor.device
    for top, bottom in _spans(height, tile):
        for left, right in _spans(width, tile):
            y0, y1, x0, x1 = max(top - pad, 0), min(bottom + pad, height), max(left - pad, 0), min(right + pad, width)
            patch = torch.from_numpy(pixels[y0:y1, x0:x1].copy()).permute(2, 0, 1)[None]
            result = descriptor(patch.to(device=device, dtype=dtype) / 255.0)
            if tuple(result.shape[-2:]) != ((y1 - y0) * scale, (x1 - x0) * scale):
                raise UpscalerError(f"The upscaler gave a {tuple(result.shape[-2:])} tile for a {(y1 - y0, x1 - x0)} one at scale {scale}.")
            kept = result[0, :, (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]
            out[top * scale:bottom * scale, left * scale:right * scale] = (
                kept.float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy())
    return Image.fromarray(out, "RGB")


def _spans(length: int, tile: int) -> list[tuple[int, int]]:
    """[start, end) spans of about equal size, none longer than `tile`, covering 0..length."""
    count = 1 if tile <= 0 else max(1, math.ceil(length / tile))
    bounds = [round(i * length / count) for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


_IMPORT_LOCK = threading.Lock()


def spandrel_module():
    """`import spandrel`, without torchvision. spandrel imports torchvision in two architectures only — LaMa
    (inpainting) and RestoreFormer (faces), which load_model refuses — and installing torchvision would replace this
    torch build. So when torchvision is missing, stand-ins are in sys.modules for the moment of the import only (no
    other library ever sees them); calling one raises."""
    with _IMPORT_LOCK:
        if "spandrel" in sys.modules:
            return sys.modules["spandrel"]
        stand_ins = _torchvision_stand_ins() if importlib.util.find_spec("torchvision") is None else {}
        added = {name: module for name, module in stand_ins.items() if name not in sys.modules}
        sys.modules.update(added)
        try:
            import spandrel
        except ImportError as exc:
            log.warning("spandrel could not be imported: %s", exc)
            raise UpscalerError("Upscaler models need the spandrel package (see requirements-nodeps.txt).") from None
        finally:
            for name, module in added.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
        return spandrel


def _torchvision_stand_ins() -> dict[str, types.ModuleType]:
    def missing(*args, **kwargs):
        raise RuntimeError("this model needs torchvision, which the studio does not install")

    modules = {}
    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        modules[name] = module
    functional = modules["torchvision.transforms.functional"]
    functional.InterpolationMode = types.SimpleNamespace(NEAREST="nearest", BILINEAR="bilinear", BICUBIC="bicubic")
    functional.rotate = functional.normalize = missing
    modules["torchvision"].transforms = modules["torchvision.transforms"]
    modules["torchvision.transforms"].functional = functional
    return modules
