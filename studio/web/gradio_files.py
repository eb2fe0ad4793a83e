"""Gradio's file cache: where it lives (a private folder of ours) and which of its files a user may fetch."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Optional

from .auth import LOCAL_USER

log = logging.getLogger(__name__)


def private_gradio_cache(cache_dir) -> Path:
    """Point Gradio's file cache (its copies of results, previews and uploads; /tmp/gradio by default, shared and
    world-readable) at `<cache_dir>/gradio`, mode 0700. Gradio reads GRADIO_TEMP_DIR when each component and the
    app are created, so call this before build_ui(). An explicit GRADIO_TEMP_DIR from the operator wins."""
    folder = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(cache_dir).expanduser() / "gradio").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(folder, 0o700)
    except OSError as exc:
        log.warning("Could not make Gradio's cache %s private (%s)", folder, exc)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


class CacheFiles:
    """Which of Gradio's cache files (under `root`) each user was handed: a user may fetch a cache file only if the
    server sent that path to that user (in an event's output, an upload's answer...). The paths are read from the
    responses going out (JSON and server-sent events) — Gradio names every file it hands out there by its path."""

    PER_USER = 20_000  # the most recent paths remembered per user

    def __init__(self, root):
        self.root = os.path.realpath(str(root))
        self._pattern = re.compile(re.escape(self.root).encode() + rb'/(?:[^"\\\s]|\\.)+')
        self._tail = len(self.root) + 1024  # a path split across two body chunks is still seen whole
        self._lock = threading.Lock()
        self._given: dict[str, OrderedDict] = {}

    def contains(self, real: str) -> bool:
        return os.path.commonpath([real, self.root]) == self.root

    def record(self, user: str, body: bytes) -> None:
        for match in self._pattern.finditer(body):
            try:
                text = json.loads(b'"' + match.group(0) + b'"')
            except ValueError:
                text = match.group(0).decode("utf-8", "replace")
            real = os.path.normpath(text)
            with self._lock:
                given = self._given.setdefault(user, OrderedDict())
                given[real] = True
                given.move_to_end(real)
                while len(given) > self.PER_USER:
                    given.popitem(last=False)

    def given_to(self, user: str, real: str) -> bool:
        with self._lock:
            return real in self._given.get(user, ())

    def recording(self, user: str, send):
        tail = b""
        textual = False

        async def wrapped(message):
            nonlocal tail, textual
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                kind = headers.get(b"content-type", b"")
                textual = (b"json" in kind or b"event-stream" in kind or b"text/" in kind) and b"content-encoding" not in headers
            elif message["type"] == "http.response.body" and textual:
                body = message.get("body", b"")
                if body:
                    chunk = tail + body
                    if self.root.encode() in chunk:
                        self.record(user, chunk)
                    tail = chunk[-self._tail:]
            await send(message)

        return wrapped


def file_guard(outputs, cache_files: Optional[CacheFiles] = None):
    """Gradio may serve the outputs folder (the UI shows the saved PNGs): a user may fetch files under their own
    outputs only. Paths are resolved first, so neither `..` nor a symlink gets out. Gradio's cache (its copies of
    results, previews, uploads): only the files the server handed to this user (see CacheFiles)."""
    from urllib.parse import unquote

    root = os.path.realpath(outputs.root)

    def allowed(user: str, raw: str) -> bool:
        if raw.startswith(("http://", "https://")):
            return True  # Gradio's own proxy rules apply
        real = os.path.realpath(unquote(raw))
        if user == LOCAL_USER:
            return True
        if cache_files is not None and cache_files.contains(real):
            return cache_files.given_to(user, real)
        if os.path.commonpath([real, root]) != root:
            return True  # not an output: Gradio's own allowed/blocked rules apply
        mine = os.path.realpath(outputs.owner_root(user))
        return os.path.commonpath([real, mine]) == mine

    return allowed


