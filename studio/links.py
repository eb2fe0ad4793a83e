"""The URLs the studio's own routes serve, in one place: the UI (which must not import the web side) and the
routes agree on them here. Plain Python."""

from __future__ import annotations

import os
from urllib.parse import quote

FILES = "/studio/files/"
JOBS = "/studio/api/jobs/"


def result_relative(outputs, owner: str, path: str) -> str:
    """A saved PNG's path relative to its owner's outputs ("<day>/<file>.png"), as /studio/files takes it."""
    return os.path.relpath(path, outputs.owner_root(owner)).replace(os.sep, "/")


def result_url(outputs, owner: str, path: str) -> str:
    return FILES + quote(result_relative(outputs, owner, path))


def job_stream_url(job_id: str) -> str:
    return JOBS + quote(job_id, safe="") + "/stream"
