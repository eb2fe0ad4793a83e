"""What the HTTP side keeps per server: each user's settings (their model), the server options admins set, and the
users' image history. Jobs, rules and engine facts come from the job service (studio.service.JobService). No torch."""

from __future__ import annotations

import threading
from typing import Optional

from ..history import History
from ..service import JobService


class ServerState:
    def __init__(self, service: JobService):
        self.service = service
        self.history = History(service.outputs)
        self._lock = threading.Lock()
        self._models: dict[str, str] = {}  # user -> chosen model (absent: the engine's current model)
        self.server_options: dict = {}  # set by admins through POST /sdapi/v1/options

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
