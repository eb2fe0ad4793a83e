"""Where weights come from and how they are kept: hub ids, diffusers folders, single-file checkpoints and `tiny`;
family detection; the model cache (load, keep warm, evict least recently used, free)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

from .config import DEFAULT_MODEL, Settings
from .demo import NAME as DEMO_NAME
from .families import (
    TEXT_TO_IMAGE,
    TINY_CONFIG,
    UNET_CONV_IN,
    TINY_FAMILY,
    FileFamily,
    ModelKind,
    all_configs,
    detect_checkpoint,
    family,
    family_of_pipeline,
    model_kind,
    supported_labels,
)

log = logging.getLogger(__name__)

MODELS_ROOT = Path(__file__).resolve().parent.parent / "models"
DEMO = DEMO_NAME  # the small trained model shipped in models/demo (studio/demo/train.py makes it)
DEMO_FOLDER = MODELS_ROOT / DEMO


def demo_available() -> bool:
    return (DEMO_FOLDER / "model_index.json").is_file()
SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class ModelError(Exception):
    """A model that cannot be found or loaded. The message is one line naming what was tried and why — paths and the
    library's own words included, for the operator (CLI, log). `public_message` is what a web user may read: the
    same without server paths or raw exception text."""

    def __init__(self, message: str, public: str | None = None):
        super().__init__(message)
        self.public_message = public or message


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "tiny" | "hub" | "folder" | "file"
    location: str  # hub id or path
    name: str  # what users see and pick

    @property
    def is_pickle(self) -> bool:
        return self.kind == "file" and self.location.lower().endswith(PICKLE_SUFFIXES)


def list_checkpoints(models_dir: Path | None) -> list[ModelSource]:
    """Every checkpoint under `models_dir`: single files and diffusers folders, named by their relative path."""
    if not models_dir or not Path(models_dir).is_dir():
        return []
    root = Path(models_dir)
    found = []
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.is_file() and path.suffix.lower() in SAFE_SUFFIXES + PICKLE_SUFFIXES:
            if any((parent / "model_index.json").is_file() for parent in path.parents if root in parent.parents):
                continue  # a component's weights inside a diffusers folder, not a checkpoint
            found.append(ModelSource("file", str(path), path.relative_to(root).as_posix()))
        elif path.is_dir() and (path / "model_index.json").is_file():
            found.append(ModelSource("folder", str(path), path.relative_to(root).as_posix()))
    return found


def resolve_model(name: str, settings: Settings) -> ModelSource:
    """Turn what a user typed into a source, without loading anything. Raises ModelError."""
    name = (name or "").strip()
    if not name:
        raise ModelError("No model named.")
    if name == "tiny":
        return ModelSource("tiny", "tiny", "tiny")
    if name == DEMO:
        if not demo_available():
            raise ModelError(f"The demo model is missing from this copy of the studio ({DEMO_FOLDER}): "
                             "python -m studio.demo.train makes it.", "The demo model is missing from this copy of the studio.")
        return ModelSource("folder", str(DEMO_FOLDER), DEMO)
    for source in list_checkpoints(settings.models_dir):
        if name in (source.name, Path(source.name).stem, Path(source.name).name):
            return source
    path = Path(name).expanduser()
    if path.is_file():
        return ModelSource("file", str(path), path.name)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(f"Model '{name}': the folder has no model_index.json, so it is not a diffusers model folder.")
        return ModelSource("folder", str(path), path.name)
    if _HUB_ID.match(name) and not name.lower().endswith(SAFE_SUFFIXES + PICKLE_SUFFIXES):
        return ModelSource("hub", name, name)
    where = f" in {settings.models_dir}" if settings.models_dir else ""
    raise ModelError(
        f"Model '{name}' not found: not a file, a diffusers folder, a checkpoint{where}, or a hub id (owner/name).",
        f"Model '{name}' not found: not a file, a diffusers folder, a checkpoint in the models folder, or a hub id (owner/name).",
    )


def peek_kind(source: ModelSource) -> ModelKind | None:
    """What a model's UNet does, read from its files without loading it: a folder's UNet config, a safetensors
    file's first UNet layer. None when the files do not say cheaply (a hub model, a pickle, unreadable files)."""
    try:
        if source.kind == "tiny":
            return TEXT_TO_IMAGE
        if source.kind == "folder":
            config = json.loads((Path(source.location) / "unet" / "config.json").read_text())
            return model_kind(int(config["in_channels"]))
        if source.kind == "file" and not source.is_pickle:
            conv_in = _header_shapes(Path(source.location)).get(UNET_CONV_IN)
            return model_kind(int(conv_in.shape[1])) if conv_in is not None else None
    except Exception:  # a broken file is for its load to report, with the message loads give
        return None
    return None


# ---- single-file family detection (reads the safetensors header only)


def _header_shapes(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {key: SimpleNamespace(shape=tuple(f.get_slice(key).get_shape())) for key in f.keys()}


def detect_family(path: Path, shapes: dict | None = None) -> FileFamily:
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    if shapes is None:
        try:
            shapes = _header_shapes(path)
        except Exception as exc:
            raise ModelError(
                f"Model '{path.name}' is not a readable .safetensors checkpoint ({str(exc).splitlines()[0]}).",
                f"Model '{path.name}' is not a readable .safetensors checkpoint.",
            ) from None
    kind = infer_diffusers_model_type(shapes)
    found = detect_checkpoint(kind, shapes, path.name)
    if found is None:
        raise ModelError(f"Model '{path.name}': detected as '{kind}', which the studio does not run ({supported_labels()} are supported).")
    return found


# ---- config folders for offline single-file loading


def materialize_config(config: str, cache_dir: Path) -> Path:
    """A complete diffusers config folder (configs + tokenizer files) in the cache, built from models/configs."""
    from . import tiny
    from .tokenizers import write_clip_tokenizer

    if config == "tiny":
        digest = tiny.recipe_hash()[:12]
        target = cache_dir / "configs" / f"tiny-{digest}"
        if not (target / "model_index.json").is_file():
            write_tiny_config(target)
        return target
    source = MODELS_ROOT / "configs" / config
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(source.rglob("*.json")))).hexdigest()[:12]
    target = cache_dir / "configs" / f"{config}-{digest}"
    if (target / "model_index.json").is_file():
        return target
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    index = json.loads((source / "model_index.json").read_text())
    openclip_pad = next((known.openclip_tokenizers for known in all_configs() if known.name == config), frozenset())
    for name in ("tokenizer", "tokenizer_2"):
        if name in index:
            write_clip_tokenizer(staging / name, pad_token="!" if name in openclip_pad else "<|endoftext|>")
    os.replace(staging, target) if not target.exists() else shutil.rmtree(staging, ignore_errors=True)
    return target


def write_tiny_config(target: Path) -> None:
    """The tiny model as a config-only diffusers folder, so a tiny single-file checkpoint loads offline."""
    from . import tiny
    from .tokenizers import write_clip_tokenizer

    spec = tiny.recipe()
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    index = json.loads((MODELS_ROOT / "configs" / family(TINY_FAMILY).base_config / "model_index.json").read_text())
    files = {
        "model_index.json": index,
        "unet/config.json": {"_class_name": "UNet2DConditionModel", **spec["unet"]},
        "vae/config.json": {"_class_name": "AutoencoderKL", **spec["vae"]},
        "text_encoder/config.json": {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", **spec["text_encoder"]},
        "scheduler/scheduler_config.json": spec["scheduler"],
    }
    for rel, content in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_text(json.dumps(content, indent=2))
    write_clip_tokenizer(staging / "tokenizer")
    if target.exists():
        shutil.rmtree(staging, ignore_errors=True)
    else:
        os.replace(staging, target)


# ---- hashes (A1111's "Model hash": first 10 hex of the file's SHA-256, as civitai's AutoV2)


class HashCache:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def sha256(self, file: Path) -> str:
        stat = file.stat()
        key = f"{file.resolve()}|{stat.st_size}|{int(stat.st_mtime)}"
        with self._lock:
            known = self._read()
            if key in known:
                return known[key]
        digest = hashlib.sha256()
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        value = digest.hexdigest()
        with self._lock:
            known = self._read()
            known[key] = value
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(known))
            os.replace(tmp, self.path)
        return value

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}


# ---- loading


@dataclass
class LoadedModel:
    source: ModelSource
    family: str
    pipe: object  # the text-to-image pipeline; the other tasks are built on its modules
    scheduler_config: dict
    model_hash: str  # 10 hex
    default_size: int
    notes: list[str] = field(default_factory=list)
    task_pipelines: dict = field(default_factory=dict)  # Task → pipeline on `pipe`'s modules (pipelines.job_pipeline)
    kind: ModelKind = TEXT_TO_IMAGE  # what its UNet does: which tasks it runs (families.MODEL_KINDS)

    @property
    def name(self) -> str:
        return self.source.name


def _family_of_pipeline(pipe) -> str:
    return family_of_pipeline(type(pipe).__name__, getattr(pipe.unet.config, "cross_attention_dim", None)).name


def native_size(pipe) -> int | None:
    """The size a diffusers folder's model was trained at: its UNet's sample size in latents × the VAE's scale (SD 2.x
    512 "base" and 768 folders alike, SDXL 1024); None when its configs do not say."""
    sample = getattr(pipe.unet.config, "sample_size", None)
    scale = getattr(pipe, "vae_scale_factor", None)
    return sample * scale if isinstance(sample, int) and isinstance(scale, int) else None


def refuse_pickle(source: ModelSource, settings: Settings) -> None:
    if source.is_pickle and not settings.allow_pickle:
        raise ModelError(
            f"Model '{source.name}' is a pickle checkpoint ({Path(source.location).suffix}), which can run code when "
            "loaded; refused. Use a .safetensors file, or start the studio with --allow-pickle if you trust it."
        )


def load_model(source: ModelSource, settings: Settings, device, dtype, hashes: HashCache) -> LoadedModel:
    """Load a pipeline onto `device` in `dtype`. Raises ModelError with one clear line."""
    try:
        return _load(source, settings, device, dtype, hashes)
    except ModelError:
        raise
    except Exception as exc:  # diffusers/hub errors: keep the first line, name the model
        first = str(exc).strip().split("\n")[0] or type(exc).__name__
        raise ModelError(
            f"Model '{source.name}' could not be loaded ({source.kind} {source.location}): {first}",
            f"Model '{source.name}' could not be loaded; the reason is in the server's log.",
        ) from exc


def _load(source: ModelSource, settings: Settings, device, dtype, hashes: HashCache) -> LoadedModel:
    import diffusers

    from . import tiny

    notes: list[str] = []
    if source.kind == "tiny":
        pipe = tiny.build_tiny_pipeline(materialize_config("tiny", settings.cache_dir) / "tokenizer", dtype=dtype)
        model_hash = tiny.recipe_hash()[:10]
        family_name, default_size = TINY_FAMILY, tiny.recipe()["default_size"]
    elif source.kind == "file":
        path = Path(source.location)
        refuse_pickle(source, settings)
        if source.is_pickle:
            import torch

            state = torch.load(str(path), map_location="cpu", weights_only=False)
            state = state.get("state_dict", state)
            shapes = {k: SimpleNamespace(shape=tuple(v.shape)) for k, v in state.items() if hasattr(v, "shape")}
            kind = detect_family(path, shapes)
        else:
            kind = detect_family(path)
        config = materialize_config(kind.config, settings.cache_dir)
        cls = getattr(diffusers, family(kind.family).pipelines.txt2img)
        pipe = cls.from_single_file(str(path), config=str(config), torch_dtype=dtype, local_files_only=True)
        family_name = kind.family
        default_size = tiny.recipe()["default_size"] if kind.config == TINY_CONFIG.name else kind.default_size or family(family_name).default_size
        model_hash = hashes.sha256(path)[:10]
        if kind.prediction_type:
            pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=kind.prediction_type)
            notes.append(f"{source.name}: {kind.note}")
    else:
        kwargs = {"torch_dtype": dtype}
        location = source.location
        if source.kind == "hub":
            location = _hub_snapshot(source.location)
        index = json.loads((Path(location) / "model_index.json").read_text())
        if "safety_checker" in index:
            kwargs.update(safety_checker=None, requires_safety_checker=False)  # as A1111: no NSFW filter
        pipe = diffusers.DiffusionPipeline.from_pretrained(location, **kwargs)
        family_name = _family_of_pipeline(pipe)
        default_size = native_size(pipe) or family(family_name).default_size
        unet_files = sorted(Path(location, "unet").glob("diffusion_pytorch_model*.safetensors")) or sorted(
            Path(location, "unet").glob("*.bin")
        )
        model_hash = hashes.sha256(unet_files[0])[:10] if unet_files else hashlib.sha256(source.location.encode()).hexdigest()[:10]
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    kind = model_kind(pipe.unet.config.in_channels)
    return LoadedModel(source, family_name, pipe, dict(pipe.scheduler.config), model_hash, default_size, notes, kind=kind)


def _hub_snapshot(repo_id: str) -> str:
    """The local snapshot of a hub model: the standard HF cache first (reusing what the user has), else a download."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model", "*.safetensors"]  # no duplicate .bin/.ckpt weights
    try:
        return snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True)
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ModelError(f"Model '{repo_id}' is not in the Hugging Face cache and HF_HUB_OFFLINE is set, so it cannot be downloaded.")
    try:
        log.info("Downloading %s into the Hugging Face cache (once)...", repo_id)
        return snapshot_download(repo_id, allow_patterns=patterns)
    except Exception as exc:
        problem = _download_problem(exc)
        unreachable = problem == _HUB_UNREACHABLE
        raise ModelError(
            f"Model '{repo_id}' is not in the Hugging Face cache and could not be downloaded: {problem}",
            f"Model '{repo_id}' is not in the Hugging Face cache and could not be downloaded: "
            + (problem if unreachable else "the reason is in the server's log."),
        ) from exc


_HUB_UNREACHABLE = "the Hugging Face hub cannot be reached (no network?)"


def _download_problem(exc: BaseException) -> str:
    """Why a download failed, in words: an unreachable hub says so instead of a nested transport error."""
    chain, seen = exc, set()
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if "connect" in type(chain).__name__.lower() or isinstance(chain, (ConnectionError, TimeoutError)):
            return _HUB_UNREACHABLE
        chain = chain.__cause__ or chain.__context__
    text = str(exc).strip().split("\n")[0]
    return text.removeprefix("Got: ") or type(exc).__name__


def default_model_name(settings: Settings) -> str:
    return settings.model or DEFAULT_MODEL


FAST_EAGER = "eager"  # fast mode: compile queued or running; jobs run on the eager (default-mode) pipeline
FAST_READY = "ready"  # compiled; swapped in by the next get()
FAST_ON = "fast"  # jobs run on the compiled pipeline
FAST_FAILED = "failed"  # the compile failed; the model stays in default mode


class ModelCache:
    """Keeps up to `max_models` pipelines loaded on the device; the least recently used goes first, and its memory
    is actually released before the next one loads.

    Thread-safe. `_lock` guards the cache's state (which models are loaded, in what order, their fast-mode state) and
    is only ever held briefly, so readers on other threads (web threads: loaded_names / loaded_models /
    loaded_hashes) are never blocked by a load; `_load_lock` serialises loads and evictions (one at a time: the
    memory limit is about what is on the device). The job thread is the one that uses pipelines; get() from another
    thread is safe but a model it returns is only guaranteed loaded until the next load evicts it.

    Fast mode (settings.fast): the first model this cache loads (start-up, before any job) is compiled in place as it
    loads. Any later model is loaded in default (eager) mode and compiled on the cache's background compile thread
    (`compile_model(model, in_place=False)` returns the compiled pipeline, built on copies of the UNet and VAE), so
    no other user's job waits for it; the next get() of that model once its compile is done swaps the compiled
    pipeline in (the job thread calls get() before each job). Images equal within fast mode's tolerance either way.
    Call stop() at shutdown to end the compile thread.

    compile_model: (LoadedModel, in_place: bool) → pipeline, for tests; default fast.fast_pipeline."""

    def __init__(self, settings: Settings, device, dtype, attention, compile_model: Callable | None = None):
        self.settings = settings
        self.device = device
        self.dtype = dtype
        self.attention = attention  # pipelines.AttentionChoice
        self.hashes = HashCache(settings.cache_dir / "hashes.json")
        self._lock = threading.Lock()
        self._load_lock = threading.RLock()  # re-entrant: a failed load loads the evicted models again through get()
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._known: dict[str, ModelSource] = {}
        self._fast_state: dict[str, str] = {}
        self._compiled: dict[str, object] = {}  # name → compiled pipeline waiting to be swapped in
        self._compile_model = compile_model or self._default_compile
        self._compiler: _Compiler | None = None
        self._loaded_once = False

    # ---- read-only views (any thread)

    def loaded_names(self) -> list[str]:
        """Names of the loaded models, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def loaded_models(self) -> list[LoadedModel]:
        """The loaded models, least recently used first (a snapshot: the list is a copy)."""
        with self._lock:
            return list(self._loaded.values())

    def loaded_hashes(self) -> dict[str, Optional[str]]:
        """Name → A1111 short hash (10 hex) of each loaded model."""
        with self._lock:
            return {name: model.model_hash for name, model in self._loaded.items()}

    def fast_state(self, name: str) -> Optional[str]:
        """Fast mode state of a loaded model: FAST_EAGER, FAST_READY, FAST_ON or FAST_FAILED; None when fast mode
        is off or the model is not loaded."""
        with self._lock:
            return self._fast_state.get(name) if name in self._loaded else None

    # ---- loading

    def get(self, name: str) -> LoadedModel:
        # A model is shown by name (a path given at start shows as its file name): known names come back as they
        # were found, even after their model was unloaded.
        with self._lock:
            source = self._known.get(name)
        source = source or resolve_model(name, self.settings)
        model = self._touch(source.name)
        if model is not None:
            return model
        with self._load_lock:
            model = self._touch(source.name)  # loaded by another thread while this one waited
            if model is not None:
                return model
            return self._load(source)

    def _touch(self, name: str) -> Optional[LoadedModel]:
        """The loaded model as most recently used, with its compiled pipeline swapped in if that is ready; or None."""
        with self._lock:
            model = self._loaded.get(name)
            if model is None:
                return None
            self._loaded.move_to_end(name)
            compiled = self._compiled.pop(name, None)
            if compiled is not None:
                model.pipe = compiled
                model.task_pipelines.clear()  # rebuilt on the compiled pipeline's modules by the next job
                self._fast_state[name] = FAST_ON
        if compiled is not None:
            log.info("Fast mode: %s now runs compiled", name)
        return model

    def _load(self, source: ModelSource) -> LoadedModel:
        # Cheap checks first, so a model that cannot be had never costs the one that is loaded.
        refuse_pickle(source, self.settings)
        if source.kind == "hub":
            source = replace(source, location=_hub_snapshot(source.location), kind="folder")
        elif source.kind == "file" and not source.is_pickle:
            detect_family(Path(source.location))
        evicted = []
        while True:
            with self._lock:
                if len(self._loaded) < self.settings.max_models:
                    break
                oldest = next(iter(self._loaded))
            evicted.append(oldest)
            self.evict(oldest)
        in_place = self.settings.fast and not self._loaded_once  # start-up: nobody's job is waiting yet
        try:
            model = load_model(source, self.settings, self.device, self.dtype, self.hashes)
            from .pipelines import apply_attention

            apply_attention(model.pipe, self.attention)
            if in_place:
                model.pipe = self._compile_model(model, in_place=True)
        except BaseException:
            self._reload(evicted)  # a failed load never costs the model that was loaded
            raise
        with self._lock:
            self._loaded[source.name] = model
            self._known[source.name] = source
            self._loaded_once = True
            if self.settings.fast:
                self._fast_state[source.name] = FAST_ON if in_place else FAST_EAGER
        log.info("Loaded %s (%s, hash %s) on %s in %s", source.name, model.family, model.model_hash, self.device, self.dtype)
        if self.settings.fast and not in_place:
            log.info("Fast mode: %s runs in default mode while it compiles in the background", source.name)
            self._compiler_thread().submit(model)
        return model

    def _reload(self, names: list[str]) -> None:
        for name in names:
            try:
                self.get(name)
            except Exception:
                log.exception("Could not load %s again after a failed load", name)

    def evict(self, name: str) -> None:
        from .pipelines import free_device_memory

        with self._load_lock:
            with self._lock:
                model = self._loaded.pop(name, None)
                self._compiled.pop(name, None)
                self._fast_state.pop(name, None)
            if model is None:
                return
            model.pipe = None
            model.task_pipelines.clear()  # they hold the same modules: all references must go for the memory to go
            del model
            free_device_memory(self.device)
            log.info("Unloaded %s", name)

    # ---- the background compile (fast mode)

    def _default_compile(self, model: LoadedModel, in_place: bool):
        from .fast import fast_pipeline

        return fast_pipeline(model, self.device, self.dtype, in_place=in_place)

    def _compiler_thread(self) -> "_Compiler":
        with self._lock:
            if self._compiler is None:
                self._compiler = _Compiler(self._compile_one)
            return self._compiler

    def _compile_one(self, model: LoadedModel) -> None:
        """On the compile thread: compile `model` unless it was unloaded meanwhile, and offer the result to get()."""
        name = model.name
        with self._lock:
            if self._loaded.get(name) is not model:
                return  # unloaded (or loaded again as a new object, which has its own compile queued)
        started = time.perf_counter()
        try:
            compiled = self._compile_model(model, in_place=False)
        except Exception as exc:
            with self._lock:
                current = self._loaded.get(name) is model
                if current:
                    self._fast_state[name] = FAST_FAILED
            if current:
                log.warning("Fast mode: compiling %s failed (%s: %s); it stays in default mode", name, type(exc).__name__, exc)
            return
        with self._lock:
            current = self._loaded.get(name) is model
            if current:
                self._compiled[name] = compiled
                self._fast_state[name] = FAST_READY
        if current:
            log.info("Fast mode: %s compiled in the background in %.1f s; its next job runs compiled", name, time.perf_counter() - started)
        else:
            del compiled
            log.info("Fast mode: %s was unloaded while it compiled; the compiled form is dropped", name)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the background compile thread: queued compiles are dropped, and a compile in progress (which cannot
        be interrupted) is waited for up to `timeout` seconds; the thread is a daemon, so it never keeps the
        process alive. Safe to call more than once, and when no compile ever ran."""
        with self._lock:
            compiler, self._compiler = self._compiler, None
        if compiler is not None:
            compiler.stop(timeout)


class _Compiler:
    """One daemon thread running compiles one at a time, in the order they were asked for."""

    def __init__(self, compile_one: Callable[[LoadedModel], None]):
        self._compile_one = compile_one
        self._queue: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="studio-compile", daemon=True)
        self._thread.start()

    def submit(self, model: LoadedModel) -> None:
        if not self._stopping.is_set():
            self._queue.put(model)

    def _run(self) -> None:
        while True:
            model = self._queue.get()
            if model is None or self._stopping.is_set():
                return
            try:
                self._compile_one(model)
            except Exception:
                log.exception("Fast mode: the background compile of %s failed", getattr(model, "name", model))

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("Fast mode: a compile is still running after %.0f s; leaving it (daemon thread)", timeout)
