"""Helpers for the server tests: a live server (uvicorn on loopback, ports 7870-7889) around the session engine."""



import base64
import io
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

@contextmanager
def header_user_client(*routers):
    """A TestClient of a tiny app holding `routers`, whose 'login' is a header: the user is whoever X-User names."""
    from fastapi import FastAPI, Request
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.middleware("http")
    async def user_from_header(request: Request, call_next):
        request.state.user = request.headers.get("x-user", "local")
        return await call_next(request)

    for router in routers:
        app.include_router(router)
    with TestClient(app) as test_client:
        yield test_client


USERS = {"alice": "alice-pw", "bob": "bob-pw", "root": "root-pw", "carol": "carol-pw"}
SMALL = {"steps": 2, "width": 64, "height": 64, "sampler_name": "Euler"}


def free_port() -> int:
    for port in range(7870, 7890):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 7870-7889")


def simple_blocks():
    """A small Gradio app standing in for the studio UI (the auth table needs Gradio's routes, not its looks)."""
    import gradio as gr

    with gr.Blocks() as blocks:
        box = gr.Textbox()
        out = gr.Textbox()

        def who(text, request: gr.Request):
            return f"{text} from {request.username}"

        box.submit(who, box, out, api_name="who")
    return blocks


def job_service(engine, users=None):
    """The studio's job service over `engine`, under the model rule for these accounts (studio.web.auth.Users)."""
    from studio.access import Access
    from studio.service import JobService

    return JobService(engine, Access(engine, users))


class LiveServer:
    def __init__(self, app, port: int, engine=None):
        import uvicorn

        self.app = app
        self.port = port
        self.engine = engine  # the engine behind the app, for tests that look below the job service
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.server.force_exit = True  # open event streams would hold a graceful shutdown for its whole timeout
        self.thread.join(timeout=10)

    def client(self, user: str | None = None, **kwargs) -> httpx.Client:
        auth = (user, USERS[user]) if user else None
        return httpx.Client(base_url=self.url, auth=auth, timeout=kwargs.pop("timeout", 120), **kwargs)

    @property
    def state(self):
        return self.app.fastapi.state.studio


@contextmanager
def live_server(engine, users=USERS, admins=("root",), blocks=None, **options):
    """The studio's server around `blocks` (a small stand-in UI by default) with these accounts; sessions persist
    in a temporary folder. options: more create_app keyword arguments."""
    from studio.web.app import create_app
    from studio.web.auth import Users

    accounts = Users(dict(users), admins) if users else None
    with tempfile.TemporaryDirectory(prefix="studio-state-") as state_dir:
        app = create_app(blocks or simple_blocks(), job_service(engine, accounts), accounts, state_dir=Path(state_dir), **options)
        server = LiveServer(app, free_port(), engine).start()
        try:
            yield server
        finally:
            server.stop()


def basic_headers(user: str) -> dict:
    token = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def http(server, user: str) -> httpx.Client:
    """A client of `server` logged in as `user` (HTTP basic)."""
    return httpx.Client(base_url=server.url, headers=basic_headers(user), timeout=60)


def png_b64(size=(64, 64), color=(200, 40, 40), mode="RGB") -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def mask_b64(size=(64, 64)) -> str:
    from PIL import Image, ImageDraw

    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def record_start_order(engine, stop: threading.Event, order: list) -> threading.Thread:
    """Poll the engine's running job and append (owner, job id) each time a new one starts."""

    def poll():
        seen = set()
        while not stop.is_set():
            for job in list(engine.running_jobs):  # several when a dynamic batch runs jobs of different users
                if job.id not in seen:
                    seen.add(job.id)
                    order.append((job.owner, job.id))
            time.sleep(0.002)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return thread
