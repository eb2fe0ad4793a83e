"""Logins: every route the app serves (ours and Gradio's, enumerated from app.routes) refuses a stranger and works
with credentials; password formats; the login form; admin-only powers; nothing reveals credentials."""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys

import httpx
import pytest
from server_support import SMALL, USERS, live_server

from studio.web.auth import AuthConfigError, basic_credentials, Users, hash_password, parse_entries, pbkdf2_hash, verify_password

PUBLIC = {("/login", "GET"), ("/login", "POST"), ("/logout", "GET")}


def _flatten(routes, prefix="", gradio=False):
    for route in routes:
        kind = type(route).__name__
        if kind == "_IncludedRouter":
            yield from _flatten(route.original_router.routes, prefix, gradio)
        elif kind == "Mount":
            yield from _flatten(route.routes, prefix + route.path, True)
        else:
            methods = sorted(getattr(route, "methods", None) or ["GET"])  # websocket routes: tried as GET
            for method in methods:
                yield prefix + route.path, method, gradio


def route_table(app, with_owner=False) -> list[tuple]:
    table = sorted(set(_flatten(app.fastapi.routes)))
    if not with_owner:
        table = sorted({(path, method) for path, method, _ in table})
    assert len(table) > 60  # ours and Gradio's
    return table


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def status_of(client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    with client.stream(method, concrete(path), **kwargs) as response:  # headers only: some routes stream forever
        return response


@pytest.fixture(scope="module")
def server(engine):
    with live_server(engine) as server:
        yield server


def test_every_route_refuses_strangers_and_admits_users(server):
    table = route_table(server.app, with_owner=True)
    refused = admitted = 0
    with server.client() as anonymous, server.client("alice") as alice, server.client() as wrong:
        wrong.auth = ("alice", "not-her-password")
        for path, method, gradio in table:
            if (concrete(path), method) in PUBLIC:
                continue
            body = {"json": SMALL} if method in ("POST", "PUT", "PATCH") else {}
            for stranger in (anonymous, wrong):
                response = status_of(stranger, method, path, **body)
                assert response.status_code == 401 and response.headers.get("x-studio-refused") == "login", (method, path, response.status_code)
            refused += 1
            if method == "GET" and not path.startswith("/sdapi"):  # a browser is sent to the login page
                response = status_of(anonymous, method, path, headers={"accept": "text/html"})
                assert response.status_code == 303 and response.headers["location"].startswith("/login"), (path, response.status_code)
            response = status_of(alice, method, path, **body)
            assert "x-studio-refused" not in response.headers, (method, path, response.status_code)
            if not gradio:  # Gradio's own routes answer dummy arguments as they like (e.g. 500 for api_name "x")
                assert response.status_code < 500, (method, path, response.status_code)
            admitted += 1
    print(f"\nauth table: {len(table)} (route, method) pairs, {refused} refused to strangers, {admitted} admitted with a login")


def test_login_form_session_cookie_and_logout(server):
    with server.client() as browser:
        page = browser.get("/login?next=//evil.example/x")
        assert page.status_code == 200 and "evil" not in page.text
        bad = browser.post("/login", data={"username": "alice", "password": "nope", "next": "/"})
        assert bad.status_code == 401 and "Wrong user name or password" in bad.text
        good = browser.post("/login", data={"username": "alice", "password": USERS["alice"], "next": "https://evil.example/"})
        assert good.status_code == 303 and good.headers["location"] == "/"
        assert "httponly" in good.headers["set-cookie"].lower()
        assert browser.get("/studio/api/whoami").json()["user"] == "alice"
        assert browser.get("/config").json().get("username") == "alice"  # Gradio knows the user (gr.Request.username)
        browser.get("/logout")
        browser.cookies.clear()
        assert browser.get("/studio/api/whoami").status_code == 401
    with server.client() as forger:
        forger.cookies.set("sd-studio-session", "root|9999999999|" + "0" * 64)
        assert forger.get("/studio/api/whoami").status_code == 401


def test_gradio_event_runs_as_the_logged_in_user(server):
    from gradio_client import Client

    token = base64.b64encode(f"bob:{USERS['bob']}".encode()).decode()
    client = Client(server.url + "/", headers={"Authorization": f"Basic {token}"}, verbose=False)
    assert client.predict("hi", api_name="/who") == "hi from bob"


def test_no_route_reveals_credentials_or_command_line(server):
    secrets = list(USERS.values()) + [" ".join(sys.argv[1:])] if len(sys.argv) > 1 else list(USERS.values())
    with server.client("root") as root:
        for path, method in route_table(server.app):
            if method != "GET" or "{" in path or path in ("/logout",):
                continue
            response = status_of(root, "GET", path)
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                continue
            text = root.get(path).text
            for secret in secrets:
                assert secret not in text, path
        assert root.get("/sdapi/v1/cmd-flags").status_code == 200  # a safe subset (the loop above checks its answer)


def test_admin_only_powers(server):
    with server.client("bob") as bob, server.client("root") as root:
        refused = bob.post("/sdapi/v1/options", json={"sd_model_checkpoint": "/etc/passwd"})
        assert refused.status_code == 422 and "not available" in refused.json()["detail"]
        assert bob.post("/sdapi/v1/options", json={"some_server_option": 1}).status_code == 200  # bob's own value
        assert bob.get("/sdapi/v1/options").json()["some_server_option"] == 1
        assert "some_server_option" not in root.get("/sdapi/v1/options").json()  # never anyone else's
        refused = bob.post("/sdapi/v1/txt2img", json=dict(SMALL, override_settings={"sd_model_checkpoint": "someone/model"}))
        assert refused.status_code == 422
        assert bob.get("/studio/api/whoami").json()["admin"] is False
        assert root.get("/studio/api/whoami").json()["admin"] is True
        assert root.post("/sdapi/v1/options", json={"some_server_option": 1}).status_code == 200


def test_password_formats_and_auth_file(tmp_path):
    assert verify_password("plain", "plain") and not verify_password("plain", "Plain")
    assert verify_password("sha256:" + hashlib.sha256(b"pw").hexdigest(), "pw")
    stored = pbkdf2_hash("pw", iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$") and verify_password(stored, "pw") and not verify_password(stored, "px")
    argon = hash_password("pw", time_cost=1, memory_cost=1024, parallelism=1)  # new entries: argon2id
    assert argon.startswith("$argon2id$") and verify_password(argon, "pw") and not verify_password(argon, "px")
    file = tmp_path / "users.txt"
    file.write_text(f"# team\nalice:one\n\nbob:{stored}\n")
    users = Users.from_options("carol:three", file, ("bob",))
    assert users.names == ["alice", "bob", "carol"] and users.check("bob", "pw") and users.is_admin("bob")
    assert basic_credentials("Basic " + base64.b64encode(b"alice:one").decode()) == ("alice", "one")
    assert basic_credentials("Basic !!!") is None
    assert Users.from_options(None, None) is None
    for bad in ("nocolon", "../x:pw", "local:pw", "2026-01-01:pw"):
        with pytest.raises(AuthConfigError):
            parse_entries([bad], "--auth")
    with pytest.raises(AuthConfigError):
        Users.from_options("a:b", None, ("nobody",))
    with pytest.raises(AuthConfigError) as error:
        Users.from_options(None, tmp_path / "missing.txt")
    assert "pw" not in str(error.value)


def test_listen_without_auth_warns_loudly():
    from studio.web.app import add_server_arguments, listen_warning

    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    assert "WARNING" in listen_warning(parser.parse_args(["--listen"]), None)
    assert listen_warning(parser.parse_args([]), None) is None
    assert listen_warning(parser.parse_args(["--listen", "--auth", "a:b"]), Users({"a": "b"})) is None


def test_without_auth_everyone_is_the_local_user(engine):
    with live_server(engine, users=None) as server, server.client() as client:
        me = client.get("/studio/api/whoami").json()
        assert me == {"user": "local", "admin": True, "logins": False}  # a loopback client is the operator
