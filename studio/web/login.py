"""The login wall and the login form: every request needs a user (a session cookie from /login, or HTTP Basic
credentials as A1111's --api-auth clients send). Plain ASGI, so Gradio's streaming passes through untouched."""


import html
from typing import Optional
from urllib.parse import parse_qs, quote

from .auth import LOCAL_USER, SESSION_COOKIE, SESSION_SECONDS, Users, user_from_headers

MAX_BODY_BYTES = 100 * 1024 * 1024
# Reachable without a login: the login form itself (it loads nothing else).
PUBLIC_PATHS = frozenset({"/login", "/logout"})


class LoginWall:
    """Every request needs a user: a session cookie from /login or HTTP Basic credentials (A1111's --api-auth).
    Strangers get the login page (browsers) or 401 (everything else). Also refuses bodies over MAX_BODY_BYTES."""

    def __init__(self, app, users: Optional[Users], max_body: int = MAX_BODY_BYTES, file_guard=None, cache_files=None):
        self.app = app
        self.users = users
        self.max_body = max_body
        self.file_guard = file_guard  # (user, path) -> bool, for Gradio's /gradio_api/file= route
        self.cache_files = cache_files  # which Gradio cache files each user was handed

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
        next=html.escape(safe_next(next_path)),
    )


def safe_next(target: str) -> str:
    """Only a path on this server (no scheme, no //host): the login never redirects elsewhere."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target




def install_login_routes(app, users: Optional[Users], *, secure_cookies: bool = False) -> None:
    """GET/POST /login (the form) and GET /logout on the FastAPI app."""
    from fastapi import Request
    from fastapi.responses import HTMLResponse, RedirectResponse

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
        target = safe_next((form.get("next") or ["/"])[0])
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
