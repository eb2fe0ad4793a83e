"""Where finished images go: one folder per day under the outputs root, PNGs written atomically with metadata.

The single local user ("local") writes to <root>/<day>/; every other owner (a login on the shared server) to
<root>/<owner>/<day>/, so one user's files never mix with another's."""

from __future__ import annotations

import datetime as _dt
import io
import os
import re
import threading
from pathlib import Path

from PIL import Image, PngImagePlugin

_NUMBERED = re.compile(r"^(\d{5})-")
LOCAL_OWNER = "local"


class OutputStore:
    def __init__(self, root: Path, clock=_dt.date.today):
        self.root = Path(root)
        self._clock = clock
        self._lock = threading.Lock()

    def owner_root(self, owner: str | None = None) -> Path:
        """The folder that holds `owner`'s day folders."""
        if owner is None or owner == LOCAL_OWNER:
            return self.root
        if not owner or "/" in owner or "\\" in owner or owner.startswith(".") or "\x00" in owner:
            raise ValueError(f"not a usable owner name: {owner!r}")
        return self.root / owner

    def day_folder(self, owner: str | None = None) -> Path:
        return self.owner_root(owner) / self._clock().isoformat()

    def _next_number(self, folder: Path) -> int:
        numbers = [int(m.group(1)) for p in folder.glob("*.png") if (m := _NUMBERED.match(p.name))]
        return max(numbers, default=-1) + 1

    def discard(self, path, owner: str | None = None) -> bool:
        """Delete one of `owner`'s saved pictures (only a file inside their own folder). Returns whether it was."""
        target = Path(path).resolve()
        if not target.is_relative_to(self.owner_root(owner).resolve()) or target.suffix.lower() != ".png" or not target.is_file():
            return False
        target.unlink()
        return True

    def save_png(self, image: Image.Image, infotext: str, seed: int, owner: str | None = None) -> Path:
        """Write `NNNNN-seed.png` with a `parameters` text chunk. A crash never leaves a partial PNG:
        the bytes go to a hidden temporary file, are flushed to disk, then renamed into place."""
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", infotext)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        with self._lock:
            folder = self.day_folder(owner)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{self._next_number(folder):05d}-{seed}.png"
            tmp = folder / f".{path.name}.partial"
            with open(tmp, "wb") as f:
                f.write(buffer.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return path
