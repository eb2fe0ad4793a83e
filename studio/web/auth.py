"""Logins for the shared server: users from --auth / --auth-file, password checks, HTTP Basic.

No torch, no gradio. Password entries (in --auth or one `user:password` line per user in an --auth-file):

    alice:plain-text-password
    bob:sha256:<hex sha256 of the password>
    carol:pbkdf2_sha256$<iterations>$<salt>$<hex digest>
    dave:$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>      (made by `python -m studio.web.auth hash dave`)

Blank lines and lines starting with # are ignored. User names: letters, digits, `_`, `-`, `.`, at most 64,
not starting with a dot; "local" is reserved for the single user of a server without logins.

Password checks are slow on purpose (argon2, PBKDF2), so the server never runs them on its event loop: `Users.login`
runs them on a small thread pool, remembers recent outcomes (API clients send Basic credentials with every request),
refuses unchecked once an account or an address has failed too often (`LoginLimiter`), and checks an unknown user
against a dummy entry of the same kind and cost as the real ones, so a name's existence does not show in the timing.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import hashlib
import hmac
import math
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from ..contract import LOCAL_USER
from ..history import DAY_RE
from .sessions import SESSION_COOKIE, SessionStore

_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}\Z")  # \Z: "$" would let "bob\n" by
PBKDF2_ITERATIONS = 200_000
ARGON2_PREFIX = "$argon2"
# Failed guesses allowed per window before answers become 429 (see LoginLimiter).
FAILURES_PER_ACCOUNT = 5
FAILURES_PER_ADDRESS = 20
FAILURE_WINDOW_S = 60.0
TARPIT_S = 1.0  # a refused (429) attempt is answered this late: each guessing connection gets ~1 answer a second
REMEMBER_CHECKS_S = 300.0  # how long a checked Basic credential is answered from memory
CHECK_THREADS = 2  # password checks at once (argon2 takes 64 MiB each)


class AuthConfigError(ValueError):
    """A bad --auth / --auth-file entry (the message never contains a password)."""


def check_username(name: str) -> str:
    if not _USER_RE.match(name) or DAY_RE.match(name):  # a user's folder is beside the local user's day folders
        raise AuthConfigError(
            f"Bad user name {name!r}: use letters, digits, '_', '-', '.' (at most 64, not a date, not starting with '.')."
        )
    if name == LOCAL_USER:
        raise AuthConfigError(f"The user name {LOCAL_USER!r} is reserved for a server without logins.")
    return name


# ---- password entries


def hash_password(password: str, **argon2_parameters) -> str:
    """An argon2id entry (argon2-cffi's defaults, RFC 9106's low-memory profile, unless parameters say otherwise)."""
    return PasswordHasher(**argon2_parameters).hash(password)


def pbkdf2_hash(password: str, iterations: int = PBKDF2_ITERATIONS, salt: Optional[str] = None) -> str:
    """A pbkdf2_sha256$ entry: the older format, still read; new entries use hash_password (argon2)."""
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def verify_password(stored: str, password: str) -> bool:
    """Constant-time check of `password` against a stored entry ($argon2id$..., pbkdf2_sha256$..., sha256:HEX, plain)."""
    given = password.encode()
    if stored.startswith(ARGON2_PREFIX):
        try:
            return PasswordHasher().verify(stored, password)
        except (VerificationError, InvalidHashError, ValueError):
            return False
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


def entry_cost(stored: str) -> tuple[int, int]:
    """How expensive checking this entry is, comparable between entries: (kind, work within the kind)."""
    if stored.startswith(ARGON2_PREFIX):
        try:
            p = extract_parameters(stored)
        except (InvalidHashError, ValueError):
            return (0, 0)
        return (3, p.time_cost * p.memory_cost * p.parallelism)
    if stored.startswith("pbkdf2_sha256$"):
        try:
            return (2, int(stored.split("$")[1]))
        except (ValueError, IndexError):
            return (0, 0)
    return (1, 0) if stored.startswith("sha256:") else (0, 0)


def dummy_entry_like(stored: str) -> str:
    """An entry of the same kind and cost as `stored` for a random password: what unknown users are checked against."""
    password = secrets.token_urlsafe(16)
    kind, _ = entry_cost(stored)
    if kind == 3:
        p = extract_parameters(stored)
        return PasswordHasher(time_cost=p.time_cost, memory_cost=p.memory_cost, parallelism=p.parallelism,
                              hash_len=p.hash_len, salt_len=p.salt_len, type=p.type).hash(password)
    if kind == 2:
        return pbkdf2_hash(password, iterations=int(stored.split("$")[1]))
    if kind == 1:
        return "sha256:" + hashlib.sha256(password.encode()).hexdigest()
    return password


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


def basic_credentials(header: Optional[str]) -> Optional[tuple[str, str]]:
    """(user, password) from an `Authorization: Basic ...` header, or None when it is not one."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


# ---- guessing limits and remembered checks


class LoginLimiter:
    """Failed password guesses per account and per client address, in a sliding window. Over either limit, a login
    is refused without checking the password, so a guessing flood costs (almost) nothing and gets nowhere.

    An attempt counts as a failure from the moment it is let through (`attempt`) until it succeeds (`forgive`):
    concurrent guesses cannot slip past the limit while their checks run. tarpit_s: how long a refusal waits before
    it is sent (an idle timer, no work), so a guessing connection cannot turn into a flood of cheap requests."""

    def __init__(self, per_account: int = FAILURES_PER_ACCOUNT, per_address: int = FAILURES_PER_ADDRESS,
                 window_s: float = FAILURE_WINDOW_S, *, tarpit_s: float = TARPIT_S,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        self.per_account = per_account
        self.per_address = per_address
        self.window_s = window_s
        self.tarpit_s = tarpit_s
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def _keys(self, account: str, address: str) -> list[tuple[tuple[str, str], int]]:
        return [(("account", account[:64]), self.per_account), (("address", address), self.per_address)]

    def _recent(self, key, now: float) -> deque:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def wait_s(self, account: str, address: str) -> float:
        """Seconds until this account/address may try again; 0 when it may now."""
        now = self._clock()
        with self._lock:
            return self._wait(account, address, now)

    def _wait(self, account: str, address: str, now: float) -> float:
        wait = 0.0
        for key, limit in self._keys(account, address):
            times = self._recent(key, now)
            if len(times) >= limit:
                wait = max(wait, times[len(times) - limit] + self.window_s - now)
        return wait

    def attempt(self, account: str, address: str) -> float:
        """0 and the attempt counted as a failure until forgiven; or the seconds to wait (nothing counted)."""
        now = self._clock()
        with self._lock:
            wait = self._wait(account, address, now)
            if wait > 0:
                return wait
            for key, _ in self._keys(account, address):
                self._failures.setdefault(key, deque()).append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)
            return 0.0

    def forgive(self, account: str, address: str) -> None:
        """The attempt succeeded: it is not a failure after all."""
        with self._lock:
            for key, _ in self._keys(account, address):
                times = self._failures.get(key)
                if times:
                    times.pop()


class RecentChecks:
    """Outcomes of recent password checks, keyed by an HMAC (with a per-process key) of the credentials, never the
    password itself. A1111-style clients send Basic credentials with every request: a right one must not cost a hash
    each time, and a repeated wrong one is not a new guess (a client with a stale password must not lock its owner out)."""

    def __init__(self, ttl_s: float = REMEMBER_CHECKS_S, *, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._outcomes: OrderedDict[bytes, tuple[bool, float]] = OrderedDict()

    def key(self, user: str, password: str) -> bytes:
        message = f"{len(user)}:{user}:{password}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def get(self, key: bytes) -> Optional[bool]:
        """True (right), False (wrong), None (not checked lately)."""
        with self._lock:
            found = self._outcomes.get(key)
            if found is None:
                return None
            if found[1] <= self._clock():
                del self._outcomes[key]
                return None
            return found[0]

    def put(self, key: bytes, right: bool) -> None:
        with self._lock:
            self._outcomes[key] = (right, self._clock() + self.ttl_s)
            self._outcomes.move_to_end(key)
            while len(self._outcomes) > self._max_entries:
                self._outcomes.popitem(last=False)


@dataclass(frozen=True)
class Verdict:
    """A login attempt's answer: the user (None: refused); retry_after_s > 0 when refused unchecked, over the limit."""

    user: Optional[str] = None
    retry_after_s: int = 0


# ---- the accounts


class Users:
    """The accounts, who is an admin, how a password is checked (off the event loop, limited, remembered briefly),
    and the session store the login form writes to (in memory until the LoginWall hands over a persistent one).

    verify: (stored entry, password) -> bool, the slow check (tests pass a counting or blocking one)."""

    def __init__(self, passwords: dict[str, str], admins: tuple[str, ...] = (), *,
                 limiter: Optional[LoginLimiter] = None, sessions: Optional[SessionStore] = None,
                 verify: Callable[[str, str], bool] = verify_password, remember_s: float = REMEMBER_CHECKS_S,
                 check_threads: int = CHECK_THREADS):
        self._passwords = dict(passwords)
        unknown = [a for a in admins if a not in self._passwords]
        if unknown:
            raise AuthConfigError(f"--admin names users that have no login: {', '.join(unknown)}.")
        self.admins = frozenset(admins)
        self.limiter = limiter or LoginLimiter()
        self.sessions = sessions or SessionStore()
        self._verify = verify
        costliest = max(self._passwords.values(), key=entry_cost, default="")
        self.dummy_entry = dummy_entry_like(costliest)
        self._recent = RecentChecks(remember_s)
        self._checks = ThreadPoolExecutor(max_workers=check_threads, thread_name_prefix="password-check")

    @classmethod
    def from_options(cls, auth: Optional[str], auth_file: Optional[Path], admins: tuple[str, ...] = (), **options) -> Optional["Users"]:
        """None when neither --auth nor --auth-file is given (a single local user, no logins). options: Users' keywords."""
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
        return cls(passwords, admins, **options)

    @property
    def names(self) -> list[str]:
        return sorted(self._passwords)

    def is_admin(self, user: str) -> bool:
        return user in self.admins

    def use_sessions(self, sessions: SessionStore) -> None:
        """The LoginWall hands over the store kept under the server's state folder."""
        self.sessions = sessions

    # ---- passwords

    def check(self, user: str, password: str) -> bool:
        """The slow check, blocking: unlimited, unremembered. Unknown users cost the same (a dummy entry)."""
        stored = self._passwords.get(user)
        right = self._verify(self.dummy_entry if stored is None else stored, password)
        return bool(right) and stored is not None

    async def login(self, user: str, password: str, address: str) -> Verdict:
        """A login attempt from a client address: answered from recent checks, else refused unchecked when over the
        limit, else checked on the thread pool (the event loop keeps serving everyone else meanwhile)."""
        key = self._recent.key(user, password)
        known = self._recent.get(key)
        if known is not None:
            return Verdict(user if known else None)
        wait = self.limiter.attempt(user, address)
        if wait > 0:
            await asyncio.sleep(self.limiter.tarpit_s)
            return Verdict(None, retry_after_s=max(1, math.ceil(wait - self.limiter.tarpit_s)))
        right = await asyncio.get_running_loop().run_in_executor(self._checks, self.check, user, password)
        if right:
            self.limiter.forgive(user, address)
        self._recent.put(key, right)
        return Verdict(user if right else None)

    async def basic_login(self, header: Optional[str], address: str) -> Optional[Verdict]:
        """`login` for an `Authorization: Basic` header; None when the header is not one."""
        credentials = basic_credentials(header)
        return None if credentials is None else await self.login(*credentials, address)

    # ---- sessions

    def session_user(self, cookie: Optional[str]) -> Optional[str]:
        """The user of a live session cookie; None also when that user is no longer in the users file."""
        user = self.sessions.user_of(cookie)
        return user if user in self._passwords else None


def _cookie_value(cookie_header: str, name: str) -> Optional[str]:
    for part in cookie_header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip('"')
    return None


def session_cookie(headers: dict[str, str]) -> Optional[str]:
    return _cookie_value(headers.get("cookie", ""), SESSION_COOKIE)


def main(argv: list[str] | None = None) -> int:
    """`python -m studio.web.auth hash [user]`: print an --auth-file line with an argon2id hash."""
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
