"""The studio's rules in front of Gradio's routes (plain ASGI, inside the login wall, which has set the user).

Gradio's internals are not a security boundary: its handlers copy any file path a client names, its file routes
serve what they are asked for, and its event streams trust the session id the browser made up. So, for every
request that reaches Gradio:

- only the routes the UI needs pass (an allowlist); its monitoring page is for admins;
- uploads are ours: checked (PNG, JPEG or WebP; size read from the header) and registered to the user;
- a file in any request is accepted only as a path this user uploaded; anything else is a 400 — except that an
  event's own data (a gallery's select sends back the picked picture as the gallery shows it) may also name one of
  the user's results by its studio URL, http(s)://<this host>/studio/files/<day>/<file>.png, checked against that
  user's outputs folder alone (it is never opened here, and Gradio does not fetch an event's data);
- Gradio's file routes serve a user only their own files (answered here; Gradio never sees the request);
- a browser session id belongs to the user who used it first; another user gets 403.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import OrderedDict
from typing import Callable, Optional
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..links import FILES
from ..contract import RequestError
from ..history import safe_output_file
from ..outputs import OutputStore
from .gradio_files import GradioFiles

log = logging.getLogger(__name__)

API = "/gradio_api"
# The studio's own routes (FastAPI): not Gradio's, the gate lets them through untouched.
STUDIO_PREFIXES = ("/studio/", "/sdapi/", "/login", "/logout", "/docs", "/openapi.json")
# What the UI and gradio_client need of Gradio; everything else of Gradio's answers 404.
ALLOWED_GET = re.compile(
    r"^(/|/config/?|/(svelte|static|assets)/.*|/favicon\.ico|/theme\.css|/robots\.txt|/manifest\.json|/pwa_icon(/\d+)?"
    rf"|{API}/(info/?|theme\.css|startup-events|heartbeat/[^/]+|queue/data|queue/status|upload_progress|login_check/?"
    rf"|app_id/?|user/?|deep_link|call/(v2/)?[^/]+/[^/]+))$"
)
ALLOWED_POST = re.compile(rf"^{API}/(queue/join|cancel|reset/?|(run|api|call|call/v2)/[^/]+/?)$")
FILE_ROUTE = re.compile(rf"^{API}/file(=|/)(?P<path>.+)$")
MONITORING = re.compile(r"^/monitoring(/.*)?$")
UPLOAD = f"{API}/upload"
SESSION_IN_PATH = re.compile(rf"^{API}/heartbeat/(?P<session>[^/]+)$")
MAX_UPLOAD_FILES = 8
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}


class SessionOwners:
    """Which user each Gradio session id belongs to: the first user who used it. Bounded (oldest forgotten)."""

    def __init__(self, limit: int = 100_000):
        self.limit = limit
        self._lock = threading.Lock()
        self._owners: OrderedDict[str, str] = OrderedDict()

    def claim(self, session: str, user: str) -> bool:
        """True when `session` is (now) this user's; False when it is another user's."""
        with self._lock:
            owner = self._owners.get(session)
            if owner is None:
                self._owners[session] = user
                while len(self._owners) > self.limit:
                    self._owners.popitem(last=False)
                return True
            self._owners.move_to_end(session)
            return owner == user


class GradioGate:
    def __init__(self, app, files: GradioFiles, settings, is_admin: Callable[[str, Optional[str]], bool],
                 outputs: OutputStore):
        self.app = app
        self.files = files
        self.settings = settings  # image limits for uploads
        self.outputs = outputs  # the engine's: results named by URL are looked up in their owner's folder only
        self.is_admin = is_admin
        self.sessions = SessionOwners()

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(STUDIO_PREFIXES):
            return await self.app(scope, receive, send)
        user = scope.get("state", {}).get("user")
        method = scope.get("method", "GET")
        if user is None:  # the wall lets strangers reach only its public pages
            return await _json(send, 401, "Not authenticated.")
        session = _session_from_query(scope) or _session_from_path(path)
        if session is not None and not self.sessions.claim(session, user):
            return await _json(send, 403, "This browser session belongs to another user: reload the page.")
        match = FILE_ROUTE.match(path)
        if match and method in ("GET", "HEAD"):
            return await self._serve_file(user, match.group("path"), scope, receive, send)
        if MONITORING.match(path) and method == "GET":
            client = scope.get("client") or (None, None)
            if self.is_admin(user, client[0]):
                return await self.app(scope, receive, send)
            return await _json(send, 404, "Not found.")
        if path == UPLOAD and method == "POST":
            return await self._upload(user, scope, receive, send)
        if method in ("GET", "HEAD") and ALLOWED_GET.match(path):
            return await self.app(scope, receive, send)
        if method == "POST" and ALLOWED_POST.match(path):
            return await self._checked_event(user, scope, receive, send)
        log.info("Gradio route not served: %s %s", method, path)
        return await _json(send, 404, "Not found.")

    # ---- events: every file in the request must be one of the user's uploads (or, in the event's data, results)

    async def _checked_event(self, user: str, scope, receive, send):
        self.files.sweep()  # at most once a minute: unused uploads go within the hour even when no one uploads
        body = await _read_body(receive)
        if body is None:
            return None  # the client went away
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return await _json(send, 400, "The request is not valid JSON.")
        session = payload.get("session_hash") if isinstance(payload, dict) else None
        if isinstance(session, str) and not self.sessions.claim(session, user):
            return await _json(send, 403, "This browser session belongs to another user: reload the page.")
        event = payload.get("event_data") if isinstance(payload, dict) else None
        rest = {k: v for k, v in payload.items() if k != "event_data"} if isinstance(payload, dict) else payload
        named = [(path, False) for path in _file_paths(rest)] + [(path, True) for path in _file_paths(event, 1)]
        for path, result_too in named:
            if not isinstance(path, str) or not (
                    (result_too and self._own_result(user, path, scope)) or self.files.owns(user, path)):
                log.warning("Refused a file path from %s in %s", user, scope.get("path"))
                return await _json(send, 400, "Files must be uploaded first (POST /gradio_api/upload); a path is not accepted.")
        return await self.app(scope, _replay(body, receive), send)

    def _own_result(self, user: str, url: str, scope) -> bool:
        """Whether `url` is one of this user's results as the studio's galleries show it (studio.ui.streaming builds
        it: the origin the browser reached, then /studio/files/<day>/<file>.png). Nothing else: no other scheme or
        host, no query, no `..` or link (safe_output_file), and only ever looked up in the user's own outputs."""
        try:
            target = urlsplit(url)
        except ValueError:
            return False
        if (target.scheme not in ("http", "https") or target.netloc.lower() not in _hosts(scope) or target.query
                or target.fragment or not target.path.startswith(FILES)):
            return False
        try:
            # The gallery quotes the file part (a pattern's name may hold spaces, parentheses, any script's letters).
            return safe_output_file(self.outputs, user, unquote(target.path[len(FILES):])) is not None
        except ValueError:  # not a usable owner name: no outputs folder
            return False

    # ---- uploads

    async def _upload(self, user: str, scope, receive, send):
        from starlette.requests import Request

        from ..validation import image_header

        request = Request(scope, receive)
        try:
            form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=16)
        except Exception as exc:  # malformed multipart, too many files
            log.info("Upload refused for %s: %s", user, exc)
            return await _json(send, 400, f"Upload at most {MAX_UPLOAD_FILES} images as multipart form data.")
        stored = []
        try:
            uploads = [item for _key, item in form.multi_items() if hasattr(item, "read")]
            if not uploads:
                return await _json(send, 400, "No file in the upload.")
            for upload in uploads:
                data = await upload.read()
                name = upload.filename or "image"
                try:
                    kind, _width, _height = image_header(data, f"The file {os.path.basename(name)[:80]!r}", self.settings)
                except RequestError as exc:
                    return await _json(send, 415 if "PNG, JPEG or WebP" in str(exc) else 400, str(exc))
                extension = {"JPEG": "jpg"}.get(kind, kind.lower())
                stored.append(self.files.store(user, data, name, extension))
        finally:
            await form.close()
        return await _json_value(send, 200, stored)

    # ---- Gradio's file routes, answered here

    async def _serve_file(self, user: str, raw: str, scope, receive, send):
        from starlette.responses import FileResponse

        path = unquote(raw)
        if path.startswith(("http://", "https://")):
            # gradio_client fetches every file as file=<its path>; results carry the studio's own URL as their path.
            # Only that route is followed (never another host): it checks the owner itself.
            target = urlsplit(path)
            if target.path.startswith(FILES) and ".." not in target.path:
                return await _redirect(send, FILES + quote(target.path[len(FILES):]))  # a header: ASCII only
            return await _json(send, 404, "No such file among yours.")
        if not os.path.isabs(path) or not self.files.owns(user, path):
            return await _json(send, 404, "No such file among yours.")
        extension = path.rsplit(".", 1)[-1].lower()
        response = FileResponse(os.path.realpath(path), media_type=MEDIA_TYPES.get(extension, "application/octet-stream"),
                                headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})
        return await response(scope, receive, send)


def _file_paths(value, depth: int = 0):
    """Every `path` of a FileData-like object (a dict with a "path" key) anywhere in a request's JSON."""
    if depth > 32:
        yield None  # absurd nesting: refused
        return
    if isinstance(value, dict):
        if "path" in value:
            yield value["path"]
        for item in value.values():
            yield from _file_paths(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _file_paths(item, depth + 1)


def _hosts(scope) -> set:
    """The names this request reached the server by (Host, and a proxy's X-Forwarded-Host), as results' URLs use them."""
    found = set()
    for name, value in scope.get("headers") or []:
        if name in (b"host", b"x-forwarded-host"):
            found.add(value.decode("latin-1").strip().lower())
    found.discard("")
    return found


def _session_from_query(scope) -> Optional[str]:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("session_hash")
    return values[0] if values else None


def _session_from_path(path: str) -> Optional[str]:
    match = SESSION_IN_PATH.match(path)
    return match.group("session") if match else None


async def _read_body(receive) -> Optional[bytes]:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _redirect(send, location: str) -> None:
    await send({"type": "http.response.start", "status": 307,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def _json_value(send, status: int, value) -> None:
    body = json.dumps(value).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send, status: int, detail: str) -> None:
    names = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 415: "UnsupportedMedia"}
    await _json_value(send, status, {"error": names.get(status, "Error"), "detail": detail})
