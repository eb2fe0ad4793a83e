"""Logins that hold against a LAN attacker: password checks off the event loop, guessing limits (429, nothing
checked), equal cost for unknown users, argon2 entries, server-side sessions (logout ends them, a restart keeps
them), and no cross-site state changes or credentialed CORS.

Behaviour, not wall-clock: a check that blocks until released, verifications counted, status codes and headers."""

from __future__ import annotations

import asyncio
import io
import stat
import threading
from contextlib import contextmanager

import pytest
from argon2 import extract_parameters
from server_support import USERS, LiveServer, free_port, job_service, simple_blocks

from studio.web.auth import (LoginLimiter, Users, hash_password, main as auth_main, parse_entries, pbkdf2_hash,
                             verify_password)
from studio.web.login import LoginWall
from studio.web.sessions import SESSION_COOKIE, SessionStore

EVIL = "http://evil.example"


class Verifier:
    """verify_password, counting its calls; `slow_password` blocks its check until `release` is set."""

    def __init__(self, slow_password: str | None = None):
        self.slow_password = slow_password
        self.calls: list[tuple[str, str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, stored: str, password: str) -> bool:
        with self._lock:
            self.calls.append((stored, password))
        if password == self.slow_password:
            self.entered.set()
            self.release.wait(60)
        return verify_password(stored, password)


@contextmanager
def studio(engine, users: Users, state_dir, **options):
    from studio.web.app import create_app

    server = LiveServer(create_app(simple_blocks(), job_service(engine, users), users, state_dir=state_dir, **options), free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def accounts(**options) -> Users:
    return Users(dict(USERS), ("root",), **options)


def log_in(client, user: str, password: str | None = None, **kwargs):
    return client.post("/login", data={"username": user, "password": password or USERS[user], "next": "/"}, **kwargs)


# ---- the event loop keeps serving while passwords are checked


@pytest.mark.parametrize("via", ["login form", "basic auth"])
def test_a_slow_password_check_does_not_stall_other_requests(engine, tmp_path, via):
    verifier = Verifier(slow_password="slow-guess")
    with studio(engine, accounts(verify=verifier), tmp_path) as server, server.client("alice") as alice:
        assert alice.get("/studio/api/whoami").json()["user"] == "alice"
        answer = {}

        def guess():
            with server.client() as stranger:
                if via == "login form":
                    answer["status"] = log_in(stranger, "bob", "slow-guess").status_code
                else:
                    answer["status"] = stranger.get("/studio/api/whoami", auth=("bob", "slow-guess")).status_code

        guesser = threading.Thread(target=guess)
        guesser.start()
        try:
            assert verifier.entered.wait(60), "the slow check never started"
            served = alice.get("/studio/api/whoami", timeout=30)  # on the event loop, the check would hold this up
            assert served.status_code == 200 and served.json()["user"] == "alice"
            assert guesser.is_alive() and "status" not in answer  # the slow check was still running
        finally:
            verifier.release.set()
            guesser.join(60)
        assert answer["status"] == 401


# ---- guessing limits


def test_a_guessing_flood_gets_429_without_any_password_check(engine, tmp_path):
    verifier = Verifier()
    users = accounts(verify=verifier, limiter=LoginLimiter(per_account=3, per_address=1000, window_s=60))
    with studio(engine, users, tmp_path) as server:
        with server.client("bob") as bob_api:  # bob's API client, checked once before the flood
            assert bob_api.get("/sdapi/v1/progress").status_code == 200
        before = len(verifier.calls)
        answers = []

        def guesser(n: int):
            with server.client() as attacker:
                for i in range(4):
                    answers.append(log_in(attacker, "bob", f"guess-{n}-{i}"))

        threads = [threading.Thread(target=guesser, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        codes = [a.status_code for a in answers]
        assert codes.count(401) == 3 and codes.count(429) == 29, codes
        assert len(verifier.calls) - before == 3  # the 29 refused guesses cost no check at all
        limited = next(a for a in answers if a.status_code == 429)
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "try again in" in limited.text and "text/html" in limited.headers["content-type"]

        with server.client() as attacker:  # Basic guesses meet the same limit, answered in JSON
            refused = attacker.get("/sdapi/v1/progress", auth=("bob", "yet-another-guess"))
            assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
            assert refused.json()["retry_after"] >= 1 and "try again in" in refused.json()["detail"]
        assert len(verifier.calls) - before == 3
        with server.client("bob") as bob_api:  # bob's credentials, checked before the flood, are answered from memory
            assert bob_api.get("/sdapi/v1/progress").status_code == 200
            assert log_in(bob_api, "bob").status_code == 303
        assert len(verifier.calls) - before == 3
        with server.client() as browser:  # and other accounts are untouched
            assert log_in(browser, "alice").status_code == 303


def test_the_limit_also_counts_per_client_address_and_repeats_cost_nothing():
    verifier = Verifier()
    users = accounts(verify=verifier, limiter=LoginLimiter(per_account=100, per_address=4, window_s=60, tarpit_s=0))

    async def attempts():
        verdicts = [await users.login(name, "wrong", "10.0.0.9") for name in ("alice", "bob", "nobody", "carol", "root", "x")]
        repeats = [await users.login("alice", "wrong", "10.0.0.9") for _ in range(20)]  # a stale password, resent
        rights = [await users.login("alice", USERS["alice"], "10.0.0.8") for _ in range(20)]  # Basic on every request
        limited = [await users.login("root", USERS["root"], "10.0.0.9"),  # not checked: even a right password waits
                   await users.login("alice", USERS["alice"], "10.0.0.9")]  # known right lately: answered from memory
        return verdicts, repeats, rights, limited

    verdicts, repeats, rights, limited = asyncio.run(attempts())
    assert limited[0].user is None and limited[0].retry_after_s > 0 and limited[1].user == "alice"
    assert [v.retry_after_s > 0 for v in verdicts] == [False] * 4 + [True] * 2
    assert all(v.user is None for v in verdicts + repeats) and not any(v.retry_after_s for v in repeats)
    assert all(v.user == "alice" for v in rights)
    assert len(verifier.calls) == 5  # four guesses and one right password; repeats answered from memory
    cached_keys = repr(vars(users._recent))
    assert USERS["alice"] not in cached_keys and "wrong" not in cached_keys  # remembered by keyed hash only


def test_limiter_window_and_forgiveness():
    now = [1000.0]
    limiter = LoginLimiter(per_account=2, per_address=3, window_s=60, clock=lambda: now[0])
    assert limiter.attempt("alice", "a") == 0 and limiter.attempt("alice", "a") == 0
    assert limiter.attempt("alice", "a") == pytest.approx(60)  # a third guess at alice waits
    assert limiter.attempt("bob", "a") == 0 and limiter.attempt("carol", "a") == pytest.approx(60)  # address full
    limiter.forgive("bob", "a")  # bob's attempt was right: not a failure
    assert limiter.attempt("carol", "a") == 0
    now[0] += 30
    assert limiter.wait_s("alice", "b") == pytest.approx(30)
    now[0] += 31
    assert limiter.wait_s("alice", "a") == 0 and limiter.attempt("alice", "a") == 0


# ---- equal cost for unknown users; argon2 entries


def test_unknown_users_are_checked_against_an_entry_of_the_same_kind_and_cost():
    argon = hash_password("pw", time_cost=2, memory_cost=2048, parallelism=1)
    for real in (pbkdf2_hash("pw", iterations=1000), argon):
        verifier = Verifier()
        users = Users({"alice": real, "bob": "plain-pw"}, verify=verifier)
        assert not users.check("nobody", "pw") and users.check("alice", "pw")
        (dummy, _), (stored, _) = verifier.calls
        assert stored == real and dummy != real
        if real.startswith("$argon2"):
            ours, theirs = extract_parameters(dummy), extract_parameters(real)
            assert (ours.type, ours.time_cost, ours.memory_cost, ours.parallelism) == (theirs.type, 2, 2048, 1)
        else:
            assert dummy.startswith("pbkdf2_sha256$1000$")


def test_new_entries_are_argon2_and_old_formats_still_work(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert auth_main(["hash", "dave"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("dave:$argon2id$v=19$")
    entries = parse_entries([line, "erin:sha256:" + "0" * 64, "fay:" + pbkdf2_hash("pw", iterations=1000), "gus:plain"], "--auth")
    users = Users(entries)
    assert users.check("dave", "s3cret") and not users.check("dave", "s3cret ")
    assert users.check("fay", "pw") and users.check("gus", "plain") and not users.check("erin", "pw")


# ---- sessions


def test_sessions_persist_privately_expire_and_end(tmp_path):
    now = [1_000_000.0]
    store = SessionStore(tmp_path, clock=lambda: now[0])
    alice, bob = store.create("alice"), store.create("bob")
    assert "alice" not in alice and store.user_of(alice) == "alice"
    folder = tmp_path / "logins"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("secret.key", "sessions.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name

    restarted = SessionStore(tmp_path, clock=lambda: now[0])  # a restart: same key, same sessions
    assert restarted.user_of(alice) == "alice" and restarted.user_of(bob) == "bob"
    assert restarted.end(alice) and SessionStore(tmp_path).user_of(alice) is None
    assert restarted.user_of(alice[:-2] + "xx") is None and restarted.user_of("alice|9999999999|" + "0" * 64) is None
    assert SessionStore(tmp_path / "other").user_of(bob) is None  # another key signs nothing of ours
    now[0] += 14 * 24 * 3600 + 1
    assert restarted.user_of(bob) is None  # expired after 14 days

    users = Users({"alice": "a"}, sessions=SessionStore(tmp_path))  # bob is gone from the users file
    carol_store = users.sessions
    assert users.session_user(carol_store.create("bob")) is None and users.session_user(carol_store.create("alice")) == "alice"


def test_logout_ends_the_session_and_a_restart_keeps_it(engine, tmp_path):
    with studio(engine, accounts(), tmp_path) as server:
        with server.client() as browser:
            answer = log_in(browser, "alice")
            assert answer.status_code == 303
            cookie = answer.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie and "secure" not in cookie
            alice_cookie = browser.cookies[SESSION_COOKIE]
        with server.client() as browser:
            bob_cookie = log_in(browser, "bob").cookies[SESSION_COOKIE]
    # The restart: the same state folder, a users file without bob, TLS on.
    with studio(engine, Users({k: v for k, v in USERS.items() if k != "bob"}), tmp_path, secure_cookies=True) as server:
        with server.client(cookies={SESSION_COOKIE: alice_cookie}) as alice:
            assert alice.get("/studio/api/whoami").json()["user"] == "alice"
        with server.client(cookies={SESSION_COOKIE: bob_cookie}) as bob:
            assert bob.get("/studio/api/whoami").status_code == 401
        with server.client() as browser:
            assert "secure" in log_in(browser, "carol").headers["set-cookie"].lower()
        with server.client(cookies={SESSION_COOKIE: alice_cookie}) as alice:
            alice.get("/logout")
        with server.client(cookies={SESSION_COOKIE: alice_cookie}) as thief:  # a copy of the cookie, made before
            refused = thief.get("/studio/api/whoami")
            assert refused.status_code == 401 and 'sd-studio-session=""' in refused.headers.get("set-cookie", "")


# ---- cross-site requests


def test_cross_site_requests_are_refused(engine, tmp_path):
    with studio(engine, accounts(), tmp_path) as server, server.client("alice") as alice, server.client() as browser:
        forged = log_in(browser, "bob", headers={"origin": EVIL})  # login CSRF: the victim's browser logged in as bob
        assert forged.status_code == 403 and "set-cookie" not in forged.headers and "Cross-site" in forged.text
        assert log_in(browser, "bob", headers={"referer": EVIL + "/page"}).status_code == 403
        for headers in ({"origin": EVIL}, {"referer": EVIL + "/x"}, {"origin": "null"}, {"origin": server.url.replace("127.0.0.1", "localhost")},
                        {"origin": server.url.rsplit(":", 1)[0] + ":1"}):
            assert alice.post("/sdapi/v1/interrupt", headers=headers).status_code == 403, headers
        assert alice.post("/sdapi/v1/interrupt", headers={"origin": server.url}).status_code == 200  # its own page
        assert alice.post("/sdapi/v1/interrupt", headers={"referer": server.url + "/"}).status_code == 200
        assert alice.post("/sdapi/v1/interrupt").status_code == 200  # an API client: no Origin, no Referer
        assert log_in(browser, "bob", headers={"origin": server.url}).status_code == 303  # the real login form

        assert browser.get("/logout", headers={"origin": EVIL}).status_code == 403  # logout CSRF
        assert browser.get("/studio/api/whoami").json()["user"] == "bob"

        # Gradio's own CORS middleware grants any origin credentialed reads on a LAN host name: stripped.
        port = server.url.rsplit(":", 1)[1]
        read = alice.get("/config", headers={"host": f"studio.lan:{port}", "origin": EVIL})
        assert read.status_code == 200
        assert not [h for h in read.headers if h.lower().startswith("access-control-")], dict(read.headers)
        preflight = alice.options("/gradio_api/queue/join", headers={"host": f"studio.lan:{port}", "origin": EVIL,
                                                                       "access-control-request-method": "POST"})
        assert "access-control-allow-credentials" not in preflight.headers
        assert "access-control-allow-origin" not in preflight.headers


def test_cross_site_websocket_upgrades_are_refused():
    reached = []

    async def inner(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "websocket.accept"})

    def upgrade(origin: str) -> list:
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "websocket.connect"}

        scope = {"type": "websocket", "path": "/ws", "scheme": "ws", "client": ("10.0.0.5", 5000),
                 "headers": [(b"host", b"studio.lan:7860"), (b"origin", origin.encode())]}
        asyncio.run(LoginWall(inner, None)(scope, receive, send))
        return sent

    assert upgrade(EVIL) == [{"type": "websocket.close", "code": 1008}] and reached == []
    assert upgrade("http://studio.lan:7860") == [{"type": "websocket.accept"}] and reached == ["/ws"]


def test_same_site_rule_for_proxies_and_ports():
    from studio.web.login import same_site_request

    def same(origin, host, scheme="http"):
        return same_site_request({"scheme": scheme}, {"origin": origin, "host": host})

    assert same("https://studio.lan", "studio.lan")  # TLS proxy: the Host carries no port
    assert same("http://studio.lan:7860", "studio.lan:7860") and same("http://[::1]:7860", "[::1]:7860")
    assert same("https://studio.lan", "studio.lan:443", "https")
    assert not same("http://studio.lan:8080", "studio.lan:7860") and not same("http://studio.lan.evil.example", "studio.lan")
    assert not same("null", "studio.lan") and not same("file:///x", "studio.lan")
