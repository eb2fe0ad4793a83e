"""Per-user history: each user's finished images with their parameters, rebuilt from the PNGs on disk.

The PNGs are the record (each carries its A1111 infotext), so the history survives restarts and crashes by
construction: it lists exactly the complete images that exist. A save interrupted by a crash leaves at most a hidden
`.NAME.partial` file (OutputStore writes atomically), which is never listed and is removed by `clean_partials`.
Each PNG's text is read once and cached by (mtime, size), so listing thousands of images costs a directory scan.
Deleting moves a picture to the owner's hidden trash folder (`.trash/<day>/`, beside the day folders): never
listed, never served, not gone. No torch, no gradio.
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
from .outputs import MAX_NAME_PART, NAME_CHARS, OutputStore

log = logging.getLogger(__name__)

DAY_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
# What OutputStore.save_png writes: NNNNN-seed.png, or NNNNN-<a name pattern's expansion>.png (only NAME_CHARS, no
# "..", not starting with "."): never a path separator, a hidden file or a NUL. \Z, as "$" lets a final newline by.
FILE_RE = re.compile(rf"^[0-9]{{5,}}-(?!\.)(?!.*\.\.)[{NAME_CHARS}]{{1,{MAX_NAME_PART}}}\.png\Z")
TRASH = ".trash"  # per owner, beside their day folders; hidden, so never listed nor served
PER_PAGE = 48


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

    @property
    def day(self) -> str:
        return self.relative.split("/", 1)[0]

    @property
    def model(self) -> str:
        return str(self.parameters.get("Model", "") or "")

    @property
    def prompt(self) -> str:
        return str(self.parameters.get("Prompt", "") or "")


@dataclass(frozen=True)
class HistoryFilter:
    """Which images a listing shows: prompt text (case-insensitive substring), one model, one day ("": any)."""

    text: str = ""
    model: str = ""
    day: str = ""

    def matches(self, entry: HistoryEntry) -> bool:
        if self.day and entry.day != self.day:
            return False
        if self.model and entry.model != self.model:
            return False
        return not self.text.strip() or self.text.strip().casefold() in entry.prompt.casefold()


@dataclass(frozen=True)
class HistoryPage:
    entries: list  # HistoryEntry, newest first
    page: int  # 1-based, within 1..pages
    pages: int  # at least 1
    total: int  # images matching the filter
    models: list  # every model the owner's images name, sorted
    days: list  # every day the owner has images from, newest first


class History:
    def __init__(self, outputs: OutputStore):
        self.outputs = outputs
        self._lock = threading.Lock()
        self._cache: dict[str, dict[Path, tuple[float, int, HistoryEntry]]] = {}  # owner -> path -> (mtime, size, entry)

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
        """The owner's images, newest first (by day, then by number)."""
        root = self.outputs.owner_root(owner)
        found: list[HistoryEntry] = []
        if not root.is_dir():
            return found
        with self._lock:
            known = self._cache.get(owner, {})
            seen: dict[Path, tuple[float, int, HistoryEntry]] = {}
            for day in sorted(os.scandir(root), key=lambda e: e.name, reverse=True):
                if not DAY_RE.match(day.name) or not day.is_dir(follow_symlinks=False):
                    continue
                for item in sorted(os.scandir(day.path), key=lambda e: e.name, reverse=True):
                    if not FILE_RE.match(item.name) or not item.is_file(follow_symlinks=False):
                        continue
                    path = Path(item.path)
                    cached = self._entry(known.get(path), path, f"{day.name}/{item.name}", item.stat(follow_symlinks=False))
                    if cached is not None:
                        seen[path] = cached
                        found.append(cached[2])
            self._cache[owner] = seen  # images gone from disk are forgotten
        return found

    def page(self, owner: str, where: HistoryFilter = HistoryFilter(), page: int = 1, per_page: int = PER_PAGE) -> HistoryPage:
        """One page of the owner's images that match `where`, newest first; `page` is clamped to the pages there are."""
        everything = self.entries(owner)
        matching = [entry for entry in everything if where.matches(entry)]
        per_page = max(1, int(per_page))
        pages = max(1, -(-len(matching) // per_page))
        page = min(max(1, int(page)), pages)
        return HistoryPage(entries=matching[(page - 1) * per_page : page * per_page], page=page, pages=pages,
                           total=len(matching), models=sorted({e.model for e in everything if e.model}, key=str.casefold),
                           days=list(dict.fromkeys(e.day for e in everything)))

    def find(self, owner: str, relative: str) -> Optional[HistoryEntry]:
        """The owner's image named by "<day>/<file>.png" (never another user's, never a link), or None."""
        path = safe_output_file(self.outputs, owner, relative) if isinstance(relative, str) else None
        if path is None:
            return None
        key = self.outputs.owner_root(owner) / relative  # as entries() names it
        with self._lock:
            known = self._cache.setdefault(owner, {})
            try:
                cached = self._entry(known.get(key), path, relative, path.stat())
            except OSError:
                return None
            if cached is not None:
                known[key] = cached
        return cached[2] if cached else None

    def trash(self, owner: str, relative: str) -> bool:
        """Move the owner's image named by "<day>/<file>.png" into their trash (`.trash/<day>/`, same name, or
        `NAME.N.png` when the trash holds one of that name already). Returns whether it was moved."""
        path = safe_output_file(self.outputs, owner, relative) if isinstance(relative, str) else None
        if path is None:
            return False
        trash = path.parent.parent / TRASH
        with self._lock:
            if trash.is_symlink() or (trash / path.parent.name).is_symlink():
                log.warning("Not deleting into %s: the trash folder is a link", trash)
                return False
            folder = trash / path.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            target, number = folder / path.name, 1
            while target.exists():
                target, number = folder / f"{path.stem}.{number}{path.suffix}", number + 1
            os.replace(path, target)
            self._cache.get(owner, {}).pop(self.outputs.owner_root(owner) / relative, None)
        return True

    def _entry(self, cached, path: Path, relative: str, stat) -> Optional[tuple[float, int, HistoryEntry]]:
        """(mtime, size, entry) for one PNG: the cached one while the file is unchanged, else read anew."""
        if cached and cached[0] == stat.st_mtime and cached[1] == stat.st_size and cached[2].relative == relative:
            return cached
        try:
            with Image.open(path) as image:
                infotext = read_infotext(image) or ""
        except Exception:
            return None  # not a readable PNG: not part of the history
        entry = HistoryEntry(path, relative, stat.st_mtime, infotext, parse_infotext(infotext) if infotext else {})
        return stat.st_mtime, stat.st_size, entry


def safe_output_file(outputs: OutputStore, owner: str, relative: str) -> Optional[Path]:
    """The owner's output file named by "<day>/<file>.png" (a name save_png writes: FILE_RE), or None: nothing
    outside the owner's folder, no `..`, no hidden files, no symlinks anywhere on the way."""
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
