"""Gradio's file cache with logins: it lives in a 0700 folder of the studio's (not the shared /tmp/gradio), and a
user can fetch only the cache files the server handed to them — bob gets 404 for alice's result URL."""

import base64
import os
import stat
from pathlib import Path

import pytest
from server_support import USERS, LiveServer, free_port

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def server(engine):
    from studio.web.auth import Users
    from studio.web.app import create_app
    from studio.ui import build_ui, launch_options

    app = create_app(build_ui(engine), engine, Users(dict(USERS), ()), gradio_options=launch_options(engine))
    server = LiveServer(app, free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def _client(server, user: str):
    token = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
    return gradio_client.Client(server.url + "/", headers={"Authorization": f"Basic {token}"}, verbose=False,
                                download_files=False)


def test_cache_is_private_and_per_user(server, engine):
    from gradio.utils import get_upload_folder

    cache = Path(get_upload_folder())
    if os.environ.get("GRADIO_TEMP_DIR") == str(Path(engine.settings.cache_dir).resolve() / "gradio"):
        assert cache == Path(engine.settings.cache_dir).resolve() / "gradio"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700

    alice = _client(server, "alice")
    result = alice.predict(prompt="alice's secret", negative_prompt="", sampler_name="Euler", steps=2, cfg_scale=7.0,
                           width=64, height=64, seed=7, batch_size=1, batch_count=1, model=None, api_name="/txt2img")
    gallery, files = result[2], result[4]
    cached = [gallery[0]["image"]["path"], files[0]["path"]]
    for path in cached:
        assert Path(path).resolve().is_relative_to(cache.resolve()), path
    with server.client("alice") as a, server.client("bob") as b:
        for path in cached:
            url = f"/gradio_api/file={path}"
            mine = a.get(url)
            assert mine.status_code == 200 and mine.content[:8] == b"\x89PNG\r\n\x1a\n"  # lossless PNG for the owner
            assert b.get(url).status_code == 404, path  # not for anyone else, even with the exact link
        # a file bob was never handed, beside his own: still refused
        assert b.get(f"/gradio_api/file={cache}/{'0' * 64}/x.png").status_code == 404


def test_wrong_password_keeps_the_user_name_and_the_ui_says_who_is_logged_in(server):
    import types

    from studio.ui import user_markdown

    with server.client() as stranger:
        page = stranger.post("/login", data={"username": "alice<b>", "password": "nope", "next": "/"})
        assert page.status_code == 401 and "Wrong user name or password." in page.text
        assert 'value="alice&lt;b&gt;"' in page.text  # kept, escaped
        assert 'name="password" type="password" autocomplete="current-password" autofocus' in page.text
    assert "alice" in user_markdown(types.SimpleNamespace(username="alice")) and "/logout" in user_markdown(types.SimpleNamespace(username="alice"))
    assert user_markdown(types.SimpleNamespace(username="local")) == "" and user_markdown(None) == ""
