"""The server: one FastAPI app holding the Gradio UI (mounted at /), the A1111-compatible API (/sdapi/v1) and the
studio's per-user routes (/studio), behind one login, served by uvicorn.

    python app.py                                  # this machine only, one local user, no login
    python app.py --listen --auth-file users.txt   # the shared LAN server
"""



import argparse
import html
import json
import logging
import os
import re
import sys
import threading
from collections import OrderedDict
import webbrowser
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, quote

from .auth import LOCAL_USER, SESSION_COOKIE, SESSION_SECONDS, AuthConfigError, Users, user_from_headers

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 100 * 1024 * 1024
# Reachable without a login: the login form itself (it loads nothing else).
PUBLIC_PATHS = frozenset({"/login", "/logout"})


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("server")
    g.add_argument("--listen", action="store_true", help="serve on all interfaces (default: this machine only)")
    g.add_argument("--port", type=int, default=7860)
    g.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    g.add_argument("--auth", default=None, metavar="USER:PASS[,USER:PASS...]", help="require a login (passwords may be hashed, see README)")
    g.add_argument("--auth-file", type=Path, default=None, metavar="FILE", help="logins, one user:password per line")
    g.add_argument("--admin", action="append", default=[], metavar="USER", help="a user who may load any model and change server options (repeatable)")
    g.add_argument("--tls-keyfile", type=Path, default=None, help="serve HTTPS with this private key")
    g.add_argument("--tls-certfile", type=Path, default=None, help="... and this certificate")


# ---- the login wall (plain ASGI, so Gradio's streaming and websockets pass through untouched)


class LoginWall:
    """Every request needs a user: a session cookie from /login or HTTP Basic credentials (A1111's --api-auth).
    Strangers get the login page (browsers) or 401 (everything else). Also refuses bodies over MAX_BODY_BYTES."""

    def __init__(self, app, users: Optional[Users], max_body: int = MAX_BODY_BYTES, file_guard=None, cache_files=None):
        self.app = app
        self.users = users
        self.max_body = max_body
        self.file_guard = file_guard  # (user, path) -> bool, for Gradio's /gradio_api/file= route
        self.cache_files: Optional[CacheFiles] = cache_files  # which Gradio cache files each user was handed

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        user = user_from_headers(self.users, headers)
        path = scope.get("path", "")
        if user is None and path not in PUBLIC_PATHS:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await self._refuse(scope, headers, send)
        length = headers.get("content-length", "0")
        if scope["type"] == "http" and (not length.isdigit() or int(length) > self.max_body):
            return await _send(send, 413, b'{"detail":"The request is too large."}', b"application/json")
        if self.file_guard is not None and "/file=" in path and not self.file_guard(user, path.split("/file=", 1)[1]):
            return await _send(send, 404, b'{"detail":"No such file among yours."}', b"application/json")
        scope.setdefault("state", {})["user"] = user
        if self.cache_files is not None and scope["type"] == "http" and user != LOCAL_USER and "/file=" not in path:
            send = self.cache_files.recording(user, send)
        return await self.app(scope, receive, send)

    async def _refuse(self, scope, headers, send):
        path = scope.get("path", "")
        wants_page = scope.get("method") == "GET" and "text/html" in headers.get("accept", "") and not path.startswith("/sdapi")
        if wants_page:
            target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
            location = "/login?next=" + quote(target, safe="")
            return await _send(send, 303, b"", b"text/plain", [(b"location", location.encode("latin-1")), (b"x-studio-refused", b"login")])
        extra = [(b"x-studio-refused", b"login")]
        if path.startswith(("/sdapi", "/studio")):
            extra.append((b"www-authenticate", b'Basic realm="SD Studio"'))
        return await _send(send, 401, b'{"detail":"Not authenticated: log in, or send HTTP Basic credentials."}', b"application/json", extra)


async def _send(send, status: int, body: bytes, content_type: bytes, extra=()):
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())] + list(extra),
    })
    await send({"type": "http.response.body", "body": body})


_LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>SD Studio — log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;display:flex;justify-content:center;margin:12vh 1em 0;background:#f6f6f7;color:#1f2937}}
form{{background:#fff;padding:2em;border-radius:10px;box-shadow:0 1px 4px #0002;display:grid;gap:1em;width:20em}}
h2{{margin:0 0 .2em}}label{{display:grid;gap:.35em;font-size:.9em;font-weight:600}}
input{{font:inherit;font-weight:400;padding:.55em .7em;border:1px solid #d1d5db;border-radius:6px;width:100%;box-sizing:border-box}}
input:focus{{outline:2px solid #f97316;outline-offset:0;border-color:#f97316}}
button{{font:inherit;font-weight:600;padding:.6em;border:0;border-radius:6px;background:#f97316;color:#fff;cursor:pointer}}
button:hover{{background:#ea580c}}.err{{color:#b00020;margin:0}}</style></head><body><form method="post" action="/login">
<h2>SD Studio</h2>{error}<label>User <input name="username" value="{username}" autocomplete="username" {user_focus} required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" {password_focus} required></label>
<input type="hidden" name="next" value="{next}"><button type="submit">Log in</button></form></body></html>"""


def login_page_html(next_path: str, username: str = "", error: str = "") -> str:
    """The login form; after a wrong password the user name stays filled in and the password field has the focus."""
    return _LOGIN_PAGE.format(
        error=f'<p class="err">{html.escape(error)}</p>' if error else "",
        username=html.escape(username),
        user_focus="" if username else "autofocus",
        password_focus="autofocus" if username else "",
        next=html.escape(_safe_next(next_path)),
    )


def _safe_next(target: str) -> str:
    """Only a path on this server (no scheme, no //host): the login never redirects elsewhere."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


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


def _file_guard(outputs, cache_files: Optional[CacheFiles] = None):
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


def create_app(blocks, engine, users: Optional[Users] = None, *, secure_cookies: bool = False, blocked_paths: tuple = (),
               gradio_options: Optional[dict] = None):
    """The whole server as an ASGI app (what serve() runs and the tests drive). gradio_options: extra
    mount_gradio_app arguments (the UI's launch_options(): allowed_paths, css)."""
    import gradio as gr
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from .api import ServerState, build_router

    state = ServerState(engine, users)
    state.history.clean_partials()
    app = FastAPI(title="SD Studio", version="1", docs_url="/docs", redoc_url=None)
    app.state.studio = state

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/"):
        if users is None:
            return RedirectResponse("/", status_code=303)
        return HTMLResponse(login_page_html(next))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        if users is None:
            return RedirectResponse("/", status_code=303)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        name = (form.get("username") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        target = _safe_next((form.get("next") or ["/"])[0])
        if not users.check(name, password):
            return HTMLResponse(login_page_html(target, name, "Wrong user name or password."), status_code=401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, users.make_session(name), max_age=SESSION_SECONDS, httponly=True,
                            samesite="lax", secure=secure_cookies)
        return response

    @app.get("/logout", include_in_schema=False)
    def logout():
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/studio/api/whoami")
    def whoami(request: Request):
        user = request.state.user
        return {"user": user, "admin": state.is_admin(user, request.client.host if request.client else None),
                "logins": users is not None}

    app.include_router(build_router(state))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = []
        for error in exc.errors()[:20]:
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse({"error": "InvalidRequest", "detail": "; ".join(problems) or "Invalid request."}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "Request refused."
        return JSONResponse({"error": _ERROR_NAMES.get(exc.status_code, "Error"), "detail": detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        log.exception("Unhandled error on %s", request.url.path)
        return JSONResponse({"error": "InternalError", "detail": "The server failed on this request; see its log."}, status_code=500)

    blocks.queue(default_concurrency_limit=None)
    gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        auth_dependency=lambda request: user_from_headers(users, {k.lower(): v for k, v in request.headers.items()}),
        blocked_paths=[str(Path(p).resolve()) for p in blocked_paths] or None,
        show_error=True,
        **{k: v for k, v in (gradio_options or {}).items() if k in ("allowed_paths", "css", "js", "head", "theme")},
    )
    from gradio.utils import get_upload_folder

    cache_files = CacheFiles(get_upload_folder()) if users is not None else None
    return LoginWall(app, users, file_guard=_file_guard(engine.outputs, cache_files), cache_files=cache_files)


_ERROR_NAMES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
                413: "TooLarge", 422: "InvalidRequest", 429: "QueueFull", 500: "GenerationFailed"}


def listen_warning(args: argparse.Namespace, users: Optional[Users]) -> Optional[str]:
    if not args.listen or users is not None:
        return None
    banner = "!" * 78
    return (
        f"\n{banner}\n!! WARNING: --listen without --auth/--auth-file: ANYONE on your network can use this studio,\n"
        f"!! run jobs, and read every image. Add --auth-file users.txt for a shared server.\n{banner}\n"
    )


def serve(blocks, engine, args: argparse.Namespace) -> None:
    import uvicorn

    try:
        users = Users.from_options(args.auth, args.auth_file, tuple(a for item in args.admin for a in item.split(",") if a))
    except AuthConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    if bool(args.tls_keyfile) != bool(args.tls_certfile):
        print("error: --tls-keyfile and --tls-certfile go together.", file=sys.stderr)
        raise SystemExit(2)
    host = "0.0.0.0" if args.listen else "127.0.0.1"
    warning = listen_warning(args, users)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    tls = bool(args.tls_certfile)
    blocked = [args.auth_file] if args.auth_file else []
    try:
        from .ui import launch_options

        gradio_options = launch_options(engine)
    except ImportError:
        gradio_options = {}
    app = create_app(blocks, engine, users, secure_cookies=tls, blocked_paths=tuple(blocked), gradio_options=gradio_options)
    scheme = "https" if tls else "http"
    url = f"{scheme}://{'127.0.0.1' if host == '0.0.0.0' else host}:{args.port}/"
    print(f"SD Studio on {url}" + (" (and on this machine's LAN addresses)" if args.listen else ""), flush=True)
    if not args.no_browser:
        threading.Timer(1.5, lambda: webbrowser.open(url)).start()
    uvicorn.run(
        app,
        host=host,
        port=args.port,
        ssl_keyfile=str(args.tls_keyfile) if tls else None,
        ssl_certfile=str(args.tls_certfile) if tls else None,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
