"""Per-user history: each user's finished images with their parameters, rebuilt from the PNGs on disk.

The PNGs are the record (each carries its A1111 infotext), so the history survives restarts and crashes by
construction: it lists exactly the complete images that exist. A save interrupted by a crash leaves at most a hidden
`.NAME.partial` file (OutputStore writes atomically), which is never listed and is removed by `clean_partials`.
No torch, no gradio.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PIL import Image

from .metadata import parse_infotext, read_infotext
from .outputs import OutputStore

log = logging.getLogger(__name__)

DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FILE_RE = re.compile(r"^[0-9]{5}-[0-9]+\.png$")


@dataclass(frozen=True)
class HistoryEntry:
    path: Path
    relative: str  # "<day>/<file>", as the file route takes it
    created: float
    infotext: str
    parameters: dict

    @property
    def seed(self) -> Optional[int]:
        try:
            return int(self.parameters.get("Seed"))
        except (TypeError, ValueError):
            return None


class History:
    def __init__(self, outputs: OutputStore):
        self.outputs = outputs
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[float, int, HistoryEntry]] = {}  # path -> (mtime, size, entry)

    def clean_partials(self) -> int:
        """Remove leftovers of interrupted saves (hidden *.partial files) anywhere under the outputs root."""
        removed = 0
        root = self.outputs.root
        if not root.is_dir():
            return 0
        for path in root.rglob(".*.partial"):
            try:
                if path.is_file() and not path.is_symlink():
                    path.unlink()
                    removed += 1
            except OSError:
                pass
        if removed:
            log.info("Removed %d unfinished image file(s) left by an interrupted save", removed)
        return removed

    def entries(self, owner: str) -> list[HistoryEntry]:
        """The owner's images, newest first."""
        root = self.outputs.owner_root(owner)
        found: list[HistoryEntry] = []
        if not root.is_dir():
            return found
        with self._lock:
            for day in sorted(os.scandir(root), key=lambda e: e.name, reverse=True):
                if not DAY_RE.match(day.name) or not day.is_dir(follow_symlinks=False):
                    continue
                for item in sorted(os.scandir(day.path), key=lambda e: e.name, reverse=True):
                    if not FILE_RE.match(item.name) or not item.is_file(follow_symlinks=False):
                        continue
                    entry = self._entry(Path(item.path), f"{day.name}/{item.name}", item.stat(follow_symlinks=False))
                    if entry is not None:
                        found.append(entry)
        return found

    def _entry(self, path: Path, relative: str, stat) -> Optional[HistoryEntry]:
        cached = self._cache.get(path)
        if cached and cached[0] == stat.st_mtime and cached[1] == stat.st_size:
            return cached[2]
        try:
            with Image.open(path) as image:
                infotext = read_infotext(image) or ""
        except Exception:
            return None  # not a readable PNG: not part of the history
        entry = HistoryEntry(path, relative, stat.st_mtime, infotext, parse_infotext(infotext) if infotext else {})
        self._cache[path] = (stat.st_mtime, stat.st_size, entry)
        return entry


def safe_output_file(outputs: OutputStore, owner: str, relative: str) -> Optional[Path]:
    """The owner's output file named by "<day>/<NNNNN-seed>.png", or None: nothing outside the owner's folder,
    no `..`, no hidden files, no symlinks anywhere on the way."""
    parts = relative.split("/")
    if len(parts) != 2 or not DAY_RE.match(parts[0]) or not FILE_RE.match(parts[1]):
        return None
    root = outputs.owner_root(owner)
    path = root / parts[0] / parts[1]
    try:
        for step in (root / parts[0], path):  # the root itself may be an operator's link
            if step.is_symlink():
                return None
        real_root = root.resolve(strict=True)
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real.parent.parent != real_root or not real.is_file():
        return None
    return real
