"""Server-side login sessions.

The cookie carries only a random session id, signed with itsdangerous; the store knows whose session it is and until
when. So logout really ends a session (a copied cookie stops working), and, kept in a file next to the signing key
under the server's state folder (`<state_dir>/logins/`, mode 0700, files 0600), sessions outlive a restart. The file
holds a SHA-256 of each session id, never the id itself, so reading it does not give a usable cookie.

No torch, no gradio.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from itsdangerous import BadSignature, URLSafeTimedSerializer

log = logging.getLogger(__name__)

SESSION_COOKIE = "sd-studio-session"
SESSION_SECONDS = 14 * 24 * 3600
SESSIONS_PER_USER = 20  # a user's oldest sessions end beyond this: logging in again and again cannot grow the file
_SIGNING_SALT = "sd-studio-session"


class SessionStore:
    """Which session id belongs to which user, until when. state_dir None: in memory only, with a fresh signing key
    (sessions end with the process)."""

    def __init__(self, state_dir: Optional[Path] = None, *, lifetime_s: float = SESSION_SECONDS,
                 per_user: int = SESSIONS_PER_USER, clock: Callable[[], float] = time.time):
        self.lifetime_s = lifetime_s
        self.per_user = per_user
        self._clock = clock
        self._lock = threading.Lock()
        self.folder = Path(state_dir) / "logins" if state_dir is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            os.chmod(self.folder, 0o700)
            key = self._signing_key(self.folder / "secret.key")
        else:
            key = secrets.token_bytes(32)
        self._signer = URLSafeTimedSerializer(key, salt=_SIGNING_SALT)
        self._sessions: dict[str, tuple[str, float]] = self._load()  # sha256(session id) -> (user, expiry)

    # ---- the public side

    def create(self, user: str) -> str:
        """A new session for `user`; returns the cookie value (the signed session id)."""
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._drop_expired(now)
            mine = sorted((expiry, digest) for digest, (owner, expiry) in self._sessions.items() if owner == user)
            for _, digest in mine[: max(0, len(mine) - self.per_user + 1)]:
                del self._sessions[digest]
            self._sessions[_digest(session_id)] = (user, now + self.lifetime_s)
            self._save()
        return self._signer.dumps(session_id)

    def user_of(self, cookie: Optional[str]) -> Optional[str]:
        """The user of a live session, or None (bad signature, expired, ended, or unknown)."""
        session_id = self._session_id(cookie)
        if session_id is None:
            return None
        with self._lock:
            found = self._sessions.get(_digest(session_id))
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    def end(self, cookie: Optional[str]) -> bool:
        """Logout: the session is gone for good, whoever holds a copy of the cookie. False if there was none."""
        session_id = self._session_id(cookie)
        if session_id is None:
            return False
        with self._lock:
            if self._sessions.pop(_digest(session_id), None) is None:
                return False
            self._save()
        return True

    def count(self, user: Optional[str] = None) -> int:
        """Live sessions (of `user`, or of everyone)."""
        now = self._clock()
        with self._lock:
            return sum(1 for owner, expiry in self._sessions.values() if expiry > now and (user is None or owner == user))

    # ---- inside

    def _session_id(self, cookie: Optional[str]) -> Optional[str]:
        if not cookie or not isinstance(cookie, str) or len(cookie) > 512:
            return None
        try:
            session_id = self._signer.loads(cookie, max_age=self.lifetime_s)
        except BadSignature:
            return None
        return session_id if isinstance(session_id, str) else None

    def _drop_expired(self, now: float) -> None:
        for digest in [d for d, (_, expiry) in self._sessions.items() if expiry <= now]:
            del self._sessions[digest]

    def _signing_key(self, path: Path) -> bytes:
        """The key that signs cookies, made once and kept (0600) so a restart keeps sessions valid."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            os.chmod(path, 0o600)
            key = bytes.fromhex(path.read_text(encoding="ascii").strip() or "00")
            if len(key) >= 32:
                return key
            log.warning("The session key in %s is unusable; making a new one (everyone logs in again).", path)
            path.unlink()
            return self._signing_key(path)
        key = secrets.token_bytes(32)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key.hex())
        return key

    def _load(self) -> dict[str, tuple[str, float]]:
        if self.folder is None:
            return {}
        path = self.folder / "sessions.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            sessions = {str(d): (str(user), float(expiry)) for d, (user, expiry) in raw["sessions"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("Ignoring the unreadable session file %s (%s): everyone logs in again.", path, exc)
            return {}
        now = self._clock()
        return {d: s for d, s in sessions.items() if s[1] > now}

    def _save(self) -> None:
        """Atomically, mode 0600 (called with the lock held)."""
        if self.folder is None:
            return
        path = self.folder / "sessions.json"
        partial = path.with_name(f".sessions.{os.getpid()}.partial")
        body = json.dumps({"sessions": {d: [user, expiry] for d, (user, expiry) in self._sessions.items()}})
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
        os.replace(partial, path)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
