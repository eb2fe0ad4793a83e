"""The login wall and the login form: every request needs a user (a session cookie from /login, or HTTP Basic
credentials as A1111's --api-auth clients send). Plain ASGI, so Gradio's streaming passes through untouched.

The wall also refuses cross-site requests that change state (login CSRF, a foreign page driving the API with the
browser's cached Basic credentials) and strips CORS grants for other sites from every answer (Gradio's own CORS
middleware would grant any origin credentialed reads on a LAN host)."""

import html
import json
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, quote, urlsplit

from .auth import LOCAL_USER, SESSION_COOKIE, Users, session_cookie
from .sessions import SessionStore

# Reachable without a login: the login form itself (it loads nothing else).
PUBLIC_PATHS = frozenset({"/login", "/logout"})
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOGIN_FORM_MAX_BYTES = 16 * 1024


class LoginWall:
    """Every request needs a user: a session cookie from /login or HTTP Basic credentials (A1111's --api-auth).
    Strangers get the login page (browsers) or 401 (everything else); too many failed guesses get 429 unchecked;
    state-changing requests from another site get 403. Sets scope["state"]["user"] (request.state.user).

    state_dir: where sessions and their signing key persist (the studio's cache dir); None keeps them in memory.
    sessions: a ready SessionStore instead (state_dir is then ignored)."""

    def __init__(self, app, users: Optional[Users], *, secure_cookies: bool = False, state_dir: Optional[Path] = None,
                 sessions: Optional[SessionStore] = None):
        self.app = app
        self.users = users
        self.secure_cookies = secure_cookies
        if users is not None and (sessions is not None or state_dir is not None):
            users.use_sessions(sessions or SessionStore(state_dir))

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        if not same_site_request(scope, headers):
            if changes_state(scope):
                return await _refuse(scope, send, 403, {"error": "Forbidden", "detail": "Cross-site request refused: "
                                     "this server only takes changes from its own pages (or from clients that send no Origin)."})
            send = _without_cors(send)
        user, refusal = await self._user(scope, headers, path)
        if refusal is not None:
            return await refusal(send)
        scope.setdefault("state", {})["user"] = user
        return await self.app(scope, receive, send)

    async def _user(self, scope, headers, path):
        """(user, None), or (None, a coroutine function sending the refusal)."""
        if self.users is None:
            return LOCAL_USER, None
        cookie = session_cookie(headers)
        user = self.users.session_user(cookie)
        if user is None and path not in PUBLIC_PATHS and "authorization" in headers:
            verdict = await self.users.basic_login(headers["authorization"], client_address(scope))
            if verdict is not None and verdict.retry_after_s:
                seconds = verdict.retry_after_s
                return None, lambda send: _refuse(scope, send, 429, {
                    "error": "TooManyLogins", "retry_after": seconds,
                    "detail": f"Too many failed logins for this account or from this address: try again in {seconds} s."},
                    [(b"retry-after", str(seconds).encode())])
            user = verdict.user if verdict is not None else None
        if user is None and path not in PUBLIC_PATHS:
            return None, lambda send: self._refuse_stranger(scope, headers, send, stale_cookie=cookie is not None)
        return user, None

    async def _refuse_stranger(self, scope, headers, send, stale_cookie: bool):
        path = scope.get("path", "")
        extra = [(b"x-studio-refused", b"login")]
        if stale_cookie:  # an ended or expired session: the browser may as well forget it
            extra.append((b"set-cookie", expired_cookie(self.secure_cookies).encode("latin-1")))
        wants_page = scope.get("method") == "GET" and "text/html" in headers.get("accept", "") and not path.startswith("/sdapi")
        if wants_page:
            target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
            location = "/login?next=" + quote(target, safe="")
            return await _send(send, 303, b"", b"text/plain", [(b"location", location.encode("latin-1"))] + extra)
        if path.startswith(("/sdapi", "/studio")):
            extra.append((b"www-authenticate", b'Basic realm="SD Studio"'))
        return await _refuse(scope, send, 401, {"detail": "Not authenticated: log in, or send HTTP Basic credentials."}, extra)


def client_address(scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""


def changes_state(scope) -> bool:
    """What a foreign page must not make a browser do here: write methods, websocket upgrades, and logging out."""
    return scope["type"] == "websocket" or scope.get("method") in STATE_CHANGING_METHODS or scope.get("path") == "/logout"


def _authority(netloc: str, scheme: str) -> tuple[str, Optional[int]]:
    """(host, port) of a URL's or Host header's netloc; port None when not given and the scheme has no default."""
    parts = urlsplit(f"//{netloc}")
    try:
        port = parts.port
    except ValueError:
        return ("", -1)
    default = {"http": 80, "ws": 80, "https": 443, "wss": 443}.get(scheme)
    return ((parts.hostname or "").rstrip(".").lower(), port if port is not None else default)


def same_site_request(scope, headers: dict[str, str]) -> bool:
    """True unless the Origin (else the Referer) names another host or port than the request's Host header.
    Requests with neither (API clients, curl, gradio_client) are not from a browser page: they pass."""
    source = headers.get("origin") or headers.get("referer")
    if not source:
        return True
    parts = urlsplit(source.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:  # "null", file:, garbage
        return False
    origin_host, origin_port = _authority(parts.netloc, parts.scheme)
    host_header = headers.get("host", "")
    request_scheme = {"wss": "https", "ws": "http"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
    host, port = _authority(host_header, request_scheme)
    if not host or host != origin_host:
        return False
    explicit_port = ":" in host_header.rsplit("]", 1)[-1]
    return origin_port == port if explicit_port else True  # behind a proxy the Host may carry no port


def _without_cors(send):
    """Drops Access-Control-* grants from an answer to another site's page (no credentialed reads cross-site)."""

    async def sending(message):
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [(k, v) for k, v in message.get("headers", []) if not k.lower().startswith(b"access-control-")]
        await send(message)

    return sending


def expired_cookie(secure: bool) -> str:
    return f"{SESSION_COOKIE}=\"\"; Max-Age=0; Path=/; HttpOnly; SameSite=lax" + ("; Secure" if secure else "")


async def _refuse(scope, send, status: int, payload: dict, extra=()):
    if scope["type"] == "websocket":  # closing before accepting: the client sees HTTP 403
        return await send({"type": "websocket.close", "code": 1008})
    return await _send(send, status, json.dumps(payload).encode(), b"application/json", extra)


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


async def _form(request) -> Optional[dict[str, list[str]]]:
    """The login form's fields; None when the body is larger than any login form."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > LOGIN_FORM_MAX_BYTES:
            return None
    return parse_qs(body.decode("utf-8", "replace"))


def install_login_routes(app, users: Optional[Users], *, secure_cookies: bool = False) -> None:
    """GET/POST /login (the form) and GET /logout on the FastAPI app. Sessions go to users.sessions (the store the
    LoginWall hands over), checks through users.login (thread pool, limits)."""
    from fastapi import Request
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
    from starlette.concurrency import run_in_threadpool

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/"):
        if users is None:
            return RedirectResponse("/", status_code=303)
        return HTMLResponse(login_page_html(next))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        if users is None:
            return RedirectResponse("/", status_code=303)
        form = await _form(request)
        if form is None:
            return JSONResponse({"error": "TooLarge", "detail": "That is not a login form."}, status_code=413)
        name = (form.get("username") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        target = safe_next((form.get("next") or ["/"])[0])
        verdict = await users.login(name, password, request.client.host if request.client else "")
        if verdict.retry_after_s:
            seconds = verdict.retry_after_s
            message = f"Too many failed logins for this account or from this address: try again in {seconds} seconds."
            return HTMLResponse(login_page_html(target, name, message), status_code=429, headers={"Retry-After": str(seconds)})
        if verdict.user is None:
            return HTMLResponse(login_page_html(target, name, "Wrong user name or password."), status_code=401)
        previous = request.cookies.get(SESSION_COOKIE)
        if previous:  # a fresh session id at each login: a planted cookie never becomes a logged-in one
            await run_in_threadpool(users.sessions.end, previous)
        cookie = await run_in_threadpool(users.sessions.create, verdict.user)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=int(users.sessions.lifetime_s), httponly=True,
                            samesite="lax", secure=secure_cookies)
        return response

    @app.get("/logout", include_in_schema=False)
    async def logout(request: Request):
        if users is not None:
            await run_in_threadpool(users.sessions.end, request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax", secure=secure_cookies)
        return response
