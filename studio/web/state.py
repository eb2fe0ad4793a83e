"""What the HTTP side keeps per server: each user's settings (their model, their own A1111 options), the server
options admins set, and the users' image history. Jobs, rules and engine facts come from the job service
(studio.service.JobService). No torch."""

from __future__ import annotations

import json
import threading
from typing import Any, Iterable, Optional

from ..history import History
from ..service import JobService

MAX_USER_OPTIONS = 500  # option names one user may keep (POST /sdapi/v1/options)
MAX_USER_OPTIONS_BYTES = 256 * 1024  # ... and their size, written as JSON


class ServerState:
    def __init__(self, service: JobService):
        self.service = service
        self.history = History(service.outputs)
        self._lock = threading.Lock()
        self._models: dict[str, str] = {}  # user -> chosen model (absent: the engine's current model)
        self._options: dict[str, dict[str, Any]] = {}  # user -> their own A1111 options, bounded (see update_user_options)
        self.server_options: dict = {}  # the server-wide options admins set through POST /sdapi/v1/options

    def is_admin(self, user: str, client_host: Optional[str]) -> bool:
        return self.service.is_admin(user, client_host)

    # ---- per-user model

    def model_for(self, user: str) -> str:
        with self._lock:
            chosen = self._models.get(user)
        return chosen or self.service.info().model

    def set_model(self, user: str, model: str) -> None:
        with self._lock:
            self._models[user] = model

    # ---- per-user A1111 options (what GET /sdapi/v1/options shows them: studio.web.a1111_options)

    def user_options(self, user: str) -> dict[str, Any]:
        """The options this user posted (a copy; never another user's)."""
        with self._lock:
            return dict(self._options.get(user, {}))

    def update_user_options(self, user: str, values: dict[str, Any], remove: Iterable[str] = ()) -> None:
        """Merge `values` (JSON values) into the user's own options and drop the names in `remove`, all or nothing.
        Raises ValueError, changing nothing, when the user would keep more than MAX_USER_OPTIONS names or more than
        MAX_USER_OPTIONS_BYTES of JSON."""
        dropped = set(remove)
        with self._lock:
            merged = {k: v for k, v in self._options.get(user, {}).items() if k not in dropped}
            merged.update(values)
            if len(merged) > MAX_USER_OPTIONS:
                raise ValueError(f"Too many options: each user may keep at most {MAX_USER_OPTIONS}.")
            if len(json.dumps(merged)) > MAX_USER_OPTIONS_BYTES:
                raise ValueError(f"Your options would be too big: at most {MAX_USER_OPTIONS_BYTES // 1024} KiB in all.")
            if merged:
                self._options[user] = merged
            else:
                self._options.pop(user, None)
