"""Gradio's file cache: where it lives (a private folder of ours), which of its files belong to whom, and cleaning.

A user owns a cache file because the studio put it there for them — their upload (our upload route writes it), or
a picture the UI hands them (a result sent to Image to image) — never because a response mentioned its path.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

MAX_AGE_S = 3600  # cache files unused for an hour are removed
SWEEP_EVERY_S = 60
PER_USER = 5000  # the most files remembered per user (the oldest are forgotten first)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def private_gradio_cache(cache_dir) -> Path:
    """Point Gradio's file cache (its copies of uploads; /tmp/gradio by default, shared and world-readable) at
    `<cache_dir>/gradio`, mode 0700. Gradio reads GRADIO_TEMP_DIR when each component and the app are created,
    so call this before building the UI. An explicit GRADIO_TEMP_DIR from the operator wins."""
    folder = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(cache_dir).expanduser() / "gradio").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(folder, 0o700)
    except OSError as exc:
        log.warning("Could not make Gradio's cache %s private (%s)", folder, exc)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def safe_name(name: str, extension: str) -> str:
    """A file name that is the same before and after Gradio's own clean-up of names, with the right extension."""
    stem = _UNSAFE.sub("_", Path(name or "").stem).strip("._")[:80] or "image"
    return f"{stem}.{extension}"


class GradioFiles:
    """The files in Gradio's cache that each user may send to Gradio's handlers and fetch back: a registry written
    by the studio's own code, and the cache's cleaner."""

    def __init__(self, root: Optional[Path] = None, max_age_s: float = MAX_AGE_S):
        from gradio.utils import get_upload_folder

        self.root = os.path.realpath(str(root or get_upload_folder()))
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._owned: dict[str, dict[str, float]] = {}  # user -> {real path: last use}
        self._last_sweep = 0.0

    # ---- who owns what

    def register(self, user: str, path: str) -> str:
        real = os.path.realpath(path)
        with self._lock:
            owned = self._owned.setdefault(user, {})
            owned.pop(real, None)
            owned[real] = time.time()
            while len(owned) > PER_USER:
                del owned[next(iter(owned))]
        return real

    def owns(self, user: str, path: str) -> bool:
        """Whether `path` is a cache file of this user's (`..` and links resolved first). Marks it as used."""
        real = os.path.realpath(path)
        with self._lock:
            owned = self._owned.get(user, {})
            if real not in owned:
                return False
            owned[real] = time.time()
        try:
            os.utime(real)  # in use: the sweep keeps it
        except OSError:
            return False
        return True

    # ---- putting files in

    def store(self, user: str, data: bytes, name: str, extension: str) -> str:
        """Write bytes the user sent (an upload) into the cache and register them as theirs. The file goes where
        Gradio's input handling would copy it (`<cache>/<content hash>/<name>`), so Gradio uses it in place."""
        from gradio.processing_utils import hash_bytes

        folder = Path(self.root) / hash_bytes(data)
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / safe_name(name, extension)
        if not path.exists():
            partial = folder / f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial"
            partial.write_bytes(data)
            os.replace(partial, path)
        self.sweep()
        return self.register(user, str(path))

    def hand_over(self, user: str, source: str) -> str:
        """Put a file the studio chose (e.g. the user's own result PNG) into the cache for this user and return the
        cache path to give Gradio: Gradio keeps that path as it is, and the user may fetch it."""
        data = Path(source).read_bytes()
        extension = Path(source).suffix.lstrip(".").lower() or "png"
        return self.store(user, data, Path(source).name, extension)

    # ---- cleaning

    def sweep(self, now: Optional[float] = None, force: bool = False) -> int:
        """Remove cache files unused for max_age_s (uploads, and Gradio's own copies). At most once a minute unless
        forced. Returns how many files went."""
        now = time.time() if now is None else now
        with self._lock:
            if not force and now - self._last_sweep < SWEEP_EVERY_S:
                return 0
            self._last_sweep = now
        removed = 0
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(folder, name)
                try:
                    if now - os.stat(path).st_mtime > self.max_age_s:
                        os.remove(path)
                        removed += 1
                except OSError:
                    pass
            if folder != self.root:
                try:
                    os.rmdir(folder)  # only when empty
                except OSError:
                    pass
        if removed:
            with self._lock:
                for owned in self._owned.values():
                    for path in [p for p in owned if not os.path.exists(p)]:
                        del owned[path]
            log.info("Removed %d unused files from Gradio's cache", removed)
        return removed
