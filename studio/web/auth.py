"""Logins for the shared server: users from --auth / --auth-file, password checks, signed session cookies, HTTP Basic.

No torch, no gradio. Password entries (in --auth or one `user:password` line per user in an --auth-file):

    alice:plain-text-password
    bob:sha256:<hex sha256 of the password>
    carol:pbkdf2_sha256$<iterations>$<salt>$<hex digest>      (made by `python -m studio.web.auth hash`)

Blank lines and lines starting with # are ignored. User names: letters, digits, `_`, `-`, `.`, at most 64,
not starting with a dot; "local" is reserved for the single user of a server without logins.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Optional

from ..requests import LOCAL_USER

SESSION_COOKIE = "sd-studio-session"
SESSION_SECONDS = 14 * 24 * 3600
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PBKDF2_ITERATIONS = 200_000


class AuthConfigError(ValueError):
    """A bad --auth / --auth-file entry (the message never contains a password)."""


def check_username(name: str) -> str:
    if not _USER_RE.match(name) or _DAY_RE.match(name):
        raise AuthConfigError(
            f"Bad user name {name!r}: use letters, digits, '_', '-', '.' (at most 64, not a date, not starting with '.')."
        )
    if name == LOCAL_USER:
        raise AuthConfigError(f"The user name {LOCAL_USER!r} is reserved for a server without logins.")
    return name


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS, salt: Optional[str] = None) -> str:
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def verify_password(stored: str, password: str) -> bool:
    """Constant-time check of `password` against a stored entry (plain, sha256:HEX or pbkdf2_sha256$...)."""
    given = password.encode()
    if stored.startswith("sha256:"):
        return hmac.compare_digest(hashlib.sha256(given).hexdigest(), stored[len("sha256:") :].strip().lower())
    if stored.startswith("pbkdf2_sha256$"):
        try:
            _, iterations, salt, digest = stored.split("$", 3)
            computed = hashlib.pbkdf2_hmac("sha256", given, salt.encode(), int(iterations)).hex()
        except ValueError:
            return False
        return hmac.compare_digest(computed, digest.strip().lower())
    return hmac.compare_digest(stored.encode(), given)


def parse_entries(lines, where: str) -> dict[str, str]:
    users: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, secret = line.partition(":")
        if not sep or not secret:
            raise AuthConfigError(f"{where}, entry {number}: expected user:password.")
        users[check_username(name.strip())] = secret
    return users


class Users:
    """The accounts, who is an admin, and the session-cookie signer (a fresh random key per server start)."""

    def __init__(self, passwords: dict[str, str], admins: tuple[str, ...] = ()):
        self._passwords = dict(passwords)
        unknown = [a for a in admins if a not in self._passwords]
        if unknown:
            raise AuthConfigError(f"--admin names users that have no login: {', '.join(unknown)}.")
        self.admins = frozenset(admins)
        self._key = secrets.token_bytes(32)

    @classmethod
    def from_options(cls, auth: Optional[str], auth_file: Optional[Path], admins: tuple[str, ...] = ()) -> Optional["Users"]:
        """None when neither --auth nor --auth-file is given (a single local user, no logins)."""
        if not auth and not auth_file:
            return None
        passwords: dict[str, str] = {}
        if auth:
            passwords.update(parse_entries(auth.split(","), "--auth"))
        if auth_file:
            try:
                text = Path(auth_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise AuthConfigError(f"Cannot read --auth-file {auth_file}: {exc.strerror}.") from None
            passwords.update(parse_entries(text.splitlines(), f"--auth-file {auth_file}"))
        if not passwords:
            raise AuthConfigError("--auth/--auth-file name no users.")
        return cls(passwords, admins)

    @property
    def names(self) -> list[str]:
        return sorted(self._passwords)

    def check(self, user: str, password: str) -> bool:
        stored = self._passwords.get(user)
        if stored is None:
            verify_password("pbkdf2_sha256$1000$x$00", password)  # similar time for unknown users
            return False
        return verify_password(stored, password)

    def is_admin(self, user: str) -> bool:
        return user in self.admins

    # ---- sessions: "user|expiry|signature"

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def make_session(self, user: str, now: Optional[float] = None) -> str:
        payload = f"{user}|{int((now or time.time()) + SESSION_SECONDS)}"
        return f"{payload}|{self._sign(payload)}"

    def session_user(self, token: Optional[str]) -> Optional[str]:
        if not token:
            return None
        try:
            user, expiry, signature = token.rsplit("|", 2)
            fresh = int(expiry) > time.time()
        except ValueError:
            return None
        if fresh and hmac.compare_digest(self._sign(f"{user}|{expiry}"), signature) and user in self._passwords:
            return user
        return None

    def basic_user(self, header: Optional[str]) -> Optional[str]:
        """The user of an `Authorization: Basic ...` header with a right password, else None."""
        if not header or not header[:6].lower() == "basic ":
            return None
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user if sep and self.check(user, password) else None


def _cookie_value(cookie_header: str, name: str) -> Optional[str]:
    for part in cookie_header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip('"')
    return None


def user_from_headers(users: Optional[Users], headers: dict[str, str]) -> Optional[str]:
    """Who sent a request: LOCAL_USER without logins; else the session cookie's or Basic auth's user, or None."""
    if users is None:
        return LOCAL_USER
    token = _cookie_value(headers.get("cookie", ""), SESSION_COOKIE)
    return users.session_user(token) or users.basic_user(headers.get("authorization"))


def request_user(request) -> str:
    """For Gradio event handlers (`request: gr.Request`): the logged-in user, or "local" without logins."""
    return getattr(request, "username", None) or LOCAL_USER


def main(argv: list[str] | None = None) -> int:
    """`python -m studio.web.auth hash [user]`: print an --auth-file line with a salted PBKDF2 hash."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "hash":
        print("usage: python -m studio.web.auth hash [USER]   (reads the password from the terminal)", file=sys.stderr)
        return 2
    user = check_username(argv[1]) if len(argv) > 1 else None
    password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    line = hash_password(password)
    print(f"{user}:{line}" if user else line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
