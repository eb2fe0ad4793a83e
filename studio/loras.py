"""LoRA as A1111 users know it: `<lora:name:weight>` names a .safetensors file (kohya/A1111 format, LoCon too) in the
LoRA folder (--lora-dir, default models/Lora); several at once; applied for one job and taken off after it.

Weights go in through diffusers' LoRA loaders (peft adapters on the shared unet/text-encoder modules): loading a file
is the slow part, so loaded adapters stay (at most `max_adapters` per model, least recently used deleted) and a job only
switches which are active and at what scale. "Off" is peft's disabled state: the base layers alone, so pictures are
bit-identical to a model that never saw a LoRA.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .contract import RequestError
from .families import KOHYA_TWO_ENCODER_BASE

log = logging.getLogger(__name__)

DEFAULT_LORA_DIR = Path("models/Lora")
PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")  # A1111's allowed_preview_extensions
SERVED_PREVIEW_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # what the browser is sent (no GIF)
MAX_PREVIEW_BYTES = 8 * 1024 * 1024
# A1111 shows these metadata keys first (network.py metadata_tags_order); the rest keep file order.
_METADATA_ORDER = {"ss_sd_model_name": 1, "ss_resolution": 2, "ss_clip_skip": 3, "ss_num_train_images": 10,
                   "ss_tag_frequency": 20}
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
# LyCORIS kinds that diffusers' SD loaders cannot apply (plain LoRA and LoCon use lora_down/lora_up and can).
_UNSUPPORTED_KINDS = {"hada_w1": "LoHa", "lokr_w1": "LoKr", "lora_mid": "LoCon with CP/Tucker (lora_mid)",
                      "oft_": "OFT", "on_input": "(IA)^3", "w_norm": "norm", ".diff": "full-weight diff",
                      "dora_scale": "DoRA"}


class LoraError(RequestError):  # the job fails with this message for its user
    """A LoRA file that cannot be applied; the message names the file (never its folder) and what to do."""


@dataclass(frozen=True)
class LoraEntry:
    name: str  # file name without extension, as A1111 shows it (subfolders are not part of it)
    path: Path
    alias: str  # metadata ss_output_name, else the name
    preview: Optional[Path]
    metadata: dict = field(hash=False, compare=False)


def read_safetensors_metadata(path: Path) -> dict:
    """The file's `__metadata__`, JSON-looking values parsed (as A1111's read_metadata_from_safetensors does)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if not 2 <= n <= _MAX_HEADER:
            raise ValueError("not a safetensors file")
        header = json.loads(f.read(n))
    result = {}
    for k, v in (header.get("__metadata__") or {}).items():
        if isinstance(v, str) and v[:1] == "{":
            try:
                v = json.loads(v)
            except ValueError:
                pass
        result[k] = v
    return result


def addnet_hash(path: Path) -> str:
    """kohya's "addnet" hash, which A1111 uses for .safetensors LoRAs: sha256 of everything after the header, so
    editing metadata leaves it unchanged."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        f.seek(n + 8)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_mtime_ns, st.st_size)


def _walk(folder: Path):
    """Files under folder, sorted, symlinked folders followed once (no cycles)."""
    seen = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


class LoraLibrary:
    """The LoRA folder's index: names and aliases resolved the way A1111 resolves `<lora:…>` tags."""

    def __init__(self, folder: Optional[Path]):
        self.folder = Path(folder) if folder is not None else None
        self._lock = threading.Lock()
        self._entries: dict[str, LoraEntry] = {}
        self._aliases: dict[str, LoraEntry] = {}
        self._forbidden: set[str] = set()
        self._meta_cache: dict[tuple, dict] = {}  # stamp -> metadata: a rescan reads only new or changed files
        self._hash_cache: dict[tuple, str] = {}
        self.refresh()

    def refresh(self) -> None:
        entries: dict[str, LoraEntry] = {}
        aliases: dict[str, LoraEntry] = {}
        forbidden = {"none"}
        meta_cache = {}
        if self.folder is not None and self.folder.is_dir():
            # Only .safetensors: A1111 also lists .pt/.ckpt, but those are pickles, which we never load.
            for path in _walk(self.folder):
                if path.suffix.lower() != ".safetensors" or not path.is_file():
                    continue
                try:
                    stamp = _stamp(path)
                    metadata = self._meta_cache.get(stamp)
                    if metadata is None:
                        metadata = read_safetensors_metadata(path)
                except (OSError, ValueError):
                    metadata, stamp = {}, None  # listed anyway; activating it reports the problem
                if stamp is not None:
                    meta_cache[stamp] = metadata
                metadata.pop("ssmd_cover_images", None)  # embedded images: far too big to show as text
                metadata = dict(sorted(metadata.items(), key=lambda kv: _METADATA_ORDER.get(kv[0], 999)))
                name = path.stem
                alias = str(metadata.get("ss_output_name") or name)
                entry = LoraEntry(name, path, alias, _find_preview(path), metadata)
                entries[name] = entry  # same name in two subfolders: the later one wins, as in A1111
                if alias in aliases:
                    forbidden.add(alias.lower())  # an alias two files share resolves to neither
                aliases[name] = entry
                aliases[alias] = entry
        with self._lock:
            self._entries, self._aliases, self._forbidden, self._meta_cache = entries, aliases, forbidden, meta_cache

    def entries(self) -> list[LoraEntry]:
        with self._lock:
            return list(self._entries.values())

    def _lookup(self, name: str) -> Optional[LoraEntry]:
        with self._lock:
            if name.lower() in self._forbidden:
                return self._entries.get(name)
            return self._aliases.get(name)

    def find(self, name: str) -> Optional[LoraEntry]:
        entry = self._lookup(name)
        if entry is None and self.folder is not None:
            self.refresh()  # as A1111: a name not found rescans the folder once (a file just copied in)
            entry = self._lookup(name)
        return entry

    def short_hash(self, name: str) -> Optional[str]:
        """A1111's "Lora hashes" value: the first 12 hex digits of sshs_model_hash from the metadata (kohya writes
        the addnet hash there), else of the addnet hash computed once per file version."""
        entry = self.find(name)
        if entry is None:
            return None
        full = entry.metadata.get("sshs_model_hash")
        if not isinstance(full, str) or not full:
            try:
                stamp = _stamp(entry.path)
                with self._lock:
                    full = self._hash_cache.get(stamp)
                if full is None:
                    full = addnet_hash(entry.path)
                    with self._lock:
                        self._hash_cache[stamp] = full
            except OSError:
                return None
        return full[:12]

    def preview_picture(self, name: str) -> Optional[tuple[bytes, str]]:
        """(bytes, media type) of the preview picture beside the LoRA whose file is called `name`, or None. The name
        is only compared with the listed names (no rescan, no path made from it); the file is the one found beside
        the LoRA, served only when it is a regular file of at most MAX_PREVIEW_BYTES whose first bytes show a PNG,
        JPEG or WebP (whatever its name says)."""
        entry = next((e for e in self.entries() if e.name == name), None)
        if entry is None or entry.preview is None or entry.preview.suffix.lower() not in SERVED_PREVIEW_SUFFIXES:
            return None
        try:
            with open(entry.preview, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_PREVIEW_BYTES:
                    return None
                data = handle.read(MAX_PREVIEW_BYTES + 1)
        except OSError:
            return None
        media_type = _picture_type(data[:16])
        if media_type is None or len(data) > MAX_PREVIEW_BYTES:
            return None
        return data, media_type

    def listing(self) -> list[dict]:
        """GET /sdapi/v1/loras, except that "path" is the name: clients never see server paths."""
        return [{"name": e.name, "alias": e.alias, "path": e.name, "metadata": e.metadata} for e in self.entries()]


def _picture_type(head: bytes) -> Optional[str]:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _find_preview(path: Path) -> Optional[Path]:
    base = str(path.with_suffix(""))
    for ext in PREVIEW_EXTENSIONS:
        for candidate in (f"{base}.{ext}", f"{base}.preview.{ext}"):
            if os.path.isfile(candidate):
                return Path(candidate)
    return None


def _adapter_name(entry: LoraEntry) -> str:
    """A peft adapter name per file version (a changed file loads afresh); peft names cannot contain dots."""
    slug = re.sub(r"[^A-Za-z0-9_]", "_", entry.name)[:40]
    try:
        version = repr(_stamp(entry.path))
    except OSError:
        version = str(entry.path)
    return f"lora_{slug}_{hashlib.sha1(version.encode()).hexdigest()[:8]}"


def _components(pipe) -> dict:
    """LoRA-carrying modules of the pipe: the same objects img2img/inpaint pipes built with from_pipe hold."""
    names = ("unet", "text_encoder", "text_encoder_2")
    return {n: getattr(pipe, n) for n in names if getattr(pipe, n, None) is not None}


def _set_enabled(pipe, enabled: bool) -> None:
    # Per component: pipe.disable_lora() raises when the unet holds no adapter (a text-encoder-only LoRA).
    for component in pipe.get_list_adapters():
        model = getattr(pipe, component)
        if hasattr(model, "enable_lora"):  # diffusers ModelMixin
            (model.enable_lora if enabled else model.disable_lora)()
        else:  # transformers PreTrainedModel
            (model.enable_adapters if enabled else model.disable_adapters)()


def _count_layers(pipe, adapter: str) -> int:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(
        1
        for model in _components(pipe).values()
        for module in model.modules()
        if isinstance(module, BaseTunerLayer) and adapter in getattr(module, "lora_A", {})
    )


def _read_lora(entry: LoraEntry, pipe) -> dict:
    """The file's tensors, checked for what diffusers can apply to this pipe; LoraError otherwise."""
    from safetensors.torch import load_file

    fname = entry.path.name
    try:
        state = load_file(str(entry.path))
    except FileNotFoundError:
        raise LoraError(f"LoRA '{fname}' was removed from the LoRA folder; refresh the list.") from None
    except Exception:
        raise LoraError(f"LoRA '{fname}' is not a readable .safetensors file (damaged or incomplete download); "
                        "download it again or remove it from the LoRA folder.") from None
    keys = list(state)
    for marker, kind in _UNSUPPORTED_KINDS.items():
        if any(marker in k for k in keys):
            raise LoraError(f"LoRA '{fname}' is a LyCORIS {kind} network, which this studio cannot apply; "
                            "use a plain LoRA or LoCon version of it.")
    if not any("lora" in k for k in keys):
        raise LoraError(f"'{fname}' holds no LoRA weights (is it a checkpoint or an embedding?); "
                        "move it out of the LoRA folder.")
    sdxl_file = any(k.startswith(("lora_te1_", "lora_te2_")) for k in keys) or str(
        entry.metadata.get("ss_base_model_version", "")).startswith(KOHYA_TWO_ENCODER_BASE)
    sdxl_pipe = "text_encoder_2" in _components(pipe)
    if sdxl_file != sdxl_pipe:
        made, loaded = ("SDXL", "an SD 1.x/2.x") if sdxl_file else ("SD 1.x/2.x", "an SDXL")
        raise LoraError(f"LoRA '{fname}' was made for {made} models but {loaded} model is loaded; "
                        "choose a LoRA for this model or switch models.")
    return state


def _load(pipe, entry: LoraEntry, adapter: str) -> None:
    fname = entry.path.name
    state = _read_lora(entry, pipe)
    expected = sum(1 for k in state if k.endswith("lora_down.weight"))  # kohya: one layer per lora_down
    try:
        # unet_config lets diffusers map original (LDM) block names (input_blocks_4_1_…) onto this UNet; the SDXL
        # loader passes it itself, the SD1 one only when asked.
        pipe.load_lora_weights(state, adapter_name=adapter, unet_config=pipe.unet.config)
    except Exception as e:
        log.warning("LoRA %s not applied: %s: %.300s", fname, type(e).__name__, e)
        _drop(pipe, adapter)
        detail = "its layers do not match this model's" if isinstance(e, RuntimeError) else "diffusers refused it"
        raise LoraError(f"LoRA '{fname}' does not fit the loaded model ({detail}): it was probably trained for "
                        "another architecture; choose a LoRA for this model.") from None
    found = _count_layers(pipe, adapter)
    if found == 0 or (expected and found < expected):
        _drop(pipe, adapter)
        raise LoraError(f"LoRA '{fname}' does not fit the loaded model (only {found} of {expected or '?'} of its "
                        "layers exist in it): it was probably trained for another architecture.")


def _present(pipe, adapter: str) -> bool:
    return any(adapter in names for names in pipe.get_list_adapters().values())


def _drop(pipe, adapter: str) -> None:
    if _present(pipe, adapter):
        pipe.delete_adapters(adapter)


class LoraApplier:
    """Per loaded pipeline: activates a job's LoRA set, deactivates it after."""

    def __init__(self, library: LoraLibrary, max_adapters: int = 8):
        self.library = library
        self.max_adapters = max(1, max_adapters)
        self._lock = threading.Lock()
        # Keyed by the unet module, not the pipe: txt2img and its from_pipe siblings share it, and so its adapters.
        self._loaded: "weakref.WeakKeyDictionary[object, OrderedDict[str, None]]" = weakref.WeakKeyDictionary()

    def activate(self, pipe, wanted: list[tuple[str, float, float]]) -> tuple[list[str], list[str]]:
        """(name, te_multiplier, unet_multiplier) tags → (applied names, missing names). A LoRA named twice gets the
        sum of its multipliers (A1111 applies it twice). Raises LoraError for a file that cannot be applied; the
        pipe is then left plain."""
        with self._lock:
            applied, missing = [], []
            chosen: dict[Path, list] = {}  # path -> [entry, te, unet]
            for name, te, unet in wanted:
                entry = self.library.find(name)
                if entry is None:
                    missing.append(name)
                    continue
                applied.append(name)
                slot = chosen.setdefault(entry.path, [entry, 0.0, 0.0])
                slot[1] += float(te)
                slot[2] += float(unet)
            loaded = self._loaded.setdefault(pipe.unet, OrderedDict())
            self._set_plain(pipe)
            if not chosen:
                return applied, missing
            try:
                self._switch(pipe, loaded, [(entry, te, unet) for entry, te, unet in chosen.values()])
            except BaseException:
                self._set_plain(pipe)  # new layers come enabled: never leave a half-applied set behind
                raise
            return applied, missing

    def _switch(self, pipe, loaded: OrderedDict, chosen: list) -> None:
        adapters = [_adapter_name(entry) for entry, _, _ in chosen]
        for (entry, _, _), adapter in zip(chosen, adapters):
            if adapter not in loaded and not _present(pipe, adapter):
                self._evict(pipe, loaded, set(adapters), self.max_adapters - 1)  # room first: bounds the peak
                _load(pipe, entry, adapter)
            loaded[adapter] = None
            loaded.move_to_end(adapter)
        self._evict(pipe, loaded, set(adapters), self.max_adapters)  # adopted ones count too
        parts = pipe.get_list_adapters()
        # Per-component weights (diffusers accepts a dict per adapter): A1111's separate te/unet multipliers.
        weights = [
            {c: (unet if c == "unet" else te) for c, names in parts.items() if adapter in names}
            for (_, te, unet), adapter in zip(chosen, adapters)
        ]
        pipe.set_adapters(adapters, adapter_weights=weights)
        _set_enabled(pipe, True)

    def deactivate(self, pipe) -> None:
        with self._lock:
            self._set_plain(pipe)

    def _set_plain(self, pipe) -> None:
        if pipe.get_list_adapters():
            _set_enabled(pipe, False)

    def _evict(self, pipe, loaded: OrderedDict, keep: set, limit: int) -> None:
        for adapter in list(loaded):  # oldest first
            if len(loaded) <= limit:
                return
            if adapter not in keep:
                _drop(pipe, adapter)
                del loaded[adapter]
