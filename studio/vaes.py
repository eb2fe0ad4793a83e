"""VAE files to choose from (A1111's models/VAE and its "SD VAE" setting): listed by file name, loaded as a diffusers
AutoencoderKL from the single file with the current model's own VAE config (so any family, the tiny one included,
loads offline), kept for the next job, and put on a pipeline for one call only."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Optional

from .contract import RequestError

log = logging.getLogger(__name__)

VAE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".ckpt", ".bin")
AUTOMATIC = ("", "automatic", "none")  # A1111's names for "the model's own VAE"


class VaeError(RequestError):  # the job fails with this message for its user
    """A VAE that cannot be used; the message names the file (never a server path) and what to do."""


def is_automatic(name: Optional[str]) -> bool:
    return name is None or name.strip().lower() in AUTOMATIC


class VaeLibrary:
    def __init__(self, folder: Optional[Path], cache_dir: Path, allow_pickle: bool = False, hashes=None):
        self.folder = Path(folder) if folder else None
        self.cache_dir = Path(cache_dir)
        self.allow_pickle = allow_pickle
        self.hashes = hashes  # checkpoints.HashCache, shared with the models' hashes
        self._lock = threading.Lock()
        self._loaded: dict[tuple, object] = {}  # (file name, config digest, dtype) → AutoencoderKL, the last one only

    def names(self) -> list[str]:
        """File names as A1111 lists them (relative to the folder, subfolders included)."""
        if self.folder is None or not self.folder.is_dir():
            return []
        suffixes = VAE_SUFFIXES + (PICKLE_SUFFIXES if self.allow_pickle else ())
        found = [p for p in self.folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes and not p.is_symlink()]
        return sorted(p.relative_to(self.folder).as_posix() for p in found)

    def listing(self) -> list[dict]:
        """A1111's GET /sdapi/v1/sd-vae shape, with the name standing in for the server's path."""
        return [{"model_name": name, "filename": name} for name in self.names()]

    def find(self, name: str) -> Optional[Path]:
        """The file a client's name refers to: only a name the listing offers (never a path the client made up)."""
        wanted = name.strip()
        for known in self.names():
            if wanted in (known, Path(known).name, Path(known).stem):
                return self.folder / known
        return None

    def short_hash(self, path: Path) -> Optional[str]:
        """A1111's "VAE hash": the first 10 hex of the file's SHA-256."""
        return self.hashes.sha256(path)[:10] if self.hashes is not None else None

    def load(self, name: str, model_vae, device, dtype):
        """The AutoencoderKL in file `name`, shaped as `model_vae` (the model's own VAE, whose config is used).
        Raises VaeError for a name not in the folder or a file that does not fit the model."""
        path = self.find(name)
        if path is None:
            raise VaeError(f"VAE '{name}' is not in the VAE folder; choose one of: {', '.join(self.names()) or 'none installed'} (or Automatic).")
        config = dict(model_vae.config)
        digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
        key = (path.name, digest, str(dtype), str(device))
        with self._lock:
            if key in self._loaded:
                return self._loaded[key], path
        from diffusers import AutoencoderKL

        folder = self.cache_dir / "configs" / f"vae-{digest}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if not k.startswith("_")} | {"_class_name": "AutoencoderKL"}))
        try:
            vae = AutoencoderKL.from_single_file(str(path), config=str(folder), torch_dtype=dtype, local_files_only=True)
        except Exception as exc:
            log.warning("VAE %s could not be loaded: %s", path, exc)
            raise VaeError(f"VAE '{path.name}' could not be loaded for this model (a VAE for another model family, or a damaged file).") from None
        vae = vae.to(device)
        with self._lock:
            self._loaded = {key: vae}  # one kept: VAEs are small, but a model switch makes the old one useless
        return vae, path


@contextlib.contextmanager
def vae_on(pipe, vae):
    """`pipe` decodes (and encodes init images) with `vae` during the block, then gets its own back."""
    if vae is None:
        yield
        return
    own = pipe.vae
    pipe.register_modules(vae=vae)
    try:
        yield
    finally:
        pipe.register_modules(vae=own)
