"""Per-user studio settings: the defaults a user's tabs start with (sampler, steps, size, CFG), their live previews
(mode and interval) and the file name pattern of their saved pictures.

One small JSON file per user in their outputs folder, hidden (never listed in History, never served). Written
atomically; a missing, oversized or broken file means "nothing saved" (the studio's defaults), never an error page.
No torch, no web framework."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Sequence

from .config import PREVIEW_MODES as SERVER_PREVIEW_MODES
from .contract import INSPECTABLE
from .outputs import FILENAME_TOKENS, OutputStore, unknown_filename_tokens
from .samplers import DEFAULT_SAMPLER
from .validation import MAX_PREVIEW_EVERY

log = logging.getLogger(__name__)

FILE_NAME = ".studio-settings.json"
MAX_FILE_BYTES = 16_384  # a settings file is a few hundred bytes; anything larger is not ours
PREVIEW_MODES = ("",) + tuple(SERVER_PREVIEW_MODES)  # "": the server's choice (its --preview, --preview-every)
MAX_PATTERN_CHARS = 200


class SettingsError(ValueError):
    """A setting a user cannot save; the message says what to change."""


@dataclass(frozen=True)
class UserSettings:
    sampler_name: str = DEFAULT_SAMPLER
    steps: int = 20
    width: int = 0  # 0: the model's default size
    height: int = 0
    cfg_scale: float = 7.0
    preview: str = ""  # one of PREVIEW_MODES
    preview_every: int = 0  # 0: the server's interval
    filename_pattern: str = ""  # "": NNNNN-seed.png
    inspect: tuple[str, ...] = ()  # what every job captures from inside its sampling (the Step previews tab shows it)


@dataclass(frozen=True)
class SettingsLimits:
    """What the server allows, so a saved default is one the tabs can use."""

    samplers: Sequence[str]
    max_steps: int
    max_size: int


def checked(values: dict, limits: SettingsLimits) -> UserSettings:
    """`values` (from the Settings tab or the saved file; unknown keys ignored, missing ones default) as
    UserSettings, or SettingsError saying what to change."""
    known = {f.name for f in fields(UserSettings)}
    given = {k: v for k, v in values.items() if k in known}
    try:
        s = UserSettings(**given)
        s = UserSettings(sampler_name=str(s.sampler_name), steps=_whole(s.steps, "Steps"), width=_whole(s.width, "Width"),
                         height=_whole(s.height, "Height"), cfg_scale=float(s.cfg_scale), preview=str(s.preview or ""),
                         preview_every=_whole(s.preview_every, "Preview every"), filename_pattern=str(s.filename_pattern or "").strip(),
                         inspect=tuple(str(v) for v in (s.inspect or ())))
    except (TypeError, ValueError) as exc:
        raise SettingsError(str(exc)) from None
    if s.sampler_name not in limits.samplers:
        raise SettingsError(f"Unknown sampler {s.sampler_name!r}: pick one from the list.")
    if not 1 <= s.steps <= limits.max_steps:
        raise SettingsError(f"Steps must be 1 to {limits.max_steps}.")
    for name, side in (("Width", s.width), ("Height", s.height)):
        if side != 0 and not (64 <= side <= limits.max_size and side % 8 == 0):
            raise SettingsError(f"{name} must be 0 (the model's default) or a multiple of 8 from 64 to {limits.max_size}.")
    if not 0 <= s.cfg_scale <= 30:
        raise SettingsError("CFG scale must be 0 to 30.")
    if s.preview not in PREVIEW_MODES:
        raise SettingsError(f"Live preview must be one of: {', '.join(m or 'the server choice' for m in PREVIEW_MODES)}.")
    if not 0 <= s.preview_every <= MAX_PREVIEW_EVERY:
        raise SettingsError(f"Preview every must be 0 (the server's choice) to {MAX_PREVIEW_EVERY} steps.")
    if len(s.filename_pattern) > MAX_PATTERN_CHARS:
        raise SettingsError(f"The file name pattern is too long: {MAX_PATTERN_CHARS} characters at most.")
    if any(v not in INSPECTABLE for v in s.inspect) or len(set(s.inspect)) != len(s.inspect):
        raise SettingsError(f"Inside sampling: choose from {', '.join(INSPECTABLE)}.")
    unknown = unknown_filename_tokens(s.filename_pattern)
    if unknown:
        raise SettingsError(f"The file name pattern has unknown tokens ({', '.join(f'[{t}]' for t in unknown)}); "
                            f"known: {' '.join(f'[{t}]' for t in FILENAME_TOKENS)}.")
    return s


def request_fields(saved: UserSettings) -> dict:
    """The GenerationRequest fields that a user's saved settings set on each job they start from the UI."""
    return dict(preview=saved.preview or None, preview_every=saved.preview_every or None,
                filename_pattern=saved.filename_pattern, inspect=saved.inspect)


def _whole(value, name: str) -> int:
    number = float(value)
    if number != int(number):
        raise ValueError(f"{name} must be a whole number.")
    return int(number)


class UserSettingsStore:
    """Each user's saved settings, in their outputs folder (outputs/<user>/.studio-settings.json)."""

    def __init__(self, outputs: OutputStore):
        self.outputs = outputs

    def path(self, owner: str) -> Path:
        return self.outputs.owner_root(owner) / FILE_NAME

    def load(self, owner: str, limits: SettingsLimits) -> Optional[UserSettings]:
        """The owner's saved settings, or None when nothing (usable) is saved: the studio's defaults apply."""
        path = self.path(owner)
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
                return None
            values = json.loads(path.read_text(encoding="utf-8"))
            return checked(values, limits) if isinstance(values, dict) else None
        except (OSError, ValueError) as exc:  # a broken file: the defaults, and a line in the log
            log.warning("Ignoring the saved settings of %s: %s", owner, exc)
            return None

    def save(self, owner: str, settings: UserSettings) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half of one."""
        path = self.path(owner)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{FILE_NAME}.partial")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(asdict(settings), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def forget(self, owner: str) -> None:
        """Back to the studio's defaults."""
        try:
            self.path(owner).unlink()
        except FileNotFoundError:
            pass
