"""Where finished images go: one folder per day under the outputs root, PNGs written atomically with metadata.

The single local user ("local") writes to <root>/<day>/; every other owner (a login on the shared server) to
<root>/<owner>/<day>/, so one user's files never mix with another's.

A file is `NNNNN-<name>.png`: a number unique in its folder, then the seed, or a request's file name pattern
(A1111's samples_filename_pattern, `[seed]-[model_name]`) expanded and cut down to NAME_CHARS, which every reader of
these names (history.FILE_RE, the file routes) accepts and nothing else."""

from __future__ import annotations

import datetime as _dt
import io
import os
import re
import string
import threading
from pathlib import Path
from typing import Optional

from PIL import Image, PngImagePlugin

from .metadata import parse_infotext

_NUMBERED = re.compile(r"^([0-9]{5,})-")
LOCAL_OWNER = "local"

# A1111's pattern tokens that the studio fills (case-insensitive, as there); [prompt_no_styles] is the prompt as typed.
FILENAME_TOKENS = ("seed", "steps", "cfg", "width", "height", "sampler", "model_name", "prompt", "prompt_spaces",
                   "prompt_words", "prompt_no_styles", "date", "datetime", "job_timestamp")
NAME_CHARS = r"\w ,()+.\-"  # a saved name's own part: letters and digits of any script, "_", space and ,()+.-
MAX_NAME_PART = 120  # characters of that part, at most
MAX_NAME_BYTES = 200  # UTF-8: the whole file name stays well under the file systems' 255 bytes
PROMPT_WORDS = 8  # A1111's directories_max_prompt_words
_TOKEN = re.compile(r"\[([^\[\]]*)\]")
_DISALLOWED = re.compile(rf"[^{NAME_CHARS}]+")
_NON_LETTERS = re.compile(rf"[\s{re.escape(string.punctuation)}]+")  # A1111's word split for [prompt_words]


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

    def save_png(self, image: Image.Image, infotext: str, seed: int, owner: str | None = None, pattern: str = "",
                 fields: Optional[dict] = None) -> Path:
        """Write `NNNNN-seed.png` (or `NNNNN-<pattern expanded>.png`, with `fields`, by default those of the
        infotext) with a `parameters` text chunk. A crash never leaves a partial PNG:
        the bytes go to a hidden temporary file, are flushed to disk, then renamed into place."""
        name = expand_filename_pattern(pattern, fields or filename_fields(infotext, seed)) if pattern else str(int(seed))
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", infotext)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
        with self._lock:
            folder = self.day_folder(owner)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{self._next_number(folder):05d}-{name}.png"
            tmp = folder / f".{path.name}.partial"
            with open(tmp, "wb") as f:
                f.write(buffer.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return path


def filename_fields(infotext: str, seed: int, prompt_no_styles: Optional[str] = None, job_time: Optional[float] = None,
                    now: Optional[_dt.datetime] = None) -> dict:
    """The values of the pattern tokens for one image: from its infotext (what was used), the seed, the prompt as
    typed (before styles) and the job's time, for [job_timestamp] (a timestamp; None: now)."""
    params = parse_infotext(infotext) if infotext else {}
    now = now or _dt.datetime.now()
    started = _dt.datetime.fromtimestamp(job_time) if job_time else now
    return {
        "seed": seed, "steps": params.get("Steps"), "cfg": params.get("CFG scale"),
        "width": params.get("Size-1"), "height": params.get("Size-2"),
        "sampler": params.get("Sampler"), "model_name": params.get("Model"),
        "prompt": params.get("Prompt", ""),
        "prompt_no_styles": params.get("Prompt", "") if prompt_no_styles is None else prompt_no_styles,
        "date": now.strftime("%Y-%m-%d"), "datetime": now.strftime("%Y%m%d%H%M%S"),
        "job_timestamp": started.strftime("%Y%m%d%H%M%S"),
    }


def unknown_filename_tokens(pattern: str) -> list[str]:
    """The [tokens] of `pattern` that are not FILENAME_TOKENS (as written)."""
    return [token for token in _TOKEN.findall(pattern) if token.lower() not in FILENAME_TOKENS]


def expand_filename_pattern(pattern: str, fields: dict) -> str:
    """A file name's own part from an A1111 pattern: each known [token] replaced by its field (a missing one by
    nothing), then cut down to NAME_CHARS — a run of anything else becomes "_", no "..", at most MAX_NAME_PART,
    no leading or trailing space, "." or "_" — and never empty (the seed then)."""

    def value(match: re.Match) -> str:
        token = match.group(1).lower()
        prompt = str(fields.get("prompt") or "")
        if token not in FILENAME_TOKENS:
            return match.group(0)  # validation refuses these; here it is only text
        if token == "prompt":
            return prompt.replace(" ", "_")
        if token == "prompt_spaces":
            return prompt
        if token == "prompt_words":
            return " ".join([word for word in _NON_LETTERS.split(prompt) if word][:PROMPT_WORDS])
        found = fields.get(token)
        return "" if found is None else str(found)

    name = re.sub(r"\.{2,}", ".", _DISALLOWED.sub("_", _TOKEN.sub(value, pattern)))[:MAX_NAME_PART]
    while len(name.encode("utf-8")) > MAX_NAME_BYTES:
        name = name[:-1]
    name = name.strip(" ._")
    return name or _DISALLOWED.sub("_", str(fields.get("seed", ""))).strip(" ._") or "image"
