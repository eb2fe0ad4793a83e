"""The server: one FastAPI app holding the Gradio UI (mounted at /), the A1111-compatible API (/sdapi/v1) and the
studio's per-user routes (/studio), behind one login, served by uvicorn.

    python app.py                                  # this machine only, one local user, no login
    python app.py --listen --auth-file users.txt   # the shared LAN server
"""




import argparse
import logging
import sys
import threading
import webbrowser
from pathlib import Path
from typing import Optional

from .auth import AuthConfigError, Users, user_from_headers
from .gradio_files import CacheFiles, file_guard
from .login import LoginWall, install_login_routes

log = logging.getLogger(__name__)


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


def create_app(blocks, engine, users: Optional[Users] = None, *, secure_cookies: bool = False, blocked_paths: tuple = (),
               gradio_options: Optional[dict] = None):
    """The whole server as an ASGI app (what serve() runs and the tests drive). gradio_options: extra
    mount_gradio_app arguments (the UI's launch_options(): allowed_paths, css)."""
    import gradio as gr
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from .a1111 import build_router
    from .state import ServerState
    from .studio_routes import build_studio_router

    state = ServerState(engine, users)
    state.history.clean_partials()
    app = FastAPI(title="SD Studio", version="1", docs_url="/docs", redoc_url=None)
    app.state.studio = state

    install_login_routes(app, users, secure_cookies=secure_cookies)

    @app.get("/studio/api/whoami")
    def whoami(request: Request):
        user = request.state.user
        return {"user": user, "admin": state.is_admin(user, request.client.host if request.client else None),
                "logins": users is not None}

    app.include_router(build_router(state))
    app.include_router(build_studio_router(state))

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
    return LoginWall(app, users, file_guard=file_guard(engine.outputs, cache_files), cache_files=cache_files)


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
        from studio.ui import launch_options

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
