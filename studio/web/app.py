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

from .auth import AuthConfigError, Users
from .gradio_files import GradioFiles
from .gradio_gate import GradioGate
from .limits import BodyLimit
from .login import LoginWall, install_login_routes

MAX_BODY_BYTES = 100 * 1024 * 1024  # the largest request: a few big images as base64

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


def create_app(blocks, service, users: Optional[Users] = None, *, files: Optional[GradioFiles] = None,
               secure_cookies: bool = False, state_dir: Optional[Path] = None, css: Optional[str] = None,
               max_body: int = MAX_BODY_BYTES):
    """The whole server as one ASGI app (what serve() runs and the tests drive), outermost first:

        BodyLimit (size, while streaming) → LoginWall (who is asking; cross-site; rate limits) →
        GradioGate (the studio's rules for Gradio's routes) → FastAPI: /login, /sdapi/v1, /studio, Gradio at /

    service: the studio.service.JobService the UI was built with (jobs, and the model rule for `users`); files: the
    UI's GradioFiles; state_dir: where sessions persist (the studio's cache folder). The FastAPI app is `.fastapi` of
    the result."""
    import gradio as gr
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from .a1111 import build_router
    from .frames import build_frames_router
    from .inspect_routes import build_inspect_router
    from .state import ServerState
    from .streams import build_stream_router
    from .studio_routes import build_studio_router

    state = ServerState(service)
    state.history.clean_partials()
    files = files or GradioFiles()
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
    app.include_router(build_stream_router(service))
    app.include_router(build_frames_router(service))
    app.include_router(build_inspect_router(service))

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
        auth_dependency=lambda request: request.state.user,  # set by the login wall
        show_error=True,
        css=css,
        footer_links=["api", "gradio"],  # Gradio's own Settings (theme, PWA, recorder) and Runs pages are developer tools
        run_history=False,  # Gradio's run history would keep users' runs outside the studio's rules
    )
    gate = GradioGate(app, files, service.settings, is_admin=state.is_admin, outputs=service.outputs)
    wall = LoginWall(gate, users, secure_cookies=secure_cookies, state_dir=state_dir)
    outer = BodyLimit(wall, max_body)
    outer.fastapi = app
    return outer


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


def users_from_args(args: argparse.Namespace) -> Optional[Users]:
    """The accounts of --auth/--auth-file (None: no logins); a bad entry ends the program with its message."""
    try:
        return Users.from_options(args.auth, args.auth_file, tuple(a for item in args.admin for a in item.split(",") if a))
    except AuthConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)


def check_server_arguments(args: argparse.Namespace) -> None:
    if bool(args.tls_keyfile) != bool(args.tls_certfile):
        print("error: --tls-keyfile and --tls-certfile go together.", file=sys.stderr)
        raise SystemExit(2)


def serve(app, args: argparse.Namespace, users: Optional[Users]) -> None:
    """Run the app (from create_app) with uvicorn, as the command line asked."""
    import uvicorn

    host = "0.0.0.0" if args.listen else "127.0.0.1"
    warning = listen_warning(args, users)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    tls = bool(args.tls_certfile)
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
