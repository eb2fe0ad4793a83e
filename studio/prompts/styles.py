"""A1111 prompt styles: a styles.csv (name, prompt, negative_prompt) and how a style merges into a prompt."""

from __future__ import annotations

import csv
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str
    negative_prompt: str


def apply_style_text(style_text: str, prompt: str) -> str:
    """A1111's merge: "{prompt}" in the style is replaced by the prompt; otherwise the two are joined with ", "
    (stripped, empty parts left out)."""
    if "{prompt}" in style_text:
        return style_text.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def _read(path: Path) -> list[Style]:
    """Parse styles.csv as A1111 does; raises on a file it could not read either."""
    styles: dict[str, Style] = {}
    # utf-8-sig: A1111 writes (and Excel saves) a byte-order mark.
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.DictReader(file, skipinitialspace=True)
        fields = reader.fieldnames
        if fields is None:
            return []  # an empty file
        if "name" not in fields or not ({"prompt", "text"} & set(fields)):
            raise ValueError(f"no name/prompt header (got {fields})")
        for row in reader:
            name = (row.get("name") or "").strip()
            if not name or name.startswith("#"):  # blank rows, and A1111's comment rows
                continue
            # "text" is the column of A1111's oldest styles.csv format.
            prompt = row["prompt"] if "prompt" in row else row["text"]
            styles[name] = Style(name, prompt or "", row.get("negative_prompt") or "")  # a later row wins
    return list(styles.values())


class StyleLibrary:
    """The styles of one styles.csv, re-read whenever the file changes on disk."""

    def __init__(self, path: Optional[Path]):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._stamp: object = None
        self._styles: list[Style] = []

    def styles(self) -> list[Style]:
        """The current styles; [] when there is no file or it is malformed (logged once per version of the file)."""
        if self.path is None:
            return []
        try:
            st = os.stat(self.path)
            stamp: object = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None  # missing: no styles
        with self._lock:
            if stamp != self._stamp:
                self._styles = self._load() if stamp is not None else []
                self._stamp = stamp
            return list(self._styles)

    def _load(self) -> list[Style]:
        try:
            return _read(self.path)
        except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
            log.warning("styles file %s is not usable, no styles loaded: %s", self.path, exc)
            return []

    def apply(self, prompt: str, negative: str, names: Sequence[str]) -> tuple[str, str, list[str]]:
        """Apply the named styles in order to both prompts; returns (prompt, negative, names not found)."""
        by_name = {style.name: style for style in self.styles()}
        missing = []
        for name in names:
            style = by_name.get(name)
            if style is None:
                missing.append(name)
                continue
            prompt = apply_style_text(style.prompt, prompt)
            negative = apply_style_text(style.negative_prompt, negative)
        return prompt, negative, missing
