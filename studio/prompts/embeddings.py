"""Textual-inversion embeddings from a folder, as A1111 loads them (textual_inversion.EmbeddingDatabase).

The file name without its extension is the word used in prompts. A file whose width does not fit the loaded model
is "skipped" (listed, never used), as in A1111's /sdapi/v1/embeddings. Pickled files (.pt, .bin) are refused unless
the library is told to allow them, and even then only torch's weights-only unpickler reads them.
Nothing here touches a model or a tokenizer: encode.py writes the vectors into the token slots during one call.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

SAFE_SUFFIXES = {".safetensors"}
PICKLE_SUFFIXES = {".pt", ".bin"}
SDXL_KEYS = ("clip_l", "clip_g")  # order = SDXL's encoders: text_encoder (CLIP-L), text_encoder_2 (OpenCLIP-G)


@dataclass
class Embedding:
    name: str
    path: Path
    tensors: tuple  # one [n, dim] float32 CPU tensor per encoder: (vec,) or (clip_l, clip_g)
    step: Optional[int] = None
    sd_checkpoint: Optional[str] = None
    sd_checkpoint_name: Optional[str] = None

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(int(t.shape[-1]) for t in self.tensors)

    @property
    def vectors(self) -> int:
        return int(self.tensors[-1].shape[0])

    def info(self) -> dict:
        # A1111's "shape" is the summed width for SDXL files (768 + 1280).
        return {
            "step": self.step,
            "sd_checkpoint": self.sd_checkpoint,
            "sd_checkpoint_name": self.sd_checkpoint_name,
            "shape": sum(self.dims),
            "vectors": self.vectors,
        }


def _as_matrix(value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError("embedding value is not a tensor")
    value = value.detach().to("cpu", torch.float32)
    if value.ndim == 1:  # diffusers concept files hold one vector as [dim]
        value = value.unsqueeze(0)
    if value.ndim != 2 or value.shape[0] < 1:
        raise ValueError(f"embedding tensor has shape {tuple(value.shape)}, expected [n_vectors, dim]")
    return value


def _tensors_from(data: dict) -> tuple:
    if not isinstance(data, dict):
        raise ValueError("not an embedding file")
    if "string_to_param" in data and isinstance(data["string_to_param"], dict):  # A1111's .pt layout
        params = data["string_to_param"]
        if len(params) != 1:
            raise ValueError("embedding file has multiple terms in it")
        return (_as_matrix(next(iter(params.values()))),)
    if all(k in data for k in SDXL_KEYS):
        clip_l, clip_g = (_as_matrix(data[k]) for k in SDXL_KEYS)
        if clip_l.shape[0] != clip_g.shape[0]:
            raise ValueError("clip_l and clip_g have different vector counts")
        return clip_l, clip_g
    for key in ("emb_params", "string_to_param.*"):
        if key in data:
            return (_as_matrix(data[key]),)
    tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
    if len(tensors) == 1:  # a diffusers concept: {"<token>": tensor}
        return (_as_matrix(tensors[0]),)
    raise ValueError("neither a textual-inversion embedding nor a diffusers concept")


def _meta(data: dict, key: str, kind):
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, kind) else None


class EmbeddingSet:
    """The embeddings usable with one model (one width per text encoder), matched in token streams by name ids."""

    def __init__(self, embeddings: dict[str, Embedding], lookup: Optional[dict] = None):
        self._embeddings = dict(embeddings)
        self._lookup = lookup  # first token id → [(name ids, name)], longest first; None until bound

    def __contains__(self, name: str) -> bool:
        return name in self._embeddings

    def __len__(self) -> int:
        return len(self._embeddings)

    @property
    def names(self) -> list[str]:
        return list(self._embeddings)

    def bind(self, tokenize: Callable[[str], list]) -> "EmbeddingSet":
        """A copy that finds names in ids from `tokenize` (a tokenizer without special tokens), as A1111 does."""
        lookup: dict[int, list] = {}
        for name in self._embeddings:
            ids = list(tokenize(name))
            if ids:
                lookup.setdefault(ids[0], []).append((ids, name))
        for matches in lookup.values():
            matches.sort(key=lambda match: len(match[0]), reverse=True)  # the longest name wins
        return EmbeddingSet(self._embeddings, lookup)

    def find_embedding(self, tokens: list, i: int) -> Optional[tuple[str, int, int]]:
        """(name, n_vectors, n_name_tokens) when an embedding's name starts at tokens[i]."""
        if self._lookup is None:
            raise RuntimeError("EmbeddingSet.find_embedding needs bind(tokenize) first")
        for ids, name in self._lookup.get(tokens[i], ()):
            if tokens[i : i + len(ids)] == ids:
                return name, self._embeddings[name].vectors, len(ids)
        return None

    def vectors(self, name: str) -> tuple:
        """One [n, dim] float32 tensor per text encoder, in the model's encoder order."""
        return self._embeddings[name].tensors

    def get(self, name: str) -> Embedding:
        return self._embeddings[name]


class EmbeddingLibrary:
    def __init__(self, folder: Optional[Path], allow_pickle: bool = False):
        self.folder = Path(folder) if folder is not None else None
        self.allow_pickle = allow_pickle
        self._embeddings: dict[str, Embedding] = {}
        self.errors: dict[str, str] = {}  # file name → why it was not loaded (refused pickle, unreadable, duplicate)
        self._hashes: dict[tuple, str] = {}
        self._lock = threading.Lock()
        self.generation = 0
        self.refresh()

    def refresh(self) -> None:
        """Re-read the folder (and its subfolders); the maps are swapped whole so readers never see half a scan."""
        embeddings: dict[str, Embedding] = {}
        errors: dict[str, str] = {}
        paths = sorted(p for p in self.folder.rglob("*") if p.is_file()) if self.folder and self.folder.is_dir() else []
        for path in paths:
            suffix = path.suffix.lower()
            if suffix not in SAFE_SUFFIXES | PICKLE_SUFFIXES or path.stat().st_size == 0:
                continue
            name = path.stem
            if name in embeddings:
                errors[path.name] = f"duplicate name {name!r}; {embeddings[name].path.name} is used"
                continue
            if suffix in PICKLE_SUFFIXES and not self.allow_pickle:
                errors[path.name] = "pickle files are refused (allow_pickle is off); convert it to .safetensors"
                continue
            try:
                embeddings[name] = self._load(path, name)
            except Exception as exc:  # one bad file must not hide the others
                errors[path.name] = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._embeddings = dict(sorted(embeddings.items(), key=lambda item: item[0].lower()))
            self.errors = errors
            self.generation += 1  # encoders made from an older scan are made again

    @staticmethod
    def _load(path: Path, name: str) -> Embedding:
        if path.suffix.lower() in SAFE_SUFFIXES:
            from safetensors.torch import load_file

            data = load_file(str(path), device="cpu")
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        return Embedding(
            name=name,
            path=path,
            tensors=_tensors_from(data),
            step=_meta(data, "step", int),
            sd_checkpoint=_meta(data, "sd_checkpoint", str),
            sd_checkpoint_name=_meta(data, "sd_checkpoint_name", str),
        )

    def for_encoder_dims(self, dims: tuple[int, ...]) -> EmbeddingSet:
        """The embeddings whose widths match the model's text encoders: (768,) SD1, (1024,) SD2, (768, 1280) SDXL."""
        dims = tuple(int(d) for d in dims)
        with self._lock:
            return EmbeddingSet({n: e for n, e in self._embeddings.items() if e.dims == dims})

    def listing(self, dims: tuple[int, ...]) -> dict:
        """A1111's /sdapi/v1/embeddings answer for a model with these encoder widths."""
        dims = tuple(int(d) for d in dims)
        with self._lock:
            items = list(self._embeddings.values())
        return {
            "loaded": {e.name: e.info() for e in items if e.dims == dims},
            "skipped": {e.name: e.info() for e in items if e.dims != dims},
        }

    def short_hash(self, name: str) -> str:
        """A1111's shorthash for "TI hashes": the first 12 hex digits of the file's sha256."""
        with self._lock:
            path = self._embeddings[name].path
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._hashes:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            self._hashes[key] = digest.hexdigest()
        return self._hashes[key][:12]

    def ti_hashes(self, names) -> str:
        """The infotext value of "TI hashes" for the embeddings a prompt used: "name: hash, name: hash"."""
        parts = []
        for name in dict.fromkeys(names):
            if name in self._embeddings:
                parts.append(f"{name.replace(':', '').replace(',', '')}: {self.short_hash(name)}")
        return ", ".join(parts)

    def __contains__(self, name: str) -> bool:
        return name in self._embeddings
